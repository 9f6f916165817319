package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;
import static io.diffusion4j.selftest.DiffusionCases.STEP_RTOL;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.SamplerKernels;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/** The sampler families: sampler_step and x0_threshold. */
final class SamplerCases {
    private SamplerCases() {}

    /** DPM-Solver++ 2M (second order, x0 written in place of m1) and thresholded DDPM / DDIM steps. */
    static List<ParityCase> samplerStepCases(SplittableRandom rnd, CaseContext ctx) {
        List<ParityCase> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            float[] x = gaussians(rnd, batch * n), o = gaussians(rnd, batch * n), m1 = gaussians(rnd, batch * n);
            float[] thr = new float[batch];
            for (int b = 0; b < batch; b++) thr[b] = (float) (1.0 + 2.0 * rnd.nextDouble());
            int[] t = new int[batch], prev = new int[batch], last = new int[batch], prev1 = new int[batch];
            for (int b = 0; b < batch; b++) {
                t[b] = 1 + rnd.nextInt(ctx.steps() - 2);
                prev[b] = rnd.nextInt(t[b]);
                last[b] = t[b] + 1 + rnd.nextInt(ctx.steps() - 1 - t[b]);
                prev1[b] = t[b] - 1;
            }
            PredictionType p = preds[rnd.nextInt(preds.length)];
            double mag = 4 * (maxAbs(x) + maxAbs(o) + maxAbs(m1));
            out.add(tensorCase("dpmsolver++ 2M " + name(p) + " threshold", sh, STEP_RTOL,
                    List.of(Arg.in(thr, batch), Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.reset(m1, batch, n),
                            Arg.out(batch, n)),
                    tt -> SamplerKernels.dpmSolverStep(ctx.handle(), p, tt[0], tt[1], tt[2], tt[3], t, prev, last, tt[3],
                            tt[4]),
                    v -> List.of(Output.close("x0", v[3], STEP_RTOL, mag), Output.close("x_prev", v[4], STEP_RTOL, mag))));
            long[] seeds = new long[batch], offsets = new long[batch];
            for (int b = 0; b < batch; b++) {
                seeds[b] = rnd.nextLong();
                offsets[b] = rnd.nextLong();
            }
            var noise = new DiffusionKernels.SampleNoise(seeds, offsets);
            out.add(tensorCase("ddpm " + name(p) + " threshold", sh, STEP_RTOL,
                    List.of(Arg.in(thr, batch), Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.out(batch, n)),
                    tt -> SamplerKernels.ddpmStepThresholded(ctx.handle(), p, VarianceType.FIXED_SMALL, tt[0], tt[1],
                            tt[2], t, prev1, noise, tt[3]),
                    v -> List.of(Output.close("x_prev", v[3], STEP_RTOL, mag))));
            out.add(tensorCase("ddim " + name(p) + " eta=1 threshold", sh, STEP_RTOL,
                    List.of(Arg.in(thr, batch), Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.out(batch, n)),
                    tt -> SamplerKernels.ddimStepThresholded(ctx.handle(), p, 1f, true, 1.0, tt[0], tt[1], tt[2], t,
                            prev, noise, tt[3]),
                    v -> List.of(Output.close("x_prev", v[3], STEP_RTOL, mag))));
        }
        return out;
    }

    /** The per-sample quantile threshold: exact order statistics, so bit-identical. */
    static List<ParityCase> thresholdCases(SplittableRandom rnd, CaseContext ctx) {
        List<ParityCase> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            // |x0| mostly above 1 and a ratio of at least 0.5: the quantile itself, not the clamp to 1,
            // decides the threshold, so its bits (and any rounding a GPU would do differently) are compared
            float[] x = gaussians(rnd, batch * n, 4.0, 0), o = gaussians(rnd, batch * n);
            int[] t = timesteps(rnd, batch, ctx.steps());
            PredictionType p = preds[rnd.nextInt(preds.length)];
            double ratio = rnd.nextBoolean() ? 0.995 : 0.5 + 0.5 * rnd.nextDouble();
            out.add(tensorCase("quantile " + name(p) + " ratio=" + String.format(Locale.ROOT, "%.3f", ratio), sh, 0,
                    List.of(Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.out(batch)),
                    tt -> SamplerKernels.x0Threshold(ctx.handle(), p, tt[0], tt[1], t, ratio, 1e30f, tt[2]),
                    v -> List.of(Output.bits("threshold", v[2]))));
        }
        return out;
    }
}
