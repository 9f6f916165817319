package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.U;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** The conv2d family. */
final class ConvCases {
    private ConvCases() {}

    /**
     * Every geometry of UNet2DModel (3x3 same, 1x1 shortcut, the stride-2 downsample with padding 1
     * and with diffusers' (0, 1, 0, 1) padding, the 3x3 conv of the nearest 2x upsample), forward
     * and backward, on odd NHWC shapes (odd channel counts, and two with channel counts that are
     * multiples of 4, which the TF32 cp.async tile copies 16 bytes at a time). Each output sums T products; with both backends within
     * (T + 2) u of the sum of the terms' absolute values (ConvParityTest), rtol = 2 (T + 2) u and M
     * = T max|a| max|b| (+ the bias or the accumulated initial value), which bounds that sum.
     */
    static List<ParityCase> convCases(SplittableRandom rnd) {
        record Geo(String name, Conv2dSpec spec, int n, int h, int w, int cIn, int cOut) {}
        List<Geo> geos = List.of(
                new Geo("3x3", Conv2dSpec.same3x3(), 2, 7, 5, 3, 5),
                new Geo("1x1", Conv2dSpec.pointwise(), 3, 5, 7, 13, 5),
                new Geo("3x3 stride2 pad1", Conv2dSpec.downsample3x3(1), 1, 9, 7, 5, 13),
                new Geo("3x3 stride2 pad(0,0,1,1)", Conv2dSpec.downsample3x3(0), 2, 7, 9, 3, 5),
                new Geo("up2x 3x3", Conv2dSpec.upsample3x3(), 1, 5, 3, 5, 3),
                // channel counts that are multiples of 4: the TF32 cp.async tile's 16-byte copies
                new Geo("3x3 channels x4", Conv2dSpec.same3x3(), 2, 7, 5, 8, 12),
                new Geo("up2x 3x3 channels x4", Conv2dSpec.upsample3x3(), 1, 5, 3, 4, 8));
        List<ParityCase> out = new ArrayList<>();
        for (Geo g : geos) {
            Conv2dSpec spec = g.spec();
            int k = spec.kernelSize(), n = g.n(), cIn = g.cIn(), cOut = g.cOut();
            int ho = (int) spec.outputHeight(g.h()), wo = (int) spec.outputWidth(g.w());
            long[] xs = {n, g.h(), g.w(), cIn}, wsh = {k, k, cIn, cOut}, ys = {n, ho, wo, cOut};
            int xCount = n * g.h() * g.w() * cIn, wCount = k * k * cIn * cOut, yCount = n * ho * wo * cOut;
            float[] x = gaussians(rnd, xCount), w = gaussians(rnd, wCount, 0.5, 0), b = gaussians(rnd, cOut);
            float[] dy = gaussians(rnd, yCount), dw0 = gaussians(rnd, wCount), db0 = gaussians(rnd, cOut);
            Shape sh = dims(dimsText(n, g.h(), g.w(), cIn) + "->" + cOut, n, g.h(), g.w(), cIn);
            int tFwd = k * k * cIn, tDx = (spec.upsample2x() ? 4 : 1) * k * k * cOut, tDw = n * ho * wo;
            double rFwd = 2 * (tFwd + 2) * U, rDx = 2 * (tDx + 2) * U, rDw = 2 * (tDw + 2) * U;
            double mFwd = tFwd * maxAbs(x) * maxAbs(w) + maxAbs(b);
            double mDx = tDx * maxAbs(dy) * maxAbs(w);
            double mDw = tDw * maxAbs(x) * maxAbs(dy) + maxAbs(dw0), mDb = tDw * maxAbs(dy) + maxAbs(db0);
            out.add(tensorCase("forward " + g.name(), sh, rFwd,
                    List.of(Arg.in(x, xs), Arg.in(w, wsh), Arg.in(b, cOut), Arg.out(ys)),
                    t -> ConvKernels.forward(spec, t[0], t[1], t[2], t[3]),
                    v -> List.of(Output.products("y", v[3], rFwd, mFwd))));
            out.add(tensorCase("backward " + g.name(), sh, Math.max(rDx, rDw),
                    List.of(Arg.in(x, xs), Arg.in(w, wsh), Arg.in(dy, ys), Arg.out(xs), Arg.reset(dw0, wsh),
                            Arg.reset(db0, cOut)),
                    t -> ConvKernels.backward(spec, t[0], t[1], t[2], t[3], t[4], t[5]),
                    v -> List.of(Output.products("dx", v[3], rDx, mDx), Output.products("dweight", v[4], rDw, mDw),
                            Output.close("dbias", v[5], rDw, mDb))));
        }
        out.addAll(groupNormConvCases(rnd));
        return out;
    }

