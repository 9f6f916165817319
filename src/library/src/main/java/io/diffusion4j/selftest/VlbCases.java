package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;

import io.diffusion4j.kernels.VlbKernels;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;

/** The vlb family. */
final class VlbCases {
    private VlbCases() {}

    static final double VLB_RTOL = 1e-12;

    /**
     * The bound's per-sample terms (KL at t &gt; 0, decoder at t = 0, both variances, clipped and not) on 8-bit
     * data with model outputs whose x0 prediction is near the data, and the prior.
     */
    static List<ParityCase> vlbCases(SplittableRandom rnd, CaseContext ctx) {
        List<ParityCase> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        double[] ab = ctx.schedule().alphasCumprod();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            int[] t = timesteps(rnd, batch, ctx.steps());
            if (batch >= 3) t[1] = 0; // a decoder term next to KL terms
            PredictionType p = preds[rnd.nextInt(preds.length)];
            VarianceType v = rnd.nextBoolean() ? VarianceType.FIXED_SMALL : VarianceType.FIXED_LARGE;
            boolean clip = rnd.nextBoolean();
            float[] x0 = new float[batch * n], xt = gaussians(rnd, batch * n), o = new float[batch * n];
            for (int i = 0; i < x0.length; i++) {
                x0[i] = rnd.nextInt(256) / 127.5f - 1f;
                double a = ab[t[i / n]];
                xt[i] = (float) (Math.sqrt(a) * x0[i] + Math.sqrt(1 - a) * xt[i]);
                double target = x0[i] + 0.005 * gaussians(rnd, 1)[0];
                o[i] = (float) switch (p) {
                    case EPSILON -> (xt[i] - Math.sqrt(a) * target) / Math.sqrt(1 - a);
                    case SAMPLE -> target;
                    case V_PREDICTION -> (Math.sqrt(a) * xt[i] - target) / Math.sqrt(1 - a);
                };
            }
            String kernel = "terms " + name(p) + " " + v.configName() + (clip ? " clip" : "");
            out.add(vlbCase(kernel, sh, n, tt -> VlbKernels.terms(ctx.handle(), p, v, clip, 1f,
                    tt[0], tt[1], tt[2], t), x0, xt, o));
            out.add(vlbCase("prior", sh, n, tt -> VlbKernels.prior(ctx.handle(), tt[0]), x0, xt, o));
        }
        return out;
    }

    private static ParityCase vlbCase(String kernel, Shape sh, int n, Function<Tensor[], double[]> call, float[] x0, float[] xt, float[] o) {
        return ParityCase.of(kernel, sh, VLB_RTOL, () -> new Prepared() {
            Tensor[] t;
            double[] result;

            @Override
            void allocate() {
                t = new Tensor[] {keep(Tensor.of(be, x0, sh.batch(), n)), keep(Tensor.of(be, xt, sh.batch(), n)),
                        keep(Tensor.of(be, o, sh.batch(), n))};
            }

            @Override
            void poison() {
                result = null;
            }

            @Override
            void call() {
                result = call.apply(t);
            }

            @Override
            List<Output> read() {
                double[] r = result;
                if (r == null) {
                    r = new double[sh.batch()];
                    Arrays.fill(r, Double.NaN);
                }
                return List.of(Output.close("terms", r, VLB_RTOL, n));
            }
        });
    }
}
