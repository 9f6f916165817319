package io.diffusion4j.selftest;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConcatKernels;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.LinearKernels.AttentionShape;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.kernels.SamplerKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.VlbKernels;
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
import java.util.function.Consumer;
import java.util.function.Function;

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
 *   <li>conv2d (forward, backward): an output summing T products, rtol = 2 (T + 2) u, M = T max|a| max|b|
 *       (+ max|bias| or the accumulated initial value);
 *   <li>group_norm (with and without SiLU, and bias_group_norm): y 24 u, mean and rstd 20 u, backward 36 u,
 *       M the maxima of the float64 first-order error scales (GnBounds);
 *   <li>silu: 24 u, M = 0 forward, max |dy| s (1 + |x| (1 + s)) backward; residual_add: bit-exact;
 *   <li>linear and attention: rtol = 4 u, M the first-order bound in units of u (LinearAttentionReference);
 *   <li>grad_norm (float64): rtol = 2e-12, M = 0; adamw and ema (same correctly rounded float32 math on
 *       every backend, from identical copies of the state): bit-exact.
 *   <li>dropout (forward, backward, in place): bit-exact (an integer mask of the same Philox words and one
 *       correctly rounded multiply).
 *   <li>vlb (float64 per-sample sums of the bound's terms and the prior): rtol = 1e-12, M = n (float64
 *       element math on both backends, summed in different fixed orders).
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
 * times; the row carries the median time of one call measured with the backend's timer (CUDA events
 * on a GPU, the host clock on cpu and cuda-sim), with the device cache flushed and the outputs
 * re-poisoned before each call, outside the timed region. On cuda-sim these are simulator times on CPU
 * threads, not GPU times.
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
                      double rtol, boolean passed, double secondsPerCall, String detail, long bytesTouched) {
        /** A row with no traffic figure (failures before timing). */
        public Row(String family, String variant, String kernel, String shape, String error, double maxRelError,
                   double rtol, boolean passed, double secondsPerCall, String detail) {
            this(family, variant, kernel, shape, error, maxRelError, rtol, passed, secondsPerCall, detail, 0);
        }

        /**
         * Bytes of every tensor of the call (inputs, outputs, saved statistics) divided by the time: the
         * traffic if each is moved once, a lower bound of what the kernel moves. NaN when not timed.
         */
        public double gigabytesPerSecond() {
            return bytesTouched > 0 && secondsPerCall > 0 ? bytesTouched / secondsPerCall / 1e9 : Double.NaN;
        }

        /** Every output was identical in bits to the CPU's. */
        public boolean bitExact() {
            return error.equals("bit-exact");
        }

        /** The tolerance column. */
        public String toleranceText() {
            if (rtol == 0) return "bits";
            // float64 results (the gradient norm) are held to far less than one float32 u
            return rtol < U / 2 ? String.format(Locale.ROOT, "%.0e", rtol) : String.format(Locale.ROOT, "%.0fu", rtol / U);
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
        if (cpu.kind() != Device.CPU) throw new IllegalArgumentException("the reference must be the cpu backend, got " + cpu);
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
                    seconds, detail, p.bytes());
        } catch (RuntimeException e) { // allocation / upload failures
            return new Row(family, variant, c.kernel(), shape, "error", Double.NaN, c.rtol(), false, Double.NaN, message(e));
        }
    }

    private static double time(Prepared p, Backend device, int repeats) {
        if (repeats == 0) return Double.NaN;
        double[] ms = new double[repeats];
        for (int r = 0; r < repeats; r++) {
            p.poison();
            device.flushCache(); // L2 (GPU) or last-level cache (CPU) evicted between repeats
            device.timerBegin(); // a CUDA event on the GPU; the host clock on cpu and cuda-sim
            p.call();
            ms[r] = device.timerEnd();
        }
        Arrays.sort(ms);
        double median = repeats % 2 == 1 ? ms[repeats / 2] : (ms[repeats / 2 - 1] + ms[repeats / 2]) / 2.0;
        return median * 1e-3;
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
    record Output(String name, float[] f, int[] i, double[] d, Check check) {
        static Output bits(String name, int[] v) {
            return new Output(name, null, v, null, new BitExact());
        }

        static Output bits(String name, float[] v) {
            return new Output(name, v, null, null, new BitExact());
        }

        static Output close(String name, float[] v, double rtol, double magnitude) {
            return new Output(name, v, null, null, new Close(rtol, magnitude));
        }

        /** A float64 result (the gradient norm), compared in float64. */
        static Output close(String name, double[] v, double rtol, double magnitude) {
            return new Output(name, null, null, v, new Close(rtol, magnitude));
        }

        double value(int k) {
            return f != null ? f[k] : d[k];
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
                    for (int i = 0; i < length(r); i++) {
                        double cv = r.value(i), dv = g.value(i);
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
                                r.name(), bad, length(r), c.rtol() / U, c.rtol() * c.magnitude(), worst,
                                show(r, worst), show(g, worst)));
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
        return o.f() != null ? o.f().length : o.d() != null ? o.d().length : o.i().length;
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

    private static long bitsAt(Output o, int i) {
        if (o.f() != null) return Float.floatToRawIntBits(o.f()[i]);
        if (o.d() != null) return Double.doubleToRawLongBits(o.d()[i]);
        return o.i()[i];
    }

    private static String show(Output o, int i) {
        if (o.f() != null) return Float.toString(o.f()[i]);
        if (o.d() != null) return Double.toString(o.d()[i]);
        return String.format(Locale.ROOT, "0x%08x", o.i()[i]);
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

        /** Bytes of all tensors of the call. */
        final long bytes() {
            long b = 0;
            for (Tensor t : tensors) b += t.byteSize();
            return b;
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
            case "conv2d" -> convCases(rnd);
            case "group_norm" -> groupNormCases(rnd);
            case "silu" -> siluCases(rnd);
            case "residual_add" -> residualCases(rnd);
            case "linear" -> linearCases(rnd);
            case "attention" -> attentionCases(rnd);
            case "grad_norm" -> gradNormCases(rnd);
            case "adamw" -> adamwCases(rnd);
            case "ema" -> emaCases(rnd);
            // ---- concat (issue 4) ----
            case "concat" -> concatCases(rnd);
            // ---- end concat ----
            // ---- dropout (issue 5) ----
            case "dropout" -> dropoutCases(rnd);
            // ---- end dropout ----
            // ---- sampler (issue 5) ----
            case "sampler_step" -> samplerStepCases(rnd, ctx);
            case "x0_threshold" -> thresholdCases(rnd, ctx);
            // ---- end sampler ----
            // ---- vlb (issue 5) ----
            case "vlb" -> vlbCases(rnd, ctx);
            // ---- end vlb ----
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

    // ---- the UNet layer and optimiser families (float32 tensors) --------------------------------

    /** How a tensor argument of a call is set before every call (on both backends alike). */
    enum Init {
        /** Uploaded once; the kernel only reads it. */
        INPUT,
        /** An output the kernel writes: NaN before every call. */
        POISON,
        /**
         * Accumulated into ({@code +=}) or updated in place: the same values are uploaded again before
         * every call, so both backends (and every timed repeat) start from identical copies. NaN would
         * only propagate, never show an unwritten element.
         */
        RESET
    }

    /** One float32 tensor argument: how it is initialised, its values (INPUT, RESET) and its shape. */
    record Arg(Init init, float[] data, long... shape) {
        static Arg in(float[] data, long... shape) {
            return new Arg(Init.INPUT, data, shape);
        }

        static Arg out(long... shape) {
            return new Arg(Init.POISON, null, shape);
        }

        static Arg reset(float[] data, long... shape) {
            return new Arg(Init.RESET, data, shape);
        }
    }

    /**
     * A case over float32 tensors: {@code call} gets the tensors in the order of {@code args};
     * {@code read} gets the values of every non-input argument (null for inputs), read back after the call.
     */
    private static Case tensorCase(String kernel, Shape shape, double rtol, List<Arg> args, Consumer<Tensor[]> call,
                                   Function<float[][], List<Output>> read) {
        return new SimpleCase(kernel, shape, rtol, () -> new Prepared() {
            Tensor[] t;

            @Override
            void allocate() {
                t = new Tensor[args.size()];
                for (int k = 0; k < t.length; k++) {
                    Arg a = args.get(k);
                    t[k] = keep(a.init() == Init.INPUT ? Tensor.of(be, a.data(), a.shape())
                            : Tensor.allocate(be, DType.FLOAT32, a.shape()));
                }
            }

            @Override
            void poison() {
                for (int k = 0; k < t.length; k++) {
                    Arg a = args.get(k);
                    if (a.init() == Init.POISON) t[k].fill(Float.NaN);
                    else if (a.init() == Init.RESET) t[k].copyFrom(a.data());
                }
            }

            @Override
            void call() {
                call.accept(t);
            }

            @Override
            List<Output> read() {
                float[][] v = new float[t.length][];
                for (int k = 0; k < t.length; k++) if (args.get(k).init() != Init.INPUT) v[k] = t[k].toFloatArray();
                return read.apply(v);
            }
        });
    }

    static float[] gaussians(SplittableRandom r, int n, double sigma, double mean) {
        float[] v = gaussians(r, n);
        for (int i = 0; i < n; i++) v[i] = (float) (mean + sigma * v[i]);
        return v;
    }

    static double max(double[] v) {
        double m = 0;
        for (double x : v) m = Math.max(m, x);
        return m;
    }

    /** Rows of the norm/attention/conv families: shapes are given by their own dimensions. */
    private static Shape dims(String label, int... d) {
        int n = 1;
        for (int i = 1; i < d.length; i++) n *= d[i];
        return new Shape(label, d[0], n);
    }

    private static String dimsText(int... d) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < d.length; i++) b.append(i == 0 ? "" : "x").append(d[i]);
        return b.toString();
    }

    // conv2d ---------------------------------------------------------------------------------------

    /**
     * Every geometry of UNet2DModel (3x3 same, 1x1 shortcut, the stride-2 downsample with padding 1
     * and with diffusers' (0, 1, 0, 1) padding, the 3x3 conv of the nearest 2x upsample), forward
     * and backward, on odd NHWC shapes. Each output sums T products; with both backends within
     * (T + 2) u of the sum of the terms' absolute values (ConvParityTest), rtol = 2 (T + 2) u and M
     * = T max|a| max|b| (+ the bias or the accumulated initial value), which bounds that sum.
     */
    private static List<Case> convCases(SplittableRandom rnd) {
        record Geo(String name, Conv2dSpec spec, int n, int h, int w, int cIn, int cOut) {}
        List<Geo> geos = List.of(
                new Geo("3x3", Conv2dSpec.same3x3(), 2, 7, 5, 3, 5),
                new Geo("1x1", Conv2dSpec.pointwise(), 3, 5, 7, 13, 5),
                new Geo("3x3 stride2 pad1", Conv2dSpec.downsample3x3(1), 1, 9, 7, 5, 13),
                new Geo("3x3 stride2 pad(0,0,1,1)", Conv2dSpec.downsample3x3(0), 2, 7, 9, 3, 5),
                new Geo("up2x 3x3", Conv2dSpec.upsample3x3(), 1, 5, 3, 5, 3));
        List<Case> out = new ArrayList<>();
        for (Geo g : geos) {
            Conv2dSpec spec = g.spec();
            int k = spec.kernelSize(), n = g.n(), cIn = g.cIn(), cOut = g.cOut();
            int ho = (int) spec.outputHeight(g.h()), wo = (int) spec.outputWidth(g.w());
            long[] xs = {n, g.h(), g.w(), cIn}, wsh = {k, k, cIn, cOut}, ys = {n, ho, wo, cOut};
            int xCount = n * g.h() * g.w() * cIn, wCount = k * k * cIn * cOut, yCount = n * ho * wo * cOut;
            float[] x = gaussians(rnd, xCount), w = gaussians(rnd, wCount, 0.5, 0), b = gaussians(rnd, cOut);
            float[] dy = gaussians(rnd, yCount), dw0 = gaussians(rnd, wCount), db0 = gaussians(rnd, cOut);
            Shape sh = dims(dimsText(n, g.h(), g.w(), cIn) + "->" + cOut, n, g.h(), g.w(), cIn);
            int tFwd = k * k * cIn, tDx = (spec.upsample2x() ? 4 : 1) * k * k * cOut, tDw = n * ho * wo;
            double rFwd = 2 * (tFwd + 2) * U, rDx = 2 * (tDx + 2) * U, rDw = 2 * (tDw + 2) * U;
            double mFwd = tFwd * maxAbs(x) * maxAbs(w) + maxAbs(b);
            double mDx = tDx * maxAbs(dy) * maxAbs(w);
            double mDw = tDw * maxAbs(x) * maxAbs(dy) + maxAbs(dw0), mDb = tDw * maxAbs(dy) + maxAbs(db0);
            out.add(tensorCase("forward " + g.name(), sh, rFwd,
                    List.of(Arg.in(x, xs), Arg.in(w, wsh), Arg.in(b, cOut), Arg.out(ys)),
                    t -> ConvKernels.forward(spec, t[0], t[1], t[2], t[3]),
                    v -> List.of(Output.close("y", v[3], rFwd, mFwd))));
            out.add(tensorCase("backward " + g.name(), sh, Math.max(rDx, rDw),
                    List.of(Arg.in(x, xs), Arg.in(w, wsh), Arg.in(dy, ys), Arg.out(xs), Arg.reset(dw0, wsh),
                            Arg.reset(db0, cOut)),
                    t -> ConvKernels.backward(spec, t[0], t[1], t[2], t[3], t[4], t[5]),
                    v -> List.of(Output.close("dx", v[3], rDx, mDx), Output.close("dweight", v[4], rDw, mDw),
                            Output.close("dbias", v[5], rDw, mDb))));
        }
        return out;
    }

    // group_norm -----------------------------------------------------------------------------------

    /** GroupNorm forward: y 24 u (device 16 u + CPU 8 u of NormParityTest), mean and rstd 20 u (16 + 4). */
    static final double GN_FWD_RTOL = 24 * U, GN_STATS_RTOL = 20 * U;
    /** GroupNorm backward (dx, dtb, dgamma, dbeta): 36 u (device 24 u + CPU 12 u). */
    static final double GN_BWD_RTOL = 36 * U;

    /**
     * GroupNorm with and without SiLU and the fused time-embedding bias, forward and backward. The
     * magnitudes are the maxima over the outputs of NormKernelsTest's first-order error scales
     * (sums of absolute values of the terms, so cancellation cannot shrink them), evaluated in
     * float64 here from the inputs. The backward gets the float64 statistics rounded to float32 as
     * its mean and rstd on both backends, so both differentiate the same normalisation.
     */
    private static List<Case> groupNormCases(SplittableRandom rnd) {
        // {n, h, w, c, groups, bias, silu}: odd sizes, C > 32 (two channel tiles), H*W > 64 (row splits)
        int[][] configs = {{2, 5, 7, 10, 5, 0, 0}, {1, 9, 11, 40, 8, 0, 1}, {3, 5, 7, 13, 1, 1, 1}, {2, 3, 5, 6, 3, 1, 0}};
        List<Case> out = new ArrayList<>();
        for (int[] cf : configs) {
            int n = cf[0], h = cf[1], w = cf[2], c = cf[3], groups = cf[4];
            boolean bias = cf[5] == 1, silu = cf[6] == 1;
            int hw = h * w, size = n * hw * c;
            float eps = 1e-5f;
            float[] x = gaussians(rnd, size, 1.5, 0.3), gamma = gaussians(rnd, c, 0.5, 1.0), beta = gaussians(rnd, c, 0.5, 0);
            float[] tb = bias ? gaussians(rnd, n * c) : null, dy = gaussians(rnd, size);
            GnBounds bd = new GnBounds(n, hw, c, groups, x, tb, gamma, beta, eps, silu, dy);
            long[] xs = {n, h, w, c}, gs = {n, groups};
            float[] zeros = new float[c];
            Shape sh = dims(dimsText(n, h, w, c) + " G=" + groups, n, h, w, c);
            String what = (bias ? "bias_group_norm" : "group_norm") + (silu ? "+silu" : "");
            double mY = bd.sy, mMean = bd.maxV;
            List<Arg> fwd = new ArrayList<>(List.of(Arg.in(x, xs)));
            if (bias) fwd.add(Arg.in(tb, n, c));
            fwd.addAll(List.of(Arg.in(gamma, c), Arg.in(beta, c), Arg.out(xs), Arg.out(gs), Arg.out(gs)));
            int o = bias ? 1 : 0;
            out.add(tensorCase(what + " forward", sh, GN_FWD_RTOL, fwd, t -> {
                if (bias) NormKernels.biasGroupNorm(t[0], t[1], t[2], t[3], groups, eps, silu, t[4], t[5], t[6]);
                else NormKernels.groupNorm(t[0], t[1], t[2], groups, eps, silu, t[3], t[4], t[5]);
            }, v -> List.of(Output.close("y", v[3 + o], GN_FWD_RTOL, mY),
                    Output.close("mean", v[4 + o], GN_STATS_RTOL, mMean),
                    Output.close("rstd", v[5 + o], GN_STATS_RTOL, 0.0))));

            // dy, x, [tb], gamma, beta, mean, rstd, dx, [dtb], dgamma (+=), dbeta (+=)
            List<Arg> bwd = new ArrayList<>(List.of(Arg.in(dy, xs), Arg.in(x, xs)));
            if (bias) bwd.add(Arg.in(tb, n, c));
            bwd.addAll(List.of(Arg.in(gamma, c), Arg.in(beta, c), Arg.in(bd.mean32, gs), Arg.in(bd.rstd32, gs),
                    Arg.out(xs)));
            if (bias) bwd.add(Arg.out(n, c));
            bwd.addAll(List.of(Arg.reset(zeros, c), Arg.reset(zeros, c)));
            double mDx = bd.sdx, mDtb = bd.sdtb, mDg = bd.sdgamma, mDb = bd.sdbeta;
            out.add(tensorCase(what + " backward", sh, GN_BWD_RTOL, bwd, t -> {
                if (bias) {
                    NormKernels.biasGroupNormBackward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], groups, silu, t[7], t[8],
                            t[9], t[10]);
                } else {
                    NormKernels.groupNormBackward(t[0], t[1], t[2], t[3], t[4], t[5], groups, silu, t[6], t[7], t[8]);
                }
            }, v -> {
                List<Output> r = new ArrayList<>();
                r.add(Output.close("dx", v[6 + o], GN_BWD_RTOL, mDx));
                if (bias) r.add(Output.close("dtb", v[8], GN_BWD_RTOL, mDtb));
                r.add(Output.close("dgamma", v[7 + 2 * o], GN_BWD_RTOL, mDg));
                r.add(Output.close("dbeta", v[8 + 2 * o], GN_BWD_RTOL, mDb));
                return r;
            }));
        }
        return out;
    }

    /**
     * float64 group statistics and the maxima of the first-order error scales of every GroupNorm
     * output (the formulas of NormKernelsTest.Ref), from the inputs alone.
     */
    static final class GnBounds {
        final float[] mean32, rstd32;
        final double maxV, sy, sdx, sdtb, sdgamma, sdbeta;

        static double sigmoid(double z) {
            return 1.0 / (1.0 + Math.exp(-z));
        }

        GnBounds(int n, int hw, int c, int groups, float[] x, float[] tb, float[] gamma, float[] beta, float eps,
                 boolean silu, float[] dy) {
            int cg = c / groups, size = n * hw * c;
            mean32 = new float[n * groups];
            rstd32 = new float[n * groups];
            double[] v = new double[size], xhat = new double[size], z = new double[size], sx = new double[size],
                    sz = new double[size], dz = new double[size], sdz = new double[size];
            double mv = 0, syMax = 0;
            for (int e = 0; e < size; e++) {
                int ch = e % c, b = e / (hw * c);
                v[e] = tb == null ? x[e] : (double) (x[e] + tb[b * c + ch]); // the float32 sum the kernels normalise
                mv = Math.max(mv, Math.abs(v[e]));
            }
            double[] mean = new double[n * groups], rstd = new double[n * groups];
            for (int b = 0; b < n; b++) {
                for (int g = 0; g < groups; g++) {
                    double sum = 0, ss = 0, count = (double) hw * cg;
                    for (int q = 0; q < hw; q++) for (int ch = g * cg; ch < (g + 1) * cg; ch++) sum += v[(b * hw + q) * c + ch];
                    double m = sum / count;
                    for (int q = 0; q < hw; q++) {
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            double d = v[(b * hw + q) * c + ch] - m;
                            ss += d * d;
                        }
                    }
                    int sg = b * groups + g;
                    mean[sg] = m;
                    rstd[sg] = 1.0 / Math.sqrt(ss / count + eps);
                    mean32[sg] = (float) m;
                    rstd32[sg] = (float) rstd[sg];
                }
            }
            maxV = mv;
            for (int e = 0; e < size; e++) {
                int ch = e % c, b = e / (hw * c), sg = b * groups + ch / cg;
                double r = rstd[sg], tbAbs = tb == null ? 0 : Math.abs(tb[b * c + ch]);
                xhat[e] = (v[e] - mean[sg]) * r;
                z[e] = xhat[e] * gamma[ch] + beta[ch];
                double y = silu ? z[e] * sigmoid(z[e]) : z[e];
                sx[e] = r * (Math.abs(x[e]) + tbAbs + Math.abs(mean[sg])) + Math.abs(xhat[e]);
                sz[e] = Math.abs(gamma[ch]) * sx[e] + Math.abs(beta[ch]) + Math.abs(z[e]);
                double s = sigmoid(z[e]), grad = s * (1 + z[e] * (1 - s));
                syMax = Math.max(syMax, silu ? Math.abs(grad) * sz[e] + Math.abs(y) : sz[e]);
                dz[e] = silu ? dy[e] * grad : dy[e];
                sdz[e] = silu ? Math.abs(dy[e]) * (s * (1 + Math.abs(z[e]) * (1 + s)) + 0.6 * sz[e]) + Math.abs(dz[e])
                        : Math.abs(dz[e]);
            }
            sy = syMax;
            double[] sdg = new double[c], sdb = new double[c], sdtbA = new double[n * c];
            for (int e = 0; e < size; e++) {
                int ch = e % c;
                sdb[ch] += sdz[e];
                sdg[ch] += sdz[e] * Math.abs(xhat[e]) + Math.abs(dz[e]) * sx[e];
            }
            double sdxMax = 0;
            for (int b = 0; b < n; b++) {
                for (int g = 0; g < groups; g++) {
                    double count = (double) hw * cg, m1 = 0, m2 = 0, sm1 = 0, sm2 = 0;
                    for (int q = 0; q < hw; q++) {
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            int e = (b * hw + q) * c + ch;
                            double ga = gamma[ch];
                            m1 += ga * dz[e];
                            m2 += ga * dz[e] * xhat[e];
                            sm1 += Math.abs(ga) * sdz[e];
                            sm2 += Math.abs(ga) * (sdz[e] * Math.abs(xhat[e]) + Math.abs(dz[e]) * sx[e]);
                        }
                    }
                    m1 /= count;
                    m2 /= count;
                    sm1 /= count;
                    sm2 /= count;
                    double r = rstd[b * groups + g];
                    for (int q = 0; q < hw; q++) {
                        for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                            int e = (b * hw + q) * c + ch;
                            double ga = gamma[ch];
                            double dx = r * (ga * dz[e] - m1 - xhat[e] * m2);
                            double s = r * (Math.abs(ga) * sdz[e] + sm1 + Math.abs(xhat[e]) * sm2 + sx[e] * Math.abs(m2))
                                    + Math.abs(dx);
                            sdxMax = Math.max(sdxMax, s);
                            sdtbA[b * c + ch] += s;
                        }
                    }
                }
            }
            sdx = sdxMax;
            sdtb = max(sdtbA);
            sdgamma = max(sdg);
            sdbeta = max(sdb);
        }
    }

    // silu, residual_add ---------------------------------------------------------------------------

    /** SiLU and its gradient: 24 u (twice NormKernelsTest's 12 u). */
    static final double SILU_RTOL = 24 * U;

    /**
     * SiLU forward: y = x sigmoid(x) is a product of x and a sigmoid computed from a sum of positive
     * terms, so its error is relative to |y| itself (M = 0). The gradient s (1 + x (1 - s)) cancels
     * near x = -1.28, so its magnitude is max |dy| s (1 + |x| (1 + s)) (NormKernelsTest's scale).
     */
    private static List<Case> siluCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            float[] x = gaussians(rnd, count, 3.0, 0), dy = gaussians(rnd, count);
            x[0] = 0f;
            x[count - 1] = -1.2785f; // where the gradient cancels to 0
            double mGrad = 0;
            for (int i = 0; i < count; i++) {
                double s = GnBounds.sigmoid(x[i]);
                mGrad = Math.max(mGrad, Math.abs(dy[i]) * s * (1 + Math.abs(x[i]) * (1 + s)));
            }
            double mg = mGrad;
            out.add(tensorCase("forward", sh, SILU_RTOL, List.of(Arg.in(x, count), Arg.out(count)),
                    t -> NormKernels.silu(t[0], t[1]), v -> List.of(Output.close("y", v[1], SILU_RTOL, 0.0))));
            out.add(tensorCase("backward", sh, SILU_RTOL, List.of(Arg.in(dy, count), Arg.in(x, count), Arg.out(count)),
                    t -> NormKernels.siluBackward(t[0], t[1], t[2]), v -> List.of(Output.close("dx", v[2], SILU_RTOL, mg))));
        }
        return out;
    }

    /**
     * (a + b) * s and dout * s: both backends evaluate the same correctly rounded float32 add and
     * multiply (an add followed by a multiply cannot contract into an FMA), so bit-exact.
     */
    private static List<Case> residualCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        float[] scales = {1.0f, (float) (1 / Math.sqrt(2)), 0.5f};
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            float[] a = gaussians(rnd, count, 3.0, 0), b = gaussians(rnd, count), g = gaussians(rnd, count);
            float s = scales[rnd.nextInt(scales.length)];
            String scale = String.format(Locale.ROOT, " inv_scale=%.4g", s);
            out.add(tensorCase("forward" + scale, sh, 0, List.of(Arg.in(a, count), Arg.in(b, count), Arg.out(count)),
                    t -> NormKernels.residualAdd(t[0], t[1], s, t[2]), v -> List.of(Output.bits("out", v[2]))));
            out.add(tensorCase("backward" + scale, sh, 0, List.of(Arg.in(g, count), Arg.out(count), Arg.out(count)),
                    t -> NormKernels.residualAddBackward(t[0], s, t[1], t[2]),
                    v -> List.of(Output.bits("da", v[1]), Output.bits("db", v[2]))));
        }
        return out;
    }

    // linear, attention ----------------------------------------------------------------------------

    /**
     * Linear and attention: LinearAttentionReference's first-order bounds (a sum of K products errs
     * by at most (K + 1) u times the sum of the terms' absolute values, propagated through softmax for
     * attention) times 2 per backend, so rtol = 4 u with M the bound in units of u (maximum over the
     * outputs for linear; from the maxima of the inputs for attention).
     */
    static final double LINEAR_ATTENTION_RTOL = 4 * U;

    private static List<Case> linearCases(SplittableRandom rnd) {
        // rows, in, out: odd sizes, partial 64-tiles and 16-deep slices
        int[][] shapes = {{1, 3, 3}, {7, 13, 19}, {33, 70, 13}};
        double rt = LINEAR_ATTENTION_RTOL;
        List<Case> out = new ArrayList<>();
        for (int[] d : shapes) {
            int rows = d[0], in = d[1], of = d[2];
            float[] x = gaussians(rnd, rows * in), w = gaussians(rnd, of * in, 0.5, 0), b = gaussians(rnd, of);
            float[] dy = gaussians(rnd, rows * of), dw0 = gaussians(rnd, of * in), db0 = gaussians(rnd, of);
            double mY = 0, mDx = 0, mDw = 0, mDb = 0;
            for (int m = 0; m < rows; m++) {
                for (int o = 0; o < of; o++) {
                    double abs = Math.abs(b[o]);
                    for (int i = 0; i < in; i++) abs += Math.abs((double) x[m * in + i] * w[o * in + i]);
                    mY = Math.max(mY, (in + 2) * abs);
                }
                for (int i = 0; i < in; i++) {
                    double abs = 0;
                    for (int o = 0; o < of; o++) abs += Math.abs((double) dy[m * of + o] * w[o * in + i]);
                    mDx = Math.max(mDx, (of + 2) * abs);
                }
            }
            for (int o = 0; o < of; o++) {
                double absB = 0;
                for (int m = 0; m < rows; m++) absB += Math.abs(dy[m * of + o]);
                mDb = Math.max(mDb, (rows + 2) * absB + 2 * Math.abs(db0[o]));
                for (int i = 0; i < in; i++) {
                    double abs = 0;
                    for (int m = 0; m < rows; m++) abs += Math.abs((double) dy[m * of + o] * x[m * in + i]);
                    mDw = Math.max(mDw, (rows + 2) * abs + 2 * Math.abs(dw0[o * in + i]));
                }
            }
            double my = mY, mdx = mDx, mdw = mDw, mdb = mDb;
            Shape sh = dims("rows=" + rows + " in=" + in + " out=" + of, rows, in);
            out.add(tensorCase("forward", sh, rt,
                    List.of(Arg.in(x, rows, in), Arg.in(w, of, in), Arg.in(b, of), Arg.out(rows, of)),
                    t -> LinearKernels.linear(t[0], t[1], t[2], t[3]), v -> List.of(Output.close("y", v[3], rt, my))));
            out.add(tensorCase("backward", sh, rt,
                    List.of(Arg.in(x, rows, in), Arg.in(w, of, in), Arg.in(dy, rows, of), Arg.out(rows, in),
                            Arg.reset(dw0, of, in), Arg.reset(db0, of)),
                    t -> LinearKernels.linearBackward(t[0], t[1], t[2], t[3], t[4], t[5]),
                    v -> List.of(Output.close("dx", v[3], rt, mdx), Output.close("dweight", v[4], rt, mdw),
                            Output.close("dbias", v[5], rt, mdb))));
        }
        return out;
    }

    private static List<Case> attentionCases(SplittableRandom rnd) {
        // {batch, tokens, heads, headDim}, |q|,|k| magnitude; B*H*L blocks per kernel on the device
        int[][] shapes = {{2, 9, 2, 5}, {1, 7, 1, 8}, {3, 5, 3, 3}};
        double[] magnitudes = {1.0, 3.0, 1.0};
        double rt = LINEAR_ATTENTION_RTOL;
        List<Case> out = new ArrayList<>();
        for (int s = 0; s < shapes.length; s++) {
            int bt = shapes[s][0], len = shapes[s][1], heads = shapes[s][2], dim = shapes[s][3];
            AttentionShape as = new AttentionShape(bt, len, heads, dim);
            float scale = s == 1 ? 0.35f : as.defaultScale();
            int size = bt * len * heads * dim;
            float[] q = gaussians(rnd, size, magnitudes[s], 0), k = gaussians(rnd, size, magnitudes[s], 0);
            float[] v = gaussians(rnd, size), g = gaussians(rnd, size);
            AttnRef ref = new AttnRef(as, scale, q, k, v);
            double c = Math.abs(scale), vm = maxAbs(v), gm = maxAbs(g), qm = maxAbs(q), km = maxAbs(k);
            int L = len, D = dim;
            // forward: p relative error 2E + L + 8, out within (relP + L + 2) sum_j p |v| <= (...) max|v|
            double relPf = 2 * ref.e + L + 8, outScale = (relPf + L + 2) * vm;
            double lseScale = ref.e + L + 8 + ref.maxLse;
            // backward (LinearAttentionReference.attentionBackward with every factor at its maximum)
            double relP = relPf + lseScale, dgv = D * gm * vm;
            double dsumAbs = D * gm * ((D + 2) * vm + outScale);
            double a = 2 * dgv * (relP + 2) + (D + 2) * dgv + dsumAbs, perP = a + (L + 2) * 2 * dgv;
            double mDq = c * km * perP, mDk = c * qm * L * perP, mDv = L * (relP + L + 2) * gm;
            long[] ts = {bt, len, heads, dim}, ls = {bt, heads, len};
            Shape sh = dims(String.format(Locale.ROOT, "B=%d L=%d H=%d D=%d", bt, len, heads, dim), bt, len, heads, dim);
            String mag = magnitudes[s] == 1.0 ? "" : String.format(Locale.ROOT, " |q|,|k|~%.0f", magnitudes[s]);
            out.add(tensorCase("forward" + mag, sh, rt,
                    List.of(Arg.in(q, ts), Arg.in(k, ts), Arg.in(v, ts), Arg.out(ts), Arg.out(ls)),
                    t -> LinearKernels.attention(as, scale, t[0], t[1], t[2], t[3], t[4]),
                    o -> List.of(Output.close("out", o[3], rt, outScale), Output.close("lse", o[4], rt, lseScale))));
            // the backward reads out and lse: the float64 forward rounded to float32, the same on both backends
            out.add(tensorCase("backward" + mag, sh, rt,
                    List.of(Arg.in(q, ts), Arg.in(k, ts), Arg.in(v, ts), Arg.in(ref.out, ts), Arg.in(ref.lse, ls),
                            Arg.in(g, ts), Arg.out(ts), Arg.out(ts), Arg.out(ts)),
                    t -> LinearKernels.attentionBackward(as, scale, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]),
                    o -> List.of(Output.close("dq", o[6], rt, mDq), Output.close("dk", o[7], rt, mDk),
                            Output.close("dv", o[8], rt, mDv))));
        }
        return out;
    }

    /** float64 attention forward ([B, L, H, D]) rounded to float32, and E = max (D + 2) |scale| sum_d |q k|. */
    static final class AttnRef {
        final float[] out, lse;
        final double e, maxLse;

        AttnRef(AttentionShape a, float scale, float[] q, float[] k, float[] v) {
            int B = a.batch(), L = a.tokens(), H = a.heads(), D = a.headDim();
            out = new float[q.length];
            lse = new float[B * H * L];
            double eMax = 0, lseMax = 0;
            for (int b = 0; b < B; b++) {
                for (int h = 0; h < H; h++) {
                    for (int i = 0; i < L; i++) {
                        double[] s = new double[L];
                        double m = Double.NEGATIVE_INFINITY;
                        int qi = ((b * L + i) * H + h) * D;
                        for (int j = 0; j < L; j++) {
                            int kj = ((b * L + j) * H + h) * D;
                            double acc = 0, abs = 0;
                            for (int d = 0; d < D; d++) {
                                double t = (double) q[qi + d] * k[kj + d];
                                acc += t;
                                abs += Math.abs(t);
                            }
                            s[j] = scale * acc;
                            m = Math.max(m, s[j]);
                            eMax = Math.max(eMax, (D + 2) * Math.abs(scale) * abs);
                        }
                        double sum = 0;
                        for (int j = 0; j < L; j++) sum += Math.exp(s[j] - m);
                        double l = m + Math.log(sum);
                        lse[(b * H + h) * L + i] = (float) l;
                        lseMax = Math.max(lseMax, Math.abs(l));
                        for (int d = 0; d < D; d++) {
                            double acc = 0;
                            for (int j = 0; j < L; j++) acc += Math.exp(s[j] - m) / sum * v[((b * L + j) * H + h) * D + d];
                            out[qi + d] = (float) acc;
                        }
                    }
                }
            }
            e = eMax;
            maxLse = lseMax;
        }
    }

    // grad_norm, adamw, ema ------------------------------------------------------------------------

    /**
     * The gradient norm, accumulated in float64 in another order on the device: within 1e-12 of the
     * float64 reference on each backend (OptimParityTest), so 2e-12 between them (M = 0: a sum of squares).
     */
    static final double GRAD_NORM_RTOL = 2e-12;

    /** Gradients of mixed magnitudes (1e-4 .. 10) with some exact zeros, as in training. */
    static float[] mixedGradients(SplittableRandom r, int n) {
        float[] g = gaussians(r, n);
        for (int i = 0; i < n; i++) {
            g[i] *= (float) Math.pow(10, -4 + 5 * r.nextDouble());
            if (r.nextInt(50) == 0) g[i] = 0.0f;
        }
        return g;
    }

    private static List<Case> gradNormCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        List<Shape> shapes = new ArrayList<>(SHAPES);
        shapes.add(new Shape("1x70001", 1, 70001)); // 35 blocks of 256 threads x 8: the second-pass tree
        for (Shape sh : shapes) {
            int count = sh.batch() * sh.n();
            float[] g = mixedGradients(rnd, count);
            out.add(new SimpleCase("norm", sh, GRAD_NORM_RTOL, () -> new Prepared() {
                Tensor t;
                double norm;

                @Override
                void allocate() {
                    t = keep(Tensor.of(be, g, count));
                }

                @Override
                void poison() {
                    norm = Double.NaN;
                }

                @Override
                void call() {
                    norm = OptimKernels.gradNorm(t);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.close("norm", new double[] {norm}, GRAD_NORM_RTOL, 0.0));
                }
            }));
        }
        return out;
    }

    /**
     * Two AdamW steps (the second with a clipping gradScale) from identical parameter and moment
     * copies: both backends evaluate native/common/optim_math.h with correctly rounded float32
     * operations from the same coefficients, so param, m and v must be bit-exact.
     */
    private static List<Case> adamwCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            double lr = Math.pow(10, -4 + 2 * rnd.nextDouble());
            double b1 = 0.8 + 0.15 * rnd.nextDouble(), b2 = 0.99 + 0.0099 * rnd.nextDouble();
            double eps = Math.pow(10, -8 + 2 * rnd.nextDouble()), wd = rnd.nextInt(4) == 0 ? 0.0 : 0.1 * rnd.nextDouble();
            OptimKernels.AdamW hp = new OptimKernels.AdamW(lr, b1, b2, eps, wd);
            long step = rnd.nextBoolean() ? 1 : 1 + rnd.nextInt(1000);
            double clip = 0.3 + 0.6 * rnd.nextDouble();
            float[] p = gaussians(rnd, count, 0.5, 0), m = gaussians(rnd, count, 0.01, 0), v = new float[count];
            for (int i = 0; i < count; i++) v[i] = (float) (1e-3 * rnd.nextDouble());
            if (step == 1) { // a first step starts from zero moments
                Arrays.fill(m, 0f);
                Arrays.fill(v, 0f);
            }
            float[] g1 = mixedGradients(rnd, count), g2 = mixedGradients(rnd, count);
            String kernel = String.format(Locale.ROOT, "steps %d,%d lr=%.1e wd=%.2g scale 1,%.2f", step, step + 1, lr, wd, clip);
            out.add(tensorCase(kernel, sh, 0,
                    List.of(Arg.reset(p, count), Arg.in(g1, count), Arg.in(g2, count), Arg.reset(m, count),
                            Arg.reset(v, count)),
                    t -> {
                        OptimKernels.adamw(t[0], t[1], t[3], t[4], hp, step, 1.0);
                        OptimKernels.adamw(t[0], t[2], t[3], t[4], hp, step + 1, clip);
                    },
                    o -> List.of(Output.bits("param", o[0]), Output.bits("m", o[3]), Output.bits("v", o[4]))));
        }
        return out;
    }

    /** Two EMA updates from identical copies; bit-exact for the reason AdamW is. */
    private static List<Case> emaCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            float[] ema = gaussians(rnd, count), p1 = gaussians(rnd, count), p2 = gaussians(rnd, count);
            double d1 = 0.999, d2 = rnd.nextDouble();
            String kernel = String.format(Locale.ROOT, "decay %.3f,%.3f", d1, d2);
            out.add(tensorCase(kernel, sh, 0, List.of(Arg.reset(ema, count), Arg.in(p1, count), Arg.in(p2, count)),
                    t -> {
                        OptimKernels.ema(t[0], t[1], d1);
                        OptimKernels.ema(t[0], t[2], d2);
                    },
                    o -> List.of(Output.bits("ema", o[0]))));
        }
        return out;
    }

    // ---- concat (issue 4) ----
    /** Channel concatenation and its split on odd NHWC shapes: pure copies, so bit-exact. */
    private static List<Case> concatCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        int[][] shapes = {{2, 5, 7, 3, 13}, {2, 16, 16, 64, 32}};
        for (int[] d : shapes) {
            int n = d[0], h = d[1], w = d[2], c1 = d[3], c2 = d[4];
            int rows = n * h * w;
            float[] a = gaussians(rnd, rows * c1), b = gaussians(rnd, rows * c2), g = gaussians(rnd, rows * (c1 + c2));
            Shape sh = dims(dimsText(d), n, h, w, c1 + c2);
            out.add(tensorCase("concat + split", sh, 0,
                    List.of(Arg.in(a, n, h, w, c1), Arg.in(b, n, h, w, c2), Arg.out(n, h, w, c1 + c2),
                            Arg.in(g, n, h, w, c1 + c2), Arg.out(n, h, w, c1), Arg.out(n, h, w, c2)),
                    t -> {
                        ConcatKernels.concatChannels(t[0], t[1], t[2]);
                        ConcatKernels.concatChannelsBackward(t[3], t[4], t[5], c1, c2);
                    },
                    o -> List.of(Output.bits("out", o[2]), Output.bits("da", o[4]), Output.bits("db", o[5]))));
        }
        return out;
    }
    // ---- end concat ----

    // ---- dropout (issue 5) ----
    /**
     * Dropout forward and backward with one (p, seed, offset), and the forward in place: the mask is an
     * integer comparison of the same Philox words and a kept value one correctly rounded multiply, so
     * bit-exact. p random in (0, 1) and 0.1 (diffusers' usual value); a full 64-bit seed and offset.
     */
    private static List<Case> dropoutCases(SplittableRandom rnd) {
        List<Case> out = new ArrayList<>();
        List<Shape> shapes = new ArrayList<>(SHAPES);
        shapes.add(new Shape("2x(16x16x64)", 2, 16 * 16 * 64)); // 32 blocks of 256 threads x 4 elements
        for (Shape sh : shapes) {
            int count = sh.batch() * sh.n();
            double p = rnd.nextBoolean() ? 0.1 : 0.01 + 0.98 * rnd.nextDouble();
            long seed = rnd.nextLong(), offset = rnd.nextLong();
            float[] x = gaussians(rnd, count), dy = gaussians(rnd, count);
            String kernel = String.format(Locale.ROOT, "p=%.3f forward + backward + in place", p);
            out.add(tensorCase(kernel, sh, 0,
                    List.of(Arg.in(x, count), Arg.out(count), Arg.in(dy, count), Arg.out(count), Arg.reset(x, count)),
                    t -> {
                        DropoutKernels.forward(t[0], p, seed, offset, t[1]);
                        DropoutKernels.backward(t[2], p, seed, offset, t[3]);
                        DropoutKernels.forward(t[4], p, seed, offset, t[4]);
                    },
                    o -> List.of(Output.bits("y", o[1]), Output.bits("dx", o[3]), Output.bits("y in place", o[4]))));
        }
        return out;
    }
    // ---- end dropout ----
    // ---- sampler (issue 5) ----
    /** DPM-Solver++ 2M (second order, x0 written in place of m1) and thresholded DDPM / DDIM steps. */
    private static List<Case> samplerStepCases(SplittableRandom rnd, Ctx ctx) {
        List<Case> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            float[] x = gaussians(rnd, batch * n), o = gaussians(rnd, batch * n), m1 = gaussians(rnd, batch * n);
            float[] thr = new float[batch];
            for (int b = 0; b < batch; b++) thr[b] = (float) (1.0 + 2.0 * rnd.nextDouble());
            int[] t = new int[batch], prev = new int[batch], last = new int[batch], prev1 = new int[batch];
            for (int b = 0; b < batch; b++) {
                t[b] = 1 + rnd.nextInt(ctx.steps() - 2);
                prev[b] = rnd.nextInt(t[b]);
                last[b] = t[b] + 1 + rnd.nextInt(ctx.steps() - 1 - t[b]);
                prev1[b] = t[b] - 1;
            }
            PredictionType p = preds[rnd.nextInt(preds.length)];
            double mag = 4 * (maxAbs(x) + maxAbs(o) + maxAbs(m1));
            out.add(tensorCase("dpmsolver++ 2M " + name(p) + " threshold", sh, STEP_RTOL,
                    List.of(Arg.in(thr, batch), Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.reset(m1, batch, n),
                            Arg.out(batch, n)),
                    tt -> SamplerKernels.dpmSolverStep(ctx.handle(), p, tt[0], tt[1], tt[2], tt[3], t, prev, last, tt[3],
                            tt[4]),
                    v -> List.of(Output.close("x0", v[3], STEP_RTOL, mag), Output.close("x_prev", v[4], STEP_RTOL, mag))));
            long[] seeds = new long[batch], offsets = new long[batch];
            for (int b = 0; b < batch; b++) {
                seeds[b] = rnd.nextLong();
                offsets[b] = rnd.nextLong();
            }
            var noise = new DiffusionKernels.SampleNoise(seeds, offsets);
            out.add(tensorCase("ddpm " + name(p) + " threshold", sh, STEP_RTOL,
                    List.of(Arg.in(thr, batch), Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.out(batch, n)),
                    tt -> SamplerKernels.ddpmStepThresholded(ctx.handle(), p, VarianceType.FIXED_SMALL, tt[0], tt[1],
                            tt[2], t, prev1, noise, tt[3]),
                    v -> List.of(Output.close("x_prev", v[3], STEP_RTOL, mag))));
            out.add(tensorCase("ddim " + name(p) + " eta=1 threshold", sh, STEP_RTOL,
                    List.of(Arg.in(thr, batch), Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.out(batch, n)),
                    tt -> SamplerKernels.ddimStepThresholded(ctx.handle(), p, 1f, true, 1.0, tt[0], tt[1], tt[2], t,
                            prev, noise, tt[3]),
                    v -> List.of(Output.close("x_prev", v[3], STEP_RTOL, mag))));
        }
        return out;
    }

    /** The per-sample quantile threshold: exact order statistics, so bit-identical. */
    private static List<Case> thresholdCases(SplittableRandom rnd, Ctx ctx) {
        List<Case> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            float[] x = gaussians(rnd, batch * n, 1.5, 0), o = gaussians(rnd, batch * n);
            int[] t = timesteps(rnd, batch, ctx.steps());
            PredictionType p = preds[rnd.nextInt(preds.length)];
            double ratio = rnd.nextBoolean() ? 0.995 : rnd.nextDouble();
            out.add(tensorCase("quantile " + name(p) + " ratio=" + String.format(Locale.ROOT, "%.3f", ratio), sh, 0,
                    List.of(Arg.in(x, batch, n), Arg.in(o, batch, n), Arg.out(batch)),
                    tt -> SamplerKernels.x0Threshold(ctx.handle(), p, tt[0], tt[1], t, ratio, 1e30f, tt[2]),
                    v -> List.of(Output.bits("threshold", v[2]))));
        }
        return out;
    }
    // ---- end sampler ----

    // ---- vlb (issue 5) ----
    static final double VLB_RTOL = 1e-12;

    /**
     * The bound's per-sample terms (KL at t &gt; 0, decoder at t = 0, both variances, clipped and not) on 8-bit
     * data with model outputs whose x0 prediction is near the data, and the prior.
     */
    private static List<Case> vlbCases(SplittableRandom rnd, Ctx ctx) {
        List<Case> out = new ArrayList<>();
        PredictionType[] preds = PredictionType.values();
        double[] ab = ctx.schedule().alphasCumprod();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            int[] t = timesteps(rnd, batch, ctx.steps());
            if (batch >= 3) t[1] = 0; // a decoder term next to KL terms
            PredictionType p = preds[rnd.nextInt(preds.length)];
            VarianceType v = rnd.nextBoolean() ? VarianceType.FIXED_SMALL : VarianceType.FIXED_LARGE;
            boolean clip = rnd.nextBoolean();
            float[] x0 = new float[batch * n], xt = gaussians(rnd, batch * n), o = new float[batch * n];
            for (int i = 0; i < x0.length; i++) {
                x0[i] = rnd.nextInt(256) / 127.5f - 1f;
                double a = ab[t[i / n]];
                xt[i] = (float) (Math.sqrt(a) * x0[i] + Math.sqrt(1 - a) * xt[i]);
                double target = x0[i] + 0.005 * gaussians(rnd, 1)[0];
                o[i] = (float) switch (p) {
                    case EPSILON -> (xt[i] - Math.sqrt(a) * target) / Math.sqrt(1 - a);
                    case SAMPLE -> target;
                    case V_PREDICTION -> (Math.sqrt(a) * xt[i] - target) / Math.sqrt(1 - a);
                };
            }
            String kernel = "terms " + name(p) + " " + v.configName() + (clip ? " clip" : "");
            out.add(vlbCase(kernel, sh, n, tt -> VlbKernels.terms(ctx.handle(), p, v, clip, 1f,
                    tt[0], tt[1], tt[2], t), x0, xt, o));
            out.add(vlbCase("prior", sh, n, tt -> VlbKernels.prior(ctx.handle(), tt[0]), x0, xt, o));
        }
        return out;
    }

    private static Case vlbCase(String kernel, Shape sh, int n, Function<Tensor[], double[]> call, float[] x0, float[] xt, float[] o) {
        return new SimpleCase(kernel, sh, VLB_RTOL, () -> new Prepared() {
            Tensor[] t;
            double[] result;

            @Override
            void allocate() {
                t = new Tensor[] {keep(Tensor.of(be, x0, sh.batch(), n)), keep(Tensor.of(be, xt, sh.batch(), n)),
                        keep(Tensor.of(be, o, sh.batch(), n))};
            }

            @Override
            void poison() {
                result = null;
            }

            @Override
            void call() {
                result = call.apply(t);
            }

            @Override
            List<Output> read() {
                double[] r = result;
                if (r == null) {
                    r = new double[sh.batch()];
                    Arrays.fill(r, Double.NaN);
                }
                return List.of(Output.close("terms", r, VLB_RTOL, n));
            }
        });
    }
    // ---- end vlb ----

    private static String name(Enum<?> e) {
        return e.name().toLowerCase(Locale.ROOT);
    }
}
