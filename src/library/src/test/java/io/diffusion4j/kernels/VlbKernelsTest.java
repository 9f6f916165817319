package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The vlb kernel family on the CPU against {@link VlbReference} (float64 transcription of improved-diffusion's
 * formulas), closed forms, hand-computed numbers, thread-count independence and argument validation.
 *
 * <p>Tolerance of a per-sample sum against the reference: |out - ref| &lt;= 1e-10 * (sum of |element terms|
 * + n). Both sides are float64 from the same float32 inputs; they differ by formulation only (the kernel
 * subtracts c1 (x0 - x0_hat), the reference whole means; expm1 vs -1 + exp), i.e. a few float64 ulps of the
 * means (|x0_a| up to ~160 at t = T-1) amplified by at most ~1e3 (the KL weight at t = 1): measured worst
 * ~1e-13 relative.
 *
 * <p>At t = 0 each element adds {@link #DECODER_P_ERROR} / max(P, 1e-12), P the reference's bin probability (the
 * decoder's term is -log(max(P, 1e-12))). In float64 a cdf 0.5 (1 + tanh y) carries an absolute error that does not
 * shrink with its size: tanh is within 2.5 ulp (Math.tanh's contract; glibc's is tighter) of a value below 1, so
 * within 2.5 * 2^-53, and 1 + tanh rounds to the 2^-52 grid of [1, 2): each cdf is within 1.75 * 2^-53. P is a cdf,
 * one minus a cdf (exact above 0.5, else within 2^-54) or a difference of two (plus 2^-53 of P), so within 4.5 *
 * 2^-53 on each side and 9 * 2^-53 between kernel and reference. Their tanh arguments differ in the last bits (the
 * reference's c1[0] = beta_0 / (1 - ab_0) is 1 + 1.1e-13, as improved-diffusion computes it; the front's is exactly
 * 1; the smooth effect of that, |d ln P / dz| * 1e-11 &lt; 2e-10 relative on P, is inside RTOL), so where P is small
 * the two land on neighbouring grid points, and -log(max(P, 1e-12)) moves by up to 9 * 2^-53 / max(P - 9 * 2^-53,
 * 1e-12) &lt;= 10 * 2^-53 / max(P, 1e-12) nats. Clipping makes this add up coherently: every x0 = +-1 element whose
 * prediction is clipped to +-r has the same mean, so the same P (e^-17 for r ~ 0.96) and the same rounding. The
 * bound is below 1e-14 for P &gt; 0.1, and about 1e-3 nats per element at the 1e-12 floor; the kernel itself is
 * within half a grid step of the exact P.
 */
class VlbKernelsTest {
    static Backend cpu;
    static NoiseSchedule linear;
    static NativeSchedule linearNative;
    static final double RTOL = 1e-10;
    /** Kernel vs reference, absolute, on a decoder bin probability P (see the class comment). */
    static final double DECODER_P_ERROR = 10 * 0x1p-53;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        linear = NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);
        linearNative = NativeSchedule.of(linear);
    }

    @AfterAll
    static void close() {
        linearNative.close();
        cpu.close();
    }

    /** Random 8-bit data with both edge levels present. */
    static float[] data8(TestRandom r, int count) {
        float[] v = new float[count];
        for (int i = 0; i < count; i++) {
            int k = switch (r.nextInt(8)) {
                case 0 -> 0;
                case 1 -> 255;
                default -> r.nextInt(256);
            };
            v[i] = k / 127.5f - 1f;
        }
        return v;
    }

    /** x_t drawn from q(x_t | x0) in float32 as add_noise does. */
    static float[] noised(NoiseSchedule s, float[] x0, int[] t, int n, TestRandom r) {
        float[] xt = new float[x0.length];
        float[] eps = r.gaussians(x0.length, 1);
        for (int i = 0; i < x0.length; i++) {
            double ab = s.alphasCumprod()[t[i / n]];
            xt[i] = (float) Math.sqrt(ab) * x0[i] + (float) Math.sqrt(1 - ab) * eps[i];
        }
        return xt;
    }

    /**
     * Model outputs whose x0 prediction is x0 + delta (delta ~ N(0, spread^2)) for the prediction type, so the
     * terms are in their realistic range (not all clamped at 1e-12); spread 0: the exact x0 (up to float32).
     */
    static float[] outputs(PredictionType p, NoiseSchedule s, float[] x0, float[] xt, int[] t, int n, double spread,
                           TestRandom r) {
        float[] o = new float[x0.length];
        for (int i = 0; i < x0.length; i++) {
            double ab = s.alphasCumprod()[t[i / n]];
            double target = x0[i] + spread * r.gaussians(1, 1)[0];
            o[i] = (float) switch (p) {
                case EPSILON -> (xt[i] - Math.sqrt(ab) * target) / Math.sqrt(1 - ab);
                case SAMPLE -> target;
                case V_PREDICTION -> (Math.sqrt(ab) * xt[i] - target) / Math.sqrt(1 - ab);
            };
        }
        return o;
    }

    static double[] run(Backend be, NativeSchedule ns, PredictionType p, VarianceType v, boolean clip, float r,
                        float[] x0, float[] xt, float[] o, int batch, int n, int[] t) {
        try (Tensor a = Tensor.of(be, x0, batch, n); Tensor b = Tensor.of(be, xt, batch, n);
             Tensor c = Tensor.of(be, o, batch, n)) {
            return VlbKernels.terms(ns, p, v, clip, r, a, b, c, t);
        }
    }

    static void check(String what, double[] got, double[] ref, double[] tol, String ctx) {
        assertEquals(ref.length, got.length, what);
        for (int b = 0; b < ref.length; b++) {
            assertTrue(Math.abs(got[b] - ref[b]) <= tol[b], String.format(Locale.ROOT,
                    "%s sample %d: kernel %.17g vs reference %.17g (|diff| %.3g > tol %.3g); %s", what, b, got[b],
                    ref[b], Math.abs(got[b] - ref[b]), tol[b], ctx));
        }
    }

    @Test
    void termsMatchTheFloat64ReferenceForEveryPredictionVarianceAndClip() {
        int[][] shapes = {{3, 785}, {1, 105}, {17, 3 * 7 * 5}, {2, 5 * 13}};
        for (int[] sh : shapes) {
            for (PredictionType p : PredictionType.values()) {
                for (VarianceType v : VarianceType.values()) {
                    for (boolean clip : new boolean[] {true, false}) {
                        TestRandom r = TestRandom.fresh();
                        int batch = sh[0], n = sh[1];
                        int[] t = r.timesteps(batch, 1000);
                        if (batch >= 3) t[1] = 1; // the sharpest KL
                        float[] x0 = data8(r, batch * n);
                        float[] xt = noised(linear, x0, t, n, r);
                        // half the samples near the truth (decoder and KL in their working range), half arbitrary
                        float[] near = outputs(p, linear, x0, xt, t, n, 0.004, r);
                        float[] far = r.gaussians(batch * n, 1.5);
                        float[] o = new float[batch * n];
                        for (int b = 0; b < batch; b++) System.arraycopy(b % 2 == 0 ? near : far, b * n, o, b * n, n);
                        float range = clip ? (float) (0.5 + r.nextDouble()) : 1f;
                        double[] got = run(cpu, linearNative, p, v, clip, range, x0, xt, o, batch, n, t);
                        double[] ref = new double[batch], tol = new double[batch];
                        for (int b = 0; b < batch; b++) {
                            ref[b] = VlbReference.term(linear, p, v, clip, range, x0, xt, o, b * n, n, t[b]);
                            tol[b] = RTOL * (Math.abs(ref[b]) + n);
                            for (int i = b * n; t[b] == 0 && i < b * n + n; i++) {
                                double bin = VlbReference.decoderBinProbability(linear, p, clip, range, x0, xt, o, i);
                                tol[b] += DECODER_P_ERROR / Math.max(bin, 1e-12);
                            }
                        }
                        String ctx = String.format(Locale.ROOT, "%dx%d %s %s clip=%s range %.4f t=%s %s", batch, n, p, v,
                                clip, range, Arrays.toString(t), r.describe());
                        check("terms", got, ref, tol, ctx);
                    }
                }
            }
        }
    }

    @Test
    void priorMatchesTheReferenceAndHandComputedValues() {
        TestRandom r = TestRandom.fresh();
        int batch = 5, n = 3 * 7 * 5;
        float[] x0 = data8(r, batch * n);
        try (Tensor a = Tensor.of(cpu, x0, batch, n)) {
            double[] got = VlbKernels.prior(linearNative, a);
            double[] ref = new double[batch], tol = new double[batch];
            for (int b = 0; b < batch; b++) {
                ref[b] = VlbReference.prior(linear, x0, b * n, n);
                tol[b] = RTOL * Math.abs(ref[b]);
            }
            check("prior", got, ref, tol, r.describe());
        }
        // Hand-computed from improved-diffusion's _prior_bpd with numpy (linear 1e-4..0.02, T = 1000):
        // ab[999] = 4.035829765375676e-05; per element 0.5 (-1 - log(1 - ab) + (1 - ab) + ab x0^2)
        // x0 = 1: 2.017955603586713e-05 nats (2.911294542028646e-05 bits); x0 = 0: 4.072089887507957e-10 nats
        float[] ones = new float[7];
        Arrays.fill(ones, 1f);
        try (Tensor a = Tensor.of(cpu, ones, 1, 7)) {
            double got = VlbKernels.prior(linearNative, a)[0] / 7;
            assertEquals(2.017955603586713e-05, got, 1e-12 * 2.0e-5, "prior of x0 = 1 per element");
            assertEquals(2.911294542028646e-05, got / Math.log(2), 1e-12 * 3e-5, "prior bits/dim of x0 = 1");
        }
        try (Tensor a = Tensor.of(cpu, new float[9], 1, 9)) {
            double got = VlbKernels.prior(linearNative, a)[0] / 9;
            assertEquals(4.072089887507957e-10, got, 1e-6 * 4.1e-10, "prior of x0 = 0 per element (expm1 form)");
        }
    }

    @Test
    void closedFormsAndHandComputedTerms() {
        int n = 13;
        float[] x0 = new float[n];
        for (int i = 0; i < n; i++) x0[i] = (20 * i + 1) / 127.5f - 1f; // interior levels
        float[] xt = new float[n];
        Arrays.fill(xt, 0.25f);
        // sample prediction o = x0: x0_hat = x0 exactly, so the KL of identical Gaussians is exactly 0 (fixed_small)
        for (int t : new int[] {1, 2, 500, 999}) {
            double kl = run(cpu, linearNative, PredictionType.SAMPLE, VarianceType.FIXED_SMALL, true, 1f, x0, xt, x0, 1,
                    n, new int[] {t})[0];
            assertEquals(0.0, kl, 0.0, "KL(q || p) with identical Gaussians at t = " + t);
        }
        // fixed_large, same means: n * 0.5 (expm1(d) - d), d = log pv[t] - log beta[t]; numpy: 1.8383641018504407e-07 at t = 500
        double kLarge = run(cpu, linearNative, PredictionType.SAMPLE, VarianceType.FIXED_LARGE, true, 1f, x0, xt, x0, 1,
                n, new int[] {500})[0] / n;
        assertEquals(1.8383641018504407e-07, kLarge, 1e-9 * 1.84e-7, "fixed_large KL constant at t = 500");
        // KL at t = 1 with x0_hat = x0 + 0.01 (sample prediction, unclipped):
        // 0.5 (c1[1] 0.01)^2 / pv[1] = 0.2726321171268632 nats (numpy, improved-diffusion's normal_kl)
        float[] shifted = new float[n];
        for (int i = 0; i < n; i++) shifted[i] = (float) (x0[i] + 0.01);
        double kl1 = run(cpu, linearNative, PredictionType.SAMPLE, VarianceType.FIXED_SMALL, false, 1f, x0, xt, shifted,
                1, n, new int[] {1})[0];
        double ref1 = 0;
        for (int i = 0; i < n; i++) {
            double d = (double) shifted[i] - x0[i]; // 0.01 up to float32 rounding of the shifted value
            ref1 += 0.2726321171268632 * (d / 0.01) * (d / 0.01);
        }
        assertEquals(ref1, kl1, 1e-10 * ref1, "KL at t = 1 for a 0.01 error");
        // decoder with the exact mean: -log(cdf(s) - cdf(-s)), s = (1/255) / sqrt(pv[1]) = 0.5310...:
        // numpy 0.9050181142111203 nats (1.305665145287065 bits) per interior element
        double dec = run(cpu, linearNative, PredictionType.SAMPLE, VarianceType.FIXED_SMALL, true, 1f, x0, xt, x0, 1, n,
                new int[] {0})[0] / n;
        assertEquals(0.9050181142111203, dec, 1e-6, "decoder NLL of an exact mean (float32 x0 vs float64 in numpy)");
        // edge bins are open: at x0 = -1 and +1 with the exact mean, -log(cdf(s)) = -log(1 - cdf(-s))
        float[] edges = {-1f, 1f};
        double[] e = run(cpu, linearNative, PredictionType.SAMPLE, VarianceType.FIXED_SMALL, true, 1f, edges,
                new float[2], edges, 1, 2, new int[] {0});
        double s = (1.0 / 255.0) / Math.sqrt(linear.posteriorVariance()[1]);
        assertEquals(-2 * Math.log(VlbReference.approxStandardNormalCdf(s)), e[0], 1e-12, "open edge bins");
        // a perfect mean with a tiny variance: the bin holds (almost) all the mass, NLL ~ 0
        NoiseSchedule tiny = NoiseSchedule.fromBetas(new double[] {1e-9, 2e-9, 3e-9});
        try (NativeSchedule ns = NativeSchedule.of(tiny)) {
            float[] all = data8(TestRandom.fresh(), 31);
            double nll = run(cpu, ns, PredictionType.SAMPLE, VarianceType.FIXED_SMALL, true, 1f, all, new float[31], all,
                    1, 31, new int[] {0})[0];
            assertTrue(nll >= 0 && nll < 1e-9, "decoder NLL of a perfect mean with sigma ~ 3e-5: " + nll);
            // and a far-off mean hits the 1e-12 clamp: -log(1e-12) per element
            float[] off = new float[31];
            for (int i = 0; i < 31; i++) off[i] = all[i] > 0 ? -0.5f : 0.5f;
            double clamped = run(cpu, ns, PredictionType.SAMPLE, VarianceType.FIXED_SMALL, false, 1f, all,
                    new float[31], off, 1, 31, new int[] {0})[0];
            assertEquals(-31 * Math.log(1e-12), clamped, 1e-9, "log probabilities clamped at 1e-12");
        }
    }

    @Test
    void resultsDoNotDependOnTheThreadCount() {
        TestRandom r = TestRandom.fresh();
        int batch = 3, n = 2 * 16384 + 7; // several reduction chunks per sample, parallel tasks
        int[] t = {0, 1, 700};
        float[] x0 = data8(r, batch * n);
        float[] xt = noised(linear, x0, t, n, r);
        float[] o = outputs(PredictionType.EPSILON, linear, x0, xt, t, n, 0.01, r);
        try (Backend one = Backend.open(Device.CPU); NativeSchedule ns = NativeSchedule.of(linear)) {
            one.setThreads(1);
            cpu.setThreads(2);
            double[] a = run(one, ns, PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1f, x0, xt, o, batch, n, t);
            double[] b = run(cpu, ns, PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1f, x0, xt, o, batch, n, t);
            for (int i = 0; i < batch; i++) {
                assertEquals(Double.doubleToRawLongBits(a[i]), Double.doubleToRawLongBits(b[i]),
                        "sample " + i + ": 1 thread " + a[i] + " vs 2 threads " + b[i] + "; " + r.describe());
            }
        }
    }

    @Test
    void theJavaFaceValidatesShapes() {
        try (Tensor a = Tensor.allocate(cpu, DType.FLOAT32, 2, 5); Tensor b = Tensor.allocate(cpu, DType.FLOAT32, 2, 6);
             Tensor c = Tensor.allocate(cpu, DType.FLOAT32, 2, 5)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> VlbKernels.terms(linearNative,
                    PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1f, a, b, c, new int[] {0, 1}));
            assertTrue(e.getMessage().contains("xT"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> VlbKernels.terms(linearNative, PredictionType.EPSILON,
                    VarianceType.FIXED_SMALL, true, 1f, a, c, c, new int[] {0}));
            assertTrue(e.getMessage().contains("timesteps"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> VlbKernels.terms(linearNative, PredictionType.EPSILON,
                    VarianceType.FIXED_SMALL, true, Float.NaN, a, c, c, new int[] {0, 1}));
            assertTrue(e.getMessage().contains("clipRange"), e.getMessage());
        }
    }

    /** The front refuses bad arguments with a message, before any backend work. */
    @Test
    void theFrontValidatesEveryArgument() {
        try (Tensor a = Tensor.of(cpu, new float[10], 2, 5); Tensor small = Tensor.allocate(cpu, DType.FLOAT32, 9);
             NativeSchedule one = NativeSchedule.of(NoiseSchedule.fromBetas(new double[] {0.1}));
             Arena arena = Arena.ofConfined()) {
            MemorySegment be = cpu.handle(), s = linearNative.handle(), h = a.handle();
            MemorySegment terms = arena.allocate(ValueLayout.JAVA_DOUBLE, 2);
            MemorySegment ok = arena.allocateFrom(ValueLayout.JAVA_INT, 0, 999);
            expect("terms is null", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h, h, ok, 2, 5, MemorySegment.NULL));
            expect("variance type 2", d4j_h.d4j_vlb_terms(be, s, 0, 2, 1, 1f, h, h, h, ok, 2, 5, terms));
            expect("prediction type 3", d4j_h.d4j_vlb_terms(be, s, 3, 0, 1, 1f, h, h, h, ok, 2, 5, terms));
            expect("clip_denoised must be 0 or 1", d4j_h.d4j_vlb_terms(be, s, 0, 0, 2, 1f, h, h, h, ok, 2, 5, terms));
            expect("clip_range", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, -1f, h, h, h, ok, 2, 5, terms));
            expect("clip_range", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, Float.POSITIVE_INFINITY, h, h, h, ok, 2, 5, terms));
            expect("timesteps[1] = 1000", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h, h,
                    arena.allocateFrom(ValueLayout.JAVA_INT, 0, 1000), 2, 5, terms));
            expect("timesteps[0] = -1", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h, h,
                    arena.allocateFrom(ValueLayout.JAVA_INT, -1, 0), 2, 5, terms));
            expect("timesteps is null", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h, h, MemorySegment.NULL, 2, 5, terms));
            expect("model_output: buffer holds 36 bytes but 40", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h,
                    small.handle(), ok, 2, 5, terms));
            expect("batch must be >= 1", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h, h, ok, 0, 5, terms));
            expect("n_per_sample must be >= 1", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h, h, ok, 2, 0, terms));
            expect("overflows", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, h, h, h, ok, 2, Long.MAX_VALUE / 4, terms));
            expect("x0: buffer is null", d4j_h.d4j_vlb_terms(be, s, 0, 0, 1, 1f, MemorySegment.NULL, h, h, ok, 2, 5, terms));
            expect("schedule is null", d4j_h.d4j_vlb_terms(be, MemorySegment.NULL, 0, 0, 1, 1f, h, h, h, ok, 2, 5, terms));
            expect("at least 2 timesteps", d4j_h.d4j_vlb_terms(be, one.handle(), 0, 0, 1, 1f, h, h, h,
                    arena.allocateFrom(ValueLayout.JAVA_INT, 0, 0), 2, 5, terms));
            expect("backend is null", d4j_h.d4j_vlb_terms(MemorySegment.NULL, s, 0, 0, 1, 1f, h, h, h, ok, 2, 5, terms));
            // clip off: the range is not looked at
            assertEquals(0, d4j_h.d4j_vlb_terms(be, s, 0, 0, 0, Float.NaN, h, h, h, ok, 2, 5, terms), lastError());
            expect("terms is null", d4j_h.d4j_vlb_prior(be, s, h, 2, 5, MemorySegment.NULL));
            expect("x0: buffer holds 36 bytes but 40", d4j_h.d4j_vlb_prior(be, s, small.handle(), 2, 5, terms));
            expect("schedule is null", d4j_h.d4j_vlb_prior(be, MemorySegment.NULL, h, 2, 5, terms));
            expect("batch must be >= 1", d4j_h.d4j_vlb_prior(be, s, h, -1, 5, terms));
        }
        // through the Java face: the status becomes an exception with the message
        try (Tensor a = Tensor.of(cpu, new float[10], 2, 5)) {
            D4jException e = assertThrows(D4jException.class, () -> VlbKernels.terms(linearNative,
                    PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1f, a, a, a, new int[] {0, 1000}));
            assertTrue(e.getMessage().contains("timesteps[1] = 1000"), e.getMessage());
        }
    }

    static String lastError() {
        return d4j_h.d4j_last_error().reinterpret(1024).getString(0);
    }

    static void expect(String fragment, int status) {
        assertTrue(status != 0, "expected a failure mentioning '" + fragment + "'");
        String msg = lastError();
        assertTrue(msg.contains(fragment), "message '" + msg + "' does not mention '" + fragment + "'");
    }
}
