package io.diffusion4j;

/**
 * Receives the progress of one {@link DiffusionPipeline#sample sample} call, on the sampling thread, after
 * every denoising step of every batch.
 */
@FunctionalInterface
public interface SamplingProgress {
    /**
     * Called after a step.
     *
     * @param done steps done so far over all batches of the call, from 1
     * @param total steps of the whole call (steps per batch times batches)
     */
    void onStep(int done, int total);
}
