package io.diffusion4j.profile;

import static io.diffusion4j.profile.Cifar10Cases.TRAIN_BATCH;

import io.diffusion4j.kernels.ConcatKernels;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.LinearKernels.AttentionShape;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.profile.Cifar10Cases.Case;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.StringJoiner;

/**
 * The UNet layer families at google/ddpm-cifar10-32's dimensions, batch {@value Cifar10Cases#TRAIN_BATCH}:
 * conv2d, group_norm, silu, residual_add, linear, attention, concat and dropout, forward and backward.
 */
final class Cifar10LayerCases {
    private Cifar10LayerCases() {}

    static final int N = TRAIN_BATCH, HW = 32, C = 128, GROUPS = 32;
    static final float NORM_EPS = 1e-6f;

    static List<Case> cases() {
        List<Case> out = new ArrayList<>();
        conv(out);
        norm(out);
        linearAttention(out);
        concatDropout(out);
        return out;
    }

    /** 3x3 same and 1x1 shortcut at 32x32, the stride-2 downsample from 32x32, the 2x upsample from 8x8. */
    private static void conv(List<Case> out) {
        record Geo(String name, Conv2dSpec spec, int h, int cIn, int cOut) {}
        List<Geo> geos = List.of(new Geo("3x3", Conv2dSpec.same3x3(), HW, C, C),
                new Geo("1x1 shortcut", Conv2dSpec.pointwise(), HW, 3 * C, C),
                new Geo("3x3 stride2 pad(0,0,1,1)", Conv2dSpec.downsample3x3(0), HW, C, C),
                new Geo("up2x 3x3", Conv2dSpec.upsample3x3(), 8, 2 * C, 2 * C));
        for (Geo g : geos) {
            Conv2dSpec spec = g.spec();
            int k = spec.kernelSize();
            long ho = spec.outputHeight(g.h()), wo = spec.outputWidth(g.h());
            long[] xs = {N, g.h(), g.h(), g.cIn()}, ws = {k, k, g.cIn(), g.cOut()}, ys = {N, ho, wo, g.cOut()};
            String shape = dims(xs) + "->" + dims(ys);
            out.add(new Case("conv2d", "forward " + g.name(), shape, in -> {
                Tensor x = in.floats(xs), w = in.floats(ws), b = in.floats(g.cOut()), y = in.floats(ys);
                return () -> ConvKernels.forward(spec, x, w, b, y);
            }));
            out.add(new Case("conv2d", "backward " + g.name(), shape, in -> {
                Tensor x = in.floats(xs), w = in.floats(ws), dy = in.floats(ys), dx = in.floats(xs);
                Tensor dw = in.floats(ws), db = in.floats(g.cOut());
                return () -> ConvKernels.backward(spec, x, w, dy, dx, dw, db);
            }));
        }
        // conv2 of a ResnetBlock2D in inference: norm2 (+ the time-embedding bias) + SiLU applied as x is read
        long[] xs = {N, HW, HW, C}, ws = {3, 3, C, C}, gs = {N, GROUPS};
        out.add(new Case("conv2d", "forward 3x3 of bias_group_norm+silu", dims(xs) + "->" + dims(xs) + " G=" + GROUPS,
                in -> {
                    Tensor x = in.floats(xs), w = in.floats(ws), b = in.floats(C), y = in.floats(xs);
                    Tensor tb = in.floats(N, C), gamma = in.floats(C), beta = in.floats(C);
                    Tensor mean = in.floats(gs), rstd = in.constant(1f, gs);
                    ConvKernels.GroupNormInput norm = new ConvKernels.GroupNormInput(tb, gamma, beta, mean, rstd,
                            GROUPS, true);
                    return () -> ConvKernels.forward(Conv2dSpec.same3x3(), norm, x, w, b, y);
                }));
    }

    /**
     * GroupNorm + SiLU as norm1 runs it and with the time-embedding bias fused as norm2 runs it, forward and
     * backward; SiLU and the residual add on the same activation.
     */
    private static void norm(List<Case> out) {
        long[] xs = {N, HW, HW, C}, gs = {N, GROUPS};
        String shape = dims(xs) + " G=" + GROUPS;
        for (boolean bias : new boolean[] {false, true}) {
            String what = bias ? "bias_group_norm+silu" : "group_norm+silu";
            out.add(new Case("group_norm", what + " forward", shape, in -> {
                Tensor x = in.floats(xs), tb = bias ? in.floats(N, C) : null, gamma = in.floats(C), beta = in.floats(C);
                Tensor y = in.floats(xs), mean = in.floats(gs), rstd = in.floats(gs);
                return bias ? () -> NormKernels.biasGroupNorm(x, tb, gamma, beta, GROUPS, NORM_EPS, true, y, mean, rstd)
                        : () -> NormKernels.groupNorm(x, gamma, beta, GROUPS, NORM_EPS, true, y, mean, rstd);
            }));
            out.add(new Case("group_norm", what + " backward", shape, in -> {
                Tensor dy = in.floats(xs), x = in.floats(xs), tb = bias ? in.floats(N, C) : null;
                Tensor gamma = in.floats(C), beta = in.floats(C), mean = in.floats(gs), rstd = in.constant(1f, gs);
                Tensor dx = in.floats(xs), dtb = bias ? in.floats(N, C) : null, dgamma = in.floats(C), dbeta = in.floats(C);
                return bias ? () -> NormKernels.biasGroupNormBackward(dy, x, tb, gamma, beta, mean, rstd, GROUPS, true, dx,
                        dtb, dgamma, dbeta)
                        : () -> NormKernels.groupNormBackward(dy, x, gamma, beta, mean, rstd, GROUPS, true, dx, dgamma,
                        dbeta);
            }));
        }
        String act = dims(xs);
        out.add(new Case("silu", "forward", act, in -> {
            Tensor x = in.floats(xs), y = in.floats(xs);
            return () -> NormKernels.silu(x, y);
        }));
        out.add(new Case("silu", "backward", act, in -> {
            Tensor dy = in.floats(xs), x = in.floats(xs), dx = in.floats(xs);
            return () -> NormKernels.siluBackward(dy, x, dx);
        }));
        // output_scale_factor 1, as the model's config has it
        out.add(new Case("residual_add", "forward inv_scale=1", act, in -> {
            Tensor a = in.floats(xs), b = in.floats(xs), y = in.floats(xs);
            return () -> NormKernels.residualAdd(a, b, 1f, y);
        }));
        out.add(new Case("residual_add", "backward inv_scale=1", act, in -> {
            Tensor g = in.floats(xs), da = in.floats(xs), db = in.floats(xs);
            return () -> NormKernels.residualAddBackward(g, 1f, da, db);
        }));
    }

