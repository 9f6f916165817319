package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.testutil.TestRandom;
import java.awt.Color;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The loss-curve PNG: ticks, the log mapping, the smoothing, and the drawn image read back. */
class LossCurveTest {
    @Test
    void ticks() {
        assertEquals(List.of(0.05, 0.1, 0.2, 0.5, 1.0, 2.0), LossCurve.logTicks(0.03, 2));
        assertEquals(List.of(0.001, 0.01, 0.1, 1.0, 10.0), LossCurve.logTicks(0.0009, 11));
        assertEquals(List.of(0.3, 0.4, 0.5), LossCurve.logTicks(0.25, 0.55));
        assertEquals(List.of(20L, 40L, 60L, 80L, 100L), LossCurve.stepTicks(1, 100));
        assertEquals(List.of(1L, 2L), LossCurve.stepTicks(1, 2));
        List<Long> t = LossCurve.stepTicks(301, 12345);
        assertTrue(t.size() >= 5 && t.size() <= 12, t.toString());
        assertEquals(2000L, t.get(1) - t.get(0), t.toString());
        assertEquals("0.001", LossCurve.label(0.001));
        assertEquals("2", LossCurve.label(2.0));
        assertEquals("1e-05", LossCurve.label(1e-5));
    }

    /** Equal ratios are equal distances: the y axis is logarithmic. */
    @Test
    void yAxisIsLogarithmic() {
        double a = LossCurve.yPixel(0.01, 0.01, 10, 70, 530), b = LossCurve.yPixel(0.1, 0.01, 10, 70, 530);
        double c = LossCurve.yPixel(1, 0.01, 10, 70, 530), d = LossCurve.yPixel(10, 0.01, 10, 70, 530);
        assertEquals(530, a, 1e-9);
        assertEquals(70, d, 1e-9);
        assertEquals(a - b, b - c, 1e-9);
        assertEquals(b - c, c - d, 1e-9);
    }

    /** The EMA against its definition as a normalised weighted sum (float64), non-positive values skipped. */
    @Test
    void smoothingIsABiasCorrectedEma() {
        TestRandom rnd = TestRandom.fresh();
        int n = 200 + rnd.nextInt(100), span = 1 + rnd.nextInt(20);
        float[] x = rnd.uniforms(n, 0.01, 2);
        x[17] = Float.NaN;
        x[40] = 0;
        double[] s = LossCurve.smooth(x, span);
        double beta = 1 - 2.0 / (span + 1);
        for (int i = 0; i < n; i++) {
            if (i == 17 || i == 40) {
                assertTrue(Double.isNaN(s[i]));
                continue;
            }
            double num = 0, den = 0;
            for (int k = 0; k <= i; k++) {
                if (k == 17 || k == 40) continue;
                int age = 0;
                for (int j = k + 1; j <= i; j++) if (j != 17 && j != 40) age++;
                num += Math.pow(beta, age) * x[k];
                den += Math.pow(beta, age);
            }
            assertEquals(num / den, s[i], 1e-12 * num / den, "i=" + i + " " + rnd.describe());
        }
        assertEquals(1, LossCurve.smoothingSpan(10));
        assertEquals(40, LossCurve.smoothingSpan(1000));
        assertEquals(500, LossCurve.smoothingSpan(1_000_000));
    }

    /**
     * A geometric loss decay (no noise) drawn and read back: a 960x600 RGB PNG with white corners, both
     * curve colours present, and the curve a straight falling line on the log axis (the middle column's
     * curve row is the mean of the rows at 20% and 80% within 3 pixels; a linear axis would be far off).
     */
    @Test
    void pngShowsAStraightLineForAGeometricDecay(@TempDir Path dir) throws IOException {
        LossHistory h = new LossHistory();
        for (int s = 1; s <= 400; s++) h.add(s, 2.0 * Math.pow(0.01, (s - 1) / 399.0), 1e-3, 1);
        Path f = dir.resolve("loss_curve.png");
        LossCurve.write(f, h, "title", "settings");
        BufferedImage img = ImageIO.read(f.toFile());
        assertEquals(LossCurve.WIDTH, img.getWidth());
        assertEquals(LossCurve.HEIGHT, img.getHeight());
        assertEquals(Color.WHITE.getRGB(), img.getRGB(2, 2));
        assertEquals(Color.WHITE.getRGB(), img.getRGB(LossCurve.WIDTH - 3, LossCurve.HEIGHT - 3));
        int left = LossCurve.LEFT, right = LossCurve.WIDTH - LossCurve.RIGHT;
        double[] rows = new double[3];
        double[] fx = {0.2, 0.5, 0.8};
        int smooth = 0;
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) if (near(img.getRGB(x, y), LossCurve.SMOOTH, 20)) smooth++;
        }
        assertTrue(smooth > 500, "pixels of the smoothed curve: " + smooth);
        for (int k = 0; k < 3; k++) {
            int x = (int) Math.round(left + fx[k] * (right - left));
            double sum = 0;
            int cnt = 0;
            for (int y = LossCurve.TOP + 60; y < LossCurve.HEIGHT - LossCurve.BOTTOM; y++) {
                int rgb = img.getRGB(x, y);
                int r = (rgb >> 16) & 0xFF, b = rgb & 0xFF;
                if (b > r + 40) { // either curve colour (blue), not the grey grid or black text
                    sum += y;
                    cnt++;
                }
            }
            assertTrue(cnt > 0, "no curve pixel in column " + x);
            rows[k] = sum / cnt;
        }
        System.out.printf(Locale.ROOT, "LossCurveTest curve rows at 20/50/80%%: %.1f %.1f %.1f%n", rows[0], rows[1], rows[2]);
        assertTrue(rows[0] < rows[1] && rows[1] < rows[2], "a falling loss goes down the image");
        assertEquals((rows[0] + rows[2]) / 2, rows[1], 3.0, "straight on a log axis");
        try (var files = Files.list(dir)) {
            assertEquals(1, files.count(), "a temporary file was left");
        }
        // an empty or non-positive history still renders
        LossHistory bad = new LossHistory();
        bad.add(1, Double.NaN, 0, 0);
        bad.add(2, 0, 0, 0);
        assertEquals(LossCurve.WIDTH, LossCurve.render(bad, "t", null).getWidth());
        assertEquals(LossCurve.WIDTH, LossCurve.render(new LossHistory(), null, null).getWidth());
    }

    private static boolean near(int rgb, Color c, int tol) {
        return Math.abs(((rgb >> 16) & 0xFF) - c.getRed()) <= tol && Math.abs(((rgb >> 8) & 0xFF) - c.getGreen()) <= tol
                && Math.abs((rgb & 0xFF) - c.getBlue()) <= tol;
    }
}
