package io.diffusion4j.kernels;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.tensor.Tensor;

/**
 * float64 references of d4j_linear_* and d4j_attention_* plus, for each output, an error
 * magnitude {@code scale} in units of the float32 roundoff u: a first-order bound of the rounding
 * error a correct float32 kernel can make, propagated through the computation with absolute values
 * (so cancellation cannot make a bound dishonest). Tests check {@code |out - ref| <= TOL_FACTOR * u * scale}.
 *
 * <ul>
 *   <li>A sum of K products in float32 (any order, with or without FMA) errs by at most
 *       {@code (K + 1) u sum|terms|}.</li>
 *   <li>A score s = scale q.k errs by at most {@code E = (D + 2) u S_abs}, {@code S_abs = |scale| sum|q k|};
 *       softmax turns that into a relative error of p of at most {@code 2 E_row + (L + 8) u}
 *       (shift, exp to a few ulp, normaliser), E_row the row maximum of E.</li>
 *   <li>The backward pass recomputes p from lse (adding lse's error) and combines dp - Dsum.</li>
 * </ul>
 * The kernels' measured errors are a small fraction of these bounds; an indexing or semantic bug
 * gives errors of the order of the values themselves.
 */
final class LinearAttentionReference {
    private LinearAttentionReference() {}

    /** Safety factor on the first-order bounds. */
    static final double TOL_FACTOR = 2.0;

    /**
     * Absolute floor for float32 underflow: a probability below ~1e-38 is flushed (the CPU's exp
     * clamps at e^-87 = 1.6e-38, CUDA's expf flushes to 0) where float64 keeps e.g. 1e-275; times
     * inputs of magnitude <= 1e3 that stays below 1e-30, far below any meaningful value.
     */
    static final double UNDERFLOW = 1e-30;

    record Out(double[] ref, double[] scale) {}

    // ---- linear ----

    static Out linear(float[] x, float[] w, float[] b, int rows, int in, int out) {
        double[] y = new double[rows * out], s = new double[rows * out];
        for (int m = 0; m < rows; m++) {
            for (int o = 0; o < out; o++) {
                double acc = b == null ? 0 : b[o], abs = b == null ? 0 : Math.abs(b[o]);
                for (int i = 0; i < in; i++) {
                    acc += (double) x[m * in + i] * w[o * in + i];
                    abs += Math.abs((double) x[m * in + i] * w[o * in + i]);
                }
                y[m * out + o] = acc;
                s[m * out + o] = (in + 2) * abs;
            }
        }
        return new Out(y, s);
    }

    /** dx = dy w. */
    static Out linearDx(float[] w, float[] dy, int rows, int in, int out) {
        double[] r = new double[rows * in], s = new double[rows * in];
        for (int m = 0; m < rows; m++) {
            for (int i = 0; i < in; i++) {
                double acc = 0, abs = 0;
                for (int o = 0; o < out; o++) {
                    double t = (double) dy[m * out + o] * w[o * in + i];
                    acc += t;
                    abs += Math.abs(t);
                }
                r[m * in + i] = acc;
                s[m * in + i] = (out + 2) * abs;
            }
        }
        return new Out(r, s);
    }

    /** dw = dw0 + dy^T x (dw0 may be null for zero). */
    static Out linearDw(float[] x, float[] dy, float[] dw0, int rows, int in, int out) {
        double[] r = new double[out * in], s = new double[out * in];
        for (int o = 0; o < out; o++) {
            for (int i = 0; i < in; i++) {
                double acc = 0, abs = 0;
                for (int m = 0; m < rows; m++) {
                    double t = (double) dy[m * out + o] * x[m * in + i];
                    acc += t;
                    abs += Math.abs(t);
                }
                double init = dw0 == null ? 0 : dw0[o * in + i];
                r[o * in + i] = init + acc;
                s[o * in + i] = (rows + 2) * abs + 2 * Math.abs(init);
            }
        }
        return new Out(r, s);
    }

    /** db = db0 + column sums of dy. */
    static Out linearDb(float[] dy, float[] db0, int rows, int out) {
        double[] r = new double[out], s = new double[out];
        for (int o = 0; o < out; o++) {
            double acc = 0, abs = 0;
            for (int m = 0; m < rows; m++) {
                acc += dy[m * out + o];
                abs += Math.abs(dy[m * out + o]);
            }
            double init = db0 == null ? 0 : db0[o];
            r[o] = init + acc;
            s[o] = (rows + 2) * abs + 2 * Math.abs(init);
        }
        return new Out(r, s);
    }

    // ---- attention ----

    /** Dimensions and tensors of one attention problem, [B, L, H, D] layout. */
    record Attn(int batch, int tokens, int heads, int dim, float scale) {
        int at(int b, int l, int h) {
            return ((b * tokens + l) * heads + h) * dim;
        }

        int size() {
            return batch * tokens * heads * dim;
        }

        int rows() {
            return batch * heads * tokens;
        }
    }

