package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.DiffusionKernels.checkStep;
import static io.diffusion4j.kernels.DiffusionKernels.ints;
import static io.diffusion4j.kernels.DiffusionKernels.longs;
import static io.diffusion4j.kernels.TensorChecks.batchOf;
import static io.diffusion4j.kernels.TensorChecks.requireSameShape;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * The sampler kernels: dynamic thresholding of the x0 prediction for DDPM and DDIM steps and the
 * fused DPM-Solver++ 2M update, with per-sample timesteps. Each call is one native entry point of
 * native/include/d4j.h (section "sampler"), whose comments give the exact semantics. Tensors are float32
 * {@code [batch, ...]}, all of one backend and one shape; {@code threshold} tensors are float32 {@code [batch]}.
 */
public final class SamplerKernels {
    private SamplerKernels() {}

    /**
     * Dynamic thresholding's per-sample threshold {@code s_b = clamp(quantile(|x0_hat_b|, ratio), 1,
     * sampleMaxValue)} (torch.quantile's linear interpolation) into {@code threshold[batch]}.
     */
    public static void x0Threshold(NativeSchedule schedule, PredictionType prediction, Tensor xT, Tensor modelOutput,
                                   int[] timesteps, double ratio, float sampleMaxValue, Tensor threshold) {
        Objects.requireNonNull(schedule, "schedule");
        Objects.requireNonNull(prediction, "prediction");
        int batch = batchOf(xT, "xT", timesteps, "timesteps");
        requireSameShape(xT, modelOutput, "modelOutput");
        requireThreshold(threshold, batch, xT);
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_x0_threshold(xT.backend().handle(), schedule.handle(), prediction.ordinal(),
                    xT.handle(), modelOutput.handle(), ints(arena, timesteps), batch, xT.elementCount() / batch, ratio,
                    sampleMaxValue, threshold.handle()));
        }
    }

    /** {@link DiffusionKernels#ddpmStep} with the x0 prediction thresholded by {@code threshold} instead of clipped. */
    public static void ddpmStepThresholded(NativeSchedule schedule, PredictionType prediction, VarianceType variance,
                                           Tensor threshold, Tensor xT, Tensor modelOutput, int[] timesteps,
                                           int[] prevTimesteps, SampleNoise noise, Tensor xPrev) {
        Objects.requireNonNull(schedule, "schedule");
        Objects.requireNonNull(prediction, "prediction");
        Objects.requireNonNull(variance, "variance");
        int batch = checkStep(xT, modelOutput, timesteps, prevTimesteps, noise, xPrev);
        requireThreshold(threshold, batch, xT);
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_ddpm_step_thresholded(xT.backend().handle(), schedule.handle(),
                    prediction.ordinal(), variance.ordinal(), threshold.handle(), xT.handle(), modelOutput.handle(),
                    ints(arena, timesteps), ints(arena, prevTimesteps), batch, xT.elementCount() / batch,
                    longs(arena, noise.seeds()), longs(arena, noise.offsets()), xPrev.handle()));
        }
    }

    /** {@link DiffusionKernels#ddimStep} with the x0 prediction thresholded by {@code threshold} instead of clipped. */
    public static void ddimStepThresholded(NativeSchedule schedule, PredictionType prediction, float eta,
                                           boolean useClippedModelOutput, double finalAlphaCumprod, Tensor threshold,
                                           Tensor xT, Tensor modelOutput, int[] timesteps, int[] prevTimesteps,
                                           SampleNoise noise, Tensor xPrev) {
        Objects.requireNonNull(schedule, "schedule");
        Objects.requireNonNull(prediction, "prediction");
        int batch = checkStep(xT, modelOutput, timesteps, prevTimesteps, noise, xPrev);
        requireThreshold(threshold, batch, xT);
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_ddim_step_thresholded(xT.backend().handle(), schedule.handle(),
                    prediction.ordinal(), eta, useClippedModelOutput ? 1 : 0, finalAlphaCumprod, threshold.handle(),
                    xT.handle(), modelOutput.handle(), ints(arena, timesteps), ints(arena, prevTimesteps), batch,
                    xT.elementCount() / batch, longs(arena, noise.seeds()), longs(arena, noise.offsets()),
                    xPrev.handle()));
        }
    }

    /**
     * One DPM-Solver++ step per sample from {@code timesteps[b]} to {@code prevTimesteps[b]} (-1: the final
     * sigma 0), second order with the x0 prediction {@code prevX0} made at {@code lastTimesteps[b]} (-1: first
     * order). {@code threshold} (nullable) enables dynamic thresholding; {@code x0Out} (nullable) receives this
     * step's x0 prediction and may be {@code prevX0}; {@code xPrev} may be {@code xT}.
     */
    public static void dpmSolverStep(NativeSchedule schedule, PredictionType prediction, Tensor threshold, Tensor xT,
                                     Tensor modelOutput, Tensor prevX0, int[] timesteps, int[] prevTimesteps,
                                     int[] lastTimesteps, Tensor x0Out, Tensor xPrev) {
        Objects.requireNonNull(schedule, "schedule");
        Objects.requireNonNull(prediction, "prediction");
        int batch = batchOf(xT, "xT", timesteps, "timesteps");
        batchOf(xT, "xT", prevTimesteps, "prevTimesteps");
        batchOf(xT, "xT", lastTimesteps, "lastTimesteps");
        requireSameShape(xT, modelOutput, "modelOutput");
        requireSameShape(xT, xPrev, "xPrev");
        if (prevX0 != null) requireSameShape(xT, prevX0, "prevX0");
        if (x0Out != null) requireSameShape(xT, x0Out, "x0Out");
        if (threshold != null) requireThreshold(threshold, batch, xT);
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_dpmsolver_step(xT.backend().handle(), schedule.handle(), prediction.ordinal(),
                    threshold == null ? MemorySegment.NULL : threshold.handle(), xT.handle(), modelOutput.handle(),
                    prevX0 == null ? MemorySegment.NULL : prevX0.handle(), ints(arena, timesteps),
                    ints(arena, prevTimesteps), ints(arena, lastTimesteps), batch, xT.elementCount() / batch,
                    x0Out == null ? MemorySegment.NULL : x0Out.handle(), xPrev.handle()));
        }
    }

    private static void requireThreshold(Tensor threshold, int batch, Tensor ref) {
        Objects.requireNonNull(threshold, "threshold");
        if (threshold.dtype() != DType.FLOAT32 || threshold.elementCount() != batch) {
            throw new IllegalArgumentException("threshold must be float32[" + batch + "], got " + threshold.describe());
        }
        if (threshold.backend() != ref.backend()) {
            throw new IllegalArgumentException("threshold is on backend " + threshold.backend().kind().cliName()
                    + ", the samples on " + ref.backend().kind().cliName());
        }
    }
}
