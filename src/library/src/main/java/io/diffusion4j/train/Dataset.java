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

    /** Number of classes of the images' labels, 0 for an unlabelled dataset. */
    default int numClasses() {
        return 0;
    }

    /** The class label of image {@code index}, in {@code [0, numClasses())}; only for a labelled dataset. */
    default int label(int index) {
        throw new UnsupportedOperationException(describe() + " has no class labels");
    }

    /** The name of each class, by label (empty for an unlabelled dataset). */
    default java.util.List<String> classNames() {
        return java.util.List.of();
    }
}
