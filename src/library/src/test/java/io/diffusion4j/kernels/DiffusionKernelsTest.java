package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.testutil.BoxMuller;
import io.diffusion4j.testutil.KernelReference;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.BiFunction;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The fused diffusion kernels of the CPU backend (add_noise, diffusion_loss, ddpm_step, ddim_step)
 * against float64 references written from diffusers' formulas ({@link KernelReference}), on fresh
 * random inputs every run, odd sizes, B = 1 and large B, NaN-poisoned outputs.
 *
 * <p>Tolerances are k u scale (u = 2^-24) with the scale of {@link KernelReference}: the sum of
 * the absolute values of the terms the float32 kernel adds. Each kernel evaluates float32
 * coefficients (each rounded once from float64) in a few float32 multiply-adds, so every term
 * carries a few roundings; the constants below are that operation count, with margin, and the
 * measured worst cases (printed as "[d4j-error]" lines) sit well inside them.
 */
class DiffusionKernelsTest {
    /**
     * add_noise x_t = a x0 + s eps: a and s rounded once, two products, one sum: at most 3 u of the
     * scale to first order; stated 4 u (measured worst about 2.4 u).
     */
    static final double ADD_NOISE_TOL_U = 4;
    /**
     * loss: d = o - (c_eps eps + c_x0 x0) is within about 3 u of its scale, squared, summed in
     * float64, times lw (rounded) and cast: within about 3 u of the reference's loss scale (which
     * counts 2 |d| scale(d) + d^2 + loss per element); stated 4 u (measured worst about 0.7 u).
     */
    static final double LOSS_TOL_U = 4;
    /** grad = g d: d (about 3 u of its scale), g rounded, one product; stated 5 u (measured about 2 u). */
    static final double GRAD_TOL_U = 5;
    /**
     * Reverse step: x0 = x0_a x + x0_b o (within 3 u of its scale), the optional eps re-derivation
     * (about 5 u, inheriting x0's error), then c_x0 x0 + c_xt x + c_eps eps + sigma z with rounded
     * coefficients and three sums: about 10 u of the scale to first order when every rounding adds
     * up; stated 10 u (measured worst about 4.9 u over many runs).
     */
    static final double STEP_TOL_U = 10;

    /** Elements per parallel task of the CPU backend (cpu_kernels.h kGrain). */
    static final int GRAIN = 16384;

    /** Batch shapes: n not a multiple of 4/8/32, B = 1 and large B, one sample crossing a task grain. */
    record Shape(int batch, int n) {
        @Override
        public String toString() {
            return "[" + batch + ", " + n + "]";
        }
    }

    static final List<Shape> SHAPES = List.of(new Shape(1, 105), new Shape(4, 28 * 28 + 1), new Shape(129, 105),
            new Shape(257, 33), new Shape(2, 2 * GRAIN + 3));

