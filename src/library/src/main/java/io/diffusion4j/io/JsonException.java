package io.diffusion4j.io;

/**
 * A JSON document that could not be parsed (or a value that cannot be written as JSON). Parse errors
 * carry the 1-based line and column of the offending character; both are 0 for write errors.
 */
public final class JsonException extends IllegalArgumentException {
    private final int line;
    private final int column;

    JsonException(String message, int line, int column) {
        super(line > 0 ? message + " at line " + line + ", column " + column : message);
        this.line = line;
        this.column = column;
    }

    JsonException(String message) {
        this(message, 0, 0);
    }

    /** 1-based line of the error, 0 when not a parse error. */
    public int line() {
        return line;
    }

    /** 1-based column (in UTF-16 characters) of the error, 0 when not a parse error. */
    public int column() {
        return column;
    }
}