    /** Forward with everything the backward reference and the bounds need. */
    record Fwd(double[] out, double[] outScale, double[] lse, double[] lseScale, double[][] p, double[] relP) {}

    /** p[(b*H + h)*L + i][j]; relP[row]: bound on the relative error of p in u. */
    static Fwd attention(Attn a, float[] q, float[] k, float[] v) {
        int L = a.tokens(), D = a.dim();
        double[] out = new double[a.size()], outScale = new double[a.size()];
        double[] lse = new double[a.rows()], lseScale = new double[a.rows()], relP = new double[a.rows()];
        double[][] p = new double[a.rows()][L];
        for (int b = 0; b < a.batch(); b++) {
            for (int h = 0; h < a.heads(); h++) {
                for (int i = 0; i < L; i++) {
                    int row = (b * a.heads() + h) * L + i;
                    double[] s = new double[L];
                    double m = Double.NEGATIVE_INFINITY, eRow = 0;
                    for (int j = 0; j < L; j++) {
                        double acc = 0, abs = 0;
                        for (int d = 0; d < D; d++) {
                            double t = (double) q[a.at(b, i, h) + d] * k[a.at(b, j, h) + d];
                            acc += t;
                            abs += Math.abs(t);
                        }
                        s[j] = a.scale() * acc;
                        m = Math.max(m, s[j]);
                        eRow = Math.max(eRow, (D + 2) * Math.abs(a.scale()) * abs);
                    }
                    double sum = 0;
                    for (int j = 0; j < L; j++) sum += Math.exp(s[j] - m);
                    for (int j = 0; j < L; j++) p[row][j] = Math.exp(s[j] - m) / sum;
                    lse[row] = m + Math.log(sum);
                    lseScale[row] = eRow + L + 8 + Math.abs(lse[row]);
                    relP[row] = 2 * eRow + L + 8;
                    for (int d = 0; d < D; d++) {
                        double acc = 0, abs = 0;
                        for (int j = 0; j < L; j++) {
                            acc += p[row][j] * v[a.at(b, j, h) + d];
                            abs += p[row][j] * Math.abs(v[a.at(b, j, h) + d]);
                        }
                        out[a.at(b, i, h) + d] = acc;
                        outScale[a.at(b, i, h) + d] = (relP[row] + L + 2) * abs;
                    }
                }
            }
        }
        return new Fwd(out, outScale, lse, lseScale, p, relP);
    }

    record Bwd(Out dq, Out dk, Out dv) {}

    /** Analytic float64 backward for upstream gradient g, with bounds for a float32 kernel. */
    static Bwd attentionBackward(Attn a, float[] q, float[] k, float[] v, float[] g, Fwd f) {
        int L = a.tokens(), D = a.dim();
        double sc = a.scale(), asc = Math.abs(sc);
        double[] dq = new double[a.size()], dk = new double[a.size()], dv = new double[a.size()];
        double[] sq = new double[a.size()], sk = new double[a.size()], sv = new double[a.size()];
        for (int b = 0; b < a.batch(); b++) {
            for (int h = 0; h < a.heads(); h++) {
                double[][] ds = new double[L][L], dsAbs = new double[L][L];
                double[] relP = new double[L];
                for (int i = 0; i < L; i++) {
                    int row = (b * a.heads() + h) * L + i;
                    // p recomputed from s and the stored lse: their errors add
                    relP[i] = f.relP()[row] + f.lseScale()[row];
                    double dsum = 0, dsumAbs = 0;
                    for (int d = 0; d < D; d++) {
                        int e = a.at(b, i, h) + d;
                        dsum += g[e] * f.out()[e];
                        dsumAbs += Math.abs(g[e]) * ((D + 2) * Math.abs(f.out()[e]) + f.outScale()[e]);
                    }
                    for (int j = 0; j < L; j++) {
                        double dp = 0, dpAbs = 0;
                        for (int d = 0; d < D; d++) {
                            double t = (double) g[a.at(b, i, h) + d] * v[a.at(b, j, h) + d];
                            dp += t;
                            dpAbs += Math.abs(t);
                        }
                        double pij = f.p()[row][j];
                        ds[i][j] = pij * (dp - dsum);
                        dsAbs[i][j] = pij * ((Math.abs(dp) + Math.abs(dsum)) * (relP[i] + 2) + (D + 2) * dpAbs + dsumAbs);
                    }
                }
                for (int i = 0; i < L; i++) {
                    for (int d = 0; d < D; d++) {
                        double acc = 0, abs = 0;
                        for (int j = 0; j < L; j++) {
                            acc += ds[i][j] * k[a.at(b, j, h) + d];
                            abs += (dsAbs[i][j] + (L + 2) * Math.abs(ds[i][j])) * Math.abs(k[a.at(b, j, h) + d]);
                        }
                        dq[a.at(b, i, h) + d] = sc * acc;
                        sq[a.at(b, i, h) + d] = asc * abs;
                    }
                }
                for (int j = 0; j < L; j++) {
                    for (int d = 0; d < D; d++) {
                        double ak = 0, absK = 0, av = 0, absV = 0;
                        for (int i = 0; i < L; i++) {
                            int row = (b * a.heads() + h) * L + i;
                            ak += ds[i][j] * q[a.at(b, i, h) + d];
                            absK += (dsAbs[i][j] + (L + 2) * Math.abs(ds[i][j])) * Math.abs(q[a.at(b, i, h) + d]);
                            double pij = f.p()[row][j];
                            av += pij * g[a.at(b, i, h) + d];
                            absV += pij * (relP[i] + L + 2) * Math.abs(g[a.at(b, i, h) + d]);
                        }
                        dk[a.at(b, j, h) + d] = sc * ak;
                        sk[a.at(b, j, h) + d] = asc * absK;
                        dv[a.at(b, j, h) + d] = av;
                        sv[a.at(b, j, h) + d] = absV;
                    }
                }
            }
        }
        return new Bwd(new Out(dq, sq), new Out(dk, sk), new Out(dv, sv));
    }