    /**
     * d4j_group_norm_conv2d_forward: the convolution of the GroupNorm (+ SiLU, + the time-embedding bias) of x
     * applied as x is read, given float32 statistics (the same on both backends). Each input u is within
     * NormCases.GN_FWD_RTOL sy of its exact value (sy >= |u|, GroupNormBounds), so with M = T sy max|w| + max|b|
     * the output is within (rFwd + GN_FWD_RTOL) M.
     */
    static List<ParityCase> groupNormConvCases(SplittableRandom rnd) {
        // {n, h, w, c_in, c_out, groups, tb, silu}; geometries 3x3 same, stride-2 and up2x
        record Geo(String name, Conv2dSpec spec, int n, int h, int w, int cIn, int cOut, int groups, boolean tb,
                   boolean silu) {}
        List<Geo> geos = List.of(
                new Geo("3x3 group_norm+silu", Conv2dSpec.same3x3(), 2, 7, 5, 12, 5, 4, false, true),
                new Geo("3x3 bias_group_norm+silu", Conv2dSpec.same3x3(), 3, 5, 7, 10, 7, 5, true, true),
                new Geo("3x3 stride2 group_norm", Conv2dSpec.downsample3x3(1), 1, 9, 7, 6, 13, 3, false, false),
                new Geo("up2x 3x3 bias_group_norm", Conv2dSpec.upsample3x3(), 1, 5, 3, 9, 3, 3, true, false));
        List<ParityCase> out = new ArrayList<>();
        for (Geo g : geos) {
            Conv2dSpec spec = g.spec();
            int k = spec.kernelSize(), n = g.n(), cIn = g.cIn(), cOut = g.cOut(), groups = g.groups();
            int ho = (int) spec.outputHeight(g.h()), wo = (int) spec.outputWidth(g.w()), hw = g.h() * g.w();
            long[] xs = {n, g.h(), g.w(), cIn}, wsh = {k, k, cIn, cOut}, ys = {n, ho, wo, cOut};
            float eps = 1e-5f;
            float[] x = gaussians(rnd, n * hw * cIn, 1.5, 0.3), w = gaussians(rnd, k * k * cIn * cOut, 0.5, 0);
            float[] b = gaussians(rnd, cOut), gamma = gaussians(rnd, cIn, 0.5, 1.0), beta = gaussians(rnd, cIn, 0.5, 0);
            float[] tb = g.tb() ? gaussians(rnd, n * cIn) : null;
            GroupNormBounds bd = new GroupNormBounds(n, hw, cIn, groups, x, tb, gamma, beta, eps, g.silu(),
                    new float[n * hw * cIn]);
            int t = k * k * cIn;
            double rtol = 2 * (t + 2) * U + NormCases.GN_FWD_RTOL;
            double m = t * bd.sy * maxAbs(w) + maxAbs(b);
            List<Arg> args = new ArrayList<>(List.of(Arg.in(x, xs), Arg.in(gamma, cIn), Arg.in(beta, cIn),
                    Arg.in(bd.mean32, n, groups), Arg.in(bd.rstd32, n, groups), Arg.in(w, wsh), Arg.in(b, cOut),
                    Arg.out(ys)));
            if (tb != null) args.add(Arg.in(tb, n, cIn));
            boolean silu = g.silu(), withTb = tb != null;
            Shape sh = dims(dimsText(n, g.h(), g.w(), cIn) + "->" + cOut + " G=" + groups, n, g.h(), g.w(), cIn);
            out.add(tensorCase("forward " + g.name() + " input", sh, rtol, args,
                    a -> ConvKernels.forward(spec, new ConvKernels.GroupNormInput(withTb ? a[8] : null, a[1], a[2],
                            a[3], a[4], groups, silu), a[0], a[5], a[6], a[7]),
                    v -> List.of(Output.products("y", v[7], rtol, m))));
        }
        return out;
    }
}
