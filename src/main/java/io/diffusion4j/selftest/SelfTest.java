package io.diffusion4j.selftest;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.BackendKind;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.SplittableRandom;
import java.util.function.BiPredicate;

/**
 * Device-versus-CPU parity engine: runs every kernel family and every variant of it (as the device
 * backend lists them, {@link Backend#kernelFamilies()} / {@link Backend#kernelVariants(String)}) on
 * fresh random inputs with odd shapes, on the device backend ({@code cuda} or {@code cuda-sim}) and
 * on the CPU backend, and compares the outputs.
 *
 * <h2>Comparison</h2>
 * Random numbers (raw Philox words, normals, and the noise {@code eps} drawn by add_noise) must be
 * bit-identical: d4j.h specifies the same bits on every backend. Every other output must satisfy,
 * element by element, {@code |dev - cpu| <= atol + rtol * |cpu|} with {@code atol = rtol * M}, where
 * M is a stated bound on the magnitude of the terms the kernel adds for that call, computed from the
 * inputs (so cancellation between terms cannot make the bound dishonest). A NaN or infinity in the
 * device output (for instance an element the kernel never wrote, left at its NaN poison) fails.
 * Tolerances, in units of the float32 roundoff u = 2^-24, are twice the CPU's bounds against float64
 * references (the device may use FMA contraction, which removes roundings but moves results by
 * a few ulps of the terms), and for the loss the float32 partial sums of the device reduction:
 * <ul>
 *   <li>add_noise x_t: rtol = 8 u, M = max|x0| + max|eps| (both coefficients are at most 1);
 *   <li>diffusion_loss loss: rtol = 64 u, M = 0 (a sum of squares: no cancellation; 16 sequential
 *       float32 adds per thread and an 8-level tree give about 24 u, the rounding of each difference
 *       (o - target) on both backends at most about 15 u more for independent inputs);
 *       grad: rtol = 10 u, M = max_b g_b * (max|o| + max|x0| + max|eps|), g_b = 2 w_b / (batch n);
 *   <li>reverse_step (DDPM and DDIM) x_prev: rtol = 20 u, M = max|x_t| + max|model_output| + max|cpu|;
 *   <li>timestep_embedding: rtol = 2 u, M = 1 (sines and cosines).
 * </ul>
 *
 * <h2>Failures</h2>
 * A native failure of a device call (a {@link io.diffusion4j.backend.D4jException}, e.g. the
 * simulator's report of a barrier not reached by every thread of a block) becomes a FAIL row carrying
 * the message; the engine goes on with the next case. Outputs of both backends are poisoned with NaN
 * before every call.
 *
 * <h2>Timing</h2>
 * After the comparison each passing-or-mismatching device case is called again {@link Options#repeats()}
 * times; the row carries the median wall-clock time of one call plus {@link Backend#synchronize()}
 * (outputs re-poisoned before each call, outside the timed region). On cuda-sim these are simulator
 * times on CPU threads, not GPU times; on cuda they are host wall clock, not CUDA-event times.
 *
 * <p>The engine selects variants on the device backend with {@link Backend#selectKernel} and restores
 * the variant that was selected before it started, so it must not run while other threads use that
 * backend.
 */
public final class SelfTest {
    private SelfTest() {}

    /** u = 2^-24, the unit roundoff of float32. */
    public static final double U = 0x1p-24;

    static final double ADD_NOISE_RTOL = 8 * U;
    static final double LOSS_RTOL = 64 * U;
    static final double GRAD_RTOL = 10 * U;
    static final double STEP_RTOL = 20 * U;
    static final double EMBEDDING_RTOL = 2 * U;

    /** Elements per block of the device loss reduction (256 threads x 16): the chunked loss shape spans several. */
    public static final int LOSS_CHUNK = 4096;

    /** Which variants of each family to run. */
    public enum Variants {
        /** Every variant the device backend lists. */
        ALL,
        /** Only each family's default variant (listed first). */
        DEFAULT;

