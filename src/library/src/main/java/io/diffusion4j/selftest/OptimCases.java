package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/** The optimiser families: grad_norm, adamw, ema. */
final class OptimCases {
    private OptimCases() {}

    // grad_norm, adamw, ema ------------------------------------------------------------------------

    /**
     * The gradient norm, accumulated in float64 in another order on the device: within 1e-12 of the
     * float64 reference on each backend (OptimParityTest), so 2e-12 between them (M = 0: a sum of squares).
     */
    static final double GRAD_NORM_RTOL = 2e-12;

    /** Gradients of mixed magnitudes (1e-4 .. 10) with some exact zeros, as in training. */
    static float[] mixedGradients(SplittableRandom r, int n) {
        float[] g = gaussians(r, n);
        for (int i = 0; i < n; i++) {
            g[i] *= (float) Math.pow(10, -4 + 5 * r.nextDouble());
            if (r.nextInt(50) == 0) g[i] = 0.0f;
        }
        return g;
    }

    static List<ParityCase> gradNormCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        List<Shape> shapes = new ArrayList<>(SHAPES);
        shapes.add(new Shape("1x70001", 1, 70001)); // 35 blocks of 256 threads x 8: the second-pass tree
        for (Shape sh : shapes) {
            int count = sh.batch() * sh.n();
            float[] g = mixedGradients(rnd, count);
            out.add(ParityCase.of("norm", sh, GRAD_NORM_RTOL, () -> new Prepared() {
                Tensor t;
                double norm;

                @Override
                void allocate() {
                    t = keep(Tensor.of(be, g, count));
                }

                @Override
                void poison() {
                    norm = Double.NaN;
                }

                @Override
                void call() {
                    norm = OptimKernels.gradNorm(t);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.close("norm", new double[] {norm}, GRAD_NORM_RTOL, 0.0));
                }
            }));
        }
        return out;
    }

    /**
     * Two AdamW steps (the second with a clipping gradScale) from identical parameter and moment
     * copies: both backends evaluate native/common/optim_math.h with correctly rounded float32
     * operations from the same coefficients, so param, m and v must be bit-exact.
     */
    static List<ParityCase> adamwCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            double lr = Math.pow(10, -4 + 2 * rnd.nextDouble());
            double b1 = 0.8 + 0.15 * rnd.nextDouble(), b2 = 0.99 + 0.0099 * rnd.nextDouble();
            double eps = Math.pow(10, -8 + 2 * rnd.nextDouble()), wd = rnd.nextInt(4) == 0 ? 0.0 : 0.1 * rnd.nextDouble();
            OptimKernels.AdamW hp = new OptimKernels.AdamW(lr, b1, b2, eps, wd);
            long step = rnd.nextBoolean() ? 1 : 1 + rnd.nextInt(1000);
            double clip = 0.3 + 0.6 * rnd.nextDouble();
            float[] p = gaussians(rnd, count, 0.5, 0), m = gaussians(rnd, count, 0.01, 0), v = new float[count];
            for (int i = 0; i < count; i++) v[i] = (float) (1e-3 * rnd.nextDouble());
            if (step == 1) { // a first step starts from zero moments
                Arrays.fill(m, 0f);
                Arrays.fill(v, 0f);
            }
            float[] g1 = mixedGradients(rnd, count), g2 = mixedGradients(rnd, count);
            String kernel = String.format(Locale.ROOT, "steps %d,%d lr=%.1e wd=%.2g scale 1,%.2f", step, step + 1, lr, wd, clip);
            out.add(tensorCase(kernel, sh, 0,
                    List.of(Arg.reset(p, count), Arg.in(g1, count), Arg.in(g2, count), Arg.reset(m, count),
                            Arg.reset(v, count)),
                    t -> {
                        OptimKernels.adamw(t[0], t[1], t[3], t[4], hp, step, 1.0);
                        OptimKernels.adamw(t[0], t[2], t[3], t[4], hp, step + 1, clip);
                    },
                    o -> List.of(Output.bits("param", o[0]), Output.bits("m", o[3]), Output.bits("v", o[4]))));
        }
        return out;
    }

    /** Two EMA updates from identical copies; bit-exact for the reason AdamW is. */
    static List<ParityCase> emaCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            float[] ema = gaussians(rnd, count), p1 = gaussians(rnd, count), p2 = gaussians(rnd, count);
            double d1 = 0.999, d2 = rnd.nextDouble();
            String kernel = String.format(Locale.ROOT, "decay %.3f,%.3f", d1, d2);
            out.add(tensorCase(kernel, sh, 0, List.of(Arg.reset(ema, count), Arg.in(p1, count), Arg.in(p2, count)),
                    t -> {
                        OptimKernels.ema(t[0], t[1], d1);
                        OptimKernels.ema(t[0], t[2], d2);
                    },
                    o -> List.of(Output.bits("ema", o[0]))));
        }
        return out;
    }
}
