package io.diffusion4j.sample;

/** NCHW (diffusers, .npy files) and NHWC (the device layout) conversions of image batches. */
public final class ImageLayout {
    private ImageLayout() {}

    /** [n, c, h, w] -> [n, h, w, c]; only the first n images of src are read. */
    public static float[] nchwToNhwc(float[] src, int n, int c, int h, int w) {
        float[] out = new float[n * c * h * w];
        int hw = h * w;
        for (int b = 0; b < n; b++) {
            int base = b * c * hw;
            for (int ch = 0; ch < c; ch++) {
                for (int p = 0; p < hw; p++) out[base + p * c + ch] = src[base + ch * hw + p];
            }
        }
        return out;
    }

    /** [n, h, w, c] -> [n, c, h, w]; only the first n images of src are read. */
    public static float[] nhwcToNchw(float[] src, int n, int c, int h, int w) {
        float[] out = new float[n * c * h * w];
        int hw = h * w;
        for (int b = 0; b < n; b++) {
            int base = b * c * hw;
            for (int ch = 0; ch < c; ch++) {
                for (int p = 0; p < hw; p++) out[base + ch * hw + p] = src[base + p * c + ch];
            }
        }
        return out;
    }
}
