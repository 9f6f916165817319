package io.diffusion4j.sample;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.io.JsonFields;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * diffusers' {@code DDIMScheduler}: timesteps as {@link DdpmScheduler} ({@code set_timesteps} is the same for
 * leading / trailing / linspace), but every step goes from t to {@code t - T // n} (diffusers'
 * {@code prev_timestep}, whatever the spacing), below 0 to {@code final_alpha_cumprod} (1 with
 * {@code set_alpha_to_one}, else {@code alphas_cumprod[0]}). {@code eta} scales the noise (0: deterministic).
 */
public record DdimScheduler(PredictionType prediction, float eta, boolean clipSample, double clipSampleRange,
                            Thresholding thresholding, TimestepSpacing spacing, int stepsOffset,
                            boolean setAlphaToOne, boolean useClippedModelOutput) implements SamplerScheduler {
    public DdimScheduler {
        Objects.requireNonNull(prediction, "prediction");
        Objects.requireNonNull(spacing, "spacing");
        if (!(Float.isFinite(eta) && eta >= 0)) throw new IllegalArgumentException("eta must be finite and >= 0, got " + eta);
        if (clipSample && !(Double.isFinite(clipSampleRange) && clipSampleRange > 0)) {
            throw new IllegalArgumentException("clip_sample_range must be finite and > 0, got " + clipSampleRange);
        }
    }

    /** diffusers' defaults (clip_sample true, range 1, leading, offset 0, set_alpha_to_one) with the given eta. */
    public static DdimScheduler defaults(PredictionType prediction, float eta) {
        return new DdimScheduler(prediction, eta, true, 1.0, null, TimestepSpacing.LEADING, 0, true, false);
    }

    /** {@code DDIMScheduler.from_config(config)} with {@code eta} (a step() argument, not a config key). */
    public static DdimScheduler fromConfig(Map<String, Object> m, float eta) {
        JsonFields f = ConfigValues.fields(m);
        return new DdimScheduler(ConfigValues.prediction(f), eta, f.optBoolean("clip_sample", true),
                f.optDouble("clip_sample_range", 1.0), ConfigValues.thresholding(f),
                ConfigValues.spacing(f, TimestepSpacing.LEADING), f.optInt("steps_offset", 0),
                f.optBoolean("set_alpha_to_one", true), false);
    }

    /** The same scheduler with another eta. */
    public DdimScheduler withEta(float newEta) {
        return new DdimScheduler(prediction, newEta, clipSample, clipSampleRange, thresholding, spacing, stepsOffset,
                setAlphaToOne, useClippedModelOutput);
    }

    /**
     * The same scheduler with diffusers' {@code use_clipped_model_output} (a {@code step()} argument): when the x0
     * prediction is clipped or thresholded, re-derive the noise from the processed x0 instead of keeping the
     * model's.
     */
    public DdimScheduler withUseClippedModelOutput(boolean use) {
        return new DdimScheduler(prediction, eta, clipSample, clipSampleRange, thresholding, spacing, stepsOffset,
                setAlphaToOne, use);
    }

    @Override
    public String name() {
        return "ddim";
    }

    /** {@code final_alpha_cumprod}. */
    public double finalAlphaCumprod(NoiseSchedule schedule) {
        return setAlphaToOne ? 1.0 : schedule.alphasCumprod()[0];
    }

    @Override
    public int[] timesteps(int numTrainTimesteps, int n) {
        SamplerScheduler.checkSteps("DDIM", numTrainTimesteps, n);
        return SamplerScheduler.checked("DDIM", DdpmScheduler.spaced(spacing, stepsOffset, numTrainTimesteps, n),
                numTrainTimesteps, n);
    }

    @Override
    public List<SamplerStep> plan(int numTrainTimesteps, int n) {
        int[] ts = timesteps(numTrainTimesteps, n);
        int stride = numTrainTimesteps / n;
        List<SamplerStep> plan = new ArrayList<>(ts.length);
        for (int t : ts) plan.add(new SamplerStep(t, Math.max(t - stride, -1), -1));
        return List.copyOf(plan);
    }
}
