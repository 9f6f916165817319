package io.diffusion4j.train;

import java.util.Objects;

/**
 * Draws training batches from a {@link Dataset}: each sample is a uniformly random image (with
 * replacement, so a run is a pure function of the seed whatever the dataset size), mirrored left to
 * right with probability 1/2 (diffusers' RandomHorizontalFlip augmentation). The generator state is
 * one long ({@link #state()}), saved in checkpoints so that a resumed run draws the same batches.
 */
public final class BatchSampler {
    private final Dataset data;
    private final SplitMix64 rng;
    private final boolean flips;
    private final float[] scratch;

    /**
     * @param data the images
     * @param state the generator state (a seed for a new run, {@link #state()} to resume)
     * @param flips whether to mirror half the samples horizontally
     */
    public BatchSampler(Dataset data, long state, boolean flips) {
        this.data = Objects.requireNonNull(data, "data");
        this.rng = new SplitMix64(state);
        this.flips = flips;
        this.scratch = new float[data.imageFloats()];
    }

    public Dataset dataset() {
        return data;
    }

    /** The generator state after the batches drawn so far. */
    public long state() {
        return rng.state();
    }

    /** A uniform int in [0, bound) from the same stream (the trainer draws its timesteps here). */
    public int nextInt(int bound) {
        return rng.nextInt(bound);
    }

    /** A uniform double in [0, 1) from the same stream (the trainer's class-label drops). */
    public double nextDouble() {
        return rng.nextDouble();
    }

    /** Fills {@code dst} with {@code batch} NHWC images ({@code batch * imageFloats()} floats). */
    public void next(float[] dst, int batch) {
        next(dst, batch, null);
    }

    /**
     * As {@link #next(float[], int)}, and when {@code labels} is not null writes each image's class label there
     * (the dataset must be labelled); the random draws are the same either way.
     */
    public void next(float[] dst, int batch, int[] labels) {
        next(dst, batch, labels, 0, batch);
    }

    /**
     * As {@link #next(float[], int, int[])} with the images of rows {@code [from, from + count)} only: the other rows
     * of {@code dst} are left as they are (one rank of a data-parallel run reads its own rows), while the random
     * draws and the labels are those of the whole batch.
     */
    public void next(float[] dst, int batch, int[] labels, int from, int count) {
        Objects.requireNonNull(dst, "dst");
        int n = data.imageFloats();
        if (batch < 1 || (long) batch * n != dst.length) {
            throw new IllegalArgumentException("dst has " + dst.length + " floats, a batch of " + batch + " images of "
                    + n + " needs " + (long) batch * n);
        }
        if (from < 0 || count < 0 || from > batch - count) {
            throw new IllegalArgumentException("rows [" + from + ", " + ((long) from + count) + ") are not inside a batch of "
                    + batch);
        }
        int h = data.height(), w = data.width(), c = data.channels();
        for (int b = 0; b < batch; b++) {
            int index = rng.nextInt(data.size());
            if (labels != null) labels[b] = data.label(index);
            boolean flip = flips && rng.nextBoolean();
            if (b < from || b >= from + count) continue;
            if (!flip) {
                data.image(index, dst, b * n);
                continue;
            }
            data.image(index, scratch, 0);
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    System.arraycopy(scratch, (y * w + x) * c, dst, b * n + (y * w + (w - 1 - x)) * c, c);
                }
            }
        }
    }
}
