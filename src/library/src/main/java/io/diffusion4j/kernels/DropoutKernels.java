package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.requireFloat;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.Tensor;
import java.util.Arrays;

/**
 * Dropout ({@code torch.nn.Dropout(p)} in training mode) with its mask drawn from the counter-based
 * RNG, so the backward regenerates it instead of storing it. See {@code d4j_dropout_forward} in
 * native/include/d4j.h: element i of the tensor (flat, in memory order) is kept when uint32 element i
 * of the Philox stream {@code (seed, offset)} is {@code >= t = min(round(p * 2^32), 2^32 - 1)}, and
 * then scaled by {@code (float) (1 / (1 - p))}; dropped elements are 0. The mask is a pure function of
 * (seed, offset, i): identical on every backend and for every thread count. {@code p = 0} copies
 * exactly. Seeds and offsets are unsigned 64-bit values carried in Java longs.
 */
public final class DropoutKernels {
    private DropoutKernels() {}

    /**
     * An exact device copy {@code dst = src} (same shape, float32, same backend, not overlapping): dropout with
     * p = 0, which drops nothing and multiplies by exactly 1 (d4j.h). The library has no plain device-to-device
     * copy entry point; this is the one place that stands in for it.
     */
    public static void copy(Tensor src, Tensor dst) {
        forward(src, 0.0, 0, 0, dst);
    }

    /** {@code y = dropout(x)}; {@code y} may be {@code x} (in place); same shape, float32, same backend. */
    public static void forward(Tensor x, double p, long seed, long offset, Tensor y) {
        check(x, "x", y, "y", p);
        Native.check(d4j_h.d4j_dropout_forward(x.backend().handle(), x.handle(), x.elementCount(), p, seed, offset,
                y.handle()));
    }

    /**
     * {@code dx = dy * keep / (1 - p)} with the mask of the {@link #forward} call with the same
     * {@code (p, seed, offset)}; {@code dx} may be {@code dy} (in place).
     */
    public static void backward(Tensor dy, double p, long seed, long offset, Tensor dx) {
        check(dy, "dy", dx, "dx", p);
        Native.check(d4j_h.d4j_dropout_backward(dy.backend().handle(), dy.handle(), dy.elementCount(), p, seed,
                offset, dx.handle()));
    }

    private static void check(Tensor in, String inName, Tensor out, String outName, double p) {
        requireFloat(in, inName);
        requireFloat(out, outName);
        if (!(Double.isFinite(p) && p >= 0 && p < 1)) {
            throw new IllegalArgumentException("p must be finite and in [0, 1), got " + p);
        }
        if (!Arrays.equals(in.shape(), out.shape())) {
            throw new IllegalArgumentException(outName + " is " + out.describe() + " but must match " + inName + " "
                    + in.describe());
        }
        if (out.backend() != in.backend()) {
            throw new IllegalArgumentException(outName + " is on backend " + out.backend().kind().cliName() + ", "
                    + inName + " on " + in.backend().kind().cliName());
        }
    }

}
