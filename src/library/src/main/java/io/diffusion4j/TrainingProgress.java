package io.diffusion4j;

/** Receives every step of a {@link TrainingRun}, on the training thread, right after the step. */
@FunctionalInterface
public interface TrainingProgress {
    /**
     * Called after a step.
     *
     * @param step what the step measured
     */
    void onStep(TrainingStep step);
}