    /**
     * The attention block's q/k/v/out projections (every 16x16 token, 256 channels), the time embedding's
     * 512 -> 512 layer, and the one-head attention itself.
     */
    private static void linearAttention(List<Case> out) {
        int[][] shapes = {{N * 16 * 16, 2 * C, 2 * C}, {N, 4 * C, 4 * C}};
        String[] names = {"attention projection", "time embedding"};
        for (int s = 0; s < shapes.length; s++) {
            int rows = shapes[s][0], inF = shapes[s][1], outF = shapes[s][2];
            String shape = "rows=" + rows + " in=" + inF + " out=" + outF;
            out.add(new Case("linear", "forward " + names[s], shape, in -> {
                Tensor x = in.floats(rows, inF), w = in.floats(outF, inF), b = in.floats(outF), y = in.floats(rows, outF);
                return () -> LinearKernels.linear(x, w, b, y);
            }));
            out.add(new Case("linear", "backward " + names[s], shape, in -> {
                Tensor x = in.floats(rows, inF), w = in.floats(outF, inF), dy = in.floats(rows, outF);
                Tensor dx = in.floats(rows, inF), dw = in.floats(outF, inF), db = in.floats(outF);
                return () -> LinearKernels.linearBackward(x, w, dy, dx, dw, db);
            }));
        }
        AttentionShape as = new AttentionShape(N, 16 * 16, 1, 2 * C);
        long[] ts = {as.batch(), as.tokens(), as.heads(), as.headDim()}, ls = {as.batch(), as.heads(), as.tokens()};
        float scale = as.defaultScale();
        String shape = "B=" + as.batch() + " L=" + as.tokens() + " H=" + as.heads() + " D=" + as.headDim();
        out.add(new Case("attention", "forward", shape, in -> {
            Tensor q = in.floats(ts), k = in.floats(ts), v = in.floats(ts), o = in.floats(ts), lse = in.floats(ls);
            return () -> LinearKernels.attention(as, scale, q, k, v, o, lse);
        }));
        out.add(new Case("attention", "backward", shape, in -> {
            Tensor q = in.floats(ts), k = in.floats(ts), v = in.floats(ts), o = in.floats(ts), lse = in.floats(ls);
            Tensor g = in.floats(ts), dq = in.floats(ts), dk = in.floats(ts), dv = in.floats(ts);
            return () -> LinearKernels.attentionBackward(as, scale, q, k, v, o, lse, g, dq, dk, dv);
        }));
    }

    /** The up path's widest skip concatenation at 32x32 (256 + 128 channels) and dropout at p = 0.1. */
    private static void concatDropout(List<Case> out) {
        int c1 = 2 * C, c2 = C;
        long[] as = {N, HW, HW, c1}, bs = {N, HW, HW, c2}, os = {N, HW, HW, c1 + c2};
        String shape = dims(N, HW, HW) + "x(" + c1 + "+" + c2 + ")";
        out.add(new Case("concat", "concat", shape, in -> {
            Tensor a = in.floats(as), b = in.floats(bs), o = in.floats(os);
            return () -> ConcatKernels.concatChannels(a, b, o);
        }));
        out.add(new Case("concat", "split (backward)", shape, in -> {
            Tensor g = in.floats(os), da = in.floats(as), db = in.floats(bs);
            return () -> ConcatKernels.concatChannelsBackward(g, da, db, c1, c2);
        }));
        long[] xs = {N, HW, HW, C};
        double p = 0.1;
        long seed = 0x5EEDL, offset = 0;
        out.add(new Case("dropout", "forward p=0.1", dims(xs), in -> {
            Tensor x = in.floats(xs), y = in.floats(xs);
            return () -> DropoutKernels.forward(x, p, seed, offset, y);
        }));
        out.add(new Case("dropout", "backward p=0.1", dims(xs), in -> {
            Tensor dy = in.floats(xs), dx = in.floats(xs);
            return () -> DropoutKernels.backward(dy, p, seed, offset, dx);
        }));
    }

    /** "128x32x32x3". */
    static String dims(long... d) {
        StringJoiner j = new StringJoiner("x");
        for (long v : d) j.add(Long.toString(v));
        return j.toString();
    }
}
