package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.testutil.InputRounding;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Arrays;
import java.util.List;

/**
 * The tensor-core linear variant computes what it claims: at TF32 and BF16, y = x w^T + b, dx = dy w and
 * dw += dy^T x each equal the float64 result of the <em>rounded</em> inputs up to FP32 accumulation error, and
 * are visibly not the FP32 result (see {@link TensorCoreConvRoundingTest} for the bounds and {@link io.diffusion4j.testutil.InputRounding} for the roundings, written
 * there independently of the native code). The bias and the accumulated initial dw are added in FP32, unrounded;
 * the bias gradient is a plain FP32 reduction at every precision.
 */
class TensorCoreLinearParityTest {
    /**
     * {rows, in, out}: odd sizes and sizes that are not multiples of 16; more than one 64-wide tile along every
     * dimension; and, with few output tiles over a long K, products the kernel cuts into several K slices:
     * forward over in = 530, dx over out = 530, dw over rows = 600.
     */
    static final int[][] SHAPES = {{1, 3, 3}, {7, 13, 19}, {130, 67, 70}, {3, 530, 9}, {5, 9, 530}, {600, 19, 5}};

    /** A float64 result and, per element, the sum of the absolute values of the terms an FP32 kernel adds. */
    record Ref(double[] value, double[] scale) {}

    /** c[m][n] = init[m][n] + sum_k a(m, k) b(k, n) with a(m, k) = a[m * sam + k * sak], b likewise. */
    static Ref product(int rows, int cols, int depth, float[] a, int sam, int sak, float[] b, int sbk, int sbn,
                       float[] init, boolean initPerColumn) {
        double[] v = new double[rows * cols], s = new double[rows * cols];
        for (int m = 0; m < rows; m++) {
            for (int n = 0; n < cols; n++) {
                double i0 = init == null ? 0 : init[initPerColumn ? n : m * cols + n];
                double acc = i0, abs = Math.abs(i0);
                for (int k = 0; k < depth; k++) {
                    double t = (double) a[m * sam + k * sak] * b[k * sbk + n * sbn];
                    acc += t;
                    abs += Math.abs(t);
                }
                v[m * cols + n] = acc;
                s[m * cols + n] = abs;
            }
        }
        return new Ref(v, s);
    }

    static float[] rounded(Precision p, float[] v) {
        return InputRounding.rounded(p, v);
    }

    /** The three products of one layer from x, w, dy (rounded or not), with b and dw0 as given. */
    record Products(Ref y, Ref dx, Ref dw) {
        static Products of(float[] x, float[] w, float[] b, float[] dy, float[] dw0, int rows, int in, int out) {
            return new Products(product(rows, out, in, x, in, 1, w, 1, in, b, true),
                    product(rows, in, out, dy, out, 1, w, in, 1, null, false),
                    product(out, in, rows, dy, 1, out, x, in, 1, dw0, false));
        }
    }

    static void check(String what, Precision p, float[] dev, Ref ofRounded, Ref exact, int terms, String ctx) {
        InputRounding.checkRounded(what, p, dev, ofRounded.value(), ofRounded.scale(), exact.value(), exact.scale(),
                terms, ctx);
    }

    @OnDevices
    void forwardAndBackwardRoundTheirInputs(Backend dev, Device kind) {
        for (Precision precision : List.of(Precision.TF32, Precision.BF16)) {
            try (Backend.Selection s = dev.use(new VariantRun("linear", "v3", precision))) {
                for (int[] sh : SHAPES) {
                    int rows = sh[0], in = sh[1], out = sh[2];
                    TestRandom r = TestRandom.fresh();
                    float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 0.5), b = r.gaussians(out, 1.0);
                    float[] dy = r.gaussians(rows * out, 1.0), dw0 = r.gaussians(out * in, 1.0);
                    float[] db0 = r.gaussians(out, 1.0);
                    String c = kind.cliName() + " " + precision.cliName() + " rows=" + rows + " in=" + in + " out="
                            + out + "; " + r.describe();
                    Products g = Products.of(rounded(precision, x), rounded(precision, w), b, rounded(precision, dy),
                            dw0, rows, in, out);
                    Products e = Products.of(x, w, b, dy, dw0, rows, in, out);

                    float[] y = LinearAttentionReference.linear(dev, x, w, b, rows, in, out);
                    check("linear y", precision, y, g.y(), e.y(), in, c);
                    Tolerance.assertBitIdentical("linear y repeat", y,
                            LinearAttentionReference.linear(dev, x, w, b, rows, in, out), c);

                    float[][] d = LinearAttentionReference.linearBackward(dev, x, w, dy, dw0, db0, rows, in, out);
                    check("linear dx", precision, d[0], g.dx(), e.dx(), out, c);
                    check("linear dw", precision, d[1], g.dw(), e.dw(), rows, c);
                    float[] ones = new float[rows];
                    Arrays.fill(ones, 1f);
                    Ref db = product(1, out, rows, ones, 0, 1, dy, out, 1, db0, true);  // db0 + column sums of dy
                    Tolerance.log(Tolerance.assertCloseScaled("linear db (an FP32 reduction)", d[2], db.value(),
                            db.scale(), 0.0, (rows + 2) * U, c));
                    float[][] again = LinearAttentionReference.linearBackward(dev, x, w, dy, dw0, db0, rows, in, out);
                    for (int i = 0; i < 3; i++) {
                        Tolerance.assertBitIdentical("linear backward repeat", d[i], again[i], c);
                    }
                }
            }
        }
    }
}
