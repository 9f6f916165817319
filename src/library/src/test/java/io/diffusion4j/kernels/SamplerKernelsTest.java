package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The sampler kernels on the CPU backend against the float64 references of {@link SamplerReference}, for
 * every prediction type, first and second order, the final sigma 0, with and without dynamic thresholding,
 * on odd sizes, outputs poisoned with NaN before each call. Tolerances (|out - ref| <= rtol * scale, scale =
 * sum of |terms|): steps 64 u (float32 coefficients and a handful of float32 operations, plus the x0
 * prediction's error magnified by at most the coefficient of x0), threshold 8 u of the sample's largest x0
 * term (the x0 prediction's rounding error; the order statistics themselves are exact).
 */
class SamplerKernelsTest {
    static final double STEP_RTOL = 64 * U;
    static final double THRESHOLD_RTOL = 8 * U;
    static Backend cpu;
    static NoiseSchedule schedule;
    static NativeSchedule ns;
    static double[] ac;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        schedule = NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);
        ns = NativeSchedule.of(schedule);
        ac = schedule.alphasCumprod();
    }

    @AfterAll
    static void close() {
        ns.close();
        cpu.close();
    }

    static Tensor poisoned(int batch, int n) {
        Tensor t = Tensor.allocate(cpu, DType.FLOAT32, batch, n);
        t.fill(Float.NaN);
        return t;
    }

    static int[] randomTimesteps(TestRandom r, int batch, int lo, int hi) {
        int[] t = new int[batch];
        for (int b = 0; b < batch; b++) t[b] = r.nextInt(lo, hi);
        if (batch >= 2) {
            t[0] = lo;
            t[batch - 1] = hi - 1;
        }
        return t;
    }

    @ParameterizedTest
    @EnumSource(PredictionType.class)
    void thresholdMatchesTorchQuantile(PredictionType p) {
        TestRandom r = TestRandom.fresh();
        for (int[] shape : new int[][] {{3, 13}, {2, 5 * 7 * 3}, {1, 1}, {4, 2}, {2, 28 * 28 + 1}}) {
            int batch = shape[0], n = shape[1];
            float[] x = r.gaussians(batch * n, 2.0), o = r.gaussians(batch * n, 1.0);
            int[] t = randomTimesteps(r, batch, 0, 1000);
            for (double ratio : new double[] {0.995, 0.0, 1.0, 0.5, r.nextDouble()}) {
                for (float max : new float[] {1e30f, 1.5f}) {
                    try (Tensor xt = Tensor.of(cpu, x, batch, n); Tensor mo = Tensor.of(cpu, o, batch, n);
                         Tensor s = poisoned(1, batch)) {
                        SamplerKernels.x0Threshold(ns, p, xt, mo, t, ratio, max, s);
                        double[] ref = SamplerReference.threshold(ac, p, x, o, t, n, ratio, max);
                        // error scale: the largest x0 term magnitude of the sample (the quantile picks one x0)
                        double[] scale = new double[batch];
                        for (int b = 0; b < batch; b++) {
                            for (int i = 0; i < n; i++) {
                                scale[b] = Math.max(scale[b], SamplerReference.x0Scale(p, ac[t[b]], x[b * n + i], o[b * n + i]));
                            }
                        }
                        Tolerance.assertCloseScaled("threshold " + p + " ratio " + ratio + " n " + n, s.toFloatArray(),
                                ref, scale, 0, THRESHOLD_RTOL, r.describe());
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(PredictionType.class)
    void thresholdedDdpmAndDdimMatchReference(PredictionType p) {
        TestRandom r = TestRandom.fresh();
        int batch = 3, n = 5 * 7 * 3;
        float[] x = r.gaussians(batch * n, 1.5), o = r.gaussians(batch * n, 1.0);
        int[] t = randomTimesteps(r, batch, 0, 1000);
        int[] prev = new int[batch];
        long[] seeds = new long[batch], offsets = new long[batch];
        for (int b = 0; b < batch; b++) {
            prev[b] = t[b] == 0 ? -1 : Math.max(-1, t[b] - 1 - r.nextInt(30));
            seeds[b] = r.nextLong();
            offsets[b] = r.nextLong();
        }
        SampleNoise noise = new SampleNoise(seeds, offsets);
        double ratio = 0.9;
        float max = 2.0f;
        try (Tensor xt = Tensor.of(cpu, x, batch, n); Tensor mo = Tensor.of(cpu, o, batch, n);
             Tensor s = Tensor.allocate(cpu, DType.FLOAT32, batch)) {
            SamplerKernels.x0Threshold(ns, p, xt, mo, t, ratio, max, s);
            double[] sref = SamplerReference.threshold(ac, p, x, o, t, n, ratio, max);
            for (VarianceType v : VarianceType.values()) {
                try (Tensor out = poisoned(batch, n)) {
                    SamplerKernels.ddpmStepThresholded(ns, p, v, s, xt, mo, t, prev, noise, out);
                    SamplerReference.Result ref = SamplerReference.ddpm(ac, p, v, sref, x, o, t, prev, seeds, offsets, n);
                    Tolerance.log(Tolerance.assertCloseScaled("ddpm thresholded " + p + " " + v, out.toFloatArray(),
                            ref.value(), ref.scale(), 0, STEP_RTOL, r.describe()));
                }
            }
            for (float eta : new float[] {0f, 1f}) {
                for (boolean clipped : new boolean[] {false, true}) {
                    for (double fa : new double[] {1.0, ac[0]}) {
                        try (Tensor out = poisoned(batch, n)) {
                            SamplerKernels.ddimStepThresholded(ns, p, eta, clipped, fa, s, xt, mo, t, prev, noise, out);
                            SamplerReference.Result ref = SamplerReference.ddim(ac, p, eta, clipped, fa, sref, x, o, t,
                                    prev, seeds, offsets, n);
                            Tolerance.log(Tolerance.assertCloseScaled("ddim thresholded " + p + " eta " + eta
                                    + " clipped-eps " + clipped, out.toFloatArray(), ref.value(), ref.scale(), 0,
                                    STEP_RTOL, r.describe()));
                        }
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(PredictionType.class)
    void dpmSolverMatchesDiffusersFormulas(PredictionType p) {
        TestRandom r = TestRandom.fresh();
        int batch = 5, n = 13 * 7;
        float[] x = r.gaussians(batch * n, 1.5), o = r.gaussians(batch * n, 1.0), m1 = r.gaussians(batch * n, 1.0);
        // sample 0: first order to the final sigma 0; 1: first order; 2..4: second order (one from the top)
        int[] t = {20, 500, 300, 998, 1}, prev = {-1, 400, 100, 900, 0}, last = {-1, -1, 999, 999, 40};
        for (boolean thresholded : new boolean[] {false, true}) {
            try (Tensor xt = Tensor.of(cpu, x, batch, n); Tensor mo = Tensor.of(cpu, o, batch, n);
                 Tensor s = Tensor.allocate(cpu, DType.FLOAT32, batch); Tensor prevX0 = Tensor.of(cpu, m1, batch, n);
                 Tensor x0Out = poisoned(batch, n); Tensor out = poisoned(batch, n)) {
                double[] sref = null;
                if (thresholded) {
                    SamplerKernels.x0Threshold(ns, p, xt, mo, t, 0.995, 1.7f, s);
                    sref = SamplerReference.threshold(ac, p, x, o, t, n, 0.995, 1.7f);
                }
                SamplerReference.DpmResult ref = SamplerReference.dpm(ac, p, sref, x, o, m1, t, prev, last, n);
                // separate x0 output
                SamplerKernels.dpmSolverStep(ns, p, thresholded ? s : null, xt, mo, prevX0, t, prev, last, x0Out, out);
                String what = "dpm++ " + p + (thresholded ? " thresholded" : "");
                Tolerance.log(Tolerance.assertCloseScaled(what + " x_prev", out.toFloatArray(), ref.xPrev(),
                        ref.xPrevScale(), 0, STEP_RTOL, r.describe()));
                Tolerance.log(Tolerance.assertCloseScaled(what + " x0", x0Out.toFloatArray(), ref.x0(), ref.x0Scale(),
                        0, STEP_RTOL, r.describe()));
                // in place: x0 over m1 and x_prev over x_t give the same bits
                float[] expectPrev = out.toFloatArray(), expectX0 = x0Out.toFloatArray();
                SamplerKernels.dpmSolverStep(ns, p, thresholded ? s : null, xt, mo, prevX0, t, prev, last, prevX0, xt);
                Tolerance.assertBitIdentical(what + " in place x_prev", expectPrev, xt.toFloatArray(), r.describe());
                Tolerance.assertBitIdentical(what + " in place x0", expectX0, prevX0.toFloatArray(), r.describe());
            }
        }
    }

    @Test
    void resultsDoNotDependOnTheThreadCount() {
        TestRandom r = TestRandom.fresh();
        int batch = 3, n = 40_000; // above the serial threshold and several grains per sample
        float[] x = r.gaussians(batch * n, 1.5), o = r.gaussians(batch * n, 1.0), m1 = r.gaussians(batch * n, 1.0);
        int[] t = {10, 500, 900}, prev = {5, 300, 800}, last = {20, 700, 950};
        float[][] results = new float[2][];
        float[][] thresholds = new float[2][];
        for (int k = 0; k < 2; k++) {
            cpu.setThreads(k == 0 ? 1 : 2);
            try (Tensor xt = Tensor.of(cpu, x, batch, n); Tensor mo = Tensor.of(cpu, o, batch, n);
                 Tensor pm = Tensor.of(cpu, m1, batch, n); Tensor s = Tensor.allocate(cpu, DType.FLOAT32, batch);
                 Tensor out = poisoned(batch, n)) {
                SamplerKernels.x0Threshold(ns, PredictionType.EPSILON, xt, mo, t, 0.995, 1e30f, s);
                SamplerKernels.dpmSolverStep(ns, PredictionType.EPSILON, s, xt, mo, pm, t, prev, last, pm, out);
                results[k] = out.toFloatArray();
                thresholds[k] = s.toFloatArray();
            } finally {
                cpu.setThreads(Runtime.getRuntime().availableProcessors());
            }
        }
        Tolerance.assertBitIdentical("threshold 1 vs 2 threads", thresholds[0], thresholds[1], r.describe());
        Tolerance.assertBitIdentical("dpm++ 1 vs 2 threads", results[0], results[1], r.describe());
    }

    @Test
    void badArgumentsAreRefusedWithMessages() {
        int batch = 2, n = 6;
        try (Tensor xt = Tensor.allocate(cpu, DType.FLOAT32, batch, n); Tensor mo = Tensor.allocate(cpu, DType.FLOAT32, batch, n);
             Tensor pm = Tensor.allocate(cpu, DType.FLOAT32, batch, n); Tensor s = Tensor.allocate(cpu, DType.FLOAT32, batch);
             Tensor out = Tensor.allocate(cpu, DType.FLOAT32, batch, n)) {
            xt.fill(0.5f);
            mo.fill(0.1f);
            PredictionType e = PredictionType.EPSILON;
            D4jException ex = assertThrows(D4jException.class, () -> SamplerKernels.dpmSolverStep(ns, e, null, xt, mo, pm,
                    new int[] {10, 10}, new int[] {-1, 5}, new int[] {20, -1}, null, out));
            assertTrue(ex.getMessage().contains("final sigma 0"), ex.getMessage());
            ex = assertThrows(D4jException.class, () -> SamplerKernels.dpmSolverStep(ns, e, null, xt, mo, pm,
                    new int[] {10, 10}, new int[] {5, 5}, new int[] {10, -1}, null, out));
            assertTrue(ex.getMessage().contains("last_timesteps[0]"), ex.getMessage());
            ex = assertThrows(D4jException.class, () -> SamplerKernels.dpmSolverStep(ns, e, null, xt, mo, null,
                    new int[] {10, 10}, new int[] {5, 5}, new int[] {20, -1}, null, out));
            assertTrue(ex.getMessage().contains("prev_x0"), ex.getMessage());
            ex = assertThrows(D4jException.class, () -> SamplerKernels.dpmSolverStep(ns, e, null, xt, mo, pm,
                    new int[] {10, 10}, new int[] {5, 5}, new int[] {-1, -1}, null, mo));
            assertTrue(ex.getMessage().contains("overlap"), ex.getMessage());
            ex = assertThrows(D4jException.class, () -> SamplerKernels.x0Threshold(ns, e, xt, mo, new int[] {1, 2}, 1.5,
                    1f, s));
            assertTrue(ex.getMessage().contains("dynamic_thresholding_ratio"), ex.getMessage());
            ex = assertThrows(D4jException.class, () -> SamplerKernels.x0Threshold(ns, e, xt, mo, new int[] {1, 2}, 0.9,
                    Float.NaN, s));
            assertTrue(ex.getMessage().contains("sample_max_value"), ex.getMessage());
            assertThrows(IllegalArgumentException.class, () -> SamplerKernels.x0Threshold(ns, e, xt, mo, new int[] {1},
                    0.9, 1f, s));
            try (Tensor wrong = Tensor.allocate(cpu, DType.FLOAT32, batch + 1)) {
                IllegalArgumentException ia = assertThrows(IllegalArgumentException.class,
                        () -> SamplerKernels.ddpmStepThresholded(ns, e, VarianceType.FIXED_SMALL, wrong, xt, mo,
                                new int[] {3, 4}, new int[] {2, 3}, new SampleNoise(new long[2], new long[2]), out));
                assertTrue(ia.getMessage().contains("threshold"), ia.getMessage());
            }
        }
    }
}
