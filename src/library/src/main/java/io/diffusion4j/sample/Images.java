package io.diffusion4j.sample;

import io.diffusion4j.io.AtomicFiles;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Path;
import javax.imageio.ImageIO;

/**
 * Samples in [-1, 1] to 8-bit images as diffusers' pipelines do: {@code (x / 2 + 0.5).clamp(0, 1)}, then
 * {@code round(v * 255)}; 1 channel gives grayscale, 3 channels RGB.
 */
public final class Images {
    private Images() {}

    /** The 8-bit value of one sample value. */
    public static int toByte(float v) {
        double u = v / 2.0f + 0.5f;
        u = Math.min(1.0, Math.max(0.0, u));
        return (int) Math.rint(u * 255.0);
    }

    /** Image i of an NCHW batch. */
    public static BufferedImage image(float[] nchw, int i, int c, int h, int w) {
        if (c != 1 && c != 3) throw new IllegalArgumentException("PNG output needs 1 or 3 channels, the model has " + c);
        BufferedImage img = new BufferedImage(w, h, c == 1 ? BufferedImage.TYPE_BYTE_GRAY : BufferedImage.TYPE_INT_RGB);
        int base = i * c * h * w;
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int p = y * w + x;
                if (c == 1) {
                    int g = toByte(nchw[base + p]);
                    img.getRaster().setSample(x, y, 0, g);
                } else {
                    int r = toByte(nchw[base + p]), g = toByte(nchw[base + h * w + p]), b = toByte(nchw[base + 2 * h * w + p]);
                    img.setRGB(x, y, (r << 16) | (g << 8) | b);
                }
            }
        }
        return img;
    }

    /** A grid of the n images, ceil(sqrt(n)) columns, 2-pixel black gaps. */
    public static BufferedImage grid(float[] nchw, int n, int c, int h, int w) {
        int cols = (int) Math.ceil(Math.sqrt(n));
        int rowsN = (n + cols - 1) / cols;
        int gap = 2;
        BufferedImage g = new BufferedImage(cols * (w + gap) + gap, rowsN * (h + gap) + gap,
                c == 1 ? BufferedImage.TYPE_BYTE_GRAY : BufferedImage.TYPE_INT_RGB);
        for (int i = 0; i < n; i++) {
            BufferedImage im = image(nchw, i, c, h, w);
            g.getRaster().setRect(gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap), im.getRaster());
        }
        return g;
    }

    /** The image enlarged {@code k} times by pixel repetition (nearest neighbour; k = 1 returns it as is). */
    public static BufferedImage scaled(BufferedImage img, int k) {
        if (k < 1) throw new IllegalArgumentException("scale must be >= 1, got " + k);
        if (k == 1) return img;
        BufferedImage out = new BufferedImage(img.getWidth() * k, img.getHeight() * k, img.getType());
        int bands = img.getRaster().getNumBands();
        int[] px = new int[bands];
        for (int y = 0; y < out.getHeight(); y++) {
            for (int x = 0; x < out.getWidth(); x++) {
                out.getRaster().setPixel(x, y, img.getRaster().getPixel(x / k, y / k, px));
            }
        }
        return out;
    }

    /** Writes a PNG atomically. */
    public static void writePng(Path file, BufferedImage img) throws IOException {
        AtomicFiles.write(file, png(img));
    }

    /** The PNG encoding of an image (the bytes {@link #writePng} writes). */
    public static byte[] png(BufferedImage img) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        if (!ImageIO.write(img, "png", bytes)) throw new IOException("no PNG writer available");
        return bytes.toByteArray();
    }
}
