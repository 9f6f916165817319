package io.diffusion4j.backend;

/**
 * A failure reported by the native layer, carrying its {@link Status} and the
 * native message. Subclasses name the kinds a caller may want to handle.
 */
public class D4jException extends RuntimeException {
    private final Status status;

    public D4jException(Status status, String message) {
        super(message);
        this.status = status;
    }

    /** The native status of the failure. */
    public Status status() {
        return status;
    }

    /** The exception type matching a status. */
    static D4jException of(Status status, String message) {
        return switch (status) {
            case INVALID_ARGUMENT -> new InvalidArgumentException(message);
            case INVALID_HANDLE -> new InvalidHandleException(message);
            case OUT_OF_MEMORY -> new OutOfDeviceMemoryException(message);
            case UNAVAILABLE -> new BackendUnavailableException(message);
            default -> new D4jException(status, message);
        };
    }

    /** An argument was refused (size, shape, range, non-finite value). */
    public static final class InvalidArgumentException extends D4jException {
        public InvalidArgumentException(String message) {
            super(Status.INVALID_ARGUMENT, message);
        }
    }

    /** A closed, freed or foreign handle was used. */
    public static final class InvalidHandleException extends D4jException {
        public InvalidHandleException(String message) {
            super(Status.INVALID_HANDLE, message);
        }
    }

    /** The backend ran out of memory. */
    public static final class OutOfDeviceMemoryException extends D4jException {
        public OutOfDeviceMemoryException(String message) {
            super(Status.OUT_OF_MEMORY, message);
        }
    }

    /** A backend cannot run on this machine; the message says why in one sentence. */
    public static final class BackendUnavailableException extends D4jException {
        public BackendUnavailableException(String message) {
            super(Status.UNAVAILABLE, message);
        }
    }
}
