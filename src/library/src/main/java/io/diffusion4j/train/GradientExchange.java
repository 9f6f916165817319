package io.diffusion4j.train;

import io.diffusion4j.tensor.Tensor;

/**
 * How the ranks of a data-parallel run combine their gradients. The {@link Trainer} of rank {@code r} of
 * {@code n} draws the same global batch of {@code n * batchSize} samples as every rank, trains on its slice
 * {@code [r * batchSize, (r + 1) * batchSize)}, and before clipping and AdamW calls {@link #allReduceMean}: from
 * then on every rank holds the same bits, so the optimiser keeps the replicas identical.
 */
public interface GradientExchange {
    /** This process's rank in [0, worldSize). */
    int rank();

    /** The number of ranks. */
    int worldSize();

    /**
     * Replaces {@code gradients} (flat, the model's gradient buffer) on every rank by the mean over the ranks,
     * summed in a fixed order, so that every rank receives the same bits; returns the mean of the ranks'
     * {@code loss} (the reported loss), the same on every rank.
     *
     * @param step the 1-based step the gradients belong to (for the messages naming a late or dead rank)
     */
    double allReduceMean(Tensor gradients, double loss, long step);
}
