package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.LinearAttentionReference.TOL_FACTOR;
import static io.diffusion4j.kernels.LinearAttentionReference.UNDERFLOW;
import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.kernels.LinearAttentionReference.Attn;
import io.diffusion4j.kernels.LinearAttentionReference.Out;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * d4j_linear_* and d4j_attention_* of the CPU backend against the float64 reference
 * ({@link LinearAttentionReference}).
 *
 * <p>Tolerance: every element satisfies {@code |out - ref| <= 2 u scale}, where scale is the
 * first-order rounding-error bound of a correct float32 kernel propagated with absolute values
 * (for a linear output: {@code (in + 2) sum|x w| + |b|}); see LinearAttentionReference. Gradient
 * checks against central finite differences of the float64 forward add the difference quotient's own
 * error (1e-7 absolute for the linear layer, exact there; 1e-5 for attention, whose h = 2^-10 differences
 * have truncation error ~1e-7). An absolute 1e-30 everywhere covers float32 underflow: with logits of
 * magnitude 1000, probabilities below ~1e-38 are flushed (the float64 reference keeps e.g. 1e-275). Measured worst errors are printed as
 * [d4j-error] lines.
 */
class LinearAttentionTest {
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    static void check(String what, float[] out, Out ref, String ctx) {
        Tolerance.log(Tolerance.assertCloseScaled(what, out, ref.ref(), ref.scale(), UNDERFLOW, TOL_FACTOR * U, ctx));
    }

    static void check(String what, float[] out, double[] ref, double[] scale, String ctx) {
        check(what, out, new Out(ref, scale), ctx);
    }

    static final int[] ROWS = {1, 7, 33};
    static final int[] FEATURES = {3, 13, 70};