    /** A float64 schedule with its native upload. */
    record Sched(String name, double[] ac, NoiseSchedule schedule, NativeSchedule handle) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Backend cpu;
    static List<Sched> schedules;
    static final Map<String, double[]> WORST = new TreeMap<>();

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        schedules = Stream.of(
                        new Object[] {"linear T=1000", NoiseSchedule.defaults()},
                        new Object[] {"squaredcos_cap_v2 T=1000", NoiseSchedule.of(BetaSchedule.SQUAREDCOS_CAP_V2, 1000, 0.0001, 0.02)},
                        new Object[] {"scaled_linear T=50", NoiseSchedule.of(BetaSchedule.SCALED_LINEAR, 50, 0.00085, 0.012)})
                .map(o -> {
                    NoiseSchedule s = (NoiseSchedule) o[1];
                    return new Sched((String) o[0], s.alphasCumprod(), s, NativeSchedule.of(s));
                })
                .toList();
    }

    @AfterAll
    static void close() {
        synchronized (WORST) {
            WORST.forEach((k, v) -> System.out.printf(Locale.ROOT,
                    "[d4j-error] worst %-40s max|err| = %.3g, max err/scale = %.2f u%n", k, v[0], v[1] / U));
        }
        if (schedules != null) schedules.forEach(s -> s.handle().close());
        if (cpu != null) {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
            cpu.close();
        }
    }

    static void record(String kernel, Tolerance.Report r) {
        synchronized (WORST) {
            double[] w = WORST.computeIfAbsent(kernel, k -> new double[2]);
            w[0] = Math.max(w[0], r.maxAbsError());
            w[1] = Math.max(w[1], r.maxErrorOverScale());
        }
    }

    static Tolerance.Report check(String kernel, float[] out, KernelReference.Ref ref, double tolU, String ctx) {
        Tolerance.Report r = Tolerance.assertCloseScaled(kernel, out, ref.value(), ref.scale(), 0.0, tolU * U, ctx);
        record(kernel, r);
        return r;
    }

    static String ctx(TestRandom r, Object... parts) {
        StringBuilder b = new StringBuilder();
        for (Object p : parts) b.append(p).append(' ');
        return b.append("; ").append(r.describe()).toString();
    }

    /** prev timesteps: t - 1 (no respacing) or a random stride per sample (respaced, -1 below it). */
    static int[] prevTimesteps(TestRandom r, int[] t, boolean respaced) {
        int[] prev = new int[t.length];
        for (int b = 0; b < t.length; b++) {
            int stride = respaced ? 1 + r.nextInt(60) : 1;
            prev[b] = Math.max(-1, t[b] - stride);
        }
        if (respaced && t.length >= 3) { // a last step from t > 0 straight to -1
            for (int b = 0; b < t.length; b++) {
                if (t[b] > 0) {
                    prev[b] = -1;
                    break;
                }
            }
        }
        return prev;
    }

    // ---- add_noise --------------------------------------------------------------------------

    @Test
    void addNoiseMatchesReference() {
        for (Sched s : schedules) {
            for (Shape sh : SHAPES) {
                TestRandom r = TestRandom.fresh();
                int n = sh.n(), batch = sh.batch();
                float[] x0 = r.gaussians(batch * n, 1.0);
                int[] t = r.timesteps(batch, s.ac().length);
                long seed = r.nextLong(), offset = r.nextLong();
                String c = ctx(r, "schedule", s, "shape", sh, String.format("seed=0x%x offset=0x%x", seed, offset));
                KernelRunner.NoiseOut out = KernelRunner.addNoise(cpu, s.handle(), x0, t, n, seed, offset);
                // eps[b, i] = normal(seed, offset, b n + i): samples start at odd stream positions
                Tolerance.assertBitIdentical("add_noise eps", BoxMuller.normals(seed, offset, 0, batch * n), out.eps(), c);
                check("add_noise x_t", out.xT(), KernelReference.addNoise(s.ac(), x0, out.eps(), t, n), ADD_NOISE_TOL_U, c);
            }
        }
    }

    // ---- diffusion_loss ---------------------------------------------------------------------

    static Stream<Arguments> lossCases() {
        return Stream.of(PredictionType.values()).flatMap(p -> Stream.of(false, true).flatMap(w ->
                Stream.of(false, true).map(g -> Arguments.of(p, w, g))));
    }

    @ParameterizedTest(name = "{0}, minSnr={1}, grad={2}")
    @MethodSource("lossCases")
    void diffusionLossMatchesReference(PredictionType prediction, boolean minSnr, boolean withGrad) {
        for (Sched s : schedules) {
            float[] weights = null;
            if (minSnr) {
                double[] w = s.schedule().minSnrWeights(5.0, prediction);
                weights = new float[w.length];
                for (int i = 0; i < w.length; i++) weights[i] = (float) w[i];
            }
            for (Shape sh : SHAPES) {
                TestRandom r = TestRandom.fresh();
                int n = sh.n(), batch = sh.batch();
                float[] o = r.gaussians(batch * n, 1.0), x0 = r.gaussians(batch * n, 1.0), eps = r.gaussians(batch * n, 1.0);
                int[] t = r.timesteps(batch, s.ac().length);
                String c = ctx(r, prediction, "minSnr", minSnr, "grad", withGrad, "schedule", s, "shape", sh);
                KernelRunner.LossOut out = KernelRunner.loss(cpu, s.handle(), prediction, o, x0, eps, t, weights, n, withGrad);
                KernelReference.LossRef ref = KernelReference.loss(s.ac(), prediction, o, x0, eps, t, weights, n);
                check("diffusion_loss loss", out.loss(), new KernelReference.Ref(ref.loss(), ref.lossScale()), LOSS_TOL_U, c);
                if (withGrad) {
                    check("diffusion_loss grad", out.grad(), new KernelReference.Ref(ref.grad(), ref.gradScale()),
                            GRAD_TOL_U, c);
                } else {
                    assertNull(out.grad());
                }
            }
        }
    }

    /** Loss and gradient are bit-identical with 1 and 2 worker threads (several tasks per sample). */
    @ParameterizedTest
    @EnumSource(PredictionType.class)
    void diffusionLossDoesNotDependOnThreadCount(PredictionType prediction) {
        TestRandom r = TestRandom.fresh();
        Sched s = schedules.get(0);
        int batch = 3, n = 3 * GRAIN + 5;
        float[] o = r.gaussians(batch * n, 1.0), x0 = r.gaussians(batch * n, 1.0), eps = r.gaussians(batch * n, 1.0);
        int[] t = r.timesteps(batch, s.ac().length);
        String c = ctx(r, prediction);
        try {
            cpu.setThreads(1);
            KernelRunner.LossOut one = KernelRunner.loss(cpu, s.handle(), prediction, o, x0, eps, t, null, n, true);
            cpu.setThreads(2);
            KernelRunner.LossOut two = KernelRunner.loss(cpu, s.handle(), prediction, o, x0, eps, t, null, n, true);
            Tolerance.assertBitIdentical("loss, 1 vs 2 threads", one.loss(), two.loss(), c);
            Tolerance.assertBitIdentical("grad, 1 vs 2 threads", one.grad(), two.grad(), c);
            KernelRunner.LossOut noGrad = KernelRunner.loss(cpu, s.handle(), prediction, o, x0, eps, t, null, n, false);
            Tolerance.assertBitIdentical("loss without grad vs with grad", one.loss(), noGrad.loss(), c);
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
    }

    // ---- ddpm_step --------------------------------------------------------------------------

    static Stream<Arguments> ddpmCases() {
        return Stream.of(PredictionType.values()).flatMap(p -> Stream.of(VarianceType.values()).flatMap(v ->
                Stream.of(false, true).flatMap(clip -> Stream.of(false, true).map(resp -> Arguments.of(p, v, clip, resp)))));
    }

    @ParameterizedTest(name = "{0}, {1}, clip={2}, respaced={3}")
    @MethodSource("ddpmCases")
    void ddpmStepMatchesReference(PredictionType prediction, VarianceType variance, boolean clip, boolean respaced) {
        for (Sched s : schedules) {
            for (Shape sh : SHAPES) {
                TestRandom r = TestRandom.fresh();
                int n = sh.n(), batch = sh.batch();
                float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
                int[] t = r.timesteps(batch, s.ac().length);
                int[] prev = prevTimesteps(r, t, respaced);
                long[] seeds = r.longs(batch), offsets = r.longs(batch);
                float range = clip ? (float) (0.5 + 1.5 * r.nextDouble()) : 1.0f;
                String c = ctx(r, prediction, variance, "clip", clip, range, "respaced", respaced, "schedule", s,
                        "shape", sh, "t", Arrays.toString(Arrays.copyOf(t, Math.min(8, batch))), "prev",
                        Arrays.toString(Arrays.copyOf(prev, Math.min(8, batch))));
                float[] out = KernelRunner.ddpm(cpu, s.handle(), prediction, variance, clip, range, x, o, t, prev, seeds,
                        offsets, n, false);
                KernelReference.Ref ref = KernelReference.ddpm(s.ac(), prediction, variance, clip, range, x, o, t, prev,
                        seeds, offsets, n);
                check("ddpm_step " + prediction, out, ref, STEP_TOL_U, c);
            }
        }
    }

    /**
     * Without respacing the reference's coefficients are the posterior of the schedule:
     * posterior_mean_coef1/2, posterior_variance (fixed_small) and betas (fixed_large).
     */
    @Test
    void ddpmReferenceCoefficientsAreThePosterior() {
        for (Sched s : schedules) {
            double[] c1 = s.schedule().posteriorMeanCoef1(), c2 = s.schedule().posteriorMeanCoef2();
            double[] pv = s.schedule().posteriorVariance(), betas = s.schedule().betas();
            for (int t = 0; t < s.ac().length; t++) {
                double[] small = KernelReference.ddpmCoefficients(s.ac(), t, t - 1, VarianceType.FIXED_SMALL);
                double[] large = KernelReference.ddpmCoefficients(s.ac(), t, t - 1, VarianceType.FIXED_LARGE);
                String at = s + " t=" + t;
                assertEquals(c1[t], small[0], 1e-12 * Math.abs(c1[t]), "posterior_mean_coef1 " + at);
                assertEquals(c2[t], small[1], 1e-12 * Math.abs(c2[t]) + 1e-15, "posterior_mean_coef2 " + at);
                if (t > 0) {
                    assertEquals(pv[t], small[2], 1e-11 * pv[t], "posterior_variance " + at);
                    assertEquals(betas[t], large[2], 1e-11 * betas[t], "beta " + at);
                } else {
                    assertEquals(0.0, small[2], "no variance at t = 0");
                    assertEquals(0.0, large[2], "no variance at t = 0");
                }
            }
        }
    }

    /**
     * Runs {@code step} with two fresh random (seeds, offsets) pairs of {@code batch} samples and asserts the two
     * results are bit-identical; returns the first.
     */
    static float[] assertSeedsDoNotMatter(String what, TestRandom r, int batch, String ctx,
                                          BiFunction<long[], long[], float[]> step) {
        float[] a = step.apply(r.longs(batch), r.longs(batch));
        float[] b = step.apply(r.longs(batch), r.longs(batch));
        Tolerance.assertBitIdentical(what, a, b, ctx);
        return a;
    }

    /** t = 0 (prev = -1) draws no noise: the result does not depend on the noise seeds. */
    @ParameterizedTest
    @EnumSource(VarianceType.class)
    void ddpmStepAtTimestepZeroAddsNoNoise(VarianceType variance) {
        TestRandom r = TestRandom.fresh();
        Sched s = schedules.get(0);
        int batch = 5, n = 105;
        float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
        int[] t = new int[batch], prev = new int[batch];
        Arrays.fill(prev, -1);
        String c = ctx(r, variance);
        for (PredictionType p : PredictionType.values()) {
            float[] a = assertSeedsDoNotMatter("ddpm t=0 with different seeds " + p, r, batch, c,
                    (seeds, offsets) -> KernelRunner.ddpm(cpu, s.handle(), p, variance, false, 1f, x, o, t, prev, seeds,
                            offsets, n, false));
            KernelReference.Ref ref = KernelReference.ddpm(s.ac(), p, variance, false, 1f, x, o, t, prev,
                    new long[batch], new long[batch], n);
            check("ddpm_step " + p, a, ref, STEP_TOL_U, c);
        }
    }

    /** x_prev may be x_t: the in-place result equals the out-of-place one bit for bit. */
    @Test
    void reverseStepsInPlace() {
        TestRandom r = TestRandom.fresh();
        Sched s = schedules.get(0);
        int batch = 3, n = 2 * GRAIN + 3;
        float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
        int[] t = r.timesteps(batch, s.ac().length);
        int[] prev = prevTimesteps(r, t, true);
        long[] seeds = r.longs(batch), offsets = r.longs(batch);
        String c = ctx(r, "t", Arrays.toString(t), "prev", Arrays.toString(prev));
        for (PredictionType p : PredictionType.values()) {
            float[] a = KernelRunner.ddpm(cpu, s.handle(), p, VarianceType.FIXED_SMALL, true, 1f, x, o, t, prev, seeds,
                    offsets, n, false);
            float[] b = KernelRunner.ddpm(cpu, s.handle(), p, VarianceType.FIXED_SMALL, true, 1f, x, o, t, prev, seeds,
                    offsets, n, true);
            Tolerance.assertBitIdentical("ddpm in place " + p, a, b, c);
            float[] d = KernelRunner.ddim(cpu, s.handle(), p, 0.7f, true, 1f, true, 1.0, x, o, t, prev, seeds, offsets,
                    n, false);
            float[] e = KernelRunner.ddim(cpu, s.handle(), p, 0.7f, true, 1f, true, 1.0, x, o, t, prev, seeds, offsets,
                    n, true);
            Tolerance.assertBitIdentical("ddim in place " + p, d, e, c);
            check("ddim_step " + p, e, KernelReference.ddim(s.ac(), p, 0.7, true, 1.0, true, 1.0, x, o, t, prev, seeds,
                    offsets, n), STEP_TOL_U, c);
        }
    }

    /** A sample's reverse step does not depend on the rest of the batch: alone (B = 1) = inside a batch. */
    @Test
    void reverseStepOfASampleIsIndependentOfTheBatch() {
        TestRandom r = TestRandom.fresh();
        Sched s = schedules.get(0);
        int batch = 7, n = 28 * 28 + 1;
        float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
        int[] t = r.timesteps(batch, s.ac().length);
        for (int b = 0; b < batch; b++) t[b] = Math.max(t[b], 1); // every sample draws noise
        int[] prev = prevTimesteps(r, t, true);
        long[] seeds = r.longs(batch), offsets = r.longs(batch);
        String c = ctx(r, "t", Arrays.toString(t), "prev", Arrays.toString(prev));
        for (PredictionType p : PredictionType.values()) {
            float[] all = KernelRunner.ddpm(cpu, s.handle(), p, VarianceType.FIXED_LARGE, false, 1f, x, o, t, prev, seeds,
                    offsets, n, false);
            float[] allDdim = KernelRunner.ddim(cpu, s.handle(), p, 1.0f, false, 1f, false, 1.0, x, o, t, prev, seeds,
                    offsets, n, false);
            for (int b : new int[] {0, 3, batch - 1}) {
                float[] xs = Arrays.copyOfRange(x, b * n, (b + 1) * n), os = Arrays.copyOfRange(o, b * n, (b + 1) * n);
                int[] tb = {t[b]}, pb = {prev[b]};
                long[] sb = {seeds[b]}, ob = {offsets[b]};
                float[] alone = KernelRunner.ddpm(cpu, s.handle(), p, VarianceType.FIXED_LARGE, false, 1f, xs, os, tb, pb,
                        sb, ob, n, false);
                Tolerance.assertBitIdentical("ddpm sample " + b + " alone vs in batch " + p,
                        Arrays.copyOfRange(all, b * n, (b + 1) * n), alone, c);
                float[] aloneDdim = KernelRunner.ddim(cpu, s.handle(), p, 1.0f, false, 1f, false, 1.0, xs, os, tb, pb,
                        sb, ob, n, false);
                Tolerance.assertBitIdentical("ddim sample " + b + " alone vs in batch " + p,
                        Arrays.copyOfRange(allDdim, b * n, (b + 1) * n), aloneDdim, c);
            }
        }
    }

    // ---- ddim_step --------------------------------------------------------------------------

    static Stream<Arguments> ddimCases() {
        return Stream.of(PredictionType.values()).flatMap(p -> Stream.of(0.0f, 0.5f, 1.0f).flatMap(eta ->
                Stream.of(false, true).flatMap(clip -> Stream.of(false, true).flatMap(uc ->
                        Stream.of(true, false).map(one -> Arguments.of(p, eta, clip, uc, one))))));
    }

    @ParameterizedTest(name = "{0}, eta={1}, clip={2}, useClippedModelOutput={3}, setAlphaToOne={4}")
    @MethodSource("ddimCases")
    void ddimStepMatchesReference(PredictionType prediction, float eta, boolean clip, boolean useClipped,
                                  boolean setAlphaToOne) {
        for (Sched s : schedules) {
            double finalAlpha = setAlphaToOne ? 1.0 : s.ac()[0];
            for (Shape sh : SHAPES) {
                TestRandom r = TestRandom.fresh();
                int n = sh.n(), batch = sh.batch();
                float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
                int[] t = r.timesteps(batch, s.ac().length);
                int[] prev = prevTimesteps(r, t, true);
                long[] seeds = r.longs(batch), offsets = r.longs(batch);
                float range = clip ? (float) (0.5 + 1.5 * r.nextDouble()) : 1.0f;
                String c = ctx(r, prediction, "eta", eta, "clip", clip, range, "useClipped", useClipped,
                        "finalAlpha", finalAlpha, "schedule", s, "shape", sh, "t",
                        Arrays.toString(Arrays.copyOf(t, Math.min(8, batch))), "prev",
                        Arrays.toString(Arrays.copyOf(prev, Math.min(8, batch))));
                float[] out = KernelRunner.ddim(cpu, s.handle(), prediction, eta, clip, range, useClipped, finalAlpha, x,
                        o, t, prev, seeds, offsets, n, false);
                KernelReference.Ref ref = KernelReference.ddim(s.ac(), prediction, eta, clip, range, useClipped,
                        finalAlpha, x, o, t, prev, seeds, offsets, n);
                check("ddim_step " + prediction, out, ref, STEP_TOL_U, c);
            }
        }
    }

    /** eta = 0 is deterministic: different noise seeds give identical bits. */
    @Test
    void ddimWithEtaZeroDrawsNoNoise() {
        TestRandom r = TestRandom.fresh();
        Sched s = schedules.get(1);
        int batch = 9, n = 105;
        float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
        int[] t = r.timesteps(batch, s.ac().length);
        int[] prev = prevTimesteps(r, t, true);
        for (PredictionType p : PredictionType.values()) {
            assertSeedsDoNotMatter("ddim eta=0 with different seeds " + p, r, batch, ctx(r, p),
                    (seeds, offsets) -> KernelRunner.ddim(cpu, s.handle(), p, 0f, false, 1f, false, 1.0, x, o, t, prev,
                            seeds, offsets, n, false));
        }
    }

    /** add_noise and the reverse step give identical bits with 1 and 2 threads. */
    @Test
    void elementwiseKernelsDoNotDependOnThreadCount() {
        TestRandom r = TestRandom.fresh();
        Sched s = schedules.get(0);
        int batch = 2, n = 3 * GRAIN + 5;
        float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
        int[] t = r.timesteps(batch, s.ac().length);
        int[] prev = prevTimesteps(r, t, true);
        long[] seeds = r.longs(batch), offsets = r.longs(batch);
        String c = ctx(r);
        try {
            float[][] res = new float[2][];
            KernelRunner.NoiseOut[] noise = new KernelRunner.NoiseOut[2];
            for (int threads = 1; threads <= 2; threads++) {
                cpu.setThreads(threads);
                noise[threads - 1] = KernelRunner.addNoise(cpu, s.handle(), x, t, n, seeds[0], offsets[0]);
                res[threads - 1] = KernelRunner.ddpm(cpu, s.handle(), PredictionType.EPSILON, VarianceType.FIXED_SMALL,
                        true, 1f, x, o, t, prev, seeds, offsets, n, false);
            }
            Tolerance.assertBitIdentical("add_noise x_t, 1 vs 2 threads", noise[0].xT(), noise[1].xT(), c);
            Tolerance.assertBitIdentical("add_noise eps, 1 vs 2 threads", noise[0].eps(), noise[1].eps(), c);
            Tolerance.assertBitIdentical("ddpm, 1 vs 2 threads", res[0], res[1], c);
            assertTrue(Float.isFinite(res[1][res[1].length - 1]), c);
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
    }
}
