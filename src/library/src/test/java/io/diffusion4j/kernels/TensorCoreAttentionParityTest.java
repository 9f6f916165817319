package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.LinearAttentionReference.TOL_FACTOR;
import static io.diffusion4j.kernels.LinearAttentionReference.UNDERFLOW;
import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.kernels.LinearAttentionReference.Attn;
import io.diffusion4j.kernels.LinearAttentionReference.Bwd;
import io.diffusion4j.kernels.LinearAttentionReference.Fwd;
import io.diffusion4j.selftest.AttentionRounding;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.InputRounding;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;

/**
 * The tensor-core attention variant (v2) computes what it claims at TF32 and BF16, on odd token counts and head
 * dimensions from 3 to 512 (every tile geometry of the kernels, padded and not):
 * <ul>
 *   <li>against the float64 result of the <em>rounded</em> inputs (q, k, v, dout rounded to the format, Dsum from
 *       the unrounded dout and out, as the kernels compute it): within twice the FP32 bound of that computation
 *       (LinearAttentionReference's scales) plus twice the rounding of the probabilities (out: e sum_j p |v|; dv:
 *       e sum_i p |dout|) and of the score gradients (dq: e |scale| sum_j |dS| |k|; dk likewise with q), e the
 *       format's unit roundoff. lse has no such term: the softmax sum adds unrounded probabilities;
 *   <li>against the float64 result of the unrounded inputs: within twice the FP32 bound plus the bound of
 *       {@link AttentionRounding}, the tolerance the parity suite states;
 *   <li>the rounding shows: on inputs whose probabilities and score gradients are exact in the format (q = 0 or
 *       k = 0 makes every score 0; chosen out, lse and dout make dS exact or
 *       reproducible), every result is the float64 result of
 *       the rounded inputs to FP32 accuracy and at least 8 times closer to it than to the result of the unrounded
 *       inputs, for each operand of each product: v (out, dq through dP), q and k (lse, dk, dq), dout (dv);
 *   <li>a repeated call gives identical bits.
 * </ul>
 */
class TensorCoreAttentionParityTest {
    /** {batch, tokens, heads, headDim}. */
    static final int[][] SHAPES = {{2, 37, 2, 8}, {1, 70, 1, 40}, {1, 130, 1, 3}, {1, 41, 2, 100}, {1, 45, 1, 256},
        {1, 19, 1, 300}, {1, 35, 1, 512}};

    static final List<Precision> PRECISIONS = List.of(Precision.TF32, Precision.BF16);

    static float[] rounded(Precision p, float[] v) {
        float[] o = new float[v.length];
        for (int i = 0; i < v.length; i++) o[i] = InputRounding.round(p, v[i]);
        return o;
    }

    /** The format's unit roundoff: (1 + e)^2 = 1 + productError. */
    static double unitRoundoff(Precision p) {
        return Math.sqrt(1 + p.productError()) - 1;
    }

    /** Device backward with the given out and lse; returns {dq, dk, dv}. */
    static float[][] backward(Backend be, Attn a, float[] q, float[] k, float[] v, float[] out, float[] lse, float[] g) {
        var s = new LinearKernels.AttentionShape(a.batch(), a.tokens(), a.heads(), a.dim());
        long[] sh = {a.batch(), a.tokens(), a.heads(), a.dim()};
        try (Tensor tq = Tensor.of(be, q, sh); Tensor tk = Tensor.of(be, k, sh); Tensor tv = Tensor.of(be, v, sh);
             Tensor to = Tensor.of(be, out, sh); Tensor tl = Tensor.of(be, lse, a.batch(), a.heads(), a.tokens());
             Tensor tg = Tensor.of(be, g, sh); Tensor dq = LinearAttentionReference.poisoned(be, sh);
             Tensor dk = LinearAttentionReference.poisoned(be, sh); Tensor dv = LinearAttentionReference.poisoned(be, sh)) {
            LinearKernels.attentionBackward(s, a.scale(), tq, tk, tv, to, tl, tg, dq, dk, dv);
            return new float[][] {dq.toFloatArray(), dk.toFloatArray(), dv.toFloatArray()};
        }
    }