        /** Parses {@code all} or {@code default}. */
        public static Variants fromName(String name) {
            return switch (name.trim().toLowerCase(Locale.ROOT)) {
                case "all" -> ALL;
                case "default" -> DEFAULT;
                default -> throw new IllegalArgumentException("unknown --variants value '" + name + "': expected all or default");
            };
        }
    }

    /** A batch of {@code batch} samples of {@code n} elements; {@code label} shows how n is made. */
    public record Shape(String label, int batch, int n) {
        @Override
        public String toString() {
            return label;
        }
    }

    /** Odd shapes used by every family: n not a multiple of 4, 8 or 32; batch 1, 3 and 17. */
    public static final List<Shape> SHAPES = List.of(
            new Shape("3x(1x28x28+1)", 3, 28 * 28 + 1),
            new Shape("1x105", 1, 105),
            new Shape("17x(3x7x5)", 17, 3 * 7 * 5));

    /** The loss also runs on one sample length spanning several reduction chunks (and a partial last one). */
    public static final Shape LOSS_CHUNKED = new Shape("2x(3x4096+5)", 2, 3 * LOSS_CHUNK + 5);

    /**
     * What to run.
     *
     * @param variants all variants or the defaults only
     * @param filter   (family, variant) pairs to run; others are skipped (no row)
     * @param repeats  timed calls per case after the comparison (0: no timing)
     * @param seed     seed of the random inputs
     */
    public record Options(Variants variants, BiPredicate<String, String> filter, int repeats, long seed) {
        public Options {
            Objects.requireNonNull(variants, "variants");
            Objects.requireNonNull(filter, "filter");
            if (repeats < 0) throw new IllegalArgumentException("repeats must be >= 0, got " + repeats);
        }

        /** Every variant, 3 timed repeats, a fresh seed. */
        public static Options defaults() {
            return new Options(Variants.ALL, (f, v) -> true, 3, freshSeed());
        }

        public Options withVariants(Variants v) {
            return new Options(v, filter, repeats, seed);
        }

        public Options withFilter(BiPredicate<String, String> f) {
            return new Options(variants, f, repeats, seed);
        }

        public Options withRepeats(int r) {
            return new Options(variants, filter, r, seed);
        }

        public Options withSeed(long s) {
            return new Options(variants, filter, repeats, s);
        }
    }

    /** A seed from the clock and a counter (fresh inputs every run; printed so a failure can be replayed). */
    public static long freshSeed() {
        return new SplittableRandom(System.nanoTime() ^ Thread.currentThread().threadId() * 0x9E3779B97F4A7C15L)
                .nextLong();
    }

    /**
     * One compared case.
     *
     * @param family        kernel family ("rng", "diffusion_loss", ...)
     * @param variant       the device variant that ran
     * @param kernel        the call within the family and its parameters ("normal", "ddim v_prediction", ...)
     * @param shape         the input shape
     * @param error         the error column: "bit-exact" (every output identical in bits to the CPU's), the
     *                      max relative error, "bits differ", "non-finite" or "error" (a native failure)
     * @param maxRelError   max over the toleranced outputs of |dev - cpu| / (|cpu| + M) (0 when all are
     *                      bit-exact, NaN when the comparison did not run or found non-finite values)
     * @param rtol          the tolerance the relative error is held to (0 for bit-exact-only cases)
     * @param passed        whether the case passed
     * @param secondsPerCall median wall-clock seconds per device call (NaN when not timed)
     * @param detail        why it failed (native message or worst mismatch), or "" when it passed
     */
    public record Row(String family, String variant, String kernel, String shape, String error, double maxRelError,
                      double rtol, boolean passed, double secondsPerCall, String detail) {
        /** Every output was identical in bits to the CPU's. */
        public boolean bitExact() {
            return error.equals("bit-exact");
        }

        /** The tolerance column. */
        public String toleranceText() {
            return rtol == 0 ? "bits" : String.format(Locale.ROOT, "%.0fu", rtol / U);
        }

        /** The time column, e.g. "1.23 ms". */
        public String timeText() {
            return formatSeconds(secondsPerCall);
        }
    }

