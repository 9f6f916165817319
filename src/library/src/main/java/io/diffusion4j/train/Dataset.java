package io.diffusion4j.train;

/**
 * A finite set of images of one size, each readable by index as HWC float32 values in [-1, 1]
 * (the range diffusers' training scripts normalise to). Implementations are immutable and
 * deterministic: {@code image(i)} always yields the same values.
 */
public interface Dataset {
    /** Number of images. */
    int size();

    int height();

    int width();

    int channels();

    /** Floats per image, {@code height * width * channels}. */
    default int imageFloats() {
        return height() * width() * channels();
    }

    /** Writes image {@code index} as HWC floats into {@code dst[offset .. offset + imageFloats())}. */
    void image(int index, float[] dst, int offset);

    /** A short description for progress output. */
    String describe();
}