    /**
     * float64 backward as the kernels compute it: P = exp(scale q.k - lse), dP = dout . v, Dsum = dsumG . out,
     * dS = P (dP - Dsum); the results {dq, dk, dv} and the sums of absolute values the rounding of dS and P
     * scales ({|scale| sum_j |dS| |k|, |scale| sum_i |dS| |q|, sum_i P |dout|}). With {@code roundDs}, dS is
     * rounded as the kernels round it: dP - Dsum to FP32, then to the format (exact where P = 1 and dP, Dsum
     * are single products, as in the witness inputs).
     */
    static double[][] backwardOf(Attn a, float[] q, float[] k, float[] v, float[] out, float[] lse, float[] g,
                                 float[] dsumG, Precision roundDs) {
        int L = a.tokens(), D = a.dim();
        double sc = a.scale(), asc = Math.abs(sc);
        double[][] r = new double[6][a.size()];
        for (int b = 0; b < a.batch(); b++) {
            for (int h = 0; h < a.heads(); h++) {
                double[][] p = new double[L][L], ds = new double[L][L];
                for (int i = 0; i < L; i++) {
                    int qi = a.at(b, i, h);
                    double dsum = 0;
                    for (int d = 0; d < D; d++) dsum += (double) dsumG[qi + d] * out[qi + d];
                    for (int j = 0; j < L; j++) {
                        int kj = a.at(b, j, h);
                        double s = 0, dp = 0;
                        for (int d = 0; d < D; d++) {
                            s += (double) q[qi + d] * k[kj + d];
                            dp += (double) g[qi + d] * v[kj + d];
                        }
                        p[i][j] = Math.exp(sc * s - lse[(b * a.heads() + h) * L + i]);
                        ds[i][j] = roundDs == null ? p[i][j] * (dp - dsum)
                                : p[i][j] * InputRounding.round(roundDs, (float) (dp - dsum));
                    }
                }
                for (int i = 0; i < L; i++) {
                    for (int d = 0; d < D; d++) {
                        double dq = 0, dqAbs = 0, dk = 0, dkAbs = 0, dv = 0, dvAbs = 0;
                        for (int t = 0; t < L; t++) {
                            double kt = k[a.at(b, t, h) + d], qt = q[a.at(b, t, h) + d], gt = g[a.at(b, t, h) + d];
                            dq += ds[i][t] * kt;
                            dqAbs += Math.abs(ds[i][t] * kt);
                            dk += ds[t][i] * qt;
                            dkAbs += Math.abs(ds[t][i] * qt);
                            dv += p[t][i] * gt;
                            dvAbs += p[t][i] * Math.abs(gt);
                        }
                        int e = a.at(b, i, h) + d;
                        r[0][e] = sc * dq;
                        r[1][e] = sc * dk;
                        r[2][e] = dv;
                        r[3][e] = asc * dqAbs;
                        r[4][e] = asc * dkAbs;
                        r[5][e] = dvAbs;
                    }
                }
            }
        }
        return r;
    }

    /** sum_j p_ij |v_j| per output element of the forward. */
    static double[] weightedAbs(Attn a, Fwd f, float[] v) {
        double[] r = new double[a.size()];
        for (int b = 0; b < a.batch(); b++)
            for (int h = 0; h < a.heads(); h++)
                for (int i = 0; i < a.tokens(); i++)
                    for (int d = 0; d < a.dim(); d++) {
                        double acc = 0;
                        for (int j = 0; j < a.tokens(); j++)
                            acc += f.p()[(b * a.heads() + h) * a.tokens() + i][j] * Math.abs(v[a.at(b, j, h) + d]);
                        r[a.at(b, i, h) + d] = acc;
                    }
        return r;
    }

    /** scale + w * extra, element-wise. */
    static double[] plus(double[] scale, double w, double[] extra) {
        double[] r = new double[scale.length];
        for (int i = 0; i < r.length; i++) r[i] = scale[i] + w * extra[i];
        return r;
    }

    static double sigma(Attn a, float[] q, float[] k) {
        double m = 0;
        for (int b = 0; b < a.batch(); b++)
            for (int h = 0; h < a.heads(); h++)
                for (int i = 0; i < a.tokens(); i++)
                    for (int j = 0; j < a.tokens(); j++) {
                        double s = 0;
                        for (int d = 0; d < a.dim(); d++) s += Math.abs((double) q[a.at(b, i, h) + d] * k[a.at(b, j, h) + d]);
                        m = Math.max(m, Math.abs(a.scale()) * s);
                    }
        return m;
    }

    static double maxAbs(float[] v) {
        return Tolerance.maxAbs(v);
    }