    @Test
    void linearForwardMatchesReference() {
        for (int rows : ROWS) {
            for (int in : FEATURES) {
                for (int out : FEATURES) {
                    for (boolean withBias : new boolean[] {false, true}) {
                        TestRandom r = TestRandom.fresh();
                        float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 0.5);
                        float[] b = withBias ? r.gaussians(out, 1.0) : null;
                        String ctx = "rows=" + rows + " in=" + in + " out=" + out + " bias=" + withBias + "; " + r.describe();
                        float[] y = LinearAttentionReference.linear(cpu, x, w, b, rows, in, out);
                        check("linear y", y, LinearAttentionReference.linear(x, w, b, rows, in, out), ctx);
                    }
                }
            }
        }
    }

    @Test
    void linearBackwardMatchesReferenceAndAccumulates() {
        for (int rows : ROWS) {
            for (int in : FEATURES) {
                for (int out : FEATURES) {
                    TestRandom r = TestRandom.fresh();
                    float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 0.5), dy = r.gaussians(rows * out, 1.0);
                    // parameter gradients start from arbitrary values: the kernel must add, not overwrite
                    float[] dw0 = r.gaussians(out * in, 1.0), db0 = r.gaussians(out, 1.0);
                    String ctx = "rows=" + rows + " in=" + in + " out=" + out + "; " + r.describe();
                    float[][] g = LinearAttentionReference.linearBackward(cpu, x, w, dy, dw0, db0, rows, in, out);
                    check("linear dx", g[0], LinearAttentionReference.linearDx(w, dy, rows, in, out), ctx);
                    check("linear dw", g[1], LinearAttentionReference.linearDw(x, dy, dw0, rows, in, out), ctx);
                    check("linear db", g[2], LinearAttentionReference.linearDb(dy, db0, rows, out), ctx);
                }
            }
        }
    }

    /**
     * Past one GEMM task in every dimension: 71 rows (two 64-row blocks, a partial 8-row micro-tile), 300 input
     * features (two 256-deep slices: the second slice adds to C, the in-place A rows start at k = 256) and 290
     * outputs (two 256-column blocks, micro-panel pairs and a lone partial panel), forward and backward.
     */
    @Test
    void linearPastOneTaskMatchesReference() {
        int rows = 71, in = 300, out = 290;
        TestRandom r = TestRandom.fresh();
        float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 0.5), b = r.gaussians(out, 1.0);
        float[] dy = r.gaussians(rows * out, 1.0), dw0 = r.gaussians(out * in, 1.0), db0 = r.gaussians(out, 1.0);
        String ctx = "rows=" + rows + " in=" + in + " out=" + out + "; " + r.describe();
        check("linear y", LinearAttentionReference.linear(cpu, x, w, b, rows, in, out),
                LinearAttentionReference.linear(x, w, b, rows, in, out), ctx);
        float[][] g = LinearAttentionReference.linearBackward(cpu, x, w, dy, dw0, db0, rows, in, out);
        check("linear dx", g[0], LinearAttentionReference.linearDx(w, dy, rows, in, out), ctx);
        check("linear dw", g[1], LinearAttentionReference.linearDw(x, dy, dw0, rows, in, out), ctx);
        check("linear db", g[2], LinearAttentionReference.linearDb(dy, db0, rows, out), ctx);
    }

    @Test
    void linearBackwardTwiceSumsAndNullOutputsAreSkipped() {
        TestRandom r = TestRandom.fresh();
        int rows = 33, in = 13, out = 70;
        float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 0.5), dy = r.gaussians(rows * out, 1.0);
        String ctx = r.describe();
        try (Tensor tx = Tensor.of(cpu, x, rows, in); Tensor tw = Tensor.of(cpu, w, out, in);
             Tensor tdy = Tensor.of(cpu, dy, rows, out); Tensor dw = Tensor.allocate(cpu, DType.FLOAT32, out, in);
             Tensor db = Tensor.allocate(cpu, DType.FLOAT32, out); Tensor dx = Tensor.allocate(cpu, DType.FLOAT32, rows, in)) {
            dw.fill(0f);
            db.fill(0f);
            dx.fill(Float.NaN);
            // only dw: dx stays poisoned, db untouched
            LinearKernels.linearBackward(tx, tw, tdy, null, dw, null);
            float[] once = dw.toFloatArray();
            for (float v : dx.toFloatArray()) assertTrue(Float.isNaN(v), "dx was written although null was passed; " + ctx);
            for (float v : db.toFloatArray()) assertEquals(0f, v, "db was written although null was passed; " + ctx);
            LinearKernels.linearBackward(tx, tw, tdy, null, dw, db);
            Out ref1 = LinearAttentionReference.linearDw(x, dy, null, rows, in, out);
            check("dw after one call", once, ref1, ctx);
            double[] twice = ref1.ref().clone(), scale2 = ref1.scale().clone();
            for (int i = 0; i < twice.length; i++) {
                twice[i] *= 2;
                scale2[i] = 2 * scale2[i] + 2 * Math.abs(twice[i]);
            }
            check("dw after two calls (accumulated)", dw.toFloatArray(), twice, scale2, ctx);
            check("db after one call", db.toFloatArray(), LinearAttentionReference.linearDb(dy, null, rows, out), ctx);
        }
    }

    static void checkGradient(String what, float[] out, double[] numeric, double[] scaleU, String ctx) {
        Tolerance.log(Tolerance.assertCloseScaled(what + " vs finite differences", out, numeric, scaleU, 1e-7,
                TOL_FACTOR * U, ctx));
    }

    static float[] toFloat(double[] d) {
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) f[i] = (float) d[i];
        return f;
    }

    @Test
    void linearGradientsMatchFiniteDifferences() {
        TestRandom r = TestRandom.fresh();
        int rows = 3, in = 5, out = 4;
        float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 1.0), b = r.gaussians(out, 1.0);
        float[] g = r.gaussians(rows * out, 1.0);
        String ctx = r.describe();
        // L = sum(y * g) of the float64 reference forward
        java.util.function.BiFunction<float[], float[], Double> loss = (xx, ww) -> {
            double[] y = LinearAttentionReference.linear(xx, ww, b, rows, in, out).ref();
            double s = 0;
            for (int i = 0; i < y.length; i++) s += y[i] * g[i];
            return s;
        };
        float[][] k = LinearAttentionReference.linearBackward(cpu, x, w, g, new float[out * in], new float[out], rows, in, out);
        // the loss is linear in each input: central differences in float64 are exact up to ~1e-12
        double[] nx = numericGradientD(x, xx -> loss.apply(xx, w));
        double[] nw = numericGradientD(w, ww -> loss.apply(x, ww));
        double[] nb = new double[out];
        for (int o = 0; o < out; o++) for (int m = 0; m < rows; m++) nb[o] += g[m * out + o];  // dL/db by definition
        checkGradient("linear dx", k[0], nx, LinearAttentionReference.linearDx(w, g, rows, in, out).scale(), ctx);
        checkGradient("linear dw", k[1], nw, LinearAttentionReference.linearDw(x, g, null, rows, in, out).scale(), ctx);
        double[] bScale = LinearAttentionReference.linearDb(g, null, rows, out).scale();
        double[] nbFd = numericGradientD(b, bb -> {
            double[] y = LinearAttentionReference.linear(x, w, bb, rows, in, out).ref();
            double s = 0;
            for (int i = 0; i < y.length; i++) s += y[i] * g[i];
            return s;
        });
        checkGradient("linear db", k[2], nbFd, bScale, ctx);
        Tolerance.assertCloseScaled("db finite differences vs definition", toFloat(nbFd), nb, bScale, 1e-7, U, ctx);
    }

    /**
     * Central differences of the float64 function f of float32 inputs. The step 2^-10 is applied in
     * float32 and the steps actually taken are used in the quotient, so input rounding adds no error.
     */
    static double[] numericGradientD(float[] x, java.util.function.Function<float[], Double> f) {
        float h = 0x1p-10f;
        double[] g = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            float[] p = x.clone(), m = x.clone();
            p[i] = x[i] + h;
            m[i] = x[i] - h;
            double hp = (double) p[i] - x[i], hm = (double) x[i] - m[i];  // the steps actually taken
            g[i] = (f.apply(p) - f.apply(m)) / (hp + hm);
        }
        return g;
    }

    // ---- attention ----

    static List<Attn> attnShapes() {
        List<Attn> s = new ArrayList<>();
        for (int L : new int[] {1, 9, 49}) {
            for (int heads : new int[] {1, 2}) {
                for (int d : new int[] {4, 8, 5}) {
                    s.add(new Attn(2, L, heads, d, (float) (1.0 / Math.sqrt(d))));
                }
            }
        }
        // both sides of the small-head path (head_dim <= 16 on the CPU) and more than one 64-row query block
        for (int d : new int[] {16, 17}) s.add(new Attn(1, 9, 2, d, (float) (1.0 / Math.sqrt(d))));
        s.add(new Attn(1, 70, 1, 8, (float) (1.0 / Math.sqrt(8))));
        s.add(new Attn(1, 70, 1, 17, (float) (1.0 / Math.sqrt(17))));
        return s;
    }

    static String ctx(Attn a, TestRandom r) {
        return a + "; " + r.describe();
    }

    @Test
    void attentionForwardMatchesReference() {
        for (Attn a : attnShapes()) {
            TestRandom r = TestRandom.fresh();
            float[] q = r.gaussians(a.size(), 1.0), k = r.gaussians(a.size(), 1.0), v = r.gaussians(a.size(), 1.0);
            var got = LinearAttentionReference.attention(cpu, a, q, k, v);
            var ref = LinearAttentionReference.attention(a, q, k, v);
            check("attention out", got.out(), ref.out(), ref.outScale(), ctx(a, r));
            check("attention lse", got.lse(), ref.lse(), ref.lseScale(), ctx(a, r));
        }
    }

    @Test
    void attentionBackwardMatchesAnalyticReference() {
        for (Attn a : attnShapes()) {
            TestRandom r = TestRandom.fresh();
            float[] q = r.gaussians(a.size(), 1.0), k = r.gaussians(a.size(), 1.0), v = r.gaussians(a.size(), 1.0);
            float[] g = r.gaussians(a.size(), 1.0);
            var got = LinearAttentionReference.attentionBackward(cpu, a, q, k, v, g);
            var ref = LinearAttentionReference.attentionBackward(a, q, k, v, g, LinearAttentionReference.attention(a, q, k, v));
            check("attention dq", got.dq(), ref.dq(), ctx(a, r));
            check("attention dk", got.dk(), ref.dk(), ctx(a, r));
            check("attention dv", got.dv(), ref.dv(), ctx(a, r));
        }
    }

    @Test
    void attentionGradientsMatchFiniteDifferences() {
        for (Attn a : new Attn[] {new Attn(1, 3, 2, 3, 0.6f), new Attn(2, 4, 1, 5, 0.45f)}) {
            TestRandom r = TestRandom.fresh();
            float[] q = r.gaussians(a.size(), 1.0), k = r.gaussians(a.size(), 1.0), v = r.gaussians(a.size(), 1.0);
            float[] g = r.gaussians(a.size(), 1.0);
            String c = ctx(a, r);
            var got = LinearAttentionReference.attentionBackward(cpu, a, q, k, v, g);
            var ref = LinearAttentionReference.attentionBackward(a, q, k, v, g, LinearAttentionReference.attention(a, q, k, v));
            // steps of 2^-10: truncation error ~ h^2 |f'''| / 6 ~ 1e-7 for O(1) inputs, hence atol 1e-5
            double[] nq = numericGradientD(q, x -> LinearAttentionReference.attentionLoss(a, x, k, v, g));
            double[] nk = numericGradientD(k, x -> LinearAttentionReference.attentionLoss(a, q, x, v, g));
            double[] nv = numericGradientD(v, x -> LinearAttentionReference.attentionLoss(a, q, k, x, g));
            double atol = 1e-5;
            Tolerance.log(Tolerance.assertCloseScaled("attention dq vs finite differences", got.dq(), nq, ref.dq().scale(), atol, TOL_FACTOR * U, c));
            Tolerance.log(Tolerance.assertCloseScaled("attention dk vs finite differences", got.dk(), nk, ref.dk().scale(), atol, TOL_FACTOR * U, c));
            Tolerance.log(Tolerance.assertCloseScaled("attention dv vs finite differences", got.dv(), nv, ref.dv().scale(), atol, TOL_FACTOR * U, c));
        }
    }

    @Test
    void softmaxIsStableForLargeLogits() {
        // q, k ~ N(0, 31.6^2), scale 1/sqrt(D): scores have magnitude ~1000, exp(1000) overflows float32,
        // so only a max-shifted softmax gives finite output
        for (Attn a : new Attn[] {new Attn(1, 49, 2, 8, (float) (1.0 / Math.sqrt(8))), new Attn(2, 9, 1, 5, (float) (1.0 / Math.sqrt(5)))}) {
            TestRandom r = TestRandom.fresh();
            float[] q = r.gaussians(a.size(), 31.6), k = r.gaussians(a.size(), 31.6), v = r.gaussians(a.size(), 1.0);
            float[] g = r.gaussians(a.size(), 1.0);
            String c = ctx(a, r);
            var ref = LinearAttentionReference.attention(a, q, k, v);
            double maxLogit = 0;
            for (double l : ref.lse()) maxLogit = Math.max(maxLogit, Math.abs(l));
            assertTrue(maxLogit > 300, "test inputs should give logits of magnitude ~1000, got lse up to " + maxLogit + "; " + c);
            var got = LinearAttentionReference.attention(cpu, a, q, k, v);
            check("large-logit attention out", got.out(), ref.out(), ref.outScale(), c);
            check("large-logit attention lse", got.lse(), ref.lse(), ref.lseScale(), c);
            var grads = LinearAttentionReference.attentionBackward(cpu, a, q, k, v, g);
            var bref = LinearAttentionReference.attentionBackward(a, q, k, v, g, ref);
            check("large-logit attention dq", grads.dq(), bref.dq(), c);
            check("large-logit attention dk", grads.dk(), bref.dk(), c);
            check("large-logit attention dv", grads.dv(), bref.dv(), c);
        }
    }

    @Test
    void resultsDoNotDependOnThreadCount() {
        TestRandom r = TestRandom.fresh();
        String c = r.describe();
        // large enough to be split into several parallel tasks (above kSerialBelow)
        int rows = 300, in = 70, out = 130;
        float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 0.5), b = r.gaussians(out, 1.0);
        float[] dy = r.gaussians(rows * out, 1.0), dw0 = r.gaussians(out * in, 1.0), db0 = r.gaussians(out, 1.0);
        Attn a = new Attn(2, 130, 2, 8, 0.35f);
        float[] q = r.gaussians(a.size(), 1.0), k = r.gaussians(a.size(), 1.0), v = r.gaussians(a.size(), 1.0);
        float[] g = r.gaussians(a.size(), 1.0);
        List<float[]> one = new ArrayList<>(), two = new ArrayList<>();
        try {
            for (int threads : new int[] {1, 2}) {
                cpu.setThreads(threads);
                List<float[]> res = threads == 1 ? one : two;
                res.add(LinearAttentionReference.linear(cpu, x, w, b, rows, in, out));
                float[][] lg = LinearAttentionReference.linearBackward(cpu, x, w, dy, dw0, db0, rows, in, out);
                res.add(lg[0]);
                res.add(lg[1]);
                res.add(lg[2]);
                var f = LinearAttentionReference.attention(cpu, a, q, k, v);
                res.add(f.out());
                res.add(f.lse());
                var ag = LinearAttentionReference.attentionBackward(cpu, a, q, k, v, g);
                res.add(ag.dq());
                res.add(ag.dk());
                res.add(ag.dv());
            }
        } finally {
            cpu.setThreads(Runtime.getRuntime().availableProcessors());
        }
        String[] names = {"linear y", "linear dx", "linear dw", "linear db", "attention out", "attention lse",
            "attention dq", "attention dk", "attention dv"};
        for (int i = 0; i < names.length; i++) Tolerance.assertBitIdentical(names[i] + ": 1 vs 2 threads", one.get(i), two.get(i), c);
        // and the big shapes are right, not just reproducible
        check("linear y (parallel)", two.get(0), LinearAttentionReference.linear(x, w, b, rows, in, out), c);
        check("linear dw (parallel)", two.get(2), LinearAttentionReference.linearDw(x, dy, dw0, rows, in, out), c);
        var ref = LinearAttentionReference.attention(a, q, k, v);
        check("attention out (parallel)", two.get(4), ref.out(), ref.outScale(), c);
        check("attention dk (parallel)", two.get(7), LinearAttentionReference.attentionBackward(a, q, k, v, g, ref).dk(), c);
    }

    @Test
    void badArgumentsAreRejected() {
        try (Tensor x = Tensor.allocate(cpu, DType.FLOAT32, 4, 3); Tensor w = Tensor.allocate(cpu, DType.FLOAT32, 5, 3);
             Tensor y = Tensor.allocate(cpu, DType.FLOAT32, 4, 5); Tensor wrong = Tensor.allocate(cpu, DType.FLOAT32, 4, 6);
             Tensor flat = Tensor.allocate(cpu, DType.FLOAT32, 64); Tensor t3 = Tensor.allocate(cpu, DType.FLOAT32, 1, 4, 3)) {
            var e1 = assertThrows(IllegalArgumentException.class, () -> LinearKernels.linear(x, w, null, wrong));
            assertTrue(e1.getMessage().startsWith("y "), e1.getMessage());
            var e2 = assertThrows(IllegalArgumentException.class, () -> LinearKernels.linear(y, w, null, wrong));
            assertTrue(e2.getMessage().contains("in_features"), e2.getMessage());
            var e3 = assertThrows(IllegalArgumentException.class, () -> LinearKernels.linear(x, w, x, y));
            assertTrue(e3.getMessage().startsWith("bias"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class, () -> LinearKernels.linearBackward(x, w, y, y, null, null));
            assertTrue(e4.getMessage().startsWith("dx"), e4.getMessage());
            // overlapping views: y over x's memory is refused by the native front
            try (Tensor xv = flat.view(0, 4, 3); Tensor yv = flat.view(8, 4, 5)) {
                var e5 = assertThrows(D4jException.InvalidArgumentException.class, () -> LinearKernels.linear(xv, w, null, yv));
                assertTrue(e5.getMessage().contains("overlap"), e5.getMessage());
            }
            var s = new LinearKernels.AttentionShape(1, 4, 1, 3);
            var e6 = assertThrows(IllegalArgumentException.class, () -> LinearKernels.attention(s, Float.NaN, t3, t3, t3, t3, null));
            assertTrue(e6.getMessage().contains("scale"), e6.getMessage());
            var s2 = new LinearKernels.AttentionShape(1, 4, 1, 5);
            var e7 = assertThrows(IllegalArgumentException.class, () -> LinearKernels.attention(s2, 1f, x, x, x, y, null));
            assertTrue(e7.getMessage().startsWith("q "), e7.getMessage());
            var e8 = assertThrows(D4jException.InvalidArgumentException.class, () -> LinearKernels.attention(s, 1f, t3, t3, t3, t3, null));
            assertTrue(e8.getMessage().contains("out"), e8.getMessage());
        }
    }
}
