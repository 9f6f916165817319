package io.diffusion4j.io;

/**
 * A member of a JSON object that is missing, null, of the wrong type or out of range (see {@link JsonFields}).
 * The message reads {@code <source>: <key>: <problem>}, the problem naming the value it got; {@link #key()} and
 * {@link #problem()} give the parts to callers that report them in their own form (the server's per-field
 * errors).
 */
public final class JsonFieldException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;
    private final String key;
    private final String problem;

    JsonFieldException(String source, String key, String problem) {
        super((source == null ? "" : source + ": ") + key + ": " + problem);
        this.key = key;
        this.problem = problem;
    }

    /** The member's name; {@code name[i]} for an array element. */
    public String key() {
        return key;
    }

    /** What is wrong with it, e.g. {@code must be an integer, got a JSON string}. */
    public String problem() {
        return problem;
    }
}
