package io.diffusion4j.bench;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.SamplerKernels;
import io.diffusion4j.kernels.VlbKernels;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * The sampling and evaluation kernels on image batches "BxCxHxW" (Fashion-MNIST sampling batch 16,
 * CIFAR-10 batch 128): dynamic thresholding's per-sample quantile (x0_threshold, ratio 0.995), the thresholded
 * DDPM and DDIM posterior updates and the second-order DPM-Solver++ update (sampler_step), and the variational
 * bound's per-sample terms and prior (vlb, as eval-nll runs them).
 *
 * <p>Bytes per call, n = B*C*H*W, 4 bytes per float: x0Threshold 8n (x_t, model output in; the selection's
 * extra passes not counted), ddpmStepThresholded and ddimStepThresholded 12n (x_t, model output in, x_prev
 * out), dpmSolverStep 20n (x_t, model output, previous x0 in; x0 and x_prev out), vlbTerms 12n (x0, x_t,
 * model output in), vlbPrior 4n (x0 in).
 */
public class SamplerBenchmark extends BenchSupport {
    @Param({"16x1x28x28", "128x3x32x32"})
    public String shape;

    NativeSchedule schedule;
    Tensor x0, xt, out, xprev, prevX0, x0Out, threshold;
    int[] t, prev, last;
    DiffusionKernels.SampleNoise noise;

    static Work work(String method, String shape) {
        double n = Shapes.elements(dims(shape));
        return switch (method) {
            case "x0Threshold" -> Work.memory(8 * n);
            case "ddpmStepThresholded", "ddimStepThresholded", "vlbTerms" -> Work.memory(12 * n);
            case "dpmSolverStep" -> Work.memory(20 * n);
            case "vlbPrior" -> Work.memory(4 * n);
            default -> null;
        };
    }

    @Override
    void allocate() {
        schedule = defaultSchedule();
        long[] s = dims(shape);
        int batch = (int) s[0];
        int n = (int) Shapes.elements(s);
        SplittableRandom r = new SplittableRandom(42);
        float[] pixels = new float[n];
        for (int i = 0; i < n; i++) pixels[i] = r.nextInt(256) / 127.5f - 1f; // 8-bit data, as the vlb decoder expects
        x0 = of(pixels, s);
        xt = normal(s);
        out = normal(s);
        xprev = normal(s);
        prevX0 = normal(s);
        x0Out = normal(s);
        threshold = filled(1.5f, batch);
        t = new int[batch];
        prev = new int[batch];
        last = new int[batch];
        for (int b = 0; b < batch; b++) {
            t[b] = 1 + r.nextInt(998);
            prev[b] = t[b] - 1;
            last[b] = t[b] + 1;
        }
        noise = noisePerSample(batch);
    }

    @Benchmark
    @Kernel(family = "x0_threshold", entryPoints = "d4j_x0_threshold")
    public void x0Threshold() {
        SamplerKernels.x0Threshold(schedule, PredictionType.EPSILON, xt, out, t, 0.995, 1.5f, threshold);
        sync();
    }

    @Benchmark
    @Kernel(family = "sampler_step", entryPoints = "d4j_ddpm_step_thresholded")
    public void ddpmStepThresholded() {
        SamplerKernels.ddpmStepThresholded(schedule, PredictionType.EPSILON, VarianceType.FIXED_SMALL, threshold, xt,
                out, t, prev, noise, xprev);
        sync();
    }

    @Benchmark
    @Kernel(family = "sampler_step", entryPoints = "d4j_ddim_step_thresholded")
    public void ddimStepThresholded() {
        SamplerKernels.ddimStepThresholded(schedule, PredictionType.EPSILON, 0f, false, 1.0, threshold, xt, out, t,
                prev, noise, xprev);
        sync();
    }

    /** Second order: every sample's previous x0 prediction was made at t + 1. */
    @Benchmark
    @Kernel(family = "sampler_step", entryPoints = "d4j_dpmsolver_step")
    public void dpmSolverStep() {
        SamplerKernels.dpmSolverStep(schedule, PredictionType.EPSILON, null, xt, out, prevX0, t, prev, last, x0Out,
                xprev);
        sync();
    }

    @Benchmark
    @Kernel(family = "vlb", entryPoints = "d4j_vlb_terms")
    public double[] vlbTerms() {
        return VlbKernels.terms(schedule, PredictionType.EPSILON, VarianceType.FIXED_LARGE, true, 1f, x0, xt, out, t);
    }

    @Benchmark
    @Kernel(family = "vlb", entryPoints = "d4j_vlb_prior")
    public double[] vlbPrior() {
        return VlbKernels.prior(schedule, x0);
    }
}
