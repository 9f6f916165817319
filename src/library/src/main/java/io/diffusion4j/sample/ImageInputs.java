package io.diffusion4j.sample;

import io.diffusion4j.train.ImageFolderDataset;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Init images and inpainting masks for a run: read from image files, and expanded to one NCHW image per sample.
 * Masks follow diffusers' RePaintPipeline: 1 (white) keeps the init image's pixel, 0 (black) is generated;
 * values are binarised at 0.5 (8-bit pixels: 128 and above keep).
 */
public final class ImageInputs {
    private ImageInputs() {}

    /**
     * An image file (PNG or JPEG) as float32 NCHW {@code [1, channels, height, width]} in [-1, 1]: decoded, converted
     * to luminance or RGB, center-cropped and resized to the size as training images are
     * ({@link ImageFolderDataset#loadPixels}), then {@code p / 127.5 - 1}.
     */
    public static float[] readImage(Path file, int height, int width, int channels) throws IOException {
        return toFloats(ImageFolderDataset.loadPixels(file, height, width, channels), height, width, channels);
    }

    /**
     * {@link #readImage(Path, int, int, int)} for PNG or JPEG bytes in memory; images larger than {@code maxSide}
     * a side or {@code maxPixels} in all are refused from their header, before decoding
     * ({@link ImageFolderDataset#loadPixels(byte[], int, int, int, int, long)}).
     */
    public static float[] readImage(byte[] encoded, int height, int width, int channels, int maxSide, long maxPixels)
            throws IOException {
        return toFloats(ImageFolderDataset.loadPixels(encoded, height, width, channels, maxSide, maxPixels), height, width,
                channels);
    }

    /** {@link #readMask(Path, int, int)} for PNG or JPEG bytes in memory, with the size limits of {@link #readImage(byte[], int, int, int, int, long)}. */
    public static float[] readMask(byte[] encoded, int height, int width, int maxSide, long maxPixels) throws IOException {
        return binarise(ImageFolderDataset.loadPixels(encoded, height, width, 1, maxSide, maxPixels));
    }

    private static float[] toFloats(byte[] hwc, int height, int width, int channels) {
        float[] out = new float[hwc.length];
        int plane = height * width;
        for (int p = 0; p < plane; p++) {
            for (int k = 0; k < channels; k++) out[k * plane + p] = (hwc[p * channels + k] & 0xFF) / 127.5f - 1f;
        }
        return out;
    }

    private static float[] binarise(byte[] l) {
        float[] out = new float[l.length];
        for (int i = 0; i < l.length; i++) out[i] = (l[i] & 0xFF) >= 128 ? 1f : 0f;
        return out;
    }

    /**
     * A mask file as float32 {@code [1, 1, height, width]} of 0 and 1: its luminance, resized as {@link #readImage},
     * 1 where the 8-bit value is 128 or more.
     */
    public static float[] readMask(Path file, int height, int width) throws IOException {
        return binarise(ImageFolderDataset.loadPixels(file, height, width, 1));
    }

    /**
     * An image input as NCHW floats for each of {@code count} images of {@code c x h x w}: one given image repeated or
     * one per image; a mask may have 1 channel (repeated over the c channels) and is binarised at 0.5; every value
     * must be finite.
     *
     * @param what the input's name in messages
     * @throws IllegalArgumentException naming the input, for a wrong size or a value that is not finite
     */
    public static float[] perImage(String what, float[] given, int count, int h, int w, int c, boolean isMask) {
        if (given == null) return null;
        long plane = (long) h * w;
        int[] channelChoices = isMask ? new int[] {1, c} : new int[] {c};
        for (int ch : channelChoices) {
            long one = plane * ch;
            if (given.length != one && given.length != one * count) continue;
            int per = (int) (plane * c);
            float[] out = new float[Math.multiplyExact(count, per)];
            boolean repeated = given.length == one;
            for (int i = 0; i < count; i++) {
                int src = repeated ? 0 : (int) (i * one);
                for (int k = 0; k < c; k++) {
                    for (int p = 0; p < plane; p++) {
                        float v = given[src + (ch == 1 ? 0 : k) * (int) plane + p];
                        if (!Float.isFinite(v)) throw new IllegalArgumentException(what + ": a value is not finite (" + v + ")");
                        out[i * per + k * (int) plane + p] = isMask ? (v >= 0.5f ? 1f : 0f) : v;
                    }
                }
            }
            return out;
        }
        throw new IllegalArgumentException(what + ": " + given.length + " floats is not one or " + count + " images of "
                + (isMask ? "1 or " : "") + c + "x" + h + "x" + w);
    }
}
