package io.diffusion4j.distributed;

/** An MPI call failed, MPI is missing, or a rank of a data-parallel job died, hung or disagreed. */
public final class MpiException extends RuntimeException {
    public MpiException(String message) {
        super(message);
    }

    public MpiException(String message, Throwable cause) {
        super(message, cause);
    }
}
