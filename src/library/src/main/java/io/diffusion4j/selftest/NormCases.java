package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;
import static io.diffusion4j.selftest.SelfTest.U;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/** The normalisation and elementwise layer families: group_norm (with bias_group_norm), silu, residual_add. */
final class NormCases {
    private NormCases() {}

    /** GroupNorm forward: y 24 u (device 16 u + CPU 8 u of NormParityTest), mean and rstd 20 u (16 + 4). */
    static final double GN_FWD_RTOL = 24 * U, GN_STATS_RTOL = 20 * U;
    /** GroupNorm backward (dx, dtb, dgamma, dbeta): 36 u (device 24 u + CPU 12 u). */
    static final double GN_BWD_RTOL = 36 * U;

    /**
     * GroupNorm with and without SiLU and the fused time-embedding bias, forward and backward. The
     * magnitudes are the maxima over the outputs of NormKernelsTest's first-order error scales
     * (sums of absolute values of the terms, so cancellation cannot shrink them), evaluated in
     * float64 here from the inputs. The backward gets the float64 statistics rounded to float32 as
     * its mean and rstd on both backends, so both differentiate the same normalisation.
     */
    static List<ParityCase> groupNormCases(SplittableRandom rnd) {
        // {n, h, w, c, groups, bias, silu}: odd sizes, C > 32 (two channel tiles), H*W > 64 (row splits)
        int[][] configs = {{2, 5, 7, 10, 5, 0, 0}, {1, 9, 11, 40, 8, 0, 1}, {3, 5, 7, 13, 1, 1, 1}, {2, 3, 5, 6, 3, 1, 0}};
        List<ParityCase> out = new ArrayList<>();
        for (int[] cf : configs) {
            int n = cf[0], h = cf[1], w = cf[2], c = cf[3], groups = cf[4];
            boolean bias = cf[5] == 1, silu = cf[6] == 1;
            int hw = h * w, size = n * hw * c;
            float eps = 1e-5f;
            float[] x = gaussians(rnd, size, 1.5, 0.3), gamma = gaussians(rnd, c, 0.5, 1.0), beta = gaussians(rnd, c, 0.5, 0);
            float[] tb = bias ? gaussians(rnd, n * c) : null, dy = gaussians(rnd, size);
            GroupNormBounds bd = new GroupNormBounds(n, hw, c, groups, x, tb, gamma, beta, eps, silu, dy);
            long[] xs = {n, h, w, c}, gs = {n, groups};
            float[] zeros = new float[c];
            Shape sh = dims(dimsText(n, h, w, c) + " G=" + groups, n, h, w, c);
            String what = (bias ? "bias_group_norm" : "group_norm") + (silu ? "+silu" : "");
            double mY = bd.sy, mMean = bd.maxV;
            List<Arg> fwd = new ArrayList<>(List.of(Arg.in(x, xs)));
            if (bias) fwd.add(Arg.in(tb, n, c));
            fwd.addAll(List.of(Arg.in(gamma, c), Arg.in(beta, c), Arg.out(xs), Arg.out(gs), Arg.out(gs)));
            int o = bias ? 1 : 0;
            out.add(tensorCase(what + " forward", sh, GN_FWD_RTOL, fwd, t -> {
                if (bias) NormKernels.biasGroupNorm(t[0], t[1], t[2], t[3], groups, eps, silu, t[4], t[5], t[6]);
                else NormKernels.groupNorm(t[0], t[1], t[2], groups, eps, silu, t[3], t[4], t[5]);
            }, v -> List.of(Output.close("y", v[3 + o], GN_FWD_RTOL, mY),
                    Output.close("mean", v[4 + o], GN_STATS_RTOL, mMean),
                    Output.close("rstd", v[5 + o], GN_STATS_RTOL, 0.0))));

            // dy, x, [tb], gamma, beta, mean, rstd, dx, [dtb], dgamma (+=), dbeta (+=)
            List<Arg> bwd = new ArrayList<>(List.of(Arg.in(dy, xs), Arg.in(x, xs)));
            if (bias) bwd.add(Arg.in(tb, n, c));
            bwd.addAll(List.of(Arg.in(gamma, c), Arg.in(beta, c), Arg.in(bd.mean32, gs), Arg.in(bd.rstd32, gs),
                    Arg.out(xs)));
            if (bias) bwd.add(Arg.out(n, c));
            bwd.addAll(List.of(Arg.reset(zeros, c), Arg.reset(zeros, c)));
            double mDx = bd.sdx, mDtb = bd.sdtb, mDg = bd.sdgamma, mDb = bd.sdbeta;
            out.add(tensorCase(what + " backward", sh, GN_BWD_RTOL, bwd, t -> {
                if (bias) {
                    NormKernels.biasGroupNormBackward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], groups, silu, t[7], t[8],
                            t[9], t[10]);
                } else {
                    NormKernels.groupNormBackward(t[0], t[1], t[2], t[3], t[4], t[5], groups, silu, t[6], t[7], t[8]);
                }
            }, v -> {
                List<Output> r = new ArrayList<>();
                r.add(Output.close("dx", v[6 + o], GN_BWD_RTOL, mDx));
                if (bias) r.add(Output.close("dtb", v[8], GN_BWD_RTOL, mDtb));
                r.add(Output.close("dgamma", v[7 + 2 * o], GN_BWD_RTOL, mDg));
                r.add(Output.close("dbeta", v[8 + 2 * o], GN_BWD_RTOL, mDb));
                return r;
            }));
        }
        return out;
    }
    // silu, residual_add ---------------------------------------------------------------------------

    /** SiLU and its gradient: 24 u (twice NormKernelsTest's 12 u). */
    static final double SILU_RTOL = 24 * U;

    /**
     * SiLU forward: y = x sigmoid(x) is a product of x and a sigmoid computed from a sum of positive
     * terms, so its error is relative to |y| itself (M = 0). The gradient s (1 + x (1 - s)) cancels
     * near x = -1.28, so its magnitude is max |dy| s (1 + |x| (1 + s)) (NormKernelsTest's scale).
     */
    static List<ParityCase> siluCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            float[] x = gaussians(rnd, count, 3.0, 0), dy = gaussians(rnd, count);
            x[0] = 0f;
            x[count - 1] = -1.2785f; // where the gradient cancels to 0
            double mGrad = 0;
            for (int i = 0; i < count; i++) {
                double s = GroupNormBounds.sigmoid(x[i]);
                mGrad = Math.max(mGrad, Math.abs(dy[i]) * s * (1 + Math.abs(x[i]) * (1 + s)));
            }
            double mg = mGrad;
            out.add(tensorCase("forward", sh, SILU_RTOL, List.of(Arg.in(x, count), Arg.out(count)),
                    t -> NormKernels.silu(t[0], t[1]), v -> List.of(Output.close("y", v[1], SILU_RTOL, 0.0))));
            out.add(tensorCase("backward", sh, SILU_RTOL, List.of(Arg.in(dy, count), Arg.in(x, count), Arg.out(count)),
                    t -> NormKernels.siluBackward(t[0], t[1], t[2]), v -> List.of(Output.close("dx", v[2], SILU_RTOL, mg))));
        }
        return out;
    }

    /**
     * (a + b) * s and dout * s: both backends evaluate the same correctly rounded float32 add and
     * multiply (an add followed by a multiply cannot contract into an FMA), so bit-exact.
     */
    static List<ParityCase> residualCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        float[] scales = {1.0f, (float) (1 / Math.sqrt(2)), 0.5f};
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            float[] a = gaussians(rnd, count, 3.0, 0), b = gaussians(rnd, count), g = gaussians(rnd, count);
            float s = scales[rnd.nextInt(scales.length)];
            String scale = String.format(Locale.ROOT, " inv_scale=%.4g", s);
            out.add(tensorCase("forward" + scale, sh, 0, List.of(Arg.in(a, count), Arg.in(b, count), Arg.out(count)),
                    t -> NormKernels.residualAdd(t[0], t[1], s, t[2]), v -> List.of(Output.bits("out", v[2]))));
            out.add(tensorCase("backward" + scale, sh, 0, List.of(Arg.in(g, count), Arg.out(count), Arg.out(count)),
                    t -> NormKernels.residualAddBackward(t[0], s, t[1], t[2]),
                    v -> List.of(Output.bits("da", v[1]), Output.bits("db", v[2]))));
        }
        return out;
    }
}
