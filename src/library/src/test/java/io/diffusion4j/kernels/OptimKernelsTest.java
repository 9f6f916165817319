package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.OptimKernels.AdamW;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The optimiser kernels of the CPU backend (d4j_grad_norm, d4j_adamw, d4j_ema_update) on fresh
 * random inputs every run, odd counts (1, 7, 1000003), views of a flat buffer.
 *
 * <p>The updates are in place, so outputs cannot be poisoned; instead every element of every
 * in-place buffer is compared, and elements outside a view must keep their bits.
 *
 * <p>Tolerances, u = 2^-24:
 * <ul>
 *   <li>Bit level: AdamW and EMA must equal, bit for bit, a Java float32 emulation of the
 *       documented operation sequence ({@link OptimReference}); the kernels use correctly rounded
 *       float32 operations without FMA contraction, so there is no rounding slack to allow.
 *   <li>Against float64 (torch's formulas evaluated in double from the same float32 state), first-order
 *       error bounds counting every float32 rounding. g = grad * gradScale carries 2 u (the
 *       scale rounded to float32, the product). m within 5 u of b1|m| + (1-b1)|g| (g's 2 u, 1-b1
 *       rounded, product; b1 rounded, product; the sum). v within 8 u of v (g^2 carries 5 u, then
 *       coefficient and product; the other term 2 u; the sum; all terms >= 0). The parameter within
 *       12 u of |p (1 - lr wd)| + step_size (b1|m| + (1-b1)|g| + |m'|) / denom: the weight decay
 *       and the final difference 3 u of the first term; the denominator sqrt(v) isb2 + eps 8 u
 *       relative (v's 8 u halved, sqrt, isb2 rounded, product, eps rounded, sum), so the update
 *       step_size (m / denom) carries 5 u of m's scale plus 12 u of |m'| (denominator, quotient,
 *       step_size rounded, product, its share of the final difference). EMA within 4 u of
 *       |ref| + (1 - decay)|s - p| (1 - decay rounded, s - p, product; the difference).
 *       Measured worst cases over many runs: m 3.1 u, v 5.1 u, param 2.3 u, EMA 2.3 u (printed
 *       as [d4j-error] lines).
 *   <li>Gradient norm: relative 1e-12 against a compensated (Neumaier) float64 sum. The kernel's
 *       sum of squares is exact per element and adds each square through at most 16384/16 + 4
 *       lane adds plus one add per 16384-element chunk (64 for 1000003), so its relative error is
 *       at most about 1100 float64 ulps = 1.2e-13, and the norm's half of that.
 * </ul>
 */
class OptimKernelsTest {
    static final double M_TOL_U = 5, V_TOL_U = 8, P_TOL_U = 12, EMA_TOL_U = 4;
    static final double NORM_RTOL = 1e-12;
    static final int GRAIN = 16384;
    static final int[] COUNTS = {1, 7, 1000003};

    static Backend cpu;
    private static final Map<String, double[]> WORST = new TreeMap<>();

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        synchronized (WORST) {
            WORST.forEach((k, v) -> System.out.printf(Locale.ROOT, "[d4j-error] worst %-28s max err/scale = %.2f u%n", k,
                    v[0] / U));
        }
        if (cpu != null) {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
            cpu.close();
        }
    }

    static void record(Tolerance.Report r) {
        Tolerance.log(r);
        synchronized (WORST) {
            double[] w = WORST.computeIfAbsent(r.what(), k -> new double[1]);
            w[0] = Math.max(w[0], r.maxErrorOverScale());
        }
    }

    static String ctx(TestRandom r, Object... parts) {
        StringBuilder b = new StringBuilder();
        for (Object p : parts) b.append(p).append(' ');
        return b.append("; ").append(r.describe()).toString();
    }

    /** Device-side copies of the AdamW state. */
    record State(Tensor p, Tensor g, Tensor m, Tensor v) implements AutoCloseable {
        static State of(Backend be, float[] p, float[] g, float[] m, float[] v) {
            return new State(Tensor.of(be, p, p.length), Tensor.of(be, g, g.length), Tensor.of(be, m, m.length),
                    Tensor.of(be, v, v.length));
        }

        @Override
        public void close() {
            p.close();
            g.close();
            m.close();
            v.close();
        }
    }

    /** One kernel step compared with the emulation (bits) and the float64 reference (tolerance). */
    static void checkAdamwStep(Backend be, AdamW hp, long step, double gs, float[] p, float[] g, float[] m, float[] v,
                               String c) {
        float[] ep = p.clone(), em = m.clone(), ev = v.clone();
        OptimReference.adamwF32(OptimReference.Coef.of(hp, step, gs), ep, g, em, ev, 0, p.length);
        OptimReference.AdamRef ref = OptimReference.adamw64(hp, step, gs, p, g, m, v);
        float[] op, om, ov, og;
        try (State s = State.of(be, p, g, m, v)) {
            OptimKernels.adamw(s.p(), s.g(), s.m(), s.v(), hp, step, gs);
            op = s.p().toFloatArray();
            om = s.m().toFloatArray();
            ov = s.v().toFloatArray();
            og = s.g().toFloatArray();
        }
        Tolerance.assertBitIdentical("adamw grad (read-only)", g, og, c);
        Tolerance.assertBitIdentical("adamw param vs float32 emulation", ep, op, c);
        Tolerance.assertBitIdentical("adamw m vs float32 emulation", em, om, c);
        Tolerance.assertBitIdentical("adamw v vs float32 emulation", ev, ov, c);
        record(Tolerance.assertCloseScaled("adamw m", om, ref.m(), ref.mScale(), 0, M_TOL_U * U, c));
        record(Tolerance.assertCloseScaled("adamw v", ov, ref.v(), ref.vScale(), 0, V_TOL_U * U, c));
        record(Tolerance.assertCloseScaled("adamw param", op, ref.p(), ref.pScale(), 0, P_TOL_U * U, c));
        System.arraycopy(op, 0, p, 0, p.length);
        System.arraycopy(om, 0, m, 0, m.length);
        System.arraycopy(ov, 0, v, 0, v.length);
    }

    @ParameterizedTest(name = "count={0}")
    @ValueSource(ints = {1, 7, 1000003})
    void adamwMatchesReferenceOverSteps(int count) {
        TestRandom r = TestRandom.fresh();
        AdamW hp = OptimReference.randomHyper(r);
        float[] p = r.gaussians(count, 0.5), m = new float[count], v = new float[count];
        int steps = count > 1000 ? 4 : 12;
        for (int t = 1; t <= steps; t++) {
            float[] g = OptimReference.gradients(r, count);
            double gs = r.nextInt(3) == 0 ? 1.0 : 0.05 + 0.95 * r.nextDouble();
            checkAdamwStep(cpu, hp, t, gs, p, g, m, v, ctx(r, "count", count, "step", t, "gradScale", gs, hp));
        }
    }

    /** Late steps (bias corrections near 1) and extreme betas: beta1 = 0, beta2 = 0 and close to 1. */
    @Test
    void adamwEdgeHyperParameters() {
        TestRandom r = TestRandom.fresh();
        int n = 1031;
        AdamW[] hps = {new AdamW(1e-3, 0.0, 0.999, 1e-8, 0.0), new AdamW(1e-3, 0.9, 0.0, 1e-8, 0.01),
                new AdamW(0.0, 0.9, 0.999, 1e-8, 0.5), new AdamW(3e-4, 0.95, 0.99999, 1e-6, 0.01)};
        for (AdamW hp : hps) {
            for (long step : new long[] {1, 2, 1000, 1_000_000_000L}) {
                float[] p = r.gaussians(n, 1.0), m = r.gaussians(n, 0.01), v = r.uniforms(n, 0, 1e-4);
                checkAdamwStep(cpu, hp, step, 1.0, p, OptimReference.gradients(r, n), m, v, ctx(r, hp, "step", step));
            }
        }
    }

    /**
     * Hand-worked example, lr = 0.1, betas (0.9, 0.999), eps = 1e-8, weight_decay = 0.01:
     *
     * <pre>
     * element 0: p = 1, g1 = 0.5, g2 = -0.25
     *   step 1: p = 1 (1 - 0.1*0.01)           = 0.999
     *           m = 0.1 * 0.5                  = 0.05,    v = 0.001 * 0.25 = 0.00025
     *           m^ = 0.05 / (1 - 0.9)          = 0.5,     v^ = 0.00025 / (1 - 0.999) = 0.25, sqrt = 0.5
     *           p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.999 - 0.099999998 = 0.899000002
     *   step 2: p = 0.899000002 * 0.999        = 0.898101001998
     *           m = 0.9*0.05 + 0.1*(-0.25)     = 0.02
     *           v = 0.999*0.00025 + 0.001*0.0625 = 0.00024975 + 0.0000625 = 0.00031225
     *           bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 = 0.001999
     *           m^ = 0.02 / 0.19 = 2/19        = 0.105263157894737
     *           v^ = 0.00031225 / 0.001999     = 0.156203101550775, sqrt = 0.395225380701667
     *           p = 0.898101001998 - 0.1 * 0.105263157894737 / 0.395225390701667
     *             = 0.898101001998 - 0.0266337032921536 = 0.871467298705846
     * element 1: p = -2, g = 0 both steps: m = v = 0, the update is 0/(0 + eps) = 0 and only the
     *   weight decay acts: p = -2 * 0.999 = -1.998, then -1.998 * 0.999 = -1.996002.
     * </pre>
     * The float32 results must be within 1e-6 relative (about 17 u) of these values.
     */
    @Test
    void adamwHandWorkedTwoSteps() {
        AdamW hp = new AdamW(0.1, 0.9, 0.999, 1e-8, 0.01);
        float[][] grads = {{0.5f, 0.0f}, {-0.25f, 0.0f}};
        double[][] expectP = {{0.899000002, -1.998}, {0.871467298705846, -1.996002}};
        double[][] expectM = {{0.05, 0}, {0.02, 0}};
        double[][] expectV = {{0.00025, 0}, {0.00031225, 0}};
        try (Tensor p = Tensor.of(cpu, new float[] {1.0f, -2.0f}, 2); Tensor g = Tensor.of(cpu, new float[2], 2);
             Tensor m = Tensor.of(cpu, new float[2], 2); Tensor v = Tensor.of(cpu, new float[2], 2)) {
            for (int t = 1; t <= 2; t++) {
                g.copyFrom(grads[t - 1]);
                OptimKernels.adamw(p, g, m, v, hp, t, 1.0);
                float[] op = p.toFloatArray(), om = m.toFloatArray(), ov = v.toFloatArray();
                String c = "hand-worked step " + t;
                Tolerance.assertClose("param", op, expectP[t - 1], 0, 1e-6, c);
                Tolerance.assertClose("m", om, expectM[t - 1], 0, 1e-6, c);
                Tolerance.assertClose("v", ov, expectV[t - 1], 0, 1e-6, c);
            }
        }
        // the float64 reference itself reproduces the hand values
        OptimReference.AdamRef r1 = OptimReference.adamw64(hp, 1, 1.0, new float[] {1f}, new float[] {0.5f}, new float[1],
                new float[1]);
        assertEquals(0.899000002, r1.p()[0], 1e-15);
    }

    /** Two parameter groups by views: weights with weight decay, an odd-offset bias range without; outside untouched. */
    @Test
    void adamwOnViewsLeavesTheRestUntouched() {
        TestRandom r = TestRandom.fresh();
        int n = 1013, a = 3, b = 700, cnt = b - a; // view [3, 700): offset 12 bytes, not vector aligned
        AdamW hp = OptimReference.randomHyper(r).withWeightDecay(0.05);
        float[] p = r.gaussians(n, 1.0), g = OptimReference.gradients(r, n), m = r.gaussians(n, 0.01),
                v = r.uniforms(n, 0, 1e-3);
        float[] ep = p.clone(), em = m.clone(), ev = v.clone();
        String c = ctx(r, hp);
        try (State s = State.of(cpu, p, g, m, v)) {
            try (Tensor vp = s.p().view(a, cnt); Tensor vg = s.g().view(a, cnt); Tensor vm = s.m().view(a, cnt);
                 Tensor vv = s.v().view(a, cnt)) {
                OptimKernels.adamw(vp, vg, vm, vv, hp, 3, 0.7);
            }
            OptimReference.adamwF32(OptimReference.Coef.of(hp, 3, 0.7), ep, g, em, ev, a, b);
            Tolerance.assertBitIdentical("param after view update", ep, s.p().toFloatArray(), c);
            Tolerance.assertBitIdentical("m after view update", em, s.m().toFloatArray(), c);
            Tolerance.assertBitIdentical("v after view update", ev, s.v().toFloatArray(), c);
            // every element outside kept its bits; inside, the update was applied (an element may keep its
            // bits only when its step is below half an ulp of it, as the float32 reference shows: with a small
            // random lr that happens to a few elements, so the count of changed ones is bounded, not all)
            float[] now = s.p().toFloatArray();
            int changedInside = 0;
            for (int i = 0; i < n; i++) {
                boolean inside = i >= a && i < b;
                boolean same = Float.floatToRawIntBits(now[i]) == Float.floatToRawIntBits(p[i]);
                if (!inside) assertTrue(same, "element " + i + " outside changed; " + c);
                else if (!same) changedInside++;
            }
            assertTrue(changedInside >= cnt * 9 / 10, changedInside + " of " + cnt + " elements inside changed; " + c);
            // second group: the tail [700, 1013) without weight decay
            AdamW noWd = hp.withWeightDecay(0.0);
            try (Tensor vp = s.p().view(b, n - b); Tensor vg = s.g().view(b, n - b); Tensor vm = s.m().view(b, n - b);
                 Tensor vv = s.v().view(b, n - b)) {
                OptimKernels.adamw(vp, vg, vm, vv, noWd, 3, 0.7);
            }
            OptimReference.adamwF32(OptimReference.Coef.of(noWd, 3, 0.7), ep, g, em, ev, b, n);
            Tolerance.assertBitIdentical("param after both groups", ep, s.p().toFloatArray(), c);
            Tolerance.assertBitIdentical("m after both groups", em, s.m().toFloatArray(), c);
            Tolerance.assertBitIdentical("v after both groups", ev, s.v().toFloatArray(), c);
            Tolerance.assertBitIdentical("grad untouched", g, s.g().toFloatArray(), c);
        }
    }

    @Test
    void adamwDoesNotDependOnThreadCount() {
        TestRandom r = TestRandom.fresh();
        int n = 5 * GRAIN + 77;
        AdamW hp = OptimReference.randomHyper(r);
        float[] p = r.gaussians(n, 1.0), g = OptimReference.gradients(r, n), m = r.gaussians(n, 0.01),
                v = r.uniforms(n, 0, 1e-3);
        float[][] out = new float[2][];
        try {
            for (int threads = 1; threads <= 2; threads++) {
                cpu.setThreads(threads);
                try (State s = State.of(cpu, p, g, m, v)) {
                    OptimKernels.adamw(s.p(), s.g(), s.m(), s.v(), hp, 7, 1.0);
                    out[threads - 1] = s.p().toFloatArray();
                }
            }
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
        Tolerance.assertBitIdentical("adamw param, 1 vs 2 threads", out[0], out[1], ctx(r, hp));
    }

    // ---- gradient norm and clipping ----------------------------------------------------------

    static double norm(Backend be, float[] g) {
        try (Tensor t = Tensor.of(be, g, g.length)) {
            return OptimKernels.gradNorm(t);
        }
    }

    static void assertNormClose(double got, float[] g, String c) {
        double ref = Math.sqrt(OptimReference.sumsq(g));
        double err = Math.abs(got - ref) / ref;
        System.out.printf(Locale.ROOT, "[d4j-error] grad_norm n=%d rel err = %.3g%n", g.length, err);
        assertTrue(err <= NORM_RTOL, String.format(Locale.ROOT, "grad norm %.17g vs reference %.17g: relative error %.3g > %.1g; %s",
                got, ref, err, NORM_RTOL, c));
    }

    @ParameterizedTest(name = "count={0}")
    @ValueSource(ints = {1, 7, 3 * GRAIN + 5, 1000003})
    void gradNormMatchesFloat64AndIsDeterministic(int count) {
        TestRandom r = TestRandom.fresh();
        float[] g = OptimReference.gradients(r, count);
        if (count == 1) g[0] = -3.0f; // a single element: the norm is |g|
        String c = ctx(r, "count", count);
        double first = norm(cpu, g);
        assertNormClose(first, g, c);
        if (count == 1) assertEquals(3.0, first, 0.0, c);
        assertEquals(Double.doubleToRawLongBits(first), Double.doubleToRawLongBits(norm(cpu, g)), "second call differs; " + c);
        try {
            cpu.setThreads(1);
            double one = norm(cpu, g);
            cpu.setThreads(2);
            double two = norm(cpu, g);
            cpu.setThreads(5);
            double five = norm(cpu, g);
            assertEquals(Double.doubleToRawLongBits(one), Double.doubleToRawLongBits(two), "1 vs 2 threads; " + c);
            assertEquals(Double.doubleToRawLongBits(one), Double.doubleToRawLongBits(five), "1 vs 5 threads; " + c);
            assertEquals(Double.doubleToRawLongBits(one), Double.doubleToRawLongBits(first), "1 vs all threads; " + c);
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
    }

    @Test
    void gradNormOfAViewAndOfNonFiniteGradients() {
        TestRandom r = TestRandom.fresh();
        float[] g = OptimReference.gradients(r, 2001);
        String c = ctx(r);
        try (Tensor t = Tensor.of(cpu, g, g.length); Tensor view = t.view(5, 1000)) {
            float[] part = java.util.Arrays.copyOfRange(g, 5, 1005);
            assertNormClose(OptimKernels.gradNorm(view), part, c);
            g[1500] = Float.NaN;
            t.copyFrom(g);
            assertTrue(Double.isNaN(OptimKernels.gradNorm(t)), "NaN gradient must give a NaN norm; " + c);
            assertNormClose(OptimKernels.gradNorm(view), part, "NaN outside the view; " + c);
            g[1500] = Float.POSITIVE_INFINITY;
            t.copyFrom(g);
            assertEquals(Double.POSITIVE_INFINITY, OptimKernels.gradNorm(t), c);
            assertThrows(IllegalArgumentException.class, () -> OptimKernels.clipScale(Double.POSITIVE_INFINITY, 1.0));
        }
    }

    /**
     * Clipping as torch.nn.utils.clip_grad_norm_: scale = min(1, max_norm / (norm + 1e-6)). AdamW with
     * gradScale = scale equals, bit for bit, AdamW on the gradients pre-scaled in float32 (the kernel
     * rounds grad * scale once, as an explicit scaling pass would), and the pre-scaled gradients have
     * norm max_norm (up to the 1e-6 guard and float32 rounding).
     */
    @Test
    void clipScaleIsAppliedInsideAdamw() {
        TestRandom r = TestRandom.fresh();
        int n = 4099;
        float[] g = r.gaussians(n, 3.0);
        double maxNorm = 1.0;
        double nrm = norm(cpu, g);
        double scale = OptimKernels.clipScale(nrm, maxNorm);
        String c = ctx(r, "norm", nrm, "scale", scale);
        assertTrue(scale < 0.1, "the test needs clipping to be active; " + c);
        assertEquals(1.0, OptimKernels.clipScale(0.5, maxNorm), 0.0, "no clipping below max_norm");
        assertEquals(maxNorm / (nrm + 1e-6), scale, 0.0, c);
        float[] pre = new float[n];
        for (int i = 0; i < n; i++) pre[i] = g[i] * (float) scale;
        assertEquals(maxNorm, norm(cpu, pre), 1e-5, "clipped norm; " + c);
        AdamW hp = OptimReference.randomHyper(r);
        float[] p = r.gaussians(n, 1.0), m = r.gaussians(n, 0.01), v = r.uniforms(n, 0, 1e-3);
        float[] viaScale, viaPre;
        try (State s = State.of(cpu, p, g, m, v)) {
            OptimKernels.adamw(s.p(), s.g(), s.m(), s.v(), hp, 5, scale);
            viaScale = s.p().toFloatArray();
        }
        try (State s = State.of(cpu, p, pre, m, v)) {
            OptimKernels.adamw(s.p(), s.g(), s.m(), s.v(), hp, 5, 1.0);
            viaPre = s.p().toFloatArray();
        }
        Tolerance.assertBitIdentical("adamw(grad, scale) vs adamw(grad * scale, 1)", viaPre, viaScale, c);
        // and the scale really changed the result
        float[] unclipped = p.clone(), um = m.clone(), uv = v.clone();
        OptimReference.adamwF32(OptimReference.Coef.of(hp, 5, 1.0), unclipped, g, um, uv, 0, n);
        int differ = 0;
        for (int i = 0; i < n; i++) if (unclipped[i] != viaScale[i]) differ++;
        assertTrue(differ > n / 2, "clipping changed only " + differ + " of " + n + " elements; " + c);
    }

    // ---- EMA -----------------------------------------------------------------------------------

    @ParameterizedTest(name = "count={0}")
    @ValueSource(ints = {1, 7, 1000003})
    void emaMatchesReferenceOverSteps(int count) {
        TestRandom r = TestRandom.fresh();
        EmaSchedule sched = EmaSchedule.power(0.9999, 0.0, 0, 1.0, 0.75);
        float[] ema = r.gaussians(count, 1.0);
        String base = ctx(r, "count", count);
        try (Tensor te = Tensor.of(cpu, ema, count)) {
            for (int step = 1; step <= (count > 1000 ? 4 : 10); step++) {
                float[] p = r.gaussians(count, 1.0);
                double decay = step == 4 ? 0.9999 : sched.decay(step); // step 1: decay 0, a copy
                String c = "step " + step + " decay " + decay + " " + base;
                float[] before = te.toFloatArray();
                float[] expect = before.clone();
                OptimReference.emaF32(decay, expect, p, 0, count);
                double[][] ref = OptimReference.ema64(decay, before, p);
                try (Tensor tp = Tensor.of(cpu, p, count)) {
                    OptimKernels.ema(te, tp, decay);
                    Tolerance.assertBitIdentical("ema param (read-only)", p, tp.toFloatArray(), c);
                }
                float[] out = te.toFloatArray();
                Tolerance.assertBitIdentical("ema vs float32 emulation", expect, out, c);
                record(Tolerance.assertCloseScaled("ema", out, ref[0], ref[1], 0, EMA_TOL_U * U, c));
                if (decay == 0.0) Tolerance.assertBitIdentical("ema with decay 0 copies", p, out, c);
            }
        }
    }

    /** A parameter that stopped moving keeps its EMA bit-exactly; decay 1 freezes the EMA; views. */
    @Test
    void emaFixedPointsAndViews() {
        TestRandom r = TestRandom.fresh();
        int n = 777;
        float[] p = r.gaussians(n, 100.0);
        String c = ctx(r);
        try (Tensor te = Tensor.of(cpu, p, n); Tensor tp = Tensor.of(cpu, p, n)) {
            for (int i = 0; i < 50; i++) OptimKernels.ema(te, tp, 0.9 + 0.0999 * r.nextDouble());
            Tolerance.assertBitIdentical("ema of a constant parameter", p, te.toFloatArray(), c);
            float[] q = r.gaussians(n, 1.0);
            tp.copyFrom(q);
            OptimKernels.ema(te, tp, 1.0);
            Tolerance.assertBitIdentical("ema with decay 1", p, te.toFloatArray(), c);
            try (Tensor ve = te.view(11, 500); Tensor vp = tp.view(11, 500)) {
                OptimKernels.ema(ve, vp, 0.5);
            }
            float[] expect = p.clone();
            OptimReference.emaF32(0.5, expect, q, 11, 511);
            Tolerance.assertBitIdentical("ema on a view", expect, te.toFloatArray(), c);
        }
    }

    /**
     * EmaSchedule against values worked out by hand from diffusers' EMAModel.get_decay, where
     * step = max(0, optimization_step - update_after_step - 1) and step 0 gives decay 0.
     */
    @Test
    void emaScheduleMatchesHandValues() {
        // power = 1/2, inv_gamma = 1: 1 - (1 + step)^-1/2
        EmaSchedule s = EmaSchedule.power(0.9999, 0.0, 0, 1.0, 0.5);
        assertEquals(0.0, s.decay(1), 0.0);           // step 0: the first update copies
        assertEquals(0.5, s.decay(4), 1e-15);         // step 3: 1 - 4^-1/2 = 1/2
        assertEquals(2.0 / 3.0, s.decay(9), 1e-15);   // step 8: 1 - 9^-1/2 = 2/3
        assertEquals(0.75, s.decay(16), 1e-15);       // step 15: 1 - 16^-1/2 = 3/4
        assertEquals(0.9999, s.decay(1_000_000_000L), 0.0); // 1 - 1/31623 = 0.99997 clamped to 0.9999
        // inv_gamma = 2, power = 1: 1 - (1 + step/2)^-1; step 4: 1 - 1/3 = 2/3; update_after_step = 5 shifts by 5
        EmaSchedule g = EmaSchedule.power(0.9999, 0.0, 5, 2.0, 1.0);
        assertEquals(0.0, g.decay(6), 0.0);           // step = 6 - 5 - 1 = 0
        assertEquals(1.0 / 3.0, g.decay(7), 1e-15);   // step 1: 1 - 1/1.5
        assertEquals(2.0 / 3.0, g.decay(10), 1e-15);  // step 4
        // clamps: max 0.6 caps 2/3; min 0.55 lifts 1/2, but step 0 stays 0 as in diffusers
        EmaSchedule cl = EmaSchedule.power(0.6, 0.55, 0, 1.0, 0.5);
        assertEquals(0.6, cl.decay(9), 0.0);
        assertEquals(0.55, cl.decay(4), 0.0);
        assertEquals(0.0, cl.decay(1), 0.0);
        // diffusers' note: inv_gamma 1, power 2/3 reaches 0.999 at about 31.6k steps: (1 + 31622)^(2/3) = 1000.0
        EmaSchedule pw = EmaSchedule.power(0.9999, 0.0, 0, 1.0, 2.0 / 3.0);
        assertEquals(0.999, pw.decay(31623), 1e-7);
        assertEquals(1 - Math.pow(2, -2.0 / 3.0), pw.decay(2), 1e-15); // step 1: 1 - 2^-2/3 = 0.370039475...
        assertEquals(0.37003947505256, pw.decay(2), 1e-13);
        // ratio warmup (1 + step) / (10 + step)
        EmaSchedule ra = EmaSchedule.ratio(0.9999, 0.0, 0);
        assertEquals(0.0, ra.decay(1), 0.0);
        assertEquals(2.0 / 11.0, ra.decay(2), 1e-15);   // step 1
        assertEquals(0.55, ra.decay(11), 1e-15);        // step 10: 11/20
        assertEquals(0.9999, ra.decay(1_000_001), 0.0); // 1000001/1000010 = 0.999991 > 0.9999
        // constant (current diffusers without warmup)
        EmaSchedule co = EmaSchedule.diffusersDefaults();
        assertEquals(0.0, co.decay(1), 0.0);
        assertEquals(0.9999, co.decay(2), 0.0);
        assertEquals(0.9999, co.decay(123456), 0.0);
        assertThrows(IllegalArgumentException.class, () -> EmaSchedule.power(1.5, 0, 0, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> EmaSchedule.power(0.9, 0.95, 0, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> EmaSchedule.power(0.9, 0, -1, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> EmaSchedule.power(0.9, 0, 0, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> EmaSchedule.power(0.9, 0, 0, 1, Double.NaN));
    }

    // ---- argument validation ---------------------------------------------------------------------

    static String lastError() {
        return d4j_h.d4j_last_error().getString(0);
    }

    /** The front refuses every bad argument with a message naming it (called through the raw bindings). */
    @Test
    void frontValidatesArguments() {
        try (Tensor a = Tensor.of(cpu, new float[8], 8); Tensor b = Tensor.of(cpu, new float[8], 8);
             Tensor c = Tensor.of(cpu, new float[8], 8); Tensor d = Tensor.of(cpu, new float[8], 8);
             Tensor ov = a.view(2, 4); Tensor small = Tensor.of(cpu, new float[4], 4); Arena arena = Arena.ofConfined()) {
            MemorySegment be = cpu.handle();
            record Bad(String needle, int status) {}
            java.util.function.BiConsumer<Bad, Integer> expect = (bad, st) -> {
                assertEquals(bad.status(), st, "status for " + bad.needle() + ": " + lastError());
                assertTrue(lastError().contains(bad.needle()), "message '" + lastError() + "' must mention " + bad.needle());
            };
            double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
            expect.accept(new Bad("lr", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, Double.NaN, b1, b2, eps, wd, 1, 1.0));
            expect.accept(new Bad("lr", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, -1, b1, b2, eps, wd, 1, 1.0));
            expect.accept(new Bad("beta1", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, 1.0, b2, eps, wd, 1, 1.0));
            expect.accept(new Bad("beta2", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, b1, -0.1, eps, wd, 1, 1.0));
            expect.accept(new Bad("eps", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, b1, b2, 0.0, wd, 1, 1.0));
            expect.accept(new Bad("eps", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, b1, b2, 1e-300, wd, 1, 1.0));
            expect.accept(new Bad("weight_decay", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, b1, b2, eps, Double.POSITIVE_INFINITY, 1, 1.0));
            expect.accept(new Bad("step", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, b1, b2, eps, wd, 0, 1.0));
            expect.accept(new Bad("grad_scale", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, b1, b2, eps, wd, 1, Double.NaN));
            expect.accept(new Bad("count", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 0, lr, b1, b2, eps, wd, 1, 1.0));
            expect.accept(new Bad("count", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), Long.MAX_VALUE, lr, b1, b2, eps, wd, 1, 1.0));
            expect.accept(new Bad("v: buffer holds 16 bytes", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), small.handle(), 8, lr, b1, b2, eps, wd, 1, 1.0));
            expect.accept(new Bad("m: buffer is null", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), MemorySegment.NULL, d.handle(), 8, lr, b1, b2, eps, wd, 1, 1.0));
            expect.accept(new Bad("param overlaps m", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), a.handle(), d.handle(), 8, lr, b1, b2, eps, wd, 1, 1.0));
            // a view overlapping its parent (different handles, same memory)
            expect.accept(new Bad("param overlaps v", 1), d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), ov.handle(), 4, lr, b1, b2, eps, wd, 1, 1.0));
            MemorySegment out = arena.allocate(ValueLayout.JAVA_DOUBLE);
            expect.accept(new Bad("out_norm", 1), d4j_h.d4j_grad_norm(be, a.handle(), 8, MemorySegment.NULL));
            expect.accept(new Bad("count", 1), d4j_h.d4j_grad_norm(be, a.handle(), -1, out));
            expect.accept(new Bad("grad: buffer holds 32 bytes", 1), d4j_h.d4j_grad_norm(be, a.handle(), 9, out));
            expect.accept(new Bad("backend is null", 1), d4j_h.d4j_grad_norm(MemorySegment.NULL, a.handle(), 8, out));
            expect.accept(new Bad("decay", 1), d4j_h.d4j_ema_update(be, a.handle(), b.handle(), 8, 1.5));
            expect.accept(new Bad("decay", 1), d4j_h.d4j_ema_update(be, a.handle(), b.handle(), 8, Double.NaN));
            expect.accept(new Bad("ema overlaps param", 1), d4j_h.d4j_ema_update(be, a.handle(), ov.handle(), 4, 0.5));
            expect.accept(new Bad("param: buffer holds 16 bytes", 1), d4j_h.d4j_ema_update(be, a.handle(), small.handle(), 8, 0.5));
            // and the valid calls go through
            assertEquals(0, d4j_h.d4j_adamw(be, a.handle(), b.handle(), c.handle(), d.handle(), 8, lr, b1, b2, eps, wd, 1, 1.0), lastError());
            assertEquals(0, d4j_h.d4j_ema_update(be, a.handle(), b.handle(), 8, 0.5), lastError());
            assertEquals(0, d4j_h.d4j_grad_norm(be, a.handle(), 8, out), lastError());
        }
    }

    /** The Java face refuses bad shapes and hyper-parameters with a message naming the parameter. */
    @Test
    void javaValidatesArguments() {
        try (Tensor a = Tensor.of(cpu, new float[8], 8); Tensor b = Tensor.of(cpu, new float[8], 2, 4);
             Tensor seven = Tensor.of(cpu, new float[7], 7)) {
            AdamW hp = AdamW.defaults(1e-3);
            var e = assertThrows(IllegalArgumentException.class, () -> OptimKernels.adamw(a, seven, a, a, hp, 1, 1.0));
            assertTrue(e.getMessage().startsWith("grad"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> OptimKernels.adamw(a, b, seven, a, hp, 1, 1.0));
            assertTrue(e.getMessage().startsWith("m"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> OptimKernels.adamw(a, b, b, a, hp, 0, 1.0));
            assertTrue(e.getMessage().startsWith("step"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> OptimKernels.adamw(a, b, b, a, hp, 1, -1.0));
            assertTrue(e.getMessage().startsWith("gradScale"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> new AdamW(1e-3, 0.9, 1.0, 1e-8, 0));
            assertTrue(e.getMessage().startsWith("beta2"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> new AdamW(Double.NaN, 0.9, 0.99, 1e-8, 0));
            assertTrue(e.getMessage().startsWith("lr"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> OptimKernels.ema(a, seven, 0.5));
            assertTrue(e.getMessage().startsWith("param"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> OptimKernels.ema(a, b, -0.5));
            assertTrue(e.getMessage().startsWith("decay"), e.getMessage());
            // shapes may differ when counts agree (views of a flat buffer); aliasing is refused by the front
            OptimKernels.ema(a, b, 0.5);
            var ex = assertThrows(D4jException.InvalidArgumentException.class, () -> OptimKernels.adamw(a, b, a, b, hp, 1, 1.0));
            assertTrue(ex.getMessage().contains("overlap"), ex.getMessage());
        }
    }
}
