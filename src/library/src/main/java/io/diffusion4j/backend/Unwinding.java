package io.diffusion4j.backend;

import java.util.List;

/** Undoing a constructor that failed part-way through acquiring native resources. */
public final class Unwinding {
    private Unwinding() {}

    /**
     * Closes {@code made} last-acquired first, so views close before the tensors they view, adding any failure
     * to close as suppressed to {@code failure}; returns {@code failure} for the caller to throw.
     */
    public static RuntimeException closeAll(List<? extends AutoCloseable> made, RuntimeException failure) {
        for (int i = made.size() - 1; i >= 0; i--) {
            try {
                made.get(i).close();
            } catch (Exception suppressed) {
                failure.addSuppressed(suppressed);
            }
        }
        return failure;
    }
}
