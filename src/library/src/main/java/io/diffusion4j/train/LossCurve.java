package io.diffusion4j.train;

import io.diffusion4j.io.AtomicFiles;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.AffineTransform;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import javax.imageio.ImageIO;

/**
 * The loss-curve PNG the train command writes beside its checkpoint ({@code loss_curve.png}), drawn
 * with java.awt into an in-memory image: the per-step loss as a thin light line, an exponential moving
 * average over it (bias-corrected as TensorBoard's smoothing, span {@link #smoothingSpan}) as a bold
 * line, a logarithmic y axis with decade (and 2x, 5x) ticks, a linear step axis with 1-2-5 ticks,
 * axis labels, a title and a subtitle with the run's settings, and a legend with the last values.
 * Steps whose loss is not finite and positive cannot be placed on a log axis and are left out.
 */
public final class LossCurve {
    public static final int WIDTH = 960, HEIGHT = 600;
    static final int LEFT = 86, RIGHT = 28, TOP = 74, BOTTOM = 62;
    static final Color RAW = new Color(150, 185, 230);
    static final Color SMOOTH = new Color(20, 70, 170);

    private LossCurve() {}

    /** The EMA span for a history of {@code n} steps: about n / 25, in [1, 500]. */
    static int smoothingSpan(int n) {
        return Math.max(1, Math.min(500, n / 25));
    }

