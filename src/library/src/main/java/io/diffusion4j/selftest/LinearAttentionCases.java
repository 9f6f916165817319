package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.U;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.Precision;
import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.LinearKernels.AttentionShape;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.Function;

/** The linear and attention families. */
final class LinearAttentionCases {
    private LinearAttentionCases() {}

    // linear, attention ----------------------------------------------------------------------------

    /**
     * Linear and attention: LinearAttentionReference's first-order bounds (a sum of K products errs
     * by at most (K + 1) u times the sum of the terms' absolute values, propagated through softmax for
     * attention) times 2 per backend, so rtol = 4 u with M the bound in units of u (maximum over the
     * outputs for linear; from the maxima of the inputs for attention). Linear's y, dx and dweight are
     * sums of products (their bound widens at TF32 and BF16); dbias is a plain FP32 sum at every precision.
     */
    static final double LINEAR_ATTENTION_RTOL = 4 * U;

    static List<ParityCase> linearCases(SplittableRandom rnd) {
        // rows, in, out: odd sizes, partial 64-tiles and 16-deep slices; the last two sum over a K long enough
        // for a tensor-core variant to split it (dweight over 300 rows, y over 290 inputs)
        int[][] shapes = {{1, 3, 3}, {7, 13, 19}, {33, 70, 13}, {300, 21, 9}, {5, 290, 7}};
        double rt = LINEAR_ATTENTION_RTOL;
        List<ParityCase> out = new ArrayList<>();
        for (int[] d : shapes) {
            int rows = d[0], in = d[1], of = d[2];
            float[] x = gaussians(rnd, rows * in), w = gaussians(rnd, of * in, 0.5, 0), b = gaussians(rnd, of);
            float[] dy = gaussians(rnd, rows * of), dw0 = gaussians(rnd, of * in), db0 = gaussians(rnd, of);
            double mY = 0, mDx = 0, mDw = 0, mDb = 0;
            for (int m = 0; m < rows; m++) {
                for (int o = 0; o < of; o++) {
                    double abs = Math.abs(b[o]);
                    for (int i = 0; i < in; i++) abs += Math.abs((double) x[m * in + i] * w[o * in + i]);
                    mY = Math.max(mY, (in + 2) * abs);
                }
                for (int i = 0; i < in; i++) {
                    double abs = 0;
                    for (int o = 0; o < of; o++) abs += Math.abs((double) dy[m * of + o] * w[o * in + i]);
                    mDx = Math.max(mDx, (of + 2) * abs);
                }
            }
            for (int o = 0; o < of; o++) {
                double absB = 0;
                for (int m = 0; m < rows; m++) absB += Math.abs(dy[m * of + o]);
                mDb = Math.max(mDb, (rows + 2) * absB + 2 * Math.abs(db0[o]));
                for (int i = 0; i < in; i++) {
                    double abs = 0;
                    for (int m = 0; m < rows; m++) abs += Math.abs((double) dy[m * of + o] * x[m * in + i]);
                    mDw = Math.max(mDw, (rows + 2) * abs + 2 * Math.abs(dw0[o * in + i]));
                }
            }
            double my = mY, mdx = mDx, mdw = mDw, mdb = mDb;
            Shape sh = dims("rows=" + rows + " in=" + in + " out=" + of, rows, in);
            out.add(tensorCase("forward", sh, rt,
                    List.of(Arg.in(x, rows, in), Arg.in(w, of, in), Arg.in(b, of), Arg.out(rows, of)),
                    t -> LinearKernels.linear(t[0], t[1], t[2], t[3]), v -> List.of(Output.products("y", v[3], rt, my))));
            out.add(tensorCase("backward", sh, rt,
                    List.of(Arg.in(x, rows, in), Arg.in(w, of, in), Arg.in(dy, rows, of), Arg.out(rows, in),
                            Arg.reset(dw0, of, in), Arg.reset(db0, of)),
                    t -> LinearKernels.linearBackward(t[0], t[1], t[2], t[3], t[4], t[5]),
                    v -> List.of(Output.products("dx", v[3], rt, mdx), Output.products("dweight", v[4], rt, mdw),
                            Output.close("dbias", v[5], rt, mdb))));
        }
        return out;
    }

