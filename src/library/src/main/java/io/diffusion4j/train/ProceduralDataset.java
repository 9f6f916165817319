package io.diffusion4j.train;

import io.diffusion4j.model.UNet2DConfig;

/**
 * A built-in dataset that needs no download: image {@code i} is drawn from a generator seeded with
 * {@code mix(seed, i)}, so it is a pure function of (seed, i, size). Each image is a dark
 * background (-1) with 1 to 3 shapes — filled circles, filled axis-aligned rectangles or a patch of
 * stripes — each with its own brightness per channel in [0, 1]. The shapes give a diffusion model
 * something learnable (sharp edges, flat regions, periodic texture) at a few pixels of resolution.
 */
public final class ProceduralDataset implements Dataset {
    private final int size;
    private final int height;
    private final int width;
    private final int channels;
    private final long seed;

    /**
     * @param size number of distinct images, at least 1
     * @param height image height in pixels, in [4, 4096]
     * @param width image width in pixels, in [4, 4096]
     * @param channels channels, in [1, 16]
     * @param seed selects the images
     */
    public ProceduralDataset(int size, int height, int width, int channels, long seed) {
        if (size < 1) throw new IllegalArgumentException("size must be >= 1, got " + size);
        if (height < 4 || height > 4096) throw new IllegalArgumentException("height must be in [4, 4096], got " + height);
        if (width < 4 || width > 4096) throw new IllegalArgumentException("width must be in [4, 4096], got " + width);
        if (channels < 1 || channels > 16) throw new IllegalArgumentException("channels must be in [1, 16], got " + channels);
        if ((long) height * width * channels > Integer.MAX_VALUE / 64) {
            throw new IllegalArgumentException("images of " + height + "x" + width + "x" + channels + " are too large");
        }
        this.size = size;
        this.height = height;
        this.width = width;
        this.channels = channels;
        this.seed = seed;
    }

    /** Distinct images of a training set (as many as Fashion-MNIST's training split). */
    public static final int TRAINING_IMAGES = 60000;

    /** 1 channel 28x28 (Fashion-MNIST's size), {@link #TRAINING_IMAGES} images. */
    public static ProceduralDataset fashionMnistSized(long seed) {
        return new ProceduralDataset(TRAINING_IMAGES, 28, 28, 1, seed);
    }

    /**
     * The training set for a model: its sample_size (Fashion-MNIST's 28x28 when the config has none) and
     * in_channels, {@link #TRAINING_IMAGES} images.
     */
    public static ProceduralDataset forModel(UNet2DConfig config, long seed) {
        int h = config.sampleHeight(), w = config.sampleWidth();
        return new ProceduralDataset(TRAINING_IMAGES, h < 0 ? 28 : h, w < 0 ? 28 : w, config.inChannels(), seed);
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public int height() {
        return height;
    }

    @Override
    public int width() {
        return width;
    }

    @Override
    public int channels() {
        return channels;
    }

    @Override
    public String describe() {
        return "procedural shapes (" + size + " images " + height + "x" + width + "x" + channels + ", seed " + seed + ")";
    }

    @Override
    public void image(int index, float[] dst, int offset) {
        if (index < 0 || index >= size) throw new IndexOutOfBoundsException("image " + index + " of " + size);
        int n = imageFloats();
        if (offset < 0 || offset > dst.length - n) {
            throw new IndexOutOfBoundsException("dst of " + dst.length + " floats cannot hold an image of " + n
                    + " at " + offset);
        }
        java.util.Arrays.fill(dst, offset, offset + n, -1f);
        SplitMix64 r = new SplitMix64(SplitMix64.mix(seed ^ SplitMix64.mix(index + 0x5DEECE66DL)));
        int shapes = 1 + r.nextInt(3);
        float[] value = new float[channels];
        for (int s = 0; s < shapes; s++) {
            // brightness per channel in [0, 1] mapped to [-1, 1]: at least a little above the background
            for (int c = 0; c < channels; c++) value[c] = (float) (2 * (0.25 + 0.75 * r.nextDouble()) - 1);
            int kind = r.nextInt(3);
            int minDim = Math.min(height, width);
            switch (kind) {
                case 0 -> { // filled circle
                    double radius = minDim * (0.12 + 0.25 * r.nextDouble());
                    double cy = height * r.nextDouble(), cx = width * r.nextDouble();
                    for (int y = 0; y < height; y++) {
                        for (int x = 0; x < width; x++) {
                            double dy = y + 0.5 - cy, dx = x + 0.5 - cx;
                            if (dy * dy + dx * dx <= radius * radius) put(dst, offset, y, x, value);
                        }
                    }
                }
                case 1 -> { // filled rectangle
                    int h = Math.max(2, (int) (height * (0.2 + 0.5 * r.nextDouble())));
                    int w = Math.max(2, (int) (width * (0.2 + 0.5 * r.nextDouble())));
                    int y0 = r.nextInt(height - h + 1), x0 = r.nextInt(width - w + 1);
                    for (int y = y0; y < y0 + h; y++) {
                        for (int x = x0; x < x0 + w; x++) put(dst, offset, y, x, value);
                    }
                }
                default -> { // stripes over a rectangle, horizontal or vertical, period 2..5
                    int h = Math.max(2, (int) (height * (0.3 + 0.6 * r.nextDouble())));
                    int w = Math.max(2, (int) (width * (0.3 + 0.6 * r.nextDouble())));
                    int y0 = r.nextInt(height - h + 1), x0 = r.nextInt(width - w + 1);
                    int period = 2 + r.nextInt(4);
                    boolean vertical = r.nextBoolean();
                    for (int y = y0; y < y0 + h; y++) {
                        for (int x = x0; x < x0 + w; x++) {
                            int k = vertical ? x - x0 : y - y0;
                            if (k % period < (period + 1) / 2) put(dst, offset, y, x, value);
                        }
                    }
                }
            }
        }
    }

    private void put(float[] dst, int offset, int y, int x, float[] value) {
        System.arraycopy(value, 0, dst, offset + (y * width + x) * channels, channels);
    }
}
