package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static io.diffusion4j.testutil.Tolerance.toDouble;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The norm family of the CPU backend (GroupNorm with optional time-embedding bias and SiLU, SiLU,
 * residual add; forward and backward) against a float64 reference ({@link Ref}) on fresh random
 * inputs, odd shapes, NaN-poisoned outputs; backward against central finite differences of the
 * float64 forward on tiny shapes and against the analytic float64 backward on bigger ones.
 *
 * <p>Tolerances are {@code k u scale} (u = 2^-24). The scale of each element is what its float32
 * rounding errors are proportional to: for xhat = (v - mean) rstd it is rstd (|x| + |tb| + |mean|)
 * + |xhat| (the saved float32 mean alone is off by up to u |mean|, which the subtraction turns into
 * an error of u |mean| rstd: the condition number of normalising data with a large mean), and the
 * scales of z, y, dz, dx, dgamma, dbeta, dtb follow by propagating those bounds through the formulas
 * of {@link Ref} (sums of absolute values of the terms, so cancellation does not hide error). The
 * constants count the float32 operations per element with margin; measured worst cases are printed
 * as "[d4j-error]" lines.
 */
class NormKernelsTest {
    /** GroupNorm forward y: about 6 roundings to first order, SiLU adds 4; stated 8 u (measured worst ~2.6 u). */
    static final double FWD_TOL_U = 8;
    /** mean, rstd from float64 Welford: one rounding each; stated 4 u of mean|v| resp. rstd (measured ~0.9 u). */
    static final double STATS_TOL_U = 4;
    /** dx, dtb, dgamma, dbeta: float32 element math (about 10 roundings), float64 sums; stated 12 u (measured ~1.5 u). */
    static final double BWD_TOL_U = 12;
    /**
     * SiLU and its gradient: sigmoid from expf (<= 1 ulp in glibc, 2 on CUDA), an add and a divide (about
     * 3 u), then up to 5 more roundings (1 - s, times x, plus 1, times s, times dy) whose errors add in the
     * worst case; stated 12 u of the scale (measured worst about 3.3 u forward, 6.4 u gradient).
     */
    static final double SILU_TOL_U = 12;
    /** (a + b) * s: two roundings of |a| + |b| times |s|; stated 2 u. */
    static final double RESIDUAL_TOL_U = 2;

    /** One GroupNorm problem: NHWC with G groups. */
    record Shape(int n, int h, int w, int c, int g) {
        int hw() {
            return h * w;
        }