    /**
     * Exponential moving average with {@code alpha = 2 / (span + 1)}, bias-corrected: {@code s_i = sum_k
     * (1-alpha)^(i-k) x_k / sum_k (1-alpha)^(i-k)} over the finite positive values so far (others are
     * skipped and give NaN). Computed in float64.
     */
    static double[] smooth(float[] x, int span) {
        double alpha = 2.0 / (span + 1.0), num = 0, den = 0;
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            if (Float.isFinite(x[i]) && x[i] > 0) {
                num = (1 - alpha) * num + x[i];
                den = (1 - alpha) * den + 1;
                out[i] = num / den;
            } else {
                out[i] = Double.NaN;
            }
        }
        return out;
    }

    /** Tick values of a log axis over [lo, hi] (lo > 0): decades, and 2x / 5x or every mantissa when few. */
    static List<Double> logTicks(double lo, double hi) {
        for (int[] mantissas : new int[][] {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
            List<Double> t = new ArrayList<>();
            for (int e = (int) Math.floor(Math.log10(lo)) - 1; e <= (int) Math.ceil(Math.log10(hi)); e++) {
                for (int m : mantissas) {
                    double v = Double.parseDouble(m + "e" + e); // exact decimal, not m * pow(10, e)
                    if (v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12)) t.add(v);
                }
            }
            if (t.size() >= 3 || mantissas.length == 9) return t;
        }
        throw new AssertionError();
    }

    /** Tick values of a linear step axis over [lo, hi]: multiples of 1, 2 or 5 x 10^k, about 5 to 10 of them. */
    static List<Long> stepTicks(long lo, long hi) {
        double raw = Math.max(1, (hi - lo) / 8.0);
        double p = Math.pow(10, Math.floor(Math.log10(raw)));
        long step = (long) (raw / p <= 1 ? p : raw / p <= 2 ? 2 * p : raw / p <= 5 ? 5 * p : 10 * p);
        step = Math.max(1, step);
        List<Long> t = new ArrayList<>();
        for (long v = (lo + step - 1) / step * step; v <= hi; v += step) t.add(v);
        return t;
    }

    /** The pixel row of loss {@code v} on a log axis mapping [lo, hi] to [bottom, top]. */
    static double yPixel(double v, double lo, double hi, int top, int bottom) {
        return bottom - (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) * (bottom - top);
    }

    static String label(double v) {
        String s = String.format(Locale.ROOT, "%.3g", v);
        int e = s.indexOf('e');
        String mantissa = e < 0 ? s : s.substring(0, e), exponent = e < 0 ? "" : s.substring(e);
        if (mantissa.contains(".")) mantissa = mantissa.replaceAll("0+$", "").replaceAll("\\.$", "");
        return mantissa + exponent;
    }

    /** Renders the curve of {@code history} with a title and a subtitle (the run's settings). */
    public static BufferedImage render(LossHistory history, String title, String subtitle) {
        Objects.requireNonNull(history, "history");
        BufferedImage img = new BufferedImage(WIDTH, HEIGHT, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        try {
            g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
            g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
            g.setRenderingHint(RenderingHints.KEY_STROKE_CONTROL, RenderingHints.VALUE_STROKE_PURE);
            g.setColor(Color.WHITE);
            g.fillRect(0, 0, WIDTH, HEIGHT);
            int left = LEFT, right = WIDTH - RIGHT, top = TOP, bottom = HEIGHT - BOTTOM;
            g.setColor(Color.BLACK);
            g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 17));
            centered(g, title == null ? "loss" : title, WIDTH / 2, 26);
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            if (subtitle != null) centered(g, subtitle, WIDTH / 2, 48);

            float[] loss = history.losses();
            double lo = Double.POSITIVE_INFINITY, hi = 0;
            for (float v : loss) {
                if (Float.isFinite(v) && v > 0) {
                    lo = Math.min(lo, v);
                    hi = Math.max(hi, v);
                }
            }
            long x0 = history.firstStep(), x1 = Math.max(history.lastStep(), x0 + 1);
            boolean empty = hi == 0;
            if (empty) { // nothing to draw on a log axis
                lo = 0.1;
                hi = 1;
            } else {
                if (hi / lo < 1.5) { // a flat curve: show a factor 1.5 around it
                    double mid = Math.sqrt(lo * hi);
                    lo = mid / Math.sqrt(1.5);
                    hi = mid * Math.sqrt(1.5);
                }
                double pad = Math.pow(hi / lo, 0.04);
                lo /= pad;
                hi *= pad;
            }
            final double ylo = lo, yhi = hi;
            // grid and ticks
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            FontMetrics fm = g.getFontMetrics();
            for (double t : logTicks(ylo, yhi)) {
                int y = (int) Math.round(yPixel(t, ylo, yhi, top, bottom));
                g.setColor(new Color(228, 228, 228));
                g.drawLine(left, y, right, y);
                g.setColor(Color.DARK_GRAY);
                g.drawLine(left - 5, y, left, y);
                String s = label(t);
                g.drawString(s, left - 8 - fm.stringWidth(s), y + fm.getAscent() / 2 - 1);
            }
            for (long t : stepTicks(x0, x1)) {
                int x = (int) Math.round(xPixel(t, x0, x1, left, right));
                g.setColor(new Color(236, 236, 236));
                g.drawLine(x, top, x, bottom);
                g.setColor(Color.DARK_GRAY);
                g.drawLine(x, bottom, x, bottom + 5);
                centered(g, Long.toString(t), x, bottom + 8 + fm.getAscent());
            }
            g.setColor(Color.BLACK);
            g.drawRect(left, top, right - left, bottom - top);
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 13));
            centered(g, "step", (left + right) / 2, HEIGHT - 16);
            AffineTransform saved = g.getTransform();
            g.rotate(-Math.PI / 2);
            centered(g, "loss (log scale)", -(top + bottom) / 2, 22);
            g.setTransform(saved);

            // curves, clipped to the plot
            g.setClip(left + 1, top + 1, right - left - 1, bottom - top - 1);
            double[] raw = new double[loss.length];
            for (int i = 0; i < loss.length; i++) raw[i] = Float.isFinite(loss[i]) && loss[i] > 0 ? loss[i] : Double.NaN;
            int span = smoothingSpan(loss.length);
            double[] ema = smooth(loss, span);
            g.setColor(RAW);
            g.setStroke(new BasicStroke(1f));
            g.draw(path(raw, history.firstStep(), x0, x1, ylo, yhi, left, right, top, bottom));
            g.setColor(SMOOTH);
            g.setStroke(new BasicStroke(2.4f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND));
            g.draw(path(ema, history.firstStep(), x0, x1, ylo, yhi, left, right, top, bottom));
            g.setClip(null);

            // legend
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            String lastRaw = "per-step loss", lastEma = "EMA (span " + span + " steps)";
            for (int i = loss.length - 1; i >= 0; i--) {
                if (!Double.isNaN(ema[i])) {
                    lastRaw += String.format(Locale.ROOT, " (last %.4g)", raw[i]);
                    lastEma += String.format(Locale.ROOT, " (last %.4g)", ema[i]);
                    break;
                }
            }
            int lw = Math.max(fm.stringWidth(lastRaw), fm.stringWidth(lastEma)) + 48;
            int lx = right - lw - 10, ly = top + 10;
            g.setColor(new Color(255, 255, 255, 225));
            g.fillRect(lx, ly, lw, 44);
            g.setColor(Color.GRAY);
            g.drawRect(lx, ly, lw, 44);
            g.setColor(RAW);
            g.setStroke(new BasicStroke(2f));
            g.drawLine(lx + 8, ly + 15, lx + 34, ly + 15);
            g.setColor(SMOOTH);
            g.setStroke(new BasicStroke(2.4f));
            g.drawLine(lx + 8, ly + 33, lx + 34, ly + 33);
            g.setColor(Color.BLACK);
            g.drawString(lastRaw, lx + 40, ly + 19);
            g.drawString(lastEma, lx + 40, ly + 37);
            if (empty) {
                centered(g, "no finite positive loss recorded", (left + right) / 2, (top + bottom) / 2);
            }
        } finally {
            g.dispose();
        }
        return img;
    }

    /** PNG bytes of {@link #render}. */
    public static byte[] png(LossHistory history, String title, String subtitle) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try {
            if (!ImageIO.write(render(history, title, subtitle), "png", bytes)) throw new IllegalStateException("no PNG writer");
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e); // a byte array stream does not fail
        }
        return bytes.toByteArray();
    }

    /** Writes the PNG atomically (temporary file, fsync, rename). */
    public static void write(Path file, LossHistory history, String title, String subtitle) throws IOException {
        AtomicFiles.write(file, png(history, title, subtitle));
    }

    private static double xPixel(double step, long x0, long x1, int left, int right) {
        return left + (step - x0) / (double) (x1 - x0) * (right - left);
    }

    private static Path2D path(double[] v, long firstStep, long x0, long x1, double lo, double hi, int left, int right,
                               int top, int bottom) {
        Path2D.Double p = new Path2D.Double();
        boolean pen = false;
        for (int i = 0; i < v.length; i++) {
            if (Double.isNaN(v[i])) {
                pen = false;
                continue;
            }
            double x = xPixel(firstStep + i, x0, x1, left, right), y = yPixel(v[i], lo, hi, top, bottom);
            if (pen) {
                p.lineTo(x, y);
            } else {
                p.moveTo(x, y);
                p.lineTo(x + 0.01, y); // a lone point still shows
                pen = true;
            }
        }
        return p;
    }

    private static void centered(Graphics2D g, String s, int cx, int baseline) {
        FontMetrics fm = g.getFontMetrics();
        g.drawString(s, cx - fm.stringWidth(s) / 2, baseline);
    }
}