    /** The result of a run: which backends, the seed, the rows. */
    public record Report(String device, String deviceDescription, String cpuDescription, long seed, List<Row> rows) {
        public long passed() {
            return rows.stream().filter(Row::passed).count();
        }

        public long failed() {
            return rows.size() - passed();
        }

        public boolean allPassed() {
            return failed() == 0;
        }
    }

    /** Runs the self-test of {@code device} against {@code cpu}. */
    public static Report run(Backend device, Backend cpu, Options options) {
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(cpu, "cpu");
        Objects.requireNonNull(options, "options");
        if (cpu.kind() != BackendKind.CPU) throw new IllegalArgumentException("the reference must be the cpu backend, got " + cpu);
        NoiseSchedule schedule = NoiseSchedule.defaults();
        List<Row> rows = new ArrayList<>();
        SplittableRandom root = new SplittableRandom(options.seed());
        try (NativeSchedule ns = NativeSchedule.of(schedule)) {
            Ctx ctx = new Ctx(schedule, ns);
            for (String family : device.kernelFamilies()) {
                SplittableRandom rnd = root.split();
                List<String> variants = device.kernelVariants(family);
                if (options.variants() == Variants.DEFAULT) variants = variants.subList(0, 1);
                variants = variants.stream().filter(v -> options.filter().test(family, v)).toList();
                if (variants.isEmpty()) continue;
                List<Case> cases = cases(family, rnd, ctx);
                if (cases == null) {
                    for (String v : variants) {
                        rows.add(new Row(family, v, "-", "-", "error", Double.NaN, 0, false, Double.NaN,
                                "the self-test has no cases for kernel family '" + family + "'"));
                    }
                    continue;
                }
                runFamily(device, cpu, family, variants, cases, options.repeats(), rows);
            }
        }
        return new Report(device.kind().cliName(), device.description(), cpu.description(), options.seed(),
                List.copyOf(rows));
    }

    private static void runFamily(Backend device, Backend cpu, String family, List<String> variants, List<Case> cases,
                                  int repeats, List<Row> rows) {
        // The CPU reference once per case, shared by every variant (same inputs).
        List<List<Output>> reference = new ArrayList<>();
        for (Case c : cases) {
            try (Prepared p = c.prepare(cpu)) {
                reference.add(p.runOnce());
            }
        }
        String before = device.selectedKernel(family);
        try {
            for (String variant : variants) {
                try {
                    device.selectKernel(family, variant);
                } catch (RuntimeException e) {
                    rows.add(new Row(family, variant, "-", "-", "error", Double.NaN, 0, false, Double.NaN,
                            "cannot select the variant: " + message(e)));
                    continue;
                }
                for (int i = 0; i < cases.size(); i++) {
                    rows.add(runCase(device, family, variant, cases.get(i), reference.get(i), repeats));
                }
            }
        } finally {
            device.selectKernel(family, before);
        }
    }

    private static Row runCase(Backend device, String family, String variant, Case c, List<Output> ref, int repeats) {
        String shape = c.shape().toString();
        List<Output> got;
        try (Prepared p = c.prepare(device)) {
            try {
                got = p.runOnce();
            } catch (RuntimeException e) {
                return new Row(family, variant, c.kernel(), shape, "error", Double.NaN, c.rtol(), false, Double.NaN,
                        message(e));
            }
            Comparison cmp = compare(ref, got);
            double seconds = Double.NaN;
            String detail = cmp.detail();
            try {
                seconds = time(p, device, repeats);
            } catch (RuntimeException e) {
                return new Row(family, variant, c.kernel(), shape, "error", cmp.maxRel(), c.rtol(), false,
                        Double.NaN, "timed call failed: " + message(e));
            }
            return new Row(family, variant, c.kernel(), shape, cmp.error(), cmp.maxRel(), c.rtol(), cmp.passed(),
                    seconds, detail);
        } catch (RuntimeException e) { // allocation / upload failures
            return new Row(family, variant, c.kernel(), shape, "error", Double.NaN, c.rtol(), false, Double.NaN, message(e));
        }
    }

