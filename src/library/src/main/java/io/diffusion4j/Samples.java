package io.diffusion4j;

import io.diffusion4j.sample.Images;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The images of one {@link DiffusionPipeline#sample sample} call: float32 values in the NCHW layout
 * {@code [count, channels, height, width]} (diffusers' layout), nominally in [-1, 1] (a sampler that does not
 * clip may overshoot slightly), and their 8-bit renderings as diffusers' pipelines make them:
 * {@code round(clamp(x / 2 + 0.5, 0, 1) * 255)}, grayscale for 1 channel, RGB for 3. Immutable and
 * independent of the pipeline (usable after it is closed).
 */
public final class Samples {
    private final float[] nchw;
    private final int count, channels, height, width;

    Samples(float[] nchw, int count, int channels, int height, int width) {
        if ((long) count * channels * height * width != nchw.length) throw new IllegalArgumentException("shape mismatch");
        this.nchw = nchw;
        this.count = count;
        this.channels = channels;
        this.height = height;
        this.width = width;
    }

    /**
     * The number of images.
     *
     * @return the count
     */
    public int count() {
        return count;
    }

    /**
     * Channels per image (the model's {@code in_channels}).
     *
     * @return the channels
     */
    public int channels() {
        return channels;
    }

    /**
     * Image height in pixels.
     *
     * @return the height
     */
    public int height() {
        return height;
    }

    /**
     * Image width in pixels.
     *
     * @return the width
     */
    public int width() {
        return width;
    }

    /**
     * A copy of all samples, NCHW: value (n, c, y, x) at {@code ((n * channels + c) * height + y) * width + x}.
     *
     * @return a new array of {@code count * channels * height * width} floats
     */
    public float[] toFloatArray() {
        return nchw.clone();
    }

    /**
     * A copy of image {@code index}, CHW.
     *
     * @param index in [0, count)
     * @return a new array of {@code channels * height * width} floats
     * @throws IndexOutOfBoundsException if index is outside [0, count)
     */
    public float[] toFloatArray(int index) {
        checkIndex(index);
        int per = channels * height * width;
        return java.util.Arrays.copyOfRange(nchw, index * per, (index + 1) * per);
    }

    private void checkIndex(int index) {
        if (index < 0 || index >= count) throw new IndexOutOfBoundsException("image " + index + " of " + count);
    }

    private void checkPixels() {
        if (channels != 1 && channels != 3) {
            throw new IllegalStateException("images need 1 or 3 channels, these samples have " + channels
                    + " (use toFloatArray)");
        }
    }

    /**
     * Image {@code index} as an 8-bit image ({@code TYPE_BYTE_GRAY} for 1 channel, {@code TYPE_INT_RGB} for 3).
     *
     * @param index in [0, count)
     * @return a new image
     * @throws IndexOutOfBoundsException if index is outside [0, count)
     * @throws IllegalStateException if the samples have neither 1 nor 3 channels
     */
    public BufferedImage image(int index) {
        checkIndex(index);
        checkPixels();
        return Images.image(nchw, index, channels, height, width);
    }

    /**
     * Every image, in order.
     *
     * @return a new list of {@link #count()} images
     * @throws IllegalStateException if the samples have neither 1 nor 3 channels
     */
    public List<BufferedImage> images() {
        checkPixels();
        List<BufferedImage> out = new ArrayList<>(count);
        for (int i = 0; i < count; i++) out.add(Images.image(nchw, i, channels, height, width));
        return List.copyOf(out);
    }

    /**
     * All images in one grid: {@code ceil(sqrt(count))} columns, row by row, 2-pixel black gaps.
     *
     * @return a new image
     * @throws IllegalStateException if the samples have neither 1 nor 3 channels
     */
    public BufferedImage grid() {
        checkPixels();
        return Images.grid(nchw, count, channels, height, width);
    }

    /**
     * Writes {@link #grid()} as a PNG file, atomically (a temporary file renamed into place).
     *
     * @param file the PNG file to write; its directory must exist
     * @throws IOException if it cannot be written
     * @throws IllegalStateException if the samples have neither 1 nor 3 channels
     */
    public void writeGridPng(Path file) throws IOException {
        Images.writePng(file, grid());
    }

    /**
     * Writes every image as {@code sample_00000.png}, {@code sample_00001.png}, ... into {@code dir} (created
     * if needed), each atomically.
     *
     * @param dir the directory
     * @return the files written, in image order
     * @throws IOException if a file cannot be written
     * @throws IllegalStateException if the samples have neither 1 nor 3 channels
     */
    public List<Path> writePngs(Path dir) throws IOException {
        checkPixels();
        Files.createDirectories(dir);
        List<Path> files = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            Path f = dir.resolve(String.format(Locale.ROOT, "sample_%05d.png", i));
            Images.writePng(f, Images.image(nchw, i, channels, height, width));
            files.add(f);
        }
        return List.copyOf(files);
    }

    /**
     * A one-line description, e.g. {@code Samples[16 x 1x28x28]}.
     *
     * @return the description
     */
    @Override
    public String toString() {
        return "Samples[" + count + " x " + channels + "x" + height + "x" + width + "]";
    }
}
