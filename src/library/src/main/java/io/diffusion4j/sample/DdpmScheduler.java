package io.diffusion4j.sample;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.io.JsonFields;
import io.diffusion4j.schedule.NumpyMath;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * diffusers' {@code DDPMScheduler} for sampling: ancestral steps over all T timesteps or a respaced subset.
 *
 * <p>{@code set_timesteps(n)} (n in [1, T]):
 * <ul>
 *   <li>leading: {@code r = T // n}; {@code t_i = (n - 1 - i) * r + steps_offset}</li>
 *   <li>trailing: {@code round(np.arange(T, 0, -T / n)) - 1}</li>
 *   <li>linspace: {@code round(np.linspace(0, T - 1, n))} reversed</li>
 * </ul>
 * Each step goes to the next timestep of the list, the last to -1 ({@code previous_timestep} of diffusers 0.32 and
 * later; v0.31 and earlier step to {@code t - T // n} whatever the spacing, which agrees for leading spacing
 * with steps_offset 0 and for n = T, see DiffusersSamplerCrossCheckTest); the update is
 * the posterior mean plus noise of variance {@code fixed_small} (posterior variance) or {@code fixed_large}
 * (beta), none at t = 0; the x0 prediction is thresholded or clipped first.
 */
public record DdpmScheduler(PredictionType prediction, VarianceType variance, boolean clipSample,
                            double clipSampleRange, Thresholding thresholding, TimestepSpacing spacing,
                            int stepsOffset) implements SamplerScheduler {
    public DdpmScheduler {
        Objects.requireNonNull(prediction, "prediction");
        Objects.requireNonNull(variance, "variance");
        Objects.requireNonNull(spacing, "spacing");
        if (variance != VarianceType.FIXED_SMALL && variance != VarianceType.FIXED_LARGE) {
            throw new IllegalArgumentException("DDPM sampling supports variance_type fixed_small and fixed_large, got "
                    + variance.configName());
        }
        if (clipSample && !(Double.isFinite(clipSampleRange) && clipSampleRange > 0)) {
            throw new IllegalArgumentException("clip_sample_range must be finite and > 0, got " + clipSampleRange);
        }
    }

    /** diffusers' defaults (fixed_small, clip_sample true with range 1, no thresholding, leading, offset 0). */
    public static DdpmScheduler defaults(PredictionType prediction) {
        return new DdpmScheduler(prediction, VarianceType.FIXED_SMALL, true, 1.0, null, TimestepSpacing.LEADING, 0);
    }

    /** {@code DDPMScheduler.from_config(config)}: keys present in the map, diffusers' defaults for the rest. */
    public static DdpmScheduler fromConfig(Map<String, Object> m) {
        JsonFields f = ConfigValues.fields(m);
        return new DdpmScheduler(ConfigValues.prediction(f),
                VarianceType.fromConfigName(f.optString("variance_type", "fixed_small")),
                f.optBoolean("clip_sample", true), f.optDouble("clip_sample_range", 1.0),
                ConfigValues.thresholding(f), ConfigValues.spacing(f, TimestepSpacing.LEADING),
                f.optInt("steps_offset", 0));
    }

    @Override
    public String name() {
        return "ddpm";
    }

    @Override
    public int[] timesteps(int numTrainTimesteps, int n) {
        SamplerScheduler.checkSteps("DDPM", numTrainTimesteps, n);
        return SamplerScheduler.checked("DDPM", spaced(spacing, stepsOffset, numTrainTimesteps, n), numTrainTimesteps, n);
    }

    /** The DDPM / DDIM {@code set_timesteps} formulas (shared by both schedulers). */
    static int[] spaced(TimestepSpacing spacing, int stepsOffset, int T, int n) {
        int[] ts = new int[n];
        switch (spacing) {
            case LEADING -> {
                int r = T / n;
                for (int i = 0; i < n; i++) ts[i] = (n - 1 - i) * r + stepsOffset;
            }
            case TRAILING -> {
                double[] a = NumpyMath.arange(T, 0, -((double) T / n));
                ts = new int[a.length];
                for (int i = 0; i < a.length; i++) ts[i] = (int) NumpyMath.round(a[i]) - 1;
            }
            case LINSPACE -> {
                double[] a = NumpyMath.linspace(0, T - 1, n);
                for (int i = 0; i < n; i++) ts[i] = (int) NumpyMath.round(a[n - 1 - i]);
            }
        }
        return ts;
    }

    @Override
    public List<SamplerStep> plan(int numTrainTimesteps, int n) {
        int[] ts = timesteps(numTrainTimesteps, n);
        List<SamplerStep> plan = new ArrayList<>(ts.length);
        for (int i = 0; i < ts.length; i++) plan.add(new SamplerStep(ts[i], i + 1 < ts.length ? ts[i + 1] : -1, -1));
        return List.copyOf(plan);
    }
}