    private static double time(Prepared p, Backend device, int repeats) {
        if (repeats == 0) return Double.NaN;
        long[] ns = new long[repeats];
        for (int r = 0; r < repeats; r++) {
            p.poison();
            device.synchronize();
            long t0 = System.nanoTime();
            p.call();
            device.synchronize();
            ns[r] = System.nanoTime() - t0;
        }
        Arrays.sort(ns);
        double median = repeats % 2 == 1 ? ns[repeats / 2] : (ns[repeats / 2 - 1] + ns[repeats / 2]) / 2.0;
        return median * 1e-9;
    }

    private static String message(RuntimeException e) {
        String m = e.getMessage();
        String type = e.getClass().getSimpleName();
        return m == null || m.isBlank() ? type : m;
    }

    // ---- comparison -------------------------------------------------------------------------

    /** How an output is checked. */
    sealed interface Check permits BitExact, Close {}

    /** Identical bits. */
    record BitExact() implements Check {}

    /** |dev - cpu| <= rtol * (|cpu| + magnitude). */
    record Close(double rtol, double magnitude) implements Check {}

    /** One output array of a call with how it is checked (the CPU side's check is the one used). */
    record Output(String name, float[] f, int[] i, Check check) {
        static Output bits(String name, int[] v) {
            return new Output(name, null, v, new BitExact());
        }

        static Output bits(String name, float[] v) {
            return new Output(name, v, null, new BitExact());
        }

        static Output close(String name, float[] v, double rtol, double magnitude) {
            return new Output(name, v, null, new Close(rtol, magnitude));
        }
    }

    record Comparison(boolean passed, String error, double maxRel, String detail) {}

    static Comparison compare(List<Output> ref, List<Output> got) {
        boolean passed = true, allBits = true, bitsFailed = false;
        double maxRel = 0;
        boolean anyClose = false;
        StringBuilder detail = new StringBuilder();
        for (int k = 0; k < ref.size(); k++) {
            Output r = ref.get(k), g = got.get(k);
            int bitDiffs = bitDifferences(r, g);
            if (bitDiffs != 0) allBits = false;
            switch (r.check()) {
                case BitExact b -> {
                    if (bitDiffs != 0) {
                        passed = false;
                        bitsFailed = true;
                        int first = firstBitDifference(r, g);
                        append(detail, String.format(Locale.ROOT, "%s: %d of %d elements differ in bits (first at %d: cpu %s, device %s)",
                                r.name(), bitDiffs, length(r), first, show(r, first), show(g, first)));
                    }
                }
                case Close c -> {
                    anyClose = true;
                    int bad = 0, worst = -1;
                    double worstRel = -1;
                    for (int i = 0; i < r.f().length; i++) {
                        double cv = r.f()[i], dv = g.f()[i];
                        double diff = Math.abs(dv - cv);
                        double rel = Double.isFinite(dv) && Double.isFinite(cv) ? diff / (Math.abs(cv) + c.magnitude())
                                : Double.POSITIVE_INFINITY;
                        if (Double.isNaN(rel)) rel = diff == 0 ? 0 : Double.POSITIVE_INFINITY; // 0/0
                        if (!(rel <= c.rtol())) bad++;
                        if (rel > worstRel) {
                            worstRel = rel;
                            worst = i;
                        }
                    }
                    maxRel = Math.max(maxRel, worstRel < 0 ? 0 : worstRel);
                    if (bad > 0) {
                        passed = false;
                        append(detail, String.format(Locale.ROOT,
                                "%s: %d of %d elements violate |dev - cpu| <= atol + rtol*|cpu| (rtol = %.0fu, atol = %.3g); "
                                        + "worst at %d: cpu %s, device %s",
                                r.name(), bad, r.f().length, c.rtol() / U, c.rtol() * c.magnitude(), worst,
                                Float.toString(r.f()[worst]), Float.toString(g.f()[worst])));
                    }
                }
            }
        }
        String error;
        if (allBits) {
            maxRel = 0;
            error = "bit-exact";
        } else if (bitsFailed) {
            error = "bits differ";
        } else if (!anyClose || !Double.isFinite(maxRel)) {
            maxRel = Double.NaN;
            error = "non-finite";
        } else {
            error = String.format(Locale.ROOT, "%.2e", maxRel);
        }
        return new Comparison(passed, error, maxRel, detail.toString());
    }

