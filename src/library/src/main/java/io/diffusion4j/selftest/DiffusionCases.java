package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.LOSS_CHUNKED;
import static io.diffusion4j.selftest.SelfTest.SHAPES;
import static io.diffusion4j.selftest.SelfTest.U;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The diffusion families: add_noise, diffusion_loss (every prediction type, min-SNR weighted and not,
 * one sample length spanning several reduction chunks) and reverse_step (DDPM and DDIM). Tolerances
 * and magnitudes as {@link SelfTest} states them.
 */
final class DiffusionCases {
    private DiffusionCases() {}

    static final double ADD_NOISE_RTOL = 8 * U;
    static final double LOSS_RTOL = 64 * U;
    static final double GRAD_RTOL = 10 * U;
    static final double STEP_RTOL = 20 * U;

    static List<ParityCase> addNoiseCases(SplittableRandom rnd, CaseContext ctx) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            float[] x0 = gaussians(rnd, batch * n);
            int[] t = timesteps(rnd, batch, ctx.steps());
            long seed = rnd.nextLong(), offset = rnd.nextLong();
            double maxX0 = maxAbs(x0);
            out.add(ParityCase.of("add_noise", sh, ADD_NOISE_RTOL, () -> new Prepared() {
                Tensor x, xt, eps;

                @Override
                void allocate() {
                    x = keep(Tensor.of(be, x0, batch, n));
                    xt = keep(Tensor.allocate(be, DType.FLOAT32, batch, n));
                    eps = keep(Tensor.allocate(be, DType.FLOAT32, batch, n));
                }

                @Override
                void poison() {
                    xt.fill(Float.NaN);
                    eps.fill(Float.NaN);
                }

                @Override
                void call() {
                    DiffusionKernels.addNoise(ctx.handle(), x, t, seed, offset, xt, eps);
                }

                @Override
                List<Output> read() {
                    float[] e = eps.toFloatArray();
                    return List.of(Output.bits("eps", e),
                            Output.close("x_t", xt.toFloatArray(), ADD_NOISE_RTOL, maxX0 + maxAbs(e)));
                }
            }));
        }
        return out;
    }
    static List<ParityCase> lossCases(SplittableRandom rnd, CaseContext ctx) {
        List<ParityCase> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        List<Shape> shapes = new ArrayList<>(SHAPES);
        shapes.add(LOSS_CHUNKED);
        for (int s = 0; s < shapes.size(); s++) {
            Shape sh = shapes.get(s);
            int batch = sh.batch(), n = sh.n();
            PredictionType p = preds[(s + rnd.nextInt(preds.length)) % preds.length];
            boolean weighted = s % 2 == 1;
            float[] w = null;
            if (weighted) {
                double[] w64 = ctx.schedule().minSnrWeights(5.0, p);
                w = new float[w64.length];
                for (int i = 0; i < w.length; i++) w[i] = (float) w64[i];
            }
            final float[] weights = w;
            float[] o = gaussians(rnd, batch * n), x0 = gaussians(rnd, batch * n), e = gaussians(rnd, batch * n);
            int[] t = timesteps(rnd, batch, ctx.steps());
            double gMax = 0;
            for (int b = 0; b < batch; b++) {
                double wb = weights == null ? 1.0 : weights[t[b]];
                gMax = Math.max(gMax, 2.0 * wb / ((double) batch * n));
            }
            double gradMagnitude = gMax * (maxAbs(o) + maxAbs(x0) + maxAbs(e));
            String kernel = p.name().toLowerCase(Locale.ROOT) + (weighted ? " min-snr" : "");
            out.add(ParityCase.of(kernel, sh, Math.max(LOSS_RTOL, GRAD_RTOL), () -> new Prepared() {
                Tensor mo, xx, ee, loss, grad;

                @Override
                void allocate() {
                    mo = keep(Tensor.of(be, o, batch, n));
                    xx = keep(Tensor.of(be, x0, batch, n));
                    ee = keep(Tensor.of(be, e, batch, n));
                    loss = keep(Tensor.allocate(be, DType.FLOAT32, batch));
                    grad = keep(Tensor.allocate(be, DType.FLOAT32, batch, n));
                }

                @Override
                void poison() {
                    loss.fill(Float.NaN);
                    grad.fill(Float.NaN);
                }

                @Override
                void call() {
                    DiffusionKernels.diffusionLoss(ctx.handle(), p, mo, xx, ee, t, weights, loss, grad);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.close("loss", loss.toFloatArray(), LOSS_RTOL, 0.0),
                            Output.close("grad", grad.toFloatArray(), GRAD_RTOL, gradMagnitude));
                }
            }));
        }
        return out;
    }
    static List<ParityCase> stepCases(SplittableRandom rnd, CaseContext ctx) {
        List<ParityCase> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        double[] ac = ctx.schedule().alphasCumprod();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            for (boolean ddim : new boolean[] {false, true}) {
                float[] x = gaussians(rnd, batch * n), o = gaussians(rnd, batch * n);
                int[] t = timesteps(rnd, batch, ctx.steps());
                int[] prev = new int[batch];
                for (int b = 0; b < batch; b++) prev[b] = Math.max(-1, t[b] - 1 - rnd.nextInt(20));
                long[] seeds = new long[batch], offsets = new long[batch];
                for (int b = 0; b < batch; b++) {
                    seeds[b] = rnd.nextLong();
                    offsets[b] = rnd.nextLong();
                }
                var noise = new DiffusionKernels.SampleNoise(seeds, offsets);
                PredictionType p = preds[rnd.nextInt(preds.length)];
                boolean clip = rnd.nextBoolean();
                VarianceType v = VarianceType.values()[rnd.nextInt(VarianceType.values().length)];
                float eta = rnd.nextBoolean() ? 1f : 0.5f;
                double finalAlpha = rnd.nextBoolean() ? 1.0 : ac[0];
                String kernel = ddim
                        ? String.format(Locale.ROOT, "ddim %s eta=%s%s", name(p), eta, clip ? " clip" : "")
                        : String.format(Locale.ROOT, "ddpm %s %s%s", name(p), name(v), clip ? " clip" : "");
                double inMagnitude = maxAbs(x) + maxAbs(o);
                out.add(ParityCase.of(kernel, sh, STEP_RTOL, () -> new Prepared() {
                    Tensor xt, mo, xp;

                    @Override
                    void allocate() {
                        xt = keep(Tensor.of(be, x, batch, n));
                        mo = keep(Tensor.of(be, o, batch, n));
                        xp = keep(Tensor.allocate(be, DType.FLOAT32, batch, n));
                    }

                    @Override
                    void poison() {
                        xp.fill(Float.NaN);
                    }

                    @Override
                    void call() {
                        if (ddim) {
                            DiffusionKernels.ddimStep(ctx.handle(), p, eta, clip, 1f, clip, finalAlpha, xt, mo, t, prev,
                                    noise, xp);
                        } else {
                            DiffusionKernels.ddpmStep(ctx.handle(), p, v, clip, 1f, xt, mo, t, prev, noise, xp);
                        }
                    }

                    @Override
                    List<Output> read() {
                        float[] r = xp.toFloatArray();
                        return List.of(Output.close("x_prev", r, STEP_RTOL, inMagnitude + maxAbs(r)));
                    }
                }));
            }
        }
        return out;
    }
}