    /**
     * Attention at FP32: {@link #LINEAR_ATTENTION_RTOL} with M from the maxima of the inputs. At TF32 and BF16
     * the tensor-core variant also rounds q, k, v, dout, the probabilities and the score gradients: each output's
     * rtol grows by T / M, T the absolute bound {@link AttentionRounding} derives for the rounding (a score moves
     * by at most productError times its sum of absolute terms, the softmax by twice that in the exponent, the
     * rounded weights and operands by the format's unit roundoff each), so |dev - cpu| <= rtol (|cpu| + M) + T.
     */
    static List<ParityCase> attentionCases(SplittableRandom rnd) {
        // {batch, tokens, heads, headDim}, |q|,|k| magnitude; B*H*L blocks per kernel on the device
        int[][] shapes = {{2, 9, 2, 5}, {1, 7, 1, 8}, {3, 5, 3, 3}};
        double[] magnitudes = {1.0, 3.0, 1.0};
        double rt = LINEAR_ATTENTION_RTOL;
        List<ParityCase> out = new ArrayList<>();
        for (int s = 0; s < shapes.length; s++) {
            int bt = shapes[s][0], len = shapes[s][1], heads = shapes[s][2], dim = shapes[s][3];
            AttentionShape as = new AttentionShape(bt, len, heads, dim);
            float scale = s == 1 ? 0.35f : as.defaultScale();
            int size = bt * len * heads * dim;
            float[] q = gaussians(rnd, size, magnitudes[s], 0), k = gaussians(rnd, size, magnitudes[s], 0);
            float[] v = gaussians(rnd, size), g = gaussians(rnd, size);
            AttentionReference ref = new AttentionReference(as, scale, q, k, v);
            double c = Math.abs(scale), vm = maxAbs(v), gm = maxAbs(g), qm = maxAbs(q), km = maxAbs(k);
            int L = len, D = dim;
            // forward: p relative error 2E + L + 8, out within (relP + L + 2) sum_j p |v| <= (...) max|v|
            double relPf = 2 * ref.e + L + 8, outScale = (relPf + L + 2) * vm;
            double lseScale = ref.e + L + 8 + ref.maxLse;
            // backward (LinearAttentionReference.attentionBackward with every factor at its maximum)
            double relP = relPf + lseScale, dgv = D * gm * vm;
            double dsumAbs = D * gm * ((D + 2) * vm + outScale);
            double a = 2 * dgv * (relP + 2) + (D + 2) * dgv + dsumAbs, perP = a + (L + 2) * 2 * dgv;
            double mDq = c * km * perP, mDk = c * qm * L * perP, mDv = L * (relP + L + 2) * gm;
            double sigma = ref.e / (D + 2), om = maxAbs(ref.out);
            Function<Precision, AttentionRounding.Bounds> tc = p -> AttentionRounding.of(p, sigma, L, D, scale, qm, km,
                    vm, om, gm);
            long[] ts = {bt, len, heads, dim}, ls = {bt, heads, len};
            Shape sh = dims(String.format(Locale.ROOT, "B=%d L=%d H=%d D=%d", bt, len, heads, dim), bt, len, heads, dim);
            String mag = magnitudes[s] == 1.0 ? "" : String.format(Locale.ROOT, " |q|,|k|~%.0f", magnitudes[s]);
            out.add(tensorCase("forward" + mag, sh, rt,
                    List.of(Arg.in(q, ts), Arg.in(k, ts), Arg.in(v, ts), Arg.out(ts), Arg.out(ls)),
                    t -> LinearKernels.attention(as, scale, t[0], t[1], t[2], t[3], t[4]),
                    o -> List.of(Output.rounded("out", o[3], rt, outScale, p -> tc.apply(p).out() / outScale),
                            Output.rounded("lse", o[4], rt, lseScale, p -> tc.apply(p).lse() / lseScale))));
            // the backward reads out and lse: the float64 forward rounded to float32, the same on both backends
            out.add(tensorCase("backward" + mag, sh, rt,
                    List.of(Arg.in(q, ts), Arg.in(k, ts), Arg.in(v, ts), Arg.in(ref.out, ts), Arg.in(ref.lse, ls),
                            Arg.in(g, ts), Arg.out(ts), Arg.out(ts), Arg.out(ts)),
                    t -> LinearKernels.attentionBackward(as, scale, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]),
                    o -> List.of(Output.rounded("dq", o[6], rt, mDq, p -> tc.apply(p).dq() / mDq),
                            Output.rounded("dk", o[7], rt, mDk, p -> tc.apply(p).dk() / mDk),
                            Output.rounded("dv", o[8], rt, mDv, p -> tc.apply(p).dv() / mDv))));
        }
        return out;
    }
}