    private static void append(StringBuilder b, String s) {
        if (!b.isEmpty()) b.append("; ");
        b.append(s);
    }

    private static int length(Output o) {
        return o.f() != null ? o.f().length : o.i().length;
    }

    private static int bitDifferences(Output r, Output g) {
        int n = 0;
        for (int i = 0; i < length(r); i++) if (bitsAt(r, i) != bitsAt(g, i)) n++;
        return n;
    }

    private static int firstBitDifference(Output r, Output g) {
        for (int i = 0; i < length(r); i++) if (bitsAt(r, i) != bitsAt(g, i)) return i;
        return -1;
    }

    private static int bitsAt(Output o, int i) {
        return o.f() != null ? Float.floatToRawIntBits(o.f()[i]) : o.i()[i];
    }

    private static String show(Output o, int i) {
        return o.f() != null ? Float.toString(o.f()[i]) : String.format(Locale.ROOT, "0x%08x", o.i()[i]);
    }

    static String formatSeconds(double s) {
        if (Double.isNaN(s)) return "-";
        if (s >= 1) return String.format(Locale.ROOT, "%.2f s", s);
        if (s >= 1e-3) return String.format(Locale.ROOT, "%.2f ms", s * 1e3);
        return String.format(Locale.ROOT, "%.1f us", s * 1e6);
    }

    // ---- cases ------------------------------------------------------------------------------

    record Ctx(NoiseSchedule schedule, NativeSchedule handle) {
        int steps() {
            return schedule.numTrainTimesteps();
        }
    }

    /** One call of a family on one shape with fixed random inputs. */
    interface Case {
        String kernel();

        Shape shape();

        /** The tolerance of its toleranced outputs (0 if it has none). */
        double rtol();

        /** Allocates and uploads the inputs and the outputs on a backend. */
        Prepared prepare(Backend backend);
    }

    /** A case's tensors on one backend. */
    abstract static class Prepared implements AutoCloseable {
        private final List<Tensor> tensors = new ArrayList<>();
        Backend be;

        /** Allocates and uploads (tensors through {@link #keep}). */
        abstract void allocate();

        final Tensor keep(Tensor t) {
            tensors.add(t);
            return t;
        }

        /** Writes NaN (or a NaN bit pattern) into every output. */
        abstract void poison();

        /** The kernel call. */
        abstract void call();

        /** Reads the outputs. */
        abstract List<Output> read();

        final List<Output> runOnce() {
            poison();
            call();
            return read();
        }

        @Override
        public void close() {
            RuntimeException first = null;
            for (int i = tensors.size() - 1; i >= 0; i--) {
                try {
                    tensors.get(i).close();
                } catch (RuntimeException e) {
                    if (first == null) first = e;
                }
            }
            if (first != null) throw first;
        }
    }

