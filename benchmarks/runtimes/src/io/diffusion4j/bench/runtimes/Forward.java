package io.diffusion4j.bench.runtimes;

/**
 * One runtime's UNet forward as a Java service calls it: the input sample and timesteps arrive in Java arrays, the
 * output leaves in a new Java array. {@link #run} therefore includes copying the input into the runtime and the output
 * out of it, not only the network.
 */
interface Forward extends AutoCloseable {
    /** A short name for tables: {@code diffusion4j}, {@code ONNX Runtime}, {@code DJL}. */
    String name();

    /** Version and settings, for the report. */
    String describe();

    /** Whether {@link #run}'s sample and output are NHWC (diffusion4j) rather than NCHW (ONNX Runtime, PyTorch). */
    boolean nhwc();

    /**
     * One forward of a batch: {@code sample} is {@code [N, C, H, W]} or, for {@link #nhwc()}, {@code [N, H, W, C]}
     * (flat, C order), {@code timesteps} one per sample. Returns the model output in the same layout.
     */
    float[] run(float[] sample, float[] timesteps);

    @Override
    void close();

    /** {@code [n, c, h, w]} to {@code [n, h, w, c]}. */
    static float[] toNhwc(float[] nchw, int n, int c, int h, int w) {
        float[] out = new float[nchw.length];
        int hw = h * w;
        for (int b = 0; b < n; b++) {
            for (int ch = 0; ch < c; ch++) {
                int src = (b * c + ch) * hw;
                for (int p = 0; p < hw; p++) out[(b * hw + p) * c + ch] = nchw[src + p];
            }
        }
        return out;
    }

    /** {@code [n, h, w, c]} to {@code [n, c, h, w]}. */
    static float[] toNchw(float[] nhwc, int n, int c, int h, int w) {
        float[] out = new float[nhwc.length];
        int hw = h * w;
        for (int b = 0; b < n; b++) {
            for (int ch = 0; ch < c; ch++) {
                int dst = (b * c + ch) * hw;
                for (int p = 0; p < hw; p++) out[dst + p] = nhwc[(b * hw + p) * c + ch];
            }
        }
        return out;
    }
}
