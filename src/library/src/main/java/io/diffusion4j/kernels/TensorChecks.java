package io.diffusion4j.kernels;

import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.Arrays;
import java.util.Objects;

/** Argument checks shared by the kernel classes; messages name the parameter. */
final class TensorChecks {
    private TensorChecks() {}

    /** {@code t} is non-null and float32. */
    static void requireFloat(Tensor t, String name) {
        Objects.requireNonNull(t, name);
        if (t.dtype() != DType.FLOAT32) throw new IllegalArgumentException(name + " must be float32, got " + t.describe());
    }

    /** {@code t} has {@code ref}'s shape, dtype and backend. */
    static void requireSameShape(Tensor ref, Tensor t, String name) {
        Objects.requireNonNull(t, name);
        if (!Arrays.equals(ref.shape(), t.shape()) || t.dtype() != ref.dtype()) {
            throw new IllegalArgumentException(name + " is " + t.describe() + " but must match " + ref.describe());
        }
        if (t.backend() != ref.backend()) {
            throw new IllegalArgumentException(name + " is on backend " + t.backend().kind().cliName()
                    + ", other tensors on " + ref.backend().kind().cliName());
        }
    }

    /**
     * The batch size of {@code x}, whose first dimension must equal {@code perSample.length} (one entry per
     * sample); {@code x} (named {@code xName} in messages) is non-null and float32.
     */
    static int batchOf(Tensor x, String xName, int[] perSample, String name) {
        Objects.requireNonNull(x, xName);
        Objects.requireNonNull(perSample, name);
        requireFloat(x, xName);
        if (x.dim(0) != perSample.length) {
            throw new IllegalArgumentException(name + " has " + perSample.length + " entries but the batch dimension of "
                    + x.describe() + " is " + x.dim(0));
        }
        return perSample.length;
    }
}
