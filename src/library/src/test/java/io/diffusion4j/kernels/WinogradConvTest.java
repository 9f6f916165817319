package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.ConvReference.Problem;
import io.diffusion4j.kernels.ConvReference.Result;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The CPU backend's Winograd forward paths (3x3 "same" convolutions with at least 128 input and output channels:
 * F(2x2, 3x3) from 64 pixels, F(4x4, 3x3) from 784, or from 256 with at most 256 x 256 channels) against the
 * float64 reference, at odd sizes
 * (a last tile row and column with fewer outputs) and channel counts that leave partial 16-channel blocks in every
 * transform.
 *
 * <p>Tolerance: Winograd computes y = A^T [sum over ci of (G g G^T) .* (B^T d B)] A, so an output's rounding error
 * is bounded by the same computation done on absolute values (every coefficient, weight and input replaced by its
 * magnitude) times the number of roundings on the longest path (first order). F(2x2): 2 in the input transform, 4
 * in the weight transform, C_in for the products and their sum, 4 in the output transform and the bias: (C_in +
 * 12) u of that "Winograd scale". F(4x4): 3 per dimension in the input transform, 4 per dimension in the weight
 * transform (1/6 is itself rounded), 3 per dimension and the bias in the output: (C_in + 24) u. The scale is larger
 * than the direct method's sum of |x| |w| (cross terms of the transforms, and F(4x4)'s coefficients up to 8); the
 * measured errors are logged against both.
 */
class WinogradConvTest {
    static Backend cpu;

    /**
     * {n, h, w, cIn, cOut}: F(2x2) from 8 x 8 exactly, at odd heights and widths, and at 16 x 16 with more than 256 x
     * 256 channels; F(4x4) at 16 x 16 and from 28 x 28 with every remainder of the last tile row and column;
     * channel counts with a partial last 16-channel block.
     */
    static final int[][] SHAPES = {{1, 8, 8, 128, 128}, {2, 9, 11, 131, 133}, {1, 15, 13, 128, 141},
            {1, 16, 17, 257, 256}, {1, 16, 16, 129, 130}, {1, 28, 28, 128, 128}, {1, 29, 31, 131, 129}};

    /** The F(2x2, 3x3) and F(4x4, 3x3) matrices A^T, G, B^T (as in kernels_conv2d_winograd.cpp). */
    record Winograd(int m, double[][] at, double[][] g, double[][] bt, int roundings) {
        int a() {
            return m + 2;
        }
    }