    @OnDevices
    void resultsAreThoseOfTheRoundedInputsWithinTheStatedBounds(Backend dev, Device kind) {
        for (Precision precision : PRECISIONS) {
            try (Backend.Selection s = dev.use(new VariantRun("attention", "v2", precision))) {
                double e = unitRoundoff(precision), tol = TOL_FACTOR * U;
                for (int[] sh : SHAPES) {
                    Attn a = new Attn(sh[0], sh[1], sh[2], sh[3], (float) (1 / Math.sqrt(sh[3])));
                    TestRandom r = TestRandom.fresh();
                    String c = kind.cliName() + " " + precision.cliName() + " " + a + "; " + r.describe();
                    float[] q = r.gaussians(a.size(), 1.0), k = r.gaussians(a.size(), 1.0);
                    float[] v = r.gaussians(a.size(), 1.0), g = r.gaussians(a.size(), 1.0);
                    float[] qr = rounded(precision, q), kr = rounded(precision, k), vr = rounded(precision, v),
                            gr = rounded(precision, g);

                    // forward
                    var got = LinearAttentionReference.attention(dev, a, q, k, v);
                    Fwd fr = LinearAttentionReference.attention(a, qr, kr, vr), fx = LinearAttentionReference.attention(a, q, k, v);
                    Tolerance.log(Tolerance.assertCloseScaled("attention lse vs float64 of rounded inputs", got.lse(),
                            fr.lse(), fr.lseScale(), UNDERFLOW, tol, c));
                    Tolerance.log(Tolerance.assertCloseScaled("attention out vs float64 of rounded inputs", got.out(),
                            fr.out(), plus(fr.outScale(), e / U, weightedAbs(a, fr, vr)), UNDERFLOW, tol, c));
                    float[] outX = new float[a.size()], lseX = new float[a.rows()];
                    for (int i = 0; i < outX.length; i++) outX[i] = (float) fx.out()[i];
                    for (int i = 0; i < lseX.length; i++) lseX[i] = (float) fx.lse()[i];
                    AttentionRounding.Bounds t = AttentionRounding.of(precision, sigma(a, q, k), a.tokens(), a.dim(),
                            a.scale(), maxAbs(q), maxAbs(k), maxAbs(v), maxAbs(outX), maxAbs(g));
                    Tolerance.log(Tolerance.assertCloseScaled("attention lse vs float64 (stated bound)", got.lse(),
                            fx.lse(), fx.lseScale(), UNDERFLOW + t.lse(), tol, c));
                    Tolerance.log(Tolerance.assertCloseScaled("attention out vs float64 (stated bound)", got.out(),
                            fx.out(), fx.outScale(), UNDERFLOW + t.out(), tol, c));
                    var again = LinearAttentionReference.attention(dev, a, q, k, v);
                    Tolerance.assertBitIdentical("attention out repeat", got.out(), again.out(), c);
                    Tolerance.assertBitIdentical("attention lse repeat", got.lse(), again.lse(), c);
                    witness("lse (q and k rounded)", got.lse(), fr.lse(), fx.lse(), precision, c);

                    // backward from the rounded inputs' forward: tight
                    float[] outR = new float[a.size()], lseR = new float[a.rows()];
                    for (int i = 0; i < outR.length; i++) outR[i] = (float) fr.out()[i];
                    for (int i = 0; i < lseR.length; i++) lseR[i] = (float) fr.lse()[i];
                    float[][] d = backward(dev, a, q, k, v, outR, lseR, g);
                    double[][] br = backwardOf(a, qr, kr, vr, outR, lseR, gr, g, null);
                    Bwd sr = LinearAttentionReference.attentionBackward(a, qr, kr, vr, gr, fr);
                    String[] names = {"dq", "dk", "dv"};
                    double[][] fp32 = {sr.dq().scale(), sr.dk().scale(), sr.dv().scale()};
                    for (int o = 0; o < 3; o++) {
                        Tolerance.log(Tolerance.assertCloseScaled("attention " + names[o] + " vs float64 of rounded inputs",
                                d[o], br[o], plus(fp32[o], e / U, br[3 + o]), UNDERFLOW, tol, c));
                    }
                    float[][] d2 = backward(dev, a, q, k, v, outR, lseR, g);
                    for (int o = 0; o < 3; o++) Tolerance.assertBitIdentical("attention " + names[o] + " repeat", d[o], d2[o], c);

                    // backward from the exact forward (what the parity suite gives it): the stated bound
                    float[][] dx = backward(dev, a, q, k, v, outX, lseX, g);
                    Bwd bx = LinearAttentionReference.attentionBackward(a, q, k, v, g, fx);
                    double[] atol = {t.dq(), t.dk(), t.dv()};
                    LinearAttentionReference.Out[] exact = {bx.dq(), bx.dk(), bx.dv()};
                    for (int o = 0; o < 3; o++) {
                        Tolerance.log(Tolerance.assertCloseScaled("attention " + names[o] + " vs float64 (stated bound)",
                                dx[o], exact[o].ref(), exact[o].scale(), UNDERFLOW + atol[o], tol, c));
                    }
                }
            }
        }
    }

    /**
     * Summed over the elements, dev is more than 8 times closer to the result of the rounded inputs than to that of
     * the unrounded ones (an FP32 computation would be the other way round).
     */
    static void witness(String what, float[] dev, double[] ofRounded, double[] exact, Precision p, String ctx) {
        double toRounded = 0, toExact = 0;
        for (int i = 0; i < dev.length; i++) {
            toRounded += Math.abs(dev[i] - ofRounded[i]);
            toExact += Math.abs(dev[i] - exact[i]);
        }
        assertTrue(toExact > 8 * toRounded, what + ": summed distance to the float64 result of the rounded inputs "
                + toRounded + ", of the exact inputs " + toExact + ": not rounded to " + p.cliName() + "; " + ctx);
    }

