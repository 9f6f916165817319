package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.batchOf;
import static io.diffusion4j.kernels.TensorChecks.requireFloat;
import static io.diffusion4j.kernels.TensorChecks.requireSameShape;

import io.diffusion4j.backend.Backend;
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
 * The fused diffusion kernels: forward noising, the training loss with its
 * gradient, and the DDPM / DDIM reverse steps with per-sample timesteps, plus
 * the counter-based RNG and the sinusoidal timestep embedding. Each call is
 * one native entry point of native/include/d4j.h; its semantics are documented
 * there. Tensors are float32 {@code [batch, ...]}; all tensors of a call must
 * be of one backend and have the same shape.
 */
public final class DiffusionKernels {
    private DiffusionKernels() {}

    /**
     * Forward noising: {@code eps = N(0, 1)} drawn from (seed, offset, flat index) and
     * {@code xT = sqrt(ab[t]) x0 + sqrt(1 - ab[t]) eps}, per sample b with timestep {@code timesteps[b]}.
     */
    public static void addNoise(NativeSchedule schedule, Tensor x0, int[] timesteps, long seed, long offset, Tensor xT,
                                Tensor eps) {
        int batch = batchOf(x0, "x0", timesteps, "timesteps");
        requireSameShape(x0, xT, "xT");
        requireSameShape(x0, eps, "eps");
        long n = x0.elementCount() / batch;
        Backend be = x0.backend();
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_add_noise(be.handle(), schedule.handle(), x0.handle(), ints(arena, timesteps),
                    batch, n, seed, offset, xT.handle(), eps.handle()));
        }
    }

    /**
     * Fused training loss: per-sample {@code loss[b] = w[t_b] * mean((modelOutput - target)^2)} with the target
     * given by the prediction type, and (if {@code grad} is not null) the gradient of
     * {@code mean_b loss[b]} with respect to the model output. {@code lossWeights} is a per-timestep table
     * of length T or null for uniform weights.
     */
    public static void diffusionLoss(NativeSchedule schedule, PredictionType prediction, Tensor modelOutput, Tensor x0,
                                     Tensor eps, int[] timesteps, float[] lossWeights, Tensor loss, Tensor grad) {
        Objects.requireNonNull(prediction, "prediction");
        int batch = batchOf(modelOutput, "modelOutput", timesteps, "timesteps");
        requireSameShape(modelOutput, x0, "x0");
        requireSameShape(modelOutput, eps, "eps");
        if (grad != null) requireSameShape(modelOutput, grad, "grad");
        requireFloat(loss, "loss");
        if (loss.elementCount() != batch) {
            throw new IllegalArgumentException("loss must have " + batch + " elements, got " + loss.describe());
        }
        if (lossWeights != null && lossWeights.length != schedule.numTrainTimesteps()) {
            throw new IllegalArgumentException("lossWeights has " + lossWeights.length + " entries, the schedule has T = "
                    + schedule.numTrainTimesteps());
        }
        long n = modelOutput.elementCount() / batch;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = lossWeights == null ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_FLOAT, lossWeights);
            Native.check(d4j_h.d4j_diffusion_loss(modelOutput.backend().handle(), schedule.handle(), prediction.ordinal(),
                    modelOutput.handle(), x0.handle(), eps.handle(), ints(arena, timesteps), w, batch, n, loss.handle(),
                    grad == null ? MemorySegment.NULL : grad.handle()));
        }
    }

    /** Per-sample noise streams for a reverse step: sample b draws from (seeds[b], offsets[b], element index). */
    public record SampleNoise(long[] seeds, long[] offsets) {
        public SampleNoise {
            Objects.requireNonNull(seeds, "seeds");
            Objects.requireNonNull(offsets, "offsets");
            if (seeds.length != offsets.length) {
                throw new IllegalArgumentException("seeds has " + seeds.length + " entries but offsets has " + offsets.length);
            }
        }
    }

    /** One DDPM reverse step (diffusers DDPMScheduler.step); {@code xPrev} may be {@code xT}. */
    public static void ddpmStep(NativeSchedule schedule, PredictionType prediction, VarianceType variance,
                                boolean clipSample, float clipSampleRange, Tensor xT, Tensor modelOutput,
                                int[] timesteps, int[] prevTimesteps, SampleNoise noise, Tensor xPrev) {
        Objects.requireNonNull(prediction, "prediction");
        Objects.requireNonNull(variance, "variance");
        int batch = checkStep(xT, modelOutput, timesteps, prevTimesteps, noise, xPrev);
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_ddpm_step(xT.backend().handle(), schedule.handle(), prediction.ordinal(),
                    variance.ordinal(), clipSample ? 1 : 0, clipSampleRange, xT.handle(), modelOutput.handle(),
                    ints(arena, timesteps), ints(arena, prevTimesteps), batch, xT.elementCount() / batch,
                    longs(arena, noise.seeds()), longs(arena, noise.offsets()), xPrev.handle()));
        }
    }

    /** One DDIM step (diffusers DDIMScheduler.step); {@code xPrev} may be {@code xT}. */
    public static void ddimStep(NativeSchedule schedule, PredictionType prediction, float eta, boolean clipSample,
                                float clipSampleRange, boolean useClippedModelOutput, double finalAlphaCumprod,
                                Tensor xT, Tensor modelOutput, int[] timesteps, int[] prevTimesteps, SampleNoise noise,
                                Tensor xPrev) {
        Objects.requireNonNull(prediction, "prediction");
        int batch = checkStep(xT, modelOutput, timesteps, prevTimesteps, noise, xPrev);
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_ddim_step(xT.backend().handle(), schedule.handle(), prediction.ordinal(), eta,
                    clipSample ? 1 : 0, clipSampleRange, useClippedModelOutput ? 1 : 0, finalAlphaCumprod,
                    xT.handle(), modelOutput.handle(), ints(arena, timesteps), ints(arena, prevTimesteps), batch,
                    xT.elementCount() / batch, longs(arena, noise.seeds()), longs(arena, noise.offsets()),
                    xPrev.handle()));
        }
    }

    /** Sinusoidal timestep embedding (diffusers get_timestep_embedding) into {@code out[batch, dim]}. */
    public static void timestepEmbedding(Backend backend, float[] timesteps, int dim, boolean flipSinToCos,
                                         float downscaleFreqShift, float scale, float maxPeriod, Tensor out) {
        Objects.requireNonNull(timesteps, "timesteps");
        requireFloat(out, "out");
        if (out.rank() != 2 || out.dim(0) != timesteps.length || out.dim(1) != dim) {
            throw new IllegalArgumentException("out must be float32[" + timesteps.length + ", " + dim + "], got "
                    + out.describe());
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment t = timesteps.length == 0 ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_FLOAT, timesteps);
            Native.check(d4j_h.d4j_timestep_embedding(backend.handle(), t, timesteps.length, dim, flipSinToCos ? 1 : 0,
                    downscaleFreqShift, scale, maxPeriod, out.handle()));
        }
    }

    /** Raw Philox4x32-10 words {@code (seed, offset, i)} for i in [0, out.elementCount()). */
    public static void randomBits(Backend backend, long seed, long offset, Tensor out) {
        if (out.dtype() != DType.UINT32) throw new IllegalArgumentException("out must be uint32, got " + out.describe());
        Native.check(d4j_h.d4j_rng_uint32(backend.handle(), seed, offset, out.handle(), out.elementCount()));
    }

    /** Standard normals {@code (seed, offset, i)} for i in [0, out.elementCount()). */
    public static void randomNormal(Backend backend, long seed, long offset, Tensor out) {
        requireFloat(out, "out");
        Native.check(d4j_h.d4j_rng_normal(backend.handle(), seed, offset, out.handle(), out.elementCount()));
    }

    /** The checks of a reverse step (shared with {@link SamplerKernels}); returns the batch size. */
    static int checkStep(Tensor xT, Tensor modelOutput, int[] timesteps, int[] prevTimesteps, SampleNoise noise,
                          Tensor xPrev) {
        Objects.requireNonNull(noise, "noise");
        int batch = batchOf(xT, "xT", timesteps, "timesteps");
        batchOf(xT, "xT", prevTimesteps, "prevTimesteps");
        if (noise.seeds().length != batch) {
            throw new IllegalArgumentException("noise has " + noise.seeds().length + " streams for a batch of " + batch);
        }
        requireSameShape(xT, modelOutput, "modelOutput");
        requireSameShape(xT, xPrev, "xPrev");
        return batch;
    }

    /** {@code v} in {@code arena} as a native int array (NULL when empty); shared with {@link SamplerKernels}. */
    static MemorySegment ints(Arena arena, int[] v) {
        return v.length == 0 ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_INT, v);
    }

    /** {@code v} in {@code arena} as a native long array (NULL when empty); shared with {@link SamplerKernels}. */
    static MemorySegment longs(Arena arena, long[] v) {
        return v.length == 0 ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_LONG, v);
    }
}
