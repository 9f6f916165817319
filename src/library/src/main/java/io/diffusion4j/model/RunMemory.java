package io.diffusion4j.model;

import java.util.Objects;

/**
 * What a sampling, serving or training run will allocate, estimated from the model's config and the run's shape
 * before anything is allocated, so that a run too large for the machine is refused with a number instead of
 * failing gigabytes later. The activations are counted by the model's own allocation code
 * ({@link UNet2DModel#activationBytes(UNet2DConfig, int, int, int, boolean)}); the parameters, optimiser state and
 * batch buffers from the layout and the batch shape. Temporary buffers inside the kernels are not counted, so
 * the estimate is a floor for those and a limit should leave room. Every sum saturates at Long.MAX_VALUE.
 */
public final class RunMemory {
    private RunMemory() {}

    /**
     * Sampling {@code images} images of {@code h x w} in batches of {@code batch}: the weights (on the device and,
     * while loading, twice on the host), the inference activations (twice the rows for a class-conditional model,
     * whose guided calls stack the conditional and unconditional rows), the sampler's batch buffers and the host
     * array of all results.
     */
    public static long sampling(UNet2DConfig config, int batch, int h, int w, long images) {
        Objects.requireNonNull(config, "config");
        int rows = config.isClassConditional() ? 2 * batch : batch;
        long image = imageBytes(config, h, w);
        long b = weights(config, 3);
        b = add(b, preparedWeightsBound(config));
        b = add(b, UNet2DModel.activationBytes(config, rows, h, w, false));
        b = add(b, mul(image, rows + 3L * batch)); // x (all rows), x0, known image, mask
        return add(b, mul(image, images));
    }

    /**
     * Serving with batches of up to {@code maxBatch} rows: as {@link #sampling} for one batch, without the result
     * array (each request's images are small next to the batch).
     */
    public static long serving(UNet2DConfig config, int maxBatch, int h, int w) {
        return sampling(config, maxBatch, h, w, 0);
    }

    /**
     * Training with batches of {@code batch} images of {@code h x w}: weights, gradients, the two AdamW moments and
     * the EMA copy on the device, the host copies made while loading or saving, the training activations and the
     * batch buffers (the host batch, x0, x_t, noise and the output gradient).
     */
    public static long training(UNet2DConfig config, int batch, int h, int w) {
        Objects.requireNonNull(config, "config");
        long b = weights(config, 5 + 2);
        b = add(b, UNet2DModel.activationBytes(config, batch, h, w, true));
        return add(b, mul(imageBytes(config, h, w), 5L * batch));
    }

    /**
     * An inference model's prepared convolution weights ({@link io.diffusion4j.kernels.ConvKernels#prepare}), bounded
     * over backends: only 3x3 convolutions have them, at most 4x their weights (Winograd F(4x4, 3x3) keeps 36
     * transformed values for 9) plus a line of padding per point and a header.
     */
    static long preparedWeightsBound(UNet2DConfig config) {
        long b = 0;
        for (UNet2DLayout.Param p : UNet2DLayout.of(config).params()) {
            if (p.kind() == UNet2DLayout.Kind.CONV3X3) b = add(b, add(mul(p.size(), 16), 36L * 64 + 64));
        }
        return b;
    }

    private static long weights(UNet2DConfig config, int copies) {
        return mul(mul(UNet2DLayout.of(config).bufferFloats(), 4), copies);
    }

    private static long imageBytes(UNet2DConfig config, int h, int w) {
        return mul(mul(4L * config.inChannels(), h), w);
    }

    /** a + b, Long.MAX_VALUE past it (byte counts are never negative). */
    public static long add(long a, long b) {
        long r = a + b;
        return ((a ^ r) & (b ^ r)) < 0 ? Long.MAX_VALUE : r;
    }

    static long mul(long a, long b) {
        long hi = Math.multiplyHigh(a, b), lo = a * b;
        return (hi == 0 && lo >= 0) ? lo : Long.MAX_VALUE;
    }
}
