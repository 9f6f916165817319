package io.diffusion4j.sample;

import io.diffusion4j.schedule.PredictionType;
import java.util.List;
import java.util.Map;

/**
 * A reverse-process scheduler with diffusers semantics: which timesteps a run of n steps visits and how each
 * step updates the sample. Immutable; the per-run state lives in {@link Sampler}.
 */
public sealed interface SamplerScheduler permits DdpmScheduler, DdimScheduler, DpmSolverScheduler {
    /** What the model predicts. */
    PredictionType prediction();

    /** Dynamic thresholding, or null when off. */
    Thresholding thresholding();

    /** diffusers' {@code timesteps} after {@code set_timesteps(numInferenceSteps)}, first step first. */
    int[] timesteps(int numTrainTimesteps, int numInferenceSteps);

    /** The steps of a run: {@link #timesteps} with each step's target (and DPM-Solver++'s previous) timestep. */
    List<SamplerStep> plan(int numTrainTimesteps, int numInferenceSteps);

    /** Short name: ddpm, ddim or dpmsolver++. */
    String name();

    /**
     * The scheduler of the given name (ddpm, ddim, anything else DPM-Solver++) that a diffusers
     * scheduler_config.json describes, as diffusers' {@code from_config} builds it; {@code eta} is DDIM's.
     */
    static SamplerScheduler fromConfig(String sampler, float eta, Map<String, Object> cfg) {
        return switch (sampler) {
            case "ddpm" -> DdpmScheduler.fromConfig(cfg);
            case "ddim" -> DdimScheduler.fromConfig(cfg, eta);
            default -> DpmSolverScheduler.fromConfig(cfg);
        };
    }

    /** Checks the step count and that timesteps are strictly decreasing inside [0, T). */
    static int[] checked(String who, int[] ts, int numTrainTimesteps, int numInferenceSteps) {
        for (int i = 0; i < ts.length; i++) {
            if (ts[i] < 0 || ts[i] >= numTrainTimesteps) {
                throw new IllegalArgumentException(who + ": timestep " + ts[i] + " of set_timesteps(" + numInferenceSteps
                        + ") is outside [0, " + numTrainTimesteps + ") (check steps_offset and the spacing)");
            }
            if (i > 0 && ts[i] >= ts[i - 1]) {
                throw new IllegalArgumentException(who + ": set_timesteps(" + numInferenceSteps
                        + ") gives repeated or increasing timesteps (" + ts[i - 1] + ", " + ts[i]
                        + "); use fewer steps or another timestep_spacing");
            }
        }
        return ts;
    }

    static void checkSteps(String who, int numTrainTimesteps, int numInferenceSteps) {
        if (numTrainTimesteps < 1) throw new IllegalArgumentException("numTrainTimesteps must be >= 1, got " + numTrainTimesteps);
        if (numInferenceSteps < 1 || numInferenceSteps > numTrainTimesteps) {
            throw new IllegalArgumentException(who + ": the number of steps must be in [1, " + numTrainTimesteps
                    + "] (num_train_timesteps), got " + numInferenceSteps);
        }
    }
}