    /** sum(out * g) of the float64 forward: the scalar whose gradient attentionBackward computes. */
    static double attentionLoss(Attn a, float[] q, float[] k, float[] v, float[] g) {
        double[] o = attention(a, q, k, v).out();
        double s = 0;
        for (int e = 0; e < o.length; e++) s += o[e] * g[e];
        return s;
    }

    // ---- running kernels with poisoned outputs ----

    record AttnResult(float[] out, float[] lse) {}

    record AttnGrads(float[] dq, float[] dk, float[] dv) {}

    static float[] linear(Backend be, float[] x, float[] w, float[] b, int rows, int in, int out) {
        try (Tensor tx = Tensor.of(be, x, rows, in); Tensor tw = Tensor.of(be, w, out, in);
             Tensor tb = b == null ? null : Tensor.of(be, b, out); Tensor ty = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, rows, out)) {
            ty.fill(Float.NaN);
            LinearKernels.linear(tx, tw, tb, ty);
            return ty.toFloatArray();
        }
    }

    /** Returns {dx, dw, db}; dw / db start from dw0 / db0, dx is poisoned. */
    static float[][] linearBackward(Backend be, float[] x, float[] w, float[] dy, float[] dw0, float[] db0, int rows,
                                    int in, int out) {
        try (Tensor tx = Tensor.of(be, x, rows, in); Tensor tw = Tensor.of(be, w, out, in);
             Tensor tdy = Tensor.of(be, dy, rows, out); Tensor tdx = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, rows, in);
             Tensor tdw = Tensor.of(be, dw0, out, in); Tensor tdb = Tensor.of(be, db0, out)) {
            tdx.fill(Float.NaN);
            LinearKernels.linearBackward(tx, tw, tdy, tdx, tdw, tdb);
            return new float[][] {tdx.toFloatArray(), tdw.toFloatArray(), tdb.toFloatArray()};
        }
    }

    static Tensor poisoned(Backend be, long... shape) {
        Tensor t = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, shape);
        t.fill(Float.NaN);
        return t;
    }

    static AttnResult attention(Backend be, Attn a, float[] q, float[] k, float[] v) {
        var s = new LinearKernels.AttentionShape(a.batch(), a.tokens(), a.heads(), a.dim());
        long[] sh = {a.batch(), a.tokens(), a.heads(), a.dim()};
        try (Tensor tq = Tensor.of(be, q, sh); Tensor tk = Tensor.of(be, k, sh); Tensor tv = Tensor.of(be, v, sh);
             Tensor to = poisoned(be, sh); Tensor tl = poisoned(be, a.batch(), a.heads(), a.tokens())) {
            LinearKernels.attention(s, a.scale(), tq, tk, tv, to, tl);
            return new AttnResult(to.toFloatArray(), tl.toFloatArray());
        }
    }

    /** Runs forward then backward on the backend; gradients from poisoned outputs. */
    static AttnGrads attentionBackward(Backend be, Attn a, float[] q, float[] k, float[] v, float[] g) {
        var s = new LinearKernels.AttentionShape(a.batch(), a.tokens(), a.heads(), a.dim());
        long[] sh = {a.batch(), a.tokens(), a.heads(), a.dim()};
        try (Tensor tq = Tensor.of(be, q, sh); Tensor tk = Tensor.of(be, k, sh); Tensor tv = Tensor.of(be, v, sh);
             Tensor to = poisoned(be, sh); Tensor tl = poisoned(be, a.batch(), a.heads(), a.tokens());
             Tensor tg = Tensor.of(be, g, sh); Tensor dq = poisoned(be, sh); Tensor dk = poisoned(be, sh);
             Tensor dv = poisoned(be, sh)) {
            LinearKernels.attention(s, a.scale(), tq, tk, tv, to, tl);
            LinearKernels.attentionBackward(s, a.scale(), tq, tk, tv, to, tl, tg, dq, dk, dv);
            return new AttnGrads(dq.toFloatArray(), dk.toFloatArray(), dv.toFloatArray());
        }
    }
}
