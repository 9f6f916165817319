package io.diffusion4j;

/**
 * What one training step measured.
 *
 * @param step the step just done, from 1
 * @param totalSteps the steps the run is configured for
 * @param loss the batch mean loss (weighted when min-SNR-gamma weighting is on)
 * @param gradNorm the global gradient norm before clipping
 * @param learningRate the learning rate the step used (after warmup scaling)
 * @param elapsedSeconds seconds spent in {@link TrainingRun#train()} and {@link TrainingRun#step()} so far
 */
public record TrainingStep(long step, long totalSteps, double loss, double gradNorm, double learningRate,
                           double elapsedSeconds) {}
