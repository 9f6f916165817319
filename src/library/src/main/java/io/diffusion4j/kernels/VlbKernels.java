package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.requireSameShape;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

/**
 * The variational-bound kernels (kernel family "vlb"): per-sample terms of the bound of Ho et al.
 * as improved-diffusion computes them, in nats summed over each sample's elements (divide by
 * {@code n ln 2} for bits/dim). Each call is one native entry point of native/include/d4j.h (section
 * "vlb"), whose comment gives the exact formulas. Tensors are float32 {@code [batch, ...]} of one backend
 * and one shape; the results come back to the host as float64 (the call waits for them).
 */
public final class VlbKernels {
    private VlbKernels() {}

    /**
     * The bound's term of every sample b at timestep {@code timesteps[b]}: for t &gt; 0 the summed Gaussian KL
     * {@code KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))}, for t = 0 the discretized Gaussian decoder NLL of
     * the 8-bit data {@code x0} (values {@code k / 127.5 - 1}).
     *
     * @param clipDenoised clamp the x0 prediction to [-clipRange, clipRange] first (improved-diffusion's
     *                     {@code clip_denoised}, diffusers' {@code clip_sample})
     * @return float64 {@code [batch]}, nats
     */
    public static double[] terms(NativeSchedule schedule, PredictionType prediction, VarianceType variance,
                                 boolean clipDenoised, float clipRange, Tensor x0, Tensor xT, Tensor modelOutput,
                                 int[] timesteps) {
        Objects.requireNonNull(schedule, "schedule");
        Objects.requireNonNull(prediction, "prediction");
        Objects.requireNonNull(variance, "variance");
        Objects.requireNonNull(timesteps, "timesteps");
        int batch = batchOf(x0, "x0");
        if (timesteps.length != batch) {
            throw new IllegalArgumentException("timesteps has " + timesteps.length + " entries but the batch dimension of "
                    + x0.describe() + " is " + batch);
        }
        requireSameShape(x0, xT, "xT");
        requireSameShape(x0, modelOutput, "modelOutput");
        if (clipDenoised && !(Float.isFinite(clipRange) && clipRange > 0)) {
            throw new IllegalArgumentException("clipRange must be finite and > 0, got " + clipRange);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_DOUBLE, batch);
            Native.check(d4j_h.d4j_vlb_terms(x0.backend().handle(), schedule.handle(), prediction.ordinal(),
                    variance.ordinal(), clipDenoised ? 1 : 0, clipRange, x0.handle(), xT.handle(), modelOutput.handle(),
                    arena.allocateFrom(ValueLayout.JAVA_INT, timesteps), batch, x0.elementCount() / batch, out));
            return out.toArray(ValueLayout.JAVA_DOUBLE);
        }
    }

    /** The prior term of every sample: {@code KL(q(x_T | x0) || N(0, I))} summed over its elements, nats. */
    public static double[] prior(NativeSchedule schedule, Tensor x0) {
        Objects.requireNonNull(schedule, "schedule");
        int batch = batchOf(x0, "x0");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_DOUBLE, batch);
            Native.check(d4j_h.d4j_vlb_prior(x0.backend().handle(), schedule.handle(), x0.handle(), batch,
                    x0.elementCount() / batch, out));
            return out.toArray(ValueLayout.JAVA_DOUBLE);
        }
    }

    private static int batchOf(Tensor x, String name) {
        Objects.requireNonNull(x, name);
        if (x.dtype() != DType.FLOAT32) throw new IllegalArgumentException(name + " must be float32, got " + x.describe());
        if (x.rank() < 1 || x.dim(0) < 1 || x.dim(0) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(name + " must have a batch dimension in [1, 2^31), got " + x.describe());
        }
        if (x.elementCount() == 0) throw new IllegalArgumentException(name + " has no elements: " + x.describe());
        return (int) x.dim(0);
    }
}
