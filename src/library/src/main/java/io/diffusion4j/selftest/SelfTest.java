package io.diffusion4j.selftest;

import io.diffusion4j.backend.Backend;
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
 * <h2>Where things are</h2>
 * This class is the public face (options, rows, the report) used by the {@code selftest} command.
 * {@link FamilyCases} maps each kernel family to the class that draws its cases ({@code RngCases},
 * {@code DiffusionCases}, {@code ConvCases}, {@code NormCases}, ...); a case ({@link ParityCase}) allocates
 * its tensors on either backend and makes one call; {@link ParityEngine} runs the cases on both backends,
 * compares them ({@link Comparison}) and times the device; KernelParityTest (src/test) runs the same cases
 * as one JUnit test each.
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
 *   <li>sampler_step (DPM-Solver++ 2M, thresholded DDPM and DDIM): rtol = 20 u, M = 4 (max|x_t| + max|model_output|
 *       + max|m1|); x0_threshold: bit-exact (exact order statistics);
 *   <li>timestep_embedding: rtol = 2 u, M = 1 (sines and cosines).
 *   <li>conv2d (forward, backward): an output summing T products, rtol = 2 (T + 2) u, M = T max|a| max|b|
 *       (+ max|bias| or the accumulated initial value);
 *   <li>group_norm (with and without SiLU, and bias_group_norm): y 24 u, mean and rstd 20 u, backward 36 u,
 *       M the maxima of the float64 first-order error scales (GroupNormBounds);
 *   <li>silu: 24 u, M = 0 forward, max |dy| s (1 + |x| (1 + s)) backward; residual_add: bit-exact;
 *   <li>linear and attention: rtol = 4 u, M the first-order bound in units of u (LinearAttentionReference);
 *       attention at TF32 / BF16 adds the bound of its inputs' rounding ({@link AttentionRounding});
 *   <li>grad_norm (float64): rtol = 2e-12, M = 0; adamw and ema (same correctly rounded float32 math on
 *       every backend, from identical copies of the state): bit-exact.
 *   <li>concat (and its backward, the split): bit-exact (copies).
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

    /** Runs the self-test of {@code device} against {@code cpu} (see {@link ParityEngine}). */
    public static Report run(Backend device, Backend cpu, Options options) {
        return ParityEngine.run(device, cpu, options);
    }

    /**
     * Runs the self-test's cases on the profiling simulator ({@link Backend#openProfiling()}) and returns
     * every call's launches with their counters. With a real GPU backend ({@code gpu}, else null) each call
     * is also timed there ({@link Options#repeats()} repeats, median).
     *
     * @param maxBlocks blocks simulated per launch at most (0: all; the small self-test shapes need no sample)
     */
    public static List<io.diffusion4j.profile.ProfiledCase> profile(Backend profiling, Backend gpu, Options options,
                                                                   long maxBlocks) {
        return ProfileEngine.run(profiling, gpu, options, maxBlocks);
    }

    static String formatSeconds(double s) {
        if (Double.isNaN(s)) return "-";
        if (s >= 1) return String.format(Locale.ROOT, "%.2f s", s);
        if (s >= 1e-3) return String.format(Locale.ROOT, "%.2f ms", s * 1e3);
        return String.format(Locale.ROOT, "%.1f us", s * 1e6);
    }
}
