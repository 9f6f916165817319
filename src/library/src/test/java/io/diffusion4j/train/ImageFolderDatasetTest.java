package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.testutil.TestRandom;
import java.awt.image.BufferedImage;
import java.awt.image.WritableRaster;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The image-folder dataset on small generated images of odd sizes (grey 8-bit and 16-bit, RGB, a JPEG),
 * against a direct 2-D float64 reference of crop + area / bilinear resize + luminance; corrupt files, empty
 * folders and bad arguments refused with the file named.
 */
class ImageFolderDatasetTest {
    /** Fresh random source images; returns them as float64 RGB planes for the reference. */
    record Src(String name, int w, int h, double[][] rgb) {}

    static Src grey8(Path dir, String name, int w, int h, TestRandom rnd) throws IOException {
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_BYTE_GRAY);
        WritableRaster r = img.getRaster();
        double[][] p = new double[3][w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int v = rnd.nextInt(256);
                r.setSample(x, y, 0, v);
                for (int c = 0; c < 3; c++) p[c][y * w + x] = v;
            }
        }
        write(img, dir.resolve(name), "png");
        return new Src(name, w, h, p);
    }

    static Src grey16(Path dir, String name, int w, int h, TestRandom rnd) throws IOException {
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_USHORT_GRAY);
        WritableRaster r = img.getRaster();
        double[][] p = new double[3][w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int v = rnd.nextInt(65536);
                r.setSample(x, y, 0, v);
                for (int c = 0; c < 3; c++) p[c][y * w + x] = v * 255.0 / 65535;
            }
        }
        write(img, dir.resolve(name), "png");
        return new Src(name, w, h, p);
    }

    static Src rgb(Path dir, String name, int w, int h, TestRandom rnd, String format) throws IOException {
        BufferedImage img = new BufferedImage(w, h, format.equals("png") ? BufferedImage.TYPE_INT_ARGB : BufferedImage.TYPE_INT_RGB);
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) img.setRGB(x, y, (rnd.nextInt(256) << 24) | rnd.nextInt(1 << 24)); // random alpha too
        }
        Path f = dir.resolve(name);
        write(img, f, format);
        BufferedImage back = ImageIO.read(f.toFile()); // JPEG is lossy: the reference starts from what decodes
        double[][] p = new double[3][w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int v = back.getRGB(x, y);
                p[0][y * w + x] = (v >> 16) & 0xFF;
                p[1][y * w + x] = (v >> 8) & 0xFF;
                p[2][y * w + x] = v & 0xFF;
            }
        }
        return new Src(name, w, h, p);
    }

    static void write(BufferedImage img, Path f, String format) throws IOException {
        Files.createDirectories(f.getParent());
        assertTrue(ImageIO.write(img, format, f.toFile()), "no writer for " + format);
    }

    /** Coverage of [a, b) by the unit cell [i, i+1). */
    static double overlap(double a, double b, int i) {
        return Math.max(0, Math.min(b, i + 1) - Math.max(a, i));
    }

    /**
     * The reference, directly in 2-D: crop the largest centred window of the target aspect ratio; per axis,
     * shrinking integrates the piecewise-constant source over the output cell, growing interpolates linearly
     * between pixel centres (half-pixel convention, clamped); luminance 0.299 R + 0.587 G + 0.114 B.
     */
    static double[] reference(Src s, int th, int tw, int channels) {
        int cw = s.w(), ch = s.h();
        if ((long) s.w() * th > (long) s.h() * tw) cw = (int) Math.round((double) s.h() * tw / th);
        else ch = (int) Math.round((double) s.w() * th / tw);
        cw = Math.max(1, Math.min(s.w(), cw));
        ch = Math.max(1, Math.min(s.h(), ch));
        int x0 = (s.w() - cw) / 2, y0 = (s.h() - ch) / 2;
        double[] out = new double[th * tw * channels];
        for (int y = 0; y < th; y++) {
            for (int x = 0; x < tw; x++) {
                double[] wy = axis(ch, th, y), wx = axis(cw, tw, x);
                for (int c = 0; c < channels; c++) {
                    double acc = 0;
                    for (int i = 0; i < ch; i++) {
                        if (wy[i] == 0) continue;
                        for (int j = 0; j < cw; j++) {
                            if (wx[j] == 0) continue;
                            int k = (y0 + i) * s.w() + x0 + j;
                            double v = channels == 3 ? s.rgb()[c][k]
                                    : 0.299 * s.rgb()[0][k] + 0.587 * s.rgb()[1][k] + 0.114 * s.rgb()[2][k];
                            acc += wy[i] * wx[j] * v;
                        }
                    }
                    out[(y * tw + x) * channels + c] = acc;
                }
            }
        }
        return out;
    }

    /** Weights of the n inputs for output j of m. */
    static double[] axis(int n, int m, int j) {
        double[] w = new double[n];
        if (m < n) {
            double a = (double) j * n / m, b = (double) (j + 1) * n / m;
            for (int i = 0; i < n; i++) w[i] = overlap(a, b, i) / (b - a);
        } else {
            double x = Math.max(0, Math.min(n - 1, (j + 0.5) * n / m - 0.5));
            int i0 = (int) x;
            w[i0] += 1 - (x - i0);
            if (x - i0 > 0) w[i0 + 1] += x - i0;
        }
        return w;
    }

    /**
     * Sorted recursive listing with odd-sized grey, 16-bit grey, RGBA and JPEG sources, downscaled to 5x3
     * (crop on both axes), upscaled to 13x11 and to 4x4, 1 and 3 channels: every 8-bit pixel within
     * 0.5 + 1e-9 of the unrounded float64 reference (the rounding, plus float64 noise of another summation order).
     */
    @Test
    void imagesAreCroppedResizedAndConverted(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        List<Src> srcs = List.of(
                grey8(dir, "b/grey7x5.png", 7, 5, rnd),
                rgb(dir, "a.PNG", 13, 9, rnd, "png"),
                grey16(dir, "b/c/deep9x11.png", 9, 11, rnd),
                rgb(dir, "photo 11x6.jpg", 11, 6, rnd, "jpeg"),
                rgb(dir, "z.jpeg", 5, 5, rnd, "jpeg"));
        Files.writeString(dir.resolve("notes.txt"), "not an image");
        Files.writeString(dir.resolve(".hidden.png"), "hidden files are skipped even when corrupt");
        Files.createDirectories(dir.resolve(".git"));
        Files.writeString(dir.resolve(".git/x.png"), "hidden directories too");
        List<String> names = srcs.stream().map(Src::name).sorted().toList();
        int[][] sizes = {{3, 5}, {13, 11}, {4, 4}};
        double worstMean = 0, worstErr = 0;
        for (int[] hw : sizes) {
            for (int channels : new int[] {1, 3}) {
                ImageFolderDataset d = ImageFolderDataset.load(dir, hw[0], hw[1], channels);
                assertEquals(names, d.files());
                assertEquals(srcs.size(), d.size());
                assertEquals(hw[0], d.height());
                assertEquals(hw[1], d.width());
                assertEquals(channels, d.channels());
                float[] buf = new float[d.imageFloats() + 3];
                for (int i = 0; i < d.size(); i++) {
                    final int idx = i;
                    Src s = srcs.stream().filter(x -> x.name().equals(names.get(idx))).findFirst().orElseThrow();
                    double[] ref = reference(s, hw[0], hw[1], channels);
                    d.image(i, buf, 3);
                    double sum = 0;
                    for (int k = 0; k < ref.length; k++) {
                        int y = k / channels / hw[1], x = k / channels % hw[1], c = k % channels;
                        int got = d.pixel(i, y, x, c);
                        double err = Math.abs(got - ref[k]);
                        sum += err;
                        worstErr = Math.max(worstErr, err);
                        assertTrue(err <= 0.5 + 1e-9, String.format(Locale.ROOT, "%s -> %dx%dx%d pixel (%d,%d,%d): %d vs reference %.4f (%s)",
                                s.name(), hw[0], hw[1], channels, y, x, c, got, ref[k], rnd.describe()));
                        assertEquals(got / 127.5f - 1f, buf[3 + k], 0f, "float value of the byte");
                    }
                    worstMean = Math.max(worstMean, sum / ref.length);
                }
            }
        }
        System.out.printf(Locale.ROOT, "ImageFolderDatasetTest: |pixel - float64 reference| max %.4f, worst per-image mean %.3f "
                + "(8-bit rounding: <= 0.5, mean about 0.25)%n", worstErr, worstMean);
    }

    /** At the source size nothing is resampled: grey pixels come back exactly (no colour-space conversion). */
    @Test
    void identitySizeKeepsGreyValuesExactly(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        Src g = grey8(dir, "g.png", 7, 5, rnd);
        ImageFolderDataset d = ImageFolderDataset.load(dir, 5, 7, 1);
        for (int y = 0; y < 5; y++) {
            for (int x = 0; x < 7; x++) assertEquals((int) g.rgb()[0][y * 7 + x], d.pixel(0, y, x, 0), rnd.describe());
        }
        ImageFolderDataset again = ImageFolderDataset.load(dir, 5, 7, 1);
        float[] a = new float[35], b = new float[35];
        d.image(0, a, 0);
        again.image(0, b, 0);
        assertArrayEquals(a, b);
        for (float v : a) assertTrue(v >= -1 && v <= 1);
    }

    @Test
    void badFoldersAndFilesAreRefused(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        Path empty = Files.createDirectories(dir.resolve("empty"));
        Files.writeString(empty.resolve("readme.txt"), "x");
        IOException e = assertThrows(IOException.class, () -> ImageFolderDataset.load(empty, 4, 4, 1));
        assertTrue(e.getMessage().contains("no PNG or JPEG") && e.getMessage().contains(empty.toString()), e.getMessage());
        e = assertThrows(IOException.class, () -> ImageFolderDataset.load(dir.resolve("missing"), 4, 4, 1));
        assertTrue(e.getMessage().contains("not a directory"), e.getMessage());

        Path bad = Files.createDirectories(dir.resolve("bad"));
        grey8(bad, "a_ok.png", 6, 6, rnd);
        Files.write(bad.resolve("b_garbage.png"), new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9});
        e = assertThrows(IOException.class, () -> ImageFolderDataset.load(bad, 4, 4, 3));
        assertTrue(e.getMessage().contains("b_garbage.png") && e.getMessage().contains("not a readable"), e.getMessage());

        Path cut = Files.createDirectories(dir.resolve("cut"));
        Src s = rgb(cut, "whole.png", 9, 7, rnd, "png");
        byte[] png = Files.readAllBytes(cut.resolve(s.name()));
        Files.write(cut.resolve("truncated.png"), Arrays.copyOf(png, png.length / 2));
        e = assertThrows(IOException.class, () -> ImageFolderDataset.load(cut, 4, 4, 1));
        assertTrue(e.getMessage().contains("truncated.png"), e.getMessage());

        assertThrows(IllegalArgumentException.class, () -> ImageFolderDataset.load(cut, 4, 4, 2));
        assertThrows(IllegalArgumentException.class, () -> ImageFolderDataset.load(cut, 0, 4, 1));
    }

    /** The 1-D resampling kernels: weights sum to 1, identity for equal sizes. */
    @Test
    void kernelsArePartitionsOfUnity() {
        for (int n = 1; n < 20; n++) {
            for (int m = 1; m < 20; m++) {
                ImageFolderDataset.Kernel k = ImageFolderDataset.Kernel.of(n, m);
                for (int j = 0; j < m; j++) {
                    double sum = 0;
                    for (int q = k.start()[j]; q < k.start()[j + 1]; q++) {
                        sum += k.weight()[q];
                        assertTrue(k.index()[q] >= 0 && k.index()[q] < n);
                    }
                    assertEquals(1.0, sum, 1e-12, n + "->" + m + " output " + j);
                    if (n == m) assertEquals(j, k.index()[k.start()[j]]);
                }
            }
        }
    }
}