        int elements() {
            return n * h * w * c;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "[N=%d, H=%d, W=%d, C=%d, G=%d]", n, h, w, c, g);
        }
    }

    /** Odd shapes; the last ones span several CPU tasks per sample (rows per task = 32768 / C). */
    static final List<Shape> SHAPES = List.of(new Shape(1, 5, 7, 6, 3), new Shape(3, 7, 5, 10, 5),
            new Shape(3, 5, 7, 32, 8), new Shape(1, 7, 7, 32, 8), new Shape(2, 5, 7, 13, 1), new Shape(2, 3, 5, 13, 13),
            new Shape(2, 37, 41, 32, 8), new Shape(1, 11, 13, 3000, 30));

    static Backend cpu;
    static final Map<String, double[]> WORST = new TreeMap<>();

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        synchronized (WORST) {
            WORST.forEach((k, v) -> System.out.printf(Locale.ROOT,
                    "[d4j-error] worst %-32s max|err| = %.3g, max err/scale = %.2f u%n", k, v[0], v[1] / U));
        }
        if (cpu != null) {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
            cpu.close();
        }
    }

    static void record(String what, Tolerance.Report r) {
        synchronized (WORST) {
            double[] w = WORST.computeIfAbsent(what, k -> new double[2]);
            w[0] = Math.max(w[0], r.maxAbsError());
            w[1] = Math.max(w[1], r.maxErrorOverScale());
        }
    }

    static Tolerance.Report check(String what, float[] out, double[] ref, double[] scale, double tolU, String ctx) {
        Tolerance.Report r = Tolerance.assertCloseScaled(what, out, ref, scale, 0.0, tolU * U, ctx);
        record(what, r);
        return r;
    }

    static String ctx(TestRandom r, Object... parts) {
        StringBuilder b = new StringBuilder();
        for (Object p : parts) b.append(p).append(' ');
        return b.append("; ").append(r.describe()).toString();
    }

    // ---- float64 reference ------------------------------------------------------------------

    /** Inputs of one GroupNorm call. tb may be null (plain GroupNorm). */
    record Problem(Shape s, float[] x, float[] tb, float[] gamma, float[] beta, float eps, boolean silu) {
        static Problem random(TestRandom r, Shape s, boolean bias, boolean silu, double mean, double std, float eps) {
            float[] x = r.gaussians(s.elements(), std);
            for (int i = 0; i < x.length; i++) x[i] = (float) (mean + x[i]);
            float[] tb = bias ? r.gaussians(s.n() * s.c(), 1.0) : null;
            float[] gamma = r.gaussians(s.c(), 0.5);
            for (int i = 0; i < gamma.length; i++) gamma[i] += 1.0f;
            float[] beta = r.gaussians(s.c(), 0.5);
            return new Problem(s, x, tb, gamma, beta, eps, silu);
        }
    }

    /** float64 GroupNorm forward and backward with the error scales of each output. */
    static final class Ref {
        final Problem p;
        final double[] v, xhat, z, y, sx, sz, sy, mean, rstd, meanScale;

        static double sigmoid(double z) {
            return 1.0 / (1.0 + Math.exp(-z));
        }

        static double silu(double z) {
            return z * sigmoid(z);
        }

        static double siluGrad(double z) {
            double s = sigmoid(z);
            return s * (1.0 + z * (1.0 - s));
        }

        /** float64 forward only (for finite differences): y of inputs given as doubles. */
        static double[] forwardValues(Shape s, double[] x, double[] tb, double[] gamma, double[] beta, double eps,
                                      boolean silu) {
            int hw = s.hw(), c = s.c(), cg = c / s.g();
            double[] y = new double[x.length];
            for (int n = 0; n < s.n(); n++) {
                for (int g = 0; g < s.g(); g++) {
                    double sum = 0;
                    for (int p = 0; p < hw; p++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) sum += vOf(x, tb, n, p, ch, hw, c);
                    double mean = sum / ((double) hw * cg), ss = 0;
                    for (int p = 0; p < hw; p++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            double d = vOf(x, tb, n, p, ch, hw, c) - mean;
                            ss += d * d;
                        }
                    double rstd = 1.0 / Math.sqrt(ss / ((double) hw * cg) + eps);
                    for (int p = 0; p < hw; p++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            int e = (n * hw + p) * c + ch;
                            double z = (vOf(x, tb, n, p, ch, hw, c) - mean) * rstd * gamma[ch] + beta[ch];
                            y[e] = silu ? silu(z) : z;
                        }
                }
            }
            return y;
        }

        static double vOf(double[] x, double[] tb, int n, int p, int ch, int hw, int c) {
            return x[(n * hw + p) * c + ch] + (tb == null ? 0.0 : tb[n * c + ch]);
        }

        /** The reference of the kernels: v = x + tb rounded to float32, as torch's h + temb tensor is. */
        Ref(Problem p) {
            this(p, true);
        }

        /** roundV false: v = x + tb exact (for finite differences, which cannot see a float32 rounding). */
        Ref(Problem p, boolean roundV) {
            this.p = p;
            Shape s = p.s();
            int hw = s.hw(), c = s.c(), cg = c / s.g(), size = s.elements();
            v = new double[size];
            xhat = new double[size];
            z = new double[size];
            y = new double[size];
            sx = new double[size];
            sz = new double[size];
            sy = new double[size];
            mean = new double[s.n() * s.g()];
            rstd = new double[s.n() * s.g()];
            meanScale = new double[s.n() * s.g()];
            for (int n = 0; n < s.n(); n++) {
                for (int g = 0; g < s.g(); g++) {
                    double sum = 0, abs = 0;
                    for (int q = 0; q < hw; q++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            int e = (n * hw + q) * c + ch;
                            if (p.tb() == null) {
                                v[e] = p.x()[e];
                            } else {
                                v[e] = roundV ? (double) (p.x()[e] + p.tb()[n * c + ch])
                                        : (double) p.x()[e] + p.tb()[n * c + ch];
                            }
                            sum += v[e];
                            abs += Math.abs(v[e]);
                        }
                    double count = (double) hw * cg, m = sum / count, ss = 0;
                    for (int q = 0; q < hw; q++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            double d = v[(n * hw + q) * c + ch] - m;
                            ss += d * d;
                        }
                    double r = 1.0 / Math.sqrt(ss / count + p.eps());
                    int sg = n * s.g() + g;
                    mean[sg] = m;
                    rstd[sg] = r;
                    meanScale[sg] = abs / count;
                    for (int q = 0; q < hw; q++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            int e = (n * hw + q) * c + ch;
                            double tbAbs = p.tb() == null ? 0.0 : Math.abs(p.tb()[n * c + ch]);
                            xhat[e] = (v[e] - m) * r;
                            z[e] = xhat[e] * p.gamma()[ch] + p.beta()[ch];
                            y[e] = p.silu() ? silu(z[e]) : z[e];
                            // the mean enters with its own error, bounded in units of meanScale (the mean of |v|,
                            // >= |m|), not of |m|: an element small against the group's magnitudes inherits it
                            sx[e] = r * (Math.abs(p.x()[e]) + tbAbs + meanScale[sg]) + Math.abs(xhat[e]);
                            sz[e] = Math.abs(p.gamma()[ch]) * sx[e] + Math.abs(p.beta()[ch]) + Math.abs(z[e]);
                            sy[e] = p.silu() ? Math.abs(siluGrad(z[e])) * sz[e] + Math.abs(y[e]) : sz[e];
                        }
                }
            }
        }

        /** Backward outputs (gradients only, no accumulation) with scales. */
        record Grads(double[] dx, double[] sdx, double[] dtb, double[] sdtb, double[] dgamma, double[] sdgamma,
                     double[] dbeta, double[] sdbeta) {}

        Grads backward(float[] dy) {
            Shape s = p.s();
            int hw = s.hw(), c = s.c(), cg = c / s.g(), size = s.elements();
            double[] dz = new double[size], sdz = new double[size];
            double[] a = new double[s.n() * c], b = new double[s.n() * c];
            double[] dgamma = new double[c], sdgamma = new double[c], dbeta = new double[c], sdbeta = new double[c];
            for (int e = 0; e < size; e++) {
                int ch = e % c, n = e / (hw * c);
                if (p.silu()) {
                    double sg = sigmoid(z[e]);
                    dz[e] = dy[e] * siluGrad(z[e]);
                    sdz[e] = Math.abs(dy[e]) * (sg * (1 + Math.abs(z[e]) * (1 + sg)) + 0.6 * sz[e]) + Math.abs(dz[e]);
                } else {
                    dz[e] = dy[e];
                    sdz[e] = Math.abs(dz[e]);
                }
                a[n * c + ch] += dz[e];
                b[n * c + ch] += dz[e] * xhat[e];
                dbeta[ch] += dz[e];
                sdbeta[ch] += sdz[e];
                dgamma[ch] += dz[e] * xhat[e];
                sdgamma[ch] += sdz[e] * Math.abs(xhat[e]) + Math.abs(dz[e]) * sx[e];
            }
            double[] dx = new double[size], sdx = new double[size];
            double[] dtb = new double[s.n() * c], sdtb = new double[s.n() * c];
            for (int n = 0; n < s.n(); n++) {
                for (int g = 0; g < s.g(); g++) {
                    double count = (double) hw * cg, m1 = 0, m2 = 0, sm1 = 0, sm2 = 0;
                    for (int q = 0; q < hw; q++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            int e = (n * hw + q) * c + ch;
                            double ga = p.gamma()[ch];
                            m1 += ga * dz[e];
                            m2 += ga * dz[e] * xhat[e];
                            sm1 += Math.abs(ga) * sdz[e];
                            sm2 += Math.abs(ga) * (sdz[e] * Math.abs(xhat[e]) + Math.abs(dz[e]) * sx[e]);
                        }
                    m1 /= count;
                    m2 /= count;
                    sm1 /= count;
                    sm2 /= count;
                    double r = rstd[n * s.g() + g];
                    for (int q = 0; q < hw; q++)
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            int e = (n * hw + q) * c + ch;
                            double ga = p.gamma()[ch];
                            dx[e] = r * (ga * dz[e] - m1 - xhat[e] * m2);
                            sdx[e] = r * (Math.abs(ga) * sdz[e] + sm1 + Math.abs(xhat[e]) * sm2 + sx[e] * Math.abs(m2))
                                    + Math.abs(dx[e]);
                            dtb[n * c + ch] += dx[e];
                            sdtb[n * c + ch] += sdx[e];
                        }
                }
            }
            return new Grads(dx, sdx, dtb, sdtb, dgamma, sdgamma, dbeta, sdbeta);
        }
    }

    // ---- running the kernels ----------------------------------------------------------------

    record FwdOut(float[] y, float[] mean, float[] rstd) {}

    record BwdOut(float[] dx, float[] dtb, float[] dgamma, float[] dbeta) {}

    static Tensor poisoned(Backend be, long... shape) {
        Tensor t = Tensor.allocate(be, DType.FLOAT32, shape);
        t.fill(Float.NaN);
        return t;
    }

    static FwdOut forward(Backend be, Problem p) {
        Shape s = p.s();
        try (Tensor x = Tensor.of(be, p.x(), s.n(), s.h(), s.w(), s.c());
             Tensor tb = p.tb() == null ? null : Tensor.of(be, p.tb(), s.n(), s.c());
             Tensor gamma = Tensor.of(be, p.gamma(), s.c()); Tensor beta = Tensor.of(be, p.beta(), s.c());
             Tensor y = poisoned(be, s.n(), s.h(), s.w(), s.c()); Tensor mean = poisoned(be, s.n(), s.g());
             Tensor rstd = poisoned(be, s.n(), s.g())) {
            if (tb == null) {
                NormKernels.groupNorm(x, gamma, beta, s.g(), p.eps(), p.silu(), y, mean, rstd);
            } else {
                NormKernels.biasGroupNorm(x, tb, gamma, beta, s.g(), p.eps(), p.silu(), y, mean, rstd);
            }
            return new FwdOut(y.toFloatArray(), mean.toFloatArray(), rstd.toFloatArray());
        }
    }

    /** The statistics-only forward (y null): mean and rstd into poisoned buffers. */
    static FwdOut statistics(Backend be, Problem p) {
        Shape s = p.s();
        try (Tensor x = Tensor.of(be, p.x(), s.n(), s.h(), s.w(), s.c());
             Tensor tb = p.tb() == null ? null : Tensor.of(be, p.tb(), s.n(), s.c());
             Tensor gamma = Tensor.of(be, p.gamma(), s.c()); Tensor beta = Tensor.of(be, p.beta(), s.c());
             Tensor mean = poisoned(be, s.n(), s.g()); Tensor rstd = poisoned(be, s.n(), s.g())) {
            if (tb == null) {
                NormKernels.groupNorm(x, gamma, beta, s.g(), p.eps(), p.silu(), null, mean, rstd);
            } else {
                NormKernels.biasGroupNorm(x, tb, gamma, beta, s.g(), p.eps(), p.silu(), null, mean, rstd);
            }
            return new FwdOut(null, mean.toFloatArray(), rstd.toFloatArray());
        }
    }

    /** The statistics-only forward gives the full forward's mean and rstd, bit for bit. */
    static void checkStatisticsOnly(String tag, Backend be, Problem p, FwdOut full, String c) {
        FwdOut stats = statistics(be, p);
        Tolerance.assertBitIdentical(tag + " mean with y null == with y", full.mean(), stats.mean(), c);
        Tolerance.assertBitIdentical(tag + " rstd with y null == with y", full.rstd(), stats.rstd(), c);
    }

    /**
     * Backward from the kernel's own saved statistics. dgamma/dbeta start at the given values (null: not
     * requested); dx, dtb are poisoned (not requested when the flag is false).
     */
    static BwdOut backward(Backend be, Problem p, float[] mean, float[] rstd, float[] dy, boolean wantDx,
                           boolean wantDtb, float[] dgamma0, float[] dbeta0) {
        Shape s = p.s();
        try (Tensor x = Tensor.of(be, p.x(), s.n(), s.h(), s.w(), s.c());
             Tensor tb = p.tb() == null ? null : Tensor.of(be, p.tb(), s.n(), s.c());
             Tensor gamma = Tensor.of(be, p.gamma(), s.c()); Tensor beta = Tensor.of(be, p.beta(), s.c());
             Tensor m = Tensor.of(be, mean, s.n(), s.g()); Tensor r = Tensor.of(be, rstd, s.n(), s.g());
             Tensor g = Tensor.of(be, dy, s.n(), s.h(), s.w(), s.c());
             Tensor dx = wantDx ? poisoned(be, s.n(), s.h(), s.w(), s.c()) : null;
             Tensor dtb = wantDtb ? poisoned(be, s.n(), s.c()) : null;
             Tensor dgamma = dgamma0 == null ? null : Tensor.of(be, dgamma0, s.c());
             Tensor dbeta = dbeta0 == null ? null : Tensor.of(be, dbeta0, s.c())) {
            if (tb == null) {
                NormKernels.groupNormBackward(g, x, gamma, beta, m, r, s.g(), p.silu(), dx, dgamma, dbeta);
            } else {
                NormKernels.biasGroupNormBackward(g, x, tb, gamma, beta, m, r, s.g(), p.silu(), dx, dtb, dgamma, dbeta);
            }
            return new BwdOut(dx == null ? null : dx.toFloatArray(), dtb == null ? null : dtb.toFloatArray(),
                    dgamma == null ? null : dgamma.toFloatArray(), dbeta == null ? null : dbeta.toFloatArray());
        }
    }

    static double[] plus(float[] prior, double[] g) {
        double[] o = new double[g.length];
        for (int i = 0; i < o.length; i++) o[i] = prior[i] + g[i];
        return o;
    }

    static double[] plusAbs(float[] prior, double[] scale) {
        double[] o = new double[scale.length];
        for (int i = 0; i < o.length; i++) o[i] = Math.abs(prior[i]) + scale[i];
        return o;
    }

    /** Checks forward outputs against the reference with a tolerance multiplier (1 for the CPU). */
    static void checkForward(String tag, FwdOut out, Ref ref, double fwdTolU, double statsTolU, String c) {
        check(tag + " y", out.y(), ref.y, ref.sy, fwdTolU, c);
        check(tag + " mean", out.mean(), ref.mean, ref.meanScale, statsTolU, c);
        check(tag + " rstd", out.rstd(), ref.rstd, ref.rstd, statsTolU, c);
    }

    /** Backward outputs against the analytic reference; dgamma/dbeta on top of their priors. */
    static void checkBackward(String tag, BwdOut out, Ref.Grads g, float[] dgamma0, float[] dbeta0, boolean bias,
                              double tolU, String c) {
        check(tag + " dx", out.dx(), g.dx(), g.sdx(), tolU, c);
        if (bias) check(tag + " dtb", out.dtb(), g.dtb(), g.sdtb(), tolU, c);
        check(tag + " dgamma", out.dgamma(), plus(dgamma0, g.dgamma()), plusAbs(dgamma0, g.sdgamma()), tolU, c);
        check(tag + " dbeta", out.dbeta(), plus(dbeta0, g.dbeta()), plusAbs(dbeta0, g.sdbeta()), tolU, c);
    }

    static Stream<Arguments> cases() {
        return SHAPES.stream().flatMap(s -> Stream.of(false, true).flatMap(bias ->
                Stream.of(false, true).map(silu -> Arguments.of(s, bias, silu))));
    }

    // ---- forward / backward against the float64 reference -----------------------------------

    @ParameterizedTest(name = "{0} bias={1} silu={2}")
    @MethodSource("cases")
    void forwardMatchesReference(Shape s, boolean bias, boolean silu) {
        for (float eps : new float[] {1e-5f, 1e-6f}) {
            TestRandom r = TestRandom.fresh();
            Problem p = Problem.random(r, s, bias, silu, 0.3, 1.5, eps);
            String c = ctx(r, s, "bias", bias, "silu", silu, "eps", eps);
            checkForward("group_norm", forward(cpu, p), new Ref(p), FWD_TOL_U, STATS_TOL_U, c);
        }
    }

    @ParameterizedTest(name = "{0} bias={1} silu={2}")
    @MethodSource("cases")
    void backwardMatchesAnalyticReference(Shape s, boolean bias, boolean silu) {
        TestRandom r = TestRandom.fresh();
        Problem p = Problem.random(r, s, bias, silu, -0.2, 1.2, 1e-5f);
        String c = ctx(r, s, "bias", bias, "silu", silu);
        FwdOut f = forward(cpu, p);
        float[] dy = r.gaussians(s.elements(), 1.0);
        float[] dgamma0 = r.gaussians(s.c(), 1.0), dbeta0 = r.gaussians(s.c(), 1.0);
        BwdOut out = backward(cpu, p, f.mean(), f.rstd(), dy, true, bias, dgamma0, dbeta0);
        checkBackward("group_norm_backward", out, new Ref(p).backward(dy), dgamma0, dbeta0, bias, BWD_TOL_U, c);
    }

    /** Inputs x = 1000 + noise: the statistics must not lose the variance (no E[v^2] - E[v]^2 in float32). */
    @Test
    void largeMeanInputsKeepTheirVariance() {
        for (Shape s : List.of(new Shape(3, 7, 5, 10, 5), new Shape(2, 37, 41, 32, 8))) {
            for (boolean bias : new boolean[] {false, true}) {
                TestRandom r = TestRandom.fresh();
                Problem p = Problem.random(r, s, bias, true, 1000.0, 0.05, 1e-6f);
                String c = ctx(r, s, "bias", bias, "x = 1000 + 0.05 N(0,1)");
                Ref ref = new Ref(p);
                FwdOut f = forward(cpu, p);
                // rstd ~ 20: float32 E[v^2] - E[v]^2 would get ~1e6 +- 0.06 for a variance of 0.0025
                checkForward("group_norm large mean", f, ref, FWD_TOL_U, STATS_TOL_U, c);
                float[] dy = r.gaussians(s.elements(), 1.0);
                float[] zeros = new float[s.c()];
                BwdOut out = backward(cpu, p, f.mean(), f.rstd(), dy, true, bias, zeros, zeros);
                checkBackward("group_norm_backward large mean", out, ref.backward(dy), zeros, zeros, bias, BWD_TOL_U, c);
            }
        }
    }

    // ---- gradient checks against finite differences ------------------------------------------

    static final List<Shape> TINY = List.of(new Shape(2, 2, 3, 4, 2), new Shape(1, 1, 5, 6, 3), new Shape(2, 3, 1, 3, 1));

    /** d/dp of L = sum dy * y by central differences of the float64 forward, for every element of p. */
    static double[] numericGradient(Shape s, double[][] in, int which, float[] dy, double eps, boolean silu) {
        double[] param = in[which];
        double[] grad = new double[param.length];
        for (int i = 0; i < param.length; i++) {
            double keep = param[i], h = 1e-5 * Math.max(1.0, Math.abs(keep));
            param[i] = keep + h;
            double lp = dot(dy, Ref.forwardValues(s, in[0], in[1], in[2], in[3], eps, silu));
            param[i] = keep - h;
            double lm = dot(dy, Ref.forwardValues(s, in[0], in[1], in[2], in[3], eps, silu));
            param[i] = keep;
            grad[i] = (lp - lm) / (2 * h);
        }
        return grad;
    }

    static double dot(float[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < b.length; i++) s += a[i] * b[i];
        return s;
    }

    /**
     * The analytic float64 backward and the kernel's backward against central differences (h = 1e-5
     * relative: truncation ~1e-10, cancellation ~1e-11). Reference vs differences: 1e-7 absolute + 1e-7
     * relative. Kernel vs differences: the kernel's own bound BWD_TOL_U u scale plus 1e-7.
     */
    @Test
    void backwardMatchesFiniteDifferences() {
        for (Shape s : TINY) {
            for (boolean bias : new boolean[] {false, true}) {
                for (boolean silu : new boolean[] {false, true}) {
                    TestRandom r = TestRandom.fresh();
                    Problem p = Problem.random(r, s, bias, silu, 0.1, 1.0, 1e-5f);
                    String c = ctx(r, s, "bias", bias, "silu", silu);
                    float[] dy = r.gaussians(s.elements(), 1.0);
                    Ref.Grads g = new Ref(p, false).backward(dy);
                    double[][] in = {toDouble(p.x()), toDouble(p.tb()), toDouble(p.gamma()), toDouble(p.beta())};
                    double[][] analytic = {g.dx(), g.dtb(), g.dgamma(), g.dbeta()};
                    double[][] scales = {g.sdx(), g.sdtb(), g.sdgamma(), g.sdbeta()};
                    FwdOut f = forward(cpu, p);
                    float[] zeros = new float[s.c()];
                    BwdOut k = backward(cpu, p, f.mean(), f.rstd(), dy, true, bias, zeros, zeros);
                    float[][] kernel = {k.dx(), k.dtb(), k.dgamma(), k.dbeta()};
                    String[] names = {"dx", "dtb", "dgamma", "dbeta"};
                    for (int which = 0; which < 4; which++) {
                        if (which == 1 && !bias) continue;
                        double[] num = numericGradient(s, in, which, dy, p.eps(), silu);
                        // the float64 reference, compared in double precision
                        for (int i = 0; i < num.length; i++) {
                            double d = Math.abs(analytic[which][i] - num[i]);
                            if (d > 1e-7 + 1e-7 * Math.abs(num[i])) {
                                fail(String.format(Locale.ROOT, "reference %s[%d] = %.12g but finite differences give "
                                        + "%.12g; %s", names[which], i, analytic[which][i], num[i], c));
                            }
                        }
                        Tolerance.Report rep = Tolerance.assertCloseScaled("kernel " + names[which] + " vs finite "
                                + "differences", kernel[which], num, scales[which], 1e-7, BWD_TOL_U * U, c);
                        record("group_norm " + names[which] + " vs FD", rep);
                    }
                }
            }
        }
    }

    // ---- semantics ----------------------------------------------------------------------------

    /** dgamma/dbeta accumulate across calls; each optional output can be left out without changing the others. */
    @Test
    void accumulationAndOptionalOutputs() {
        TestRandom r = TestRandom.fresh();
        Shape s = new Shape(3, 5, 7, 10, 5);
        Problem p = Problem.random(r, s, true, true, 0.0, 1.0, 1e-5f);
        String c = ctx(r, s);
        FwdOut f = forward(cpu, p);
        float[] dy = r.gaussians(s.elements(), 1.0);
        float[] zeros = new float[s.c()];
        Ref.Grads g = new Ref(p).backward(dy);
        BwdOut all = backward(cpu, p, f.mean(), f.rstd(), dy, true, true, zeros, zeros);
        // second call on top of the first one's results: prior + 2 * gradient
        BwdOut twice = backward(cpu, p, f.mean(), f.rstd(), dy, true, true, all.dgamma(), all.dbeta());
        double[] g2 = new double[s.c()], b2 = new double[s.c()], sg2 = new double[s.c()], sb2 = new double[s.c()];
        for (int i = 0; i < s.c(); i++) {
            g2[i] = 2 * g.dgamma()[i];
            b2[i] = 2 * g.dbeta()[i];
            sg2[i] = 2 * g.sdgamma()[i];
            sb2[i] = 2 * g.sdbeta()[i];
        }
        check("accumulated dgamma", twice.dgamma(), g2, sg2, BWD_TOL_U, c);
        check("accumulated dbeta", twice.dbeta(), b2, sb2, BWD_TOL_U, c);
        // optional outputs: the same bits whatever else is requested
        BwdOut onlyDx = backward(cpu, p, f.mean(), f.rstd(), dy, true, false, null, null);
        Tolerance.assertBitIdentical("dx alone", all.dx(), onlyDx.dx(), c);
        BwdOut onlyDtb = backward(cpu, p, f.mean(), f.rstd(), dy, false, true, null, null);
        Tolerance.assertBitIdentical("dtb alone", all.dtb(), onlyDtb.dtb(), c);
        BwdOut onlyParams = backward(cpu, p, f.mean(), f.rstd(), dy, false, false, zeros, null);
        Tolerance.assertBitIdentical("dgamma alone", all.dgamma(), onlyParams.dgamma(), c);
        // plain GroupNorm equals the bias variant fed x + tb when tb is folded in (float32 add, as the kernel does)
        float[] folded = new float[s.elements()];
        for (int e = 0; e < folded.length; e++) folded[e] = p.x()[e] + p.tb()[(e / (s.hw() * s.c())) * s.c() + e % s.c()];
        Problem plain = new Problem(s, folded, null, p.gamma(), p.beta(), p.eps(), p.silu());
        FwdOut fp = forward(cpu, plain);
        Tolerance.assertBitIdentical("bias variant == group norm of x + tb", f.y(), fp.y(), c);
        BwdOut bp = backward(cpu, plain, fp.mean(), fp.rstd(), dy, true, false, zeros, zeros);
        Tolerance.assertBitIdentical("bias variant dx == group norm dx of x + tb", all.dx(), bp.dx(), c);
    }

    @Test
    void statisticsOnlyForwardMatchesFullForward() {
        for (Shape s : List.of(new Shape(3, 5, 7, 10, 5), new Shape(2, 41, 43, 32, 8))) {
            for (boolean bias : new boolean[] {false, true}) {
                TestRandom r = TestRandom.fresh();
                Problem p = Problem.random(r, s, bias, true, 0.5, 2.0, 1e-5f);
                checkStatisticsOnly("cpu", cpu, p, forward(cpu, p), ctx(r, s, "bias", bias));
            }
        }
    }

    /** Results are bit-identical with 1 and 2 worker threads (several tasks per sample). */
    @Test
    void resultsDoNotDependOnThreadCount() {
        TestRandom r = TestRandom.fresh();
        Shape s = new Shape(3, 41, 43, 32, 8); // 1763 rows per sample, 1024 rows per task: 2 tasks per sample
        Problem p = Problem.random(r, s, true, true, 0.5, 2.0, 1e-5f);
        float[] dy = r.gaussians(s.elements(), 1.0);
        float[] prior = r.gaussians(s.c(), 1.0);
        String c = ctx(r, s);
        FwdOut[] f = new FwdOut[2];
        BwdOut[] b = new BwdOut[2];
        float[][] silu = new float[2][];
        try {
            for (int t = 1; t <= 2; t++) {
                cpu.setThreads(t);
                f[t - 1] = forward(cpu, p);
                b[t - 1] = backward(cpu, p, f[t - 1].mean(), f[t - 1].rstd(), dy, true, true, prior, prior);
                silu[t - 1] = siluRun(cpu, p.x(), false);
            }
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
        Tolerance.assertBitIdentical("y, 1 vs 2 threads", f[0].y(), f[1].y(), c);
        Tolerance.assertBitIdentical("mean, 1 vs 2 threads", f[0].mean(), f[1].mean(), c);
        Tolerance.assertBitIdentical("rstd, 1 vs 2 threads", f[0].rstd(), f[1].rstd(), c);
        Tolerance.assertBitIdentical("dx, 1 vs 2 threads", b[0].dx(), b[1].dx(), c);
        Tolerance.assertBitIdentical("dtb, 1 vs 2 threads", b[0].dtb(), b[1].dtb(), c);
        Tolerance.assertBitIdentical("dgamma, 1 vs 2 threads", b[0].dgamma(), b[1].dgamma(), c);
        Tolerance.assertBitIdentical("dbeta, 1 vs 2 threads", b[0].dbeta(), b[1].dbeta(), c);
        Tolerance.assertBitIdentical("silu, 1 vs 2 threads", silu[0], silu[1], c);
    }

    // ---- SiLU and residual ------------------------------------------------------------------

    static float[] siluRun(Backend be, float[] x, boolean inPlace) {
        try (Tensor t = Tensor.of(be, x, x.length); Tensor y = inPlace ? null : poisoned(be, x.length)) {
            Tensor dst = inPlace ? t : y;
            NormKernels.silu(t, dst);
            return dst.toFloatArray();
        }
    }

    /** mode 0: fresh dx, 1: dx = dy, 2: dx = x. */
    static float[] siluGradRun(Backend be, float[] dy, float[] x, int mode) {
        try (Tensor g = Tensor.of(be, dy, x.length); Tensor t = Tensor.of(be, x, x.length);
             Tensor dx = mode == 0 ? poisoned(be, x.length) : null) {
            Tensor dst = mode == 0 ? dx : mode == 1 ? g : t;
            NormKernels.siluBackward(g, t, dst);
            return dst.toFloatArray();
        }
    }

    /** Random values plus the awkward ones: 0, +-tiny, where exp overflows, where silu' = 0. */
    static float[] siluInputs(TestRandom r, int count) {
        float[] x = r.gaussians(count, 4.0);
        float[] special = {0f, -0f, 1e-30f, -1e-30f, 88f, -88f, 89f, -89f, -90f, 100f, -100f, -1.2785f, 20f, -20f};
        for (int i = 0; i < special.length && i < count; i++) x[(int) ((long) i * count / special.length)] = special[i];
        return x;
    }

    static void checkSilu(String tag, Backend be, TestRandom r, int count, double tolU, String c) {
        float[] x = siluInputs(r, count), dy = r.gaussians(count, 1.0);
        double[] ref = new double[count], scale = new double[count], gref = new double[count], gscale = new double[count];
        for (int i = 0; i < count; i++) {
            ref[i] = Ref.silu(x[i]);
            gref[i] = dy[i] * Ref.siluGrad(x[i]);
            double s = Ref.sigmoid(x[i]);
            // s (1 + x (1 - s)) cancels near x = -1.28: error relative to s (1 + |x|)
            // floor 1e-30: silu(-89) = -2e-37 comes out as -0 (exp(89) overflows float32); and below x = -87
            // sigmoid is subnormal, rounded to an absolute MIN_VALUE / 2, which (1 + |x|) carries into the result
            double sub = (1 + Math.abs(x[i])) * Float.MIN_VALUE / U;
            gscale[i] = Math.max(Math.abs(dy[i]) * (s * (1 + Math.abs(x[i]) * (1 + s)) + sub), 1e-30);
            scale[i] = Math.max(Math.abs(ref[i]) + sub, 1e-30);
        }
        record(tag + " silu", Tolerance.assertCloseScaled(tag + " silu", siluRun(be, x, false), ref, scale, 0.0,
                tolU * U, c));
        Tolerance.assertBitIdentical(tag + " silu in place", siluRun(be, x, false), siluRun(be, x, true), c);
        float[] g = siluGradRun(be, dy, x, 0);
        record(tag + " silu_backward", Tolerance.assertCloseScaled(tag + " silu_backward", g, gref, gscale, 0.0,
                tolU * U, c));
        Tolerance.assertBitIdentical(tag + " silu_backward dx = dy", g, siluGradRun(be, dy, x, 1), c);
        Tolerance.assertBitIdentical(tag + " silu_backward dx = x", g, siluGradRun(be, dy, x, 2), c);
    }

    @Test
    void siluMatchesReference() {
        for (int count : new int[] {1, 14, 1001, 3 * 16384 + 5}) {
            TestRandom r = TestRandom.fresh();
            checkSilu("cpu", cpu, r, count, SILU_TOL_U, ctx(r, "count", count));
        }
    }

    static float[][] residualRun(Backend be, float[] a, float[] b, float s, int mode) {
        int n = a.length;
        try (Tensor ta = Tensor.of(be, a, n); Tensor tb = Tensor.of(be, b, n);
             Tensor out = mode == 0 ? poisoned(be, n) : null) {
            Tensor dst = mode == 0 ? out : mode == 1 ? ta : tb;
            NormKernels.residualAdd(ta, tb, s, dst);
            float[] fwd = dst.toFloatArray();
            // backward of the same scale from gradient b: da fresh, db = dout itself
            try (Tensor g = Tensor.of(be, b, n); Tensor da = poisoned(be, n)) {
                NormKernels.residualAddBackward(g, s, da, g);
                return new float[][] {fwd, da.toFloatArray(), g.toFloatArray()};
            }
        }
    }

    static void checkResidual(String tag, Backend be, TestRandom r, int count, double tolU, String c) {
        float[] a = r.gaussians(count, 3.0), b = r.gaussians(count, 1.0);
        for (float s : new float[] {1.0f, 1.0f / 1.41421356f, 0.5f}) {
            double[] ref = new double[count], scale = new double[count], gref = new double[count];
            for (int i = 0; i < count; i++) {
                ref[i] = ((double) a[i] + b[i]) * s;
                scale[i] = (Math.abs(a[i]) + Math.abs(b[i])) * Math.abs(s);
                gref[i] = (double) b[i] * s;
            }
            float[][] out = residualRun(be, a, b, s, 0);
            record(tag + " residual_add", Tolerance.assertCloseScaled(tag + " residual_add", out[0], ref, scale, 0.0,
                    tolU * U, c + " scale " + s));
            Tolerance.assertClose(tag + " residual_add_backward da", out[1], gref, 0.0, U, c);
            Tolerance.assertBitIdentical(tag + " residual_add_backward db = dout in place", out[1], out[2], c);
            Tolerance.assertBitIdentical(tag + " residual_add out = a", out[0], residualRun(be, a, b, s, 1)[0], c);
            Tolerance.assertBitIdentical(tag + " residual_add out = b", out[0], residualRun(be, a, b, s, 2)[0], c);
        }
    }

    @Test
    void residualAddMatchesReference() {
        for (int count : new int[] {1, 7, 3 * 16384 + 5}) {
            TestRandom r = TestRandom.fresh();
            checkResidual("cpu", cpu, r, count, RESIDUAL_TOL_U, ctx(r, "count", count));
        }
    }

    // ---- argument validation ----------------------------------------------------------------

    @Test
    void javaChecksNameTheParameter() {
        try (Tensor x = Tensor.allocate(cpu, DType.FLOAT32, 2, 3, 5, 6); Tensor y = Tensor.allocate(cpu, DType.FLOAT32, 2, 3, 5, 6);
             Tensor g = Tensor.allocate(cpu, DType.FLOAT32, 6); Tensor b = Tensor.allocate(cpu, DType.FLOAT32, 6);
             Tensor m = Tensor.allocate(cpu, DType.FLOAT32, 2, 3); Tensor rs = Tensor.allocate(cpu, DType.FLOAT32, 2, 3);
             Tensor g5 = Tensor.allocate(cpu, DType.FLOAT32, 5); Tensor m4 = Tensor.allocate(cpu, DType.FLOAT32, 2, 2);
             Tensor tbBad = Tensor.allocate(cpu, DType.FLOAT32, 6, 2); Tensor x3 = Tensor.allocate(cpu, DType.FLOAT32, 2, 15, 6)) {
            expectIae("numGroups", () -> NormKernels.groupNorm(x, g, b, 4, 1e-5f, true, y, m, rs));
            expectIae("numGroups", () -> NormKernels.groupNorm(x, g, b, 0, 1e-5f, true, y, m, rs));
            for (float eps : new float[] {0f, -1e-5f, Float.NaN, Float.POSITIVE_INFINITY}) {
                expectIae("eps", () -> NormKernels.groupNorm(x, g, b, 3, eps, true, y, m, rs));
            }
            expectIae("gamma", () -> NormKernels.groupNorm(x, g5, b, 3, 1e-5f, true, y, m, rs));
            expectIae("mean", () -> NormKernels.groupNorm(x, g, b, 3, 1e-5f, true, y, m4, rs));
            expectIae("NHWC", () -> NormKernels.groupNorm(x3, g, b, 3, 1e-5f, true, y, m, rs));
            expectIae("tb", () -> NormKernels.biasGroupNorm(x, tbBad, g, b, 3, 1e-5f, true, y, m, rs));
            expectIae("y", () -> NormKernels.groupNorm(x, g, b, 3, 1e-5f, true, x3, m, rs));
            expectIae("dgamma", () -> NormKernels.groupNormBackward(y, x, g, b, m, rs, 3, true, y, g5, null));
            assertThrows(NullPointerException.class, () -> NormKernels.groupNormBackward(y, x, g, null, m, rs, 3, true,
                    null, g, b));
            expectIae("invScale", () -> NormKernels.residualAdd(g, b, Float.NaN, g));
            expectIae("b", () -> NormKernels.residualAdd(g, g5, 1f, g));
        }
    }

    static void expectIae(String word, org.junit.jupiter.api.function.Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(word), "message '" + e.getMessage() + "' should name " + word);
    }

    /** The C front refuses bad arguments that the Java layer would catch, with a message naming them. */
    @Test
    void nativeFrontValidates() {
        try (Tensor x = Tensor.allocate(cpu, DType.FLOAT32, 2, 3, 5, 6); Tensor y = Tensor.allocate(cpu, DType.FLOAT32, 2, 3, 5, 6);
             Tensor g = Tensor.allocate(cpu, DType.FLOAT32, 6); Tensor b = Tensor.allocate(cpu, DType.FLOAT32, 6);
             Tensor m = Tensor.allocate(cpu, DType.FLOAT32, 2, 3); Tensor rs = Tensor.allocate(cpu, DType.FLOAT32, 2, 3);
             Tensor small = Tensor.allocate(cpu, DType.FLOAT32, 5); Tensor ym = y.view(0, 6);
             Tensor yv = y.view(1, 170)) {
            MemorySegment be = cpu.handle(), NULL = MemorySegment.NULL;
            expectStatus("num_groups", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 3, 5, 6, 4,
                    1e-5f, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("eps", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 3, 5, 6, 3,
                    0f, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("eps", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 3, 5, 6, 3,
                    Float.NaN, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("apply_silu", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 3, 5, 6,
                    3, 1e-5f, 2, y.handle(), m.handle(), rs.handle()));
            expectStatus("gamma", d4j_h.d4j_group_norm_forward(be, x.handle(), small.handle(), b.handle(), 2, 3, 5, 6,
                    3, 1e-5f, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("h", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 0, 5, 6,
                    3, 1e-5f, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("overflows", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 65536,
                    1 << 30, 1 << 30, 6, 3, 1e-5f, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("x", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 3, 3, 5, 6,
                    3, 1e-5f, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("mean", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 3, 5, 6,
                    3, 1e-5f, 1, y.handle(), NULL, rs.handle()));
            expectStatus("overlap", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 3, 5, 6,
                    3, 1e-5f, 1, x.handle(), m.handle(), rs.handle()));
            // a view of y used as mean overlaps y
            expectStatus("overlap", d4j_h.d4j_group_norm_forward(be, x.handle(), g.handle(), b.handle(), 2, 3, 5, 6,
                    3, 1e-5f, 1, y.handle(), ym.handle(), rs.handle()));
            expectStatus("tb", d4j_h.d4j_bias_group_norm_forward(be, x.handle(), NULL, g.handle(), b.handle(), 2, 3,
                    5, 6, 3, 1e-5f, 1, y.handle(), m.handle(), rs.handle()));
            expectStatus("beta", d4j_h.d4j_group_norm_backward(be, y.handle(), x.handle(), g.handle(), NULL,
                    m.handle(), rs.handle(), 2, 3, 5, 6, 3, 1, NULL, g.handle(), NULL));
            expectStatus("overlap", d4j_h.d4j_group_norm_backward(be, y.handle(), x.handle(), g.handle(), b.handle(),
                    m.handle(), rs.handle(), 2, 3, 5, 6, 3, 1, y.handle(), NULL, NULL));
            expectStatus("dgamma", d4j_h.d4j_group_norm_backward(be, y.handle(), x.handle(), g.handle(), b.handle(),
                    m.handle(), rs.handle(), 2, 3, 5, 6, 3, 1, NULL, small.handle(), NULL));
            expectStatus("count", d4j_h.d4j_silu_forward(be, x.handle(), -1, y.handle()));
            expectStatus("y", d4j_h.d4j_silu_forward(be, x.handle(), 6, small.handle()));
            expectStatus("overlap", d4j_h.d4j_silu_forward(be, y.handle(), 170, yv.handle()));
            expectStatus("inv_scale", d4j_h.d4j_residual_add(be, x.handle(), y.handle(), 10, Float.POSITIVE_INFINITY,
                    y.handle()));
            expectStatus("overlap", d4j_h.d4j_residual_add_backward(be, x.handle(), 6, 1f, y.handle(), ym.handle()));
        }
    }

    static void expectStatus(String word, int status) {
        if (status == 0) fail("expected an error naming '" + word + "', got D4J_OK");
        D4jException e = Native.error(status);
        assertTrue(e instanceof D4jException.InvalidArgumentException, "status " + status + ": " + e.getMessage());
        assertTrue(e.getMessage().contains(word), "message '" + e.getMessage() + "' should name " + word);
    }
}