    /** Checks a witness output: tight (FP32 accumulation of exact products) and closer to the rounded result. */
    static void exactInFormat(String what, float[] dev, double[][] rounded, double[][] exact, int o, Attn a,
                              Precision p, String ctx) {
        double fp32 = TOL_FACTOR * (a.tokens() + a.dim() + 2) * U;
        Tolerance.log(Tolerance.assertCloseScaled(what + " vs float64 of rounded inputs", dev, rounded[o],
                rounded[3 + o], UNDERFLOW, fp32, ctx));
        witness(what, dev, rounded[o], exact[o], p, ctx);
    }

    @OnDevices
    void everyOperandIsRounded(Backend dev, Device kind) {
        for (Precision precision : PRECISIONS) {
            try (Backend.Selection s = dev.use(new VariantRun("attention", "v2", precision))) {
                for (int[] sh : SHAPES) {
                    Attn a = new Attn(sh[0], sh[1], sh[2], sh[3], (float) (1 / Math.sqrt(sh[3])));
                    TestRandom r = TestRandom.fresh();
                    String c = kind.cliName() + " " + precision.cliName() + " " + a + "; " + r.describe();
                    int n = a.size(), L = a.tokens(), D = a.dim();
                    float[] zero = new float[n], lse0 = new float[a.rows()];
                    float[] q = r.gaussians(n, 1.0), k = r.gaussians(n, 1.0), v = r.gaussians(n, 1.0);
                    float[] g = r.gaussians(n, 1.0);
                    // out = e_0 and dout[., 0] in {+-1, +-2}: Dsum = dout[., 0] exactly; with v = 0, dS = -Dsum
                    float[] e0 = new float[n], gCol = new float[n];
                    for (int row = 0; row < n / D; row++) {
                        e0[row * D] = 1;
                        float gamma = (row % 2 == 0 ? 1 : -1) * (row % 3 == 0 ? 2 : 1);
                        g[row * D] = gamma;
                        gCol[row * D] = gamma;
                    }

                    // q = 0: every probability is 1 / L, out the mean of the rounded v
                    var f = LinearAttentionReference.attention(dev, a, zero, k, v);
                    Fwd fr = LinearAttentionReference.attention(a, zero, k, rounded(precision, v));
                    Fwd fx = LinearAttentionReference.attention(a, zero, k, v);
                    Tolerance.log(Tolerance.assertCloseScaled("attention out (q = 0) vs float64 of rounded inputs", f.out(),
                            fr.out(), fr.outScale(), UNDERFLOW, TOL_FACTOR * U, c));
                    witness("attention out (q = 0: v rounded)", f.out(), fr.out(), fx.out(), precision, c);

                    // q = 0, v = 0, lse = 0: P = 1, dS = -Dsum; dq = -scale Dsum sum_j k, dv = sum_i dout
                    float[][] d = backward(dev, a, zero, k, zero, e0, lse0, g);
                    double[][] br = backwardOf(a, zero, rounded(precision, k), zero, e0, lse0, rounded(precision, g), g,
                            precision);
                    double[][] bx = backwardOf(a, zero, k, zero, e0, lse0, g, g, null);
                    exactInFormat("attention dq (k rounded)", d[0], br, bx, 0, a, precision, c);
                    exactInFormat("attention dv (dout rounded)", d[2], br, bx, 2, a, precision, c);

                    // k = 0: as above with dk = -scale sum_i Dsum q
                    d = backward(dev, a, q, zero, zero, e0, lse0, g);
                    br = backwardOf(a, rounded(precision, q), zero, zero, e0, lse0, rounded(precision, g), g, precision);
                    bx = backwardOf(a, q, zero, zero, e0, lse0, g, g, null);
                    exactInFormat("attention dk (q rounded)", d[1], br, bx, 1, a, precision, c);

                    // q = 0, dout only in column 0: dP = dout[i, 0] v[j, 0] and Dsum = dout[i, 0], one product each,
                    // so dS = round(dP - Dsum) is reproducible, and differs where v was not rounded before dP
                    d = backward(dev, a, zero, k, v, e0, lse0, gCol);
                    br = backwardOf(a, zero, rounded(precision, k), rounded(precision, v), e0, lse0, gCol, gCol, precision);
                    bx = backwardOf(a, zero, k, v, e0, lse0, gCol, gCol, null);
                    exactInFormat("attention dq (v rounded, through dP)", d[0], br, bx, 0, a, precision, c);
                }
            }
        }
    }
}