    static final Winograd F2 = new Winograd(2, new double[][] {{1, 1, 1, 0}, {0, 1, -1, -1}},
            new double[][] {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}},
            new double[][] {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}}, 12);
    static final Winograd F4 = new Winograd(4,
            new double[][] {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}},
            new double[][] {{0.25, 0, 0}, {-1 / 6.0, -1 / 6.0, -1 / 6.0}, {-1 / 6.0, 1 / 6.0, -1 / 6.0},
                    {1 / 24.0, 1 / 12.0, 1 / 6.0}, {1 / 24.0, -1 / 12.0, 1 / 6.0}, {0, 0, 1}},
            new double[][] {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                    {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}}, 24);

    /** The tile the CPU backend picks for a 3x3 same conv of this shape (kernels_conv2d.cpp, winograd_tile). */
    static Winograd variantFor(Problem p) {
        int px = p.h() * p.w();
        if (p.cIn() < 128 || p.cOut() < 128) throw new IllegalArgumentException("not a Winograd shape: " + p);
        return px >= 784 || (px >= 256 && (long) p.cIn() * p.cOut() <= 256 * 256) ? F4 : F2;
    }

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    /** The Winograd scale of every output (layout NHWC), computed in float64 on absolute values. */
    static double[] winogradScale(Winograd f, Problem p, float[] x, float[] w, float[] bias) {
        int ho = p.h(), wo = p.w(), ci = p.cIn(), co = p.cOut(), m = f.m(), n = f.a(), pts = n * n;
        double[][] at = f.at(), g = f.g(), bt = f.bt();
        // |G| |g| |G^T| per (ci, co)
        double[][] ug = new double[ci * co][pts];
        for (int c = 0; c < ci; c++)
            for (int o = 0; o < co; o++) {
                double[] u = ug[c * co + o];
                for (int r = 0; r < n; r++)
                    for (int s = 0; s < n; s++) {
                        double v = 0;
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++)
                                v += Math.abs(g[r][kh]) * Math.abs(g[s][kw])
                                        * Math.abs(w[((kh * 3 + kw) * ci + c) * co + o]);
                        u[r * n + s] = v;
                    }
            }
        double[] scale = new double[p.n() * ho * wo * co];
        double[] vd = new double[pts * ci];
        for (int b = 0; b < p.n(); b++)
            for (int ti = 0; ti < (ho + m - 1) / m; ti++)
                for (int tj = 0; tj < (wo + m - 1) / m; tj++) {
                    // |B^T| |d| |B| per ci
                    Arrays.fill(vd, 0);
                    for (int r = 0; r < n; r++)
                        for (int s = 0; s < n; s++)
                            for (int a = 0; a < n; a++)
                                for (int e = 0; e < n; e++) {
                                    double fa = Math.abs(bt[r][a]) * Math.abs(bt[s][e]);
                                    int ih = m * ti - 1 + a, iw = m * tj - 1 + e;
                                    if (fa == 0 || ih < 0 || ih >= p.h() || iw < 0 || iw >= p.w()) continue;
                                    int base = ((b * p.h() + ih) * p.w() + iw) * ci;
                                    for (int c = 0; c < ci; c++) vd[(r * n + s) * ci + c] += fa * Math.abs(x[base + c]);
                                }
                    for (int oi = 0; oi < m; oi++)
                        for (int oj = 0; oj < m; oj++) {
                            int oh = m * ti + oi, ow = m * tj + oj;
                            if (oh >= ho || ow >= wo) continue;
                            for (int o = 0; o < co; o++) {
                                double sum = 0;
                                for (int pt = 0; pt < pts; pt++) {
                                    double a = Math.abs(at[oi][pt / n]) * Math.abs(at[oj][pt % n]);
                                    if (a == 0) continue;
                                    for (int c = 0; c < ci; c++) sum += a * ug[c * co + o][pt] * vd[pt * ci + c];
                                }
                                scale[((b * ho + oh) * wo + ow) * co + o] = sum + (bias == null ? 0 : Math.abs(bias[o]));
                            }
                        }
                }
        return scale;
    }

    @Test
    void forwardWithinTheWinogradBound() {
        int i = 0;
        for (int[] sh : SHAPES) {
            Problem p = new Problem(Conv2dSpec.same3x3(), sh[0], sh[1], sh[2], sh[3], sh[4]);
            TestRandom r = TestRandom.fresh();
            float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5);
            float[] b = (i++ % 2 == 0) ? r.gaussians(p.cOut(), 1.0) : null;
            String c = p + "; " + r.describe();
            float[] y = ConvRunner.forward(cpu, p, x, w, b);
            Result ref = ConvReference.forward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(b));
            Winograd f = variantFor(p);
            double[] ws = winogradScale(f, p, x, w, b);
            Tolerance.log(Tolerance.assertCloseScaled("winograd F(" + f.m() + "x" + f.m() + ") forward " + p, y,
                    ref.value(), ws, 0.0, (p.cIn() + f.roundings()) * U, c));
            // Also within the direct method's bound, (9 C_in + 2) u of sum |x| |w|: not a theorem for these paths
            // (their scale is larger), but what the direct path may err, and a far tighter check of the transforms.
            Tolerance.log(Tolerance.assertCloseScaled("winograd F(" + f.m() + "x" + f.m() + ") forward vs sum |x||w| "
                    + p, y, ref.value(), ref.scale(), 0.0, (p.forwardTerms() + 2) * U, c));
        }
    }

    /** Same bits for 1, 2 and 3 threads, and for an image alone or in a batch (the chunking of tiles differs). */
    @Test
    void bitsIndependentOfThreadsAndBatch() {
        for (int[] hw : new int[][] {{9, 13}, {19, 17}, {29, 30}}) bitsIndependentOfThreadsAndBatch(hw[0], hw[1]);
    }

    private void bitsIndependentOfThreadsAndBatch(int h, int w0) {
        Problem batch = new Problem(Conv2dSpec.same3x3(), 3, h, w0, 129, 131);
        Problem one = new Problem(Conv2dSpec.same3x3(), 1, h, w0, 129, 131);
        TestRandom r = TestRandom.fresh();
        float[] x = r.gaussians(batch.xSize(), 1.0), w = r.gaussians(batch.wSize(), 0.5), b = r.gaussians(131, 1.0);
        String c = batch + "; " + r.describe();
        try {
            cpu.setThreads(1);
            float[] y1 = ConvRunner.forward(cpu, batch, x, w, b);
            for (int t : new int[] {2, 3}) {
                cpu.setThreads(t);
                Tolerance.assertBitIdentical("winograd forward on " + t + " threads", y1,
                        ConvRunner.forward(cpu, batch, x, w, b), c);
            }
            int xs = one.xSize(), ys = one.ySize();
            for (int i = 0; i < batch.n(); i++) {
                float[] yi = ConvRunner.forward(cpu, one, Arrays.copyOfRange(x, i * xs, (i + 1) * xs), w, b);
                Tolerance.assertBitIdentical("winograd forward of image " + i + " alone vs in a batch",
                        Arrays.copyOfRange(y1, i * ys, (i + 1) * ys), yi, c);
            }
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
    }
}
