package io.diffusion4j.serve;

/**
 * A request the server refuses or cannot complete, with the HTTP status to answer and, for a bad field, the
 * field's name (null otherwise).
 */
public final class RequestException extends Exception {
    private static final long serialVersionUID = 1L;
    private final int status;
    private final String field;

    public RequestException(int status, String field, String message) {
        super(message);
        this.status = status;
        this.field = field;
    }

    /** 400 naming {@code field}: the message is prefixed with it. */
    static RequestException bad(String field, String message) {
        return new RequestException(400, field, field + ": " + message);
    }

    public int status() {
        return status;
    }

    /** The offending field, or null. */
    public String field() {
        return field;
    }
}
