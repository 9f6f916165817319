package io.diffusion4j.sample;

import static io.diffusion4j.testutil.Tolerance.maxAbs;
import static io.diffusion4j.testutil.Tolerance.toDouble;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.SamplerKernels;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The sampler kernels and a whole sampling loop on a device backend (CUDA, CUDA_SIM; skipped with the
 * backend's reason when unavailable) against the CPU backend. The threshold is exact order statistics
 * (bit-identical); the fused step evaluates the same float32 expressions from the same coefficients
 * (bit-identical but for FMA contraction on the GPU: checked within 8 u of the terms); the loop on the tiny
 * 8x8 model (3 steps, batch 2, few hundred simulated blocks) within 1e-4 of max|cpu| (the UNet sums in a
 * different order per backend, see UNet2DModelParityTest).
 */
class SamplerParityTest {
    static Backend cpu;
    static NoiseSchedule schedule;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        schedule = NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    record KernelOut(float[] threshold, float[] x0, float[] xPrev) {}

    static KernelOut kernels(Backend be, PredictionType p, float[] x, float[] o, float[] m1, int[] t, int[] prev,
                             int[] last, int batch, int n) {
        try (NativeSchedule ns = NativeSchedule.of(schedule); Tensor xt = Tensor.of(be, x, batch, n);
             Tensor mo = Tensor.of(be, o, batch, n); Tensor pm = Tensor.of(be, m1, batch, n);
             Tensor s = Tensor.allocate(be, DType.FLOAT32, batch); Tensor out = Tensor.allocate(be, DType.FLOAT32, batch, n)) {
            s.fill(Float.NaN);
            out.fill(Float.NaN);
            SamplerKernels.x0Threshold(ns, p, xt, mo, t, 0.995, 1e30f, s);
            SamplerKernels.dpmSolverStep(ns, p, s, xt, mo, pm, t, prev, last, pm, out);
            return new KernelOut(s.toFloatArray(), pm.toFloatArray(), out.toFloatArray());
        }
    }

    @OnDevices
    void kernelsMatchCpu(Backend dev, Device kind) {
        TestRandom r = TestRandom.fresh();
        for (int[] shape : new int[][] {{3, 13 * 7}, {2, 28 * 28 + 3}, {1, 1}}) {
            int batch = shape[0], n = shape[1];
            float[] x = r.gaussians(batch * n, 1.5), o = r.gaussians(batch * n, 1.0), m1 = r.gaussians(batch * n, 1.0);
            int[] t = new int[batch], prev = new int[batch], last = new int[batch];
            for (int b = 0; b < batch; b++) {
                t[b] = r.nextInt(1, 998);
                prev[b] = r.nextInt(0, t[b]);
                last[b] = r.nextInt(t[b] + 1, 1000);
            }
            for (PredictionType p : PredictionType.values()) {
                KernelOut c = kernels(cpu, p, x, o, m1, t, prev, last, batch, n);
                KernelOut d = kernels(dev, p, x, o, m1, t, prev, last, batch, n);
                String ctx = kind + " " + p + " " + batch + "x" + n + " " + r.describe();
                Tolerance.assertBitIdentical("threshold", c.threshold(), d.threshold(), ctx);
                Tolerance.assertClose("x0", d.x0(), toDouble(c.x0()), 1e-6 * maxAbs(c.x0()), 8 * Tolerance.U, ctx);
                Tolerance.assertClose("x_prev", d.xPrev(), toDouble(c.xPrev()), 1e-6 * maxAbs(c.xPrev()),
                        8 * Tolerance.U, ctx);
            }
        }
    }

    @OnDevices
    void samplingLoopMatchesCpu(Backend dev, Device kind) {
        long seed = TestRandom.fresh().nextLong();
        float[] params;
        try (UNet2DModel m = new UNet2DModel(cpu, SamplerTest.tinyConfig(), seed)) {
            params = m.flatParameters();
        }
        for (SamplerScheduler s : List.of(DdimScheduler.defaults(PredictionType.EPSILON, 1f),
                new DpmSolverScheduler(PredictionType.EPSILON, Thresholding.defaults(), TimestepSpacing.LINSPACE, 0,
                        true, false, DpmSolverScheduler.FinalSigmas.ZERO))) {
            float[] c = run(cpu, params, s, seed), d = run(dev, params, s, seed);
            Tolerance.log(Tolerance.assertClose(kind + " " + s.name() + " loop", d, toDouble(c), 1e-4 * maxAbs(c),
                    1e-4, "seed " + seed));
        }
    }

    /**
     * Several threads sampling at once from one model on one device backend: each equals its single-threaded
     * run bit for bit (cuda-sim is deterministic). Every step uploads per-sample coefficients into the
     * backend's per-call scratch (step kernels, timestep embedding, group norm partials), so threads sharing
     * one scratch would read each other's coefficients. Small: 4x4 images, batch 1, 2 steps, 3 threads.
     */
    @OnDevices
    void concurrentSamplersEqualTheirSingleThreadedRuns(Backend dev, Device kind) throws Exception {
        long seed = TestRandom.fresh().nextLong();
        List<SamplerScheduler> all = List.of(DdpmScheduler.defaults(PredictionType.EPSILON),
                new DpmSolverScheduler(PredictionType.V_PREDICTION, Thresholding.defaults(), TimestepSpacing.LINSPACE, 0,
                        true, false, DpmSolverScheduler.FinalSigmas.ZERO),
                new DdimScheduler(PredictionType.SAMPLE, 0.5f, false, 1.0, new Thresholding(0.9, 2f),
                        TimestepSpacing.TRAILING, 0, true, false));
        try (UNet2DModel m = new UNet2DModel(dev, SamplerTest.tinyConfig(), seed)) {
            float[][] single = new float[all.size()][];
            for (int k = 0; k < all.size(); k++) single[k] = sampleSmall(m, all.get(k), seed + k);
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(all.size());
            try {
                for (int round = 0; round < 2; round++) {
                    java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(all.size());
                    List<java.util.concurrent.Future<float[]>> fs = new java.util.ArrayList<>();
                    for (int k = 0; k < all.size(); k++) {
                        int kk = k;
                        fs.add(pool.submit(() -> {
                            start.await();
                            return sampleSmall(m, all.get(kk), seed + kk);
                        }));
                    }
                    for (int k = 0; k < all.size(); k++) {
                        Tolerance.assertBitIdentical(kind + " concurrent " + all.get(k).name(), single[k], fs.get(k).get(),
                                "round " + round + ", seed " + seed);
                    }
                }
            } finally {
                pool.shutdownNow();
            }
        }
    }

    static float[] sampleSmall(UNet2DModel m, SamplerScheduler s, long seed) {
        try (Sampler sm = new Sampler(m, schedule, s, 2, 1, 4, 4)) {
            return sm.run(seed, 0, 1, null, null);
        }
    }

    static float[] run(Backend be, float[] params, SamplerScheduler s, long seed) {
        try (UNet2DModel m = new UNet2DModel(be, SamplerTest.tinyConfig(), 0)) {
            m.loadFlat(params);
            try (Sampler sm = new Sampler(m, schedule, s, 3, 2, 8, 8)) {
                return sm.run(seed, 0, 2, null, null);
            }
        }
    }
}