    /** A case built from lambdas. */
    private record SimpleCase(String kernel, Shape shape, double rtol,
                              java.util.function.Supplier<Prepared> factory) implements Case {
        @Override
        public Prepared prepare(Backend backend) {
            Prepared p = factory.get();
            p.be = backend;
            try {
                p.allocate();
            } catch (RuntimeException e) {
                try {
                    p.close();
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
                throw e;
            }
            return p;
        }
    }

    /** The cases of a family, or null when the self-test does not know it. */
    static List<Case> cases(String family, SplittableRandom rnd, Ctx ctx) {
        return switch (family) {
            case "rng" -> rngCases(rnd);
            case "add_noise" -> addNoiseCases(rnd, ctx);
            case "diffusion_loss" -> lossCases(rnd, ctx);
            case "reverse_step" -> stepCases(rnd, ctx);
            case "timestep_embedding" -> embeddingCases(rnd);
            default -> null;
        };
    }

    static final int UINT32_POISON = 0x7FC0DEAD; // a NaN bit pattern

    static float[] gaussians(SplittableRandom r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            // Box-Muller in float64 from two uniforms in (0, 1]
            double u1 = 1.0 - r.nextDouble(), u2 = r.nextDouble();
            v[i] = (float) (Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2));
        }
        return v;
    }

    static int[] timesteps(SplittableRandom r, int batch, int steps) {
        int[] t = new int[batch];
        for (int b = 0; b < batch; b++) t[b] = r.nextInt(steps);
        if (batch >= 3) { // the ends of the schedule, where coefficients are extreme
            t[0] = 0;
            t[batch - 1] = steps - 1;
        }
        return t;
    }

    static double maxAbs(float[] v) {
        double m = 0;
        for (float x : v) m = Math.max(m, Math.abs(x));
        return m;
    }

    private static List<Case> rngCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            long seed = rnd.nextLong(), offset = rnd.nextLong();
            out.add(new SimpleCase("uint32", sh, 0, () -> new Prepared() {
                Tensor t;

                @Override
                void allocate() {
                    t = keep(Tensor.allocate(be, DType.UINT32, count));
                }

                @Override
                void poison() {
                    int[] p = new int[count];
                    Arrays.fill(p, UINT32_POISON);
                    t.copyFrom(p);
                }

                @Override
                void call() {
                    DiffusionKernels.randomBits(be, seed, offset, t);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.bits("uint32", t.toIntArray()));
                }
            }));
            long seed2 = rnd.nextLong(), offset2 = rnd.nextLong();
            out.add(new SimpleCase("normal", sh, 0, () -> new Prepared() {
                Tensor t;

                @Override
                void allocate() {
                    t = keep(Tensor.allocate(be, DType.FLOAT32, count));
                }

                @Override
                void poison() {
                    t.fill(Float.NaN);
                }

                @Override
                void call() {
                    DiffusionKernels.randomNormal(be, seed2, offset2, t);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.bits("normal", t.toFloatArray()));
                }
            }));
        }
        return out;
    }

    private static List<Case> addNoiseCases(SplittableRandom rnd, Ctx ctx) {
        List<Case> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            float[] x0 = gaussians(rnd, batch * n);
            int[] t = timesteps(rnd, batch, ctx.steps());
            long seed = rnd.nextLong(), offset = rnd.nextLong();
            double maxX0 = maxAbs(x0);
            out.add(new SimpleCase("add_noise", sh, ADD_NOISE_RTOL, () -> new Prepared() {
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

    private static List<Case> lossCases(SplittableRandom rnd, Ctx ctx) {
        List<Case> out = new ArrayList<>();
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
            out.add(new SimpleCase(kernel, sh, Math.max(LOSS_RTOL, GRAD_RTOL), () -> new Prepared() {
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

    private static List<Case> stepCases(SplittableRandom rnd, Ctx ctx) {
        List<Case> out = new ArrayList<>();
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
                out.add(new SimpleCase(kernel, sh, STEP_RTOL, () -> new Prepared() {
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

    private static List<Case> embeddingCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), dim = sh.n();
            float[] t = new float[batch];
            for (int b = 0; b < batch; b++) t[b] = (float) (rnd.nextDouble() * 1000.0);
            boolean flip = rnd.nextBoolean();
            float shift = rnd.nextBoolean() ? 1.0f : 0.0f;
            String kernel = "dim=" + dim + (flip ? " flip" : "") + " shift=" + (int) shift;
            out.add(new SimpleCase(kernel, sh, EMBEDDING_RTOL, () -> new Prepared() {
                Tensor e;

                @Override
                void allocate() {
                    e = keep(Tensor.allocate(be, DType.FLOAT32, batch, dim));
                }

                @Override
                void poison() {
                    e.fill(Float.NaN);
                }

                @Override
                void call() {
                    DiffusionKernels.timestepEmbedding(be, t, dim, flip, shift, 1.0f, 10000.0f, e);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.close("embedding", e.toFloatArray(), EMBEDDING_RTOL, 1.0));
                }
            }));
        }
        return out;
    }

    private static String name(Enum<?> e) {
        return e.name().toLowerCase(Locale.ROOT);
    }
}
