package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.Philox;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Dropout on the CPU backend against a Java emulation ({@link Philox}, written independently of
 * native/common/philox.h): the mask must be bit-exact (it is integer arithmetic), the kept values one
 * float32 multiply, so forward and backward are compared with tolerance 0, for 1 and 2 threads, on
 * counts that are not multiples of 4 and large enough for several parallel tasks, outputs poisoned
 * with NaN. Also: keep-rate statistics, p = 0 is an exact copy, backward uses the forward's mask
 * (and matches central differences of the float64 reference forward), in-place calls, validation.
 */
class DropoutKernelsTest {
    /** Element counts: tiny, odd NHWC products (2x5x7x3, 3x7x5x13), several 16384-element tasks. */
    static final int[] COUNTS = {1, 3, 5, 210, 1365, 70001};
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) {
            cpu.setThreads(Runtime.getRuntime().availableProcessors());
            cpu.close();
        }
    }

    /** The front's threshold: round(p * 2^32) in float64, capped at 2^32 - 1 (d4j.h). */
    static long threshold(double p) {
        return Math.min((long) Math.rint(p * 0x1p32), 0xFFFF_FFFFL);
    }

    /** keep[i] of the stream (seed, offset) for dropout probability p, from the Java Philox. */
    static boolean[] mask(double p, long seed, long offset, int count) {
        int[] u = Philox.uint32(seed, offset, 0, count);
        long t = threshold(p);
        boolean[] keep = new boolean[count];
        for (int i = 0; i < count; i++) keep[i] = (u[i] & 0xFFFF_FFFFL) >= t;
        return keep;
    }

    /** The map in float32 as specified: keep ? v * (float) (1 / (1 - p)) : 0. */
    static float[] reference(float[] v, boolean[] keep, double p) {
        float s = (float) (1.0 / (1.0 - p));
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) out[i] = keep[i] ? v[i] * s : 0f;
        return out;
    }

    /** The float64 forward y = x * keep / (1 - p). */
    static double[] reference64(float[] v, boolean[] keep, double p) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) out[i] = keep[i] ? v[i] / (1.0 - p) : 0.0;
        return out;
    }

    record Out(float[] y, float[] dx) {}

    /** Forward of x and backward of dy with the same (p, seed, offset); outputs poisoned with NaN. */
    static Out run(Backend be, float[] x, float[] dy, double p, long seed, long offset) {
        int n = x.length;
        try (Tensor tx = Tensor.of(be, x, n); Tensor ty = Tensor.allocate(be, DType.FLOAT32, n);
             Tensor tdy = Tensor.of(be, dy, n); Tensor tdx = Tensor.allocate(be, DType.FLOAT32, n)) {
            ty.fill(Float.NaN);
            tdx.fill(Float.NaN);
            DropoutKernels.forward(tx, p, seed, offset, ty);
            DropoutKernels.backward(tdy, p, seed, offset, tdx);
            return new Out(ty.toFloatArray(), tdx.toFloatArray());
        }
    }

    /** p in (0, 1): uniform, with the ends (tiny and close to 1) and 0.5 sometimes. */
    static double randomP(TestRandom r) {
        return switch (r.nextInt(5)) {
            case 0 -> 0.5;
            case 1 -> 1e-3 * r.nextDouble() + 1e-6;
            case 2 -> 0.999 + 1e-3 * r.nextDouble() * 0.999;
            default -> r.nextDouble() * 0.98 + 0.01;
        };
    }

    @Test
    void forwardAndBackwardMatchTheJavaPhiloxBitForBitForOneAndTwoThreads() {
        for (int count : COUNTS) {
            TestRandom r = TestRandom.fresh();
            double p = randomP(r);
            long seed = r.nextLong(), offset = r.nextLong(); // full 64-bit values: both key and counter words
            float[] x = r.gaussians(count, 1), dy = r.gaussians(count, 1);
            boolean[] keep = mask(p, seed, offset, count);
            String ctx = String.format(Locale.ROOT, "count %d p %.6g seed %d offset %d %s", count, p, seed, offset,
                    r.describe());
            for (int threads : new int[] {1, 2}) {
                cpu.setThreads(threads);
                Out o = run(cpu, x, dy, p, seed, offset);
                Tolerance.assertBitIdentical("forward, threads " + threads, reference(x, keep, p), o.y(), ctx);
                Tolerance.assertBitIdentical("backward, threads " + threads, reference(dy, keep, p), o.dx(), ctx);
                // and within float32 rounding (scale, then product: 2 units) of the float64 forward
                Tolerance.assertClose("forward vs float64", o.y(), reference64(x, keep, p), 0, 2 * Tolerance.U, ctx);
            }
            cpu.setThreads(Runtime.getRuntime().availableProcessors());
        }
    }

    @Test
    void resultsDoNotDependOnTheThreadCount() {
        TestRandom r = TestRandom.fresh();
        int count = 3 * 16384 + 4099; // four tasks, the last partial and not block-aligned
        float[] x = r.gaussians(count, 1);
        double p = randomP(r);
        long seed = r.nextLong(), offset = r.nextLong();
        cpu.setThreads(1);
        Out one = run(cpu, x, x, p, seed, offset);
        cpu.setThreads(2);
        Out two = run(cpu, x, x, p, seed, offset);
        cpu.setThreads(Runtime.getRuntime().availableProcessors());
        Tolerance.assertBitIdentical("forward 1 vs 2 threads", one.y(), two.y(), r.describe());
        Tolerance.assertBitIdentical("backward 1 vs 2 threads", one.dx(), two.dx(), r.describe());
    }

    /**
     * Keep rates on 400004 elements for several p: the dropped fraction overall and per Philox word
     * (i % 4, so a wrong word index shows) within 5 binomial standard deviations of the expected
     * t / 2^32; masks of neighbouring offsets and seeds agree at the rate of independent masks.
     */
    @Test
    void keepRateMatchesPAndStreamsAreIndependent() {
        TestRandom r = TestRandom.fresh();
        int n = 400004;
        float[] ones = new float[n];
        java.util.Arrays.fill(ones, 1f);
        for (double p : new double[] {0.05, 0.1, 0.5, 0.9, randomP(r)}) {
            long seed = r.nextLong(), offset = r.nextLong();
            String ctx = String.format(Locale.ROOT, "p %.6g seed %d offset %d %s", p, seed, offset, r.describe());
            float[] y = run(cpu, ones, ones, p, seed, offset).y();
            float[] y2 = run(cpu, ones, ones, p, seed, offset + 1).y();
            float[] y3 = run(cpu, ones, ones, p, seed + 1, offset).y();
            double q = threshold(p) / 0x1p32; // the exact drop probability
            assertTrue(Math.abs(q - p) <= 0x1p-33, "threshold " + threshold(p) + " for p " + p);
            int[] droppedPerWord = new int[4];
            int same2 = 0, same3 = 0;
            float scale = (float) (1.0 / (1.0 - p));
            for (int i = 0; i < n; i++) {
                assertTrue(y[i] == 0f || y[i] == scale, "y[" + i + "] = " + y[i] + " is neither 0 nor the scale " + ctx);
                if (y[i] == 0f) droppedPerWord[i & 3]++;
                if ((y[i] == 0f) == (y2[i] == 0f)) same2++;
                if ((y[i] == 0f) == (y3[i] == 0f)) same3++;
            }
            int dropped = droppedPerWord[0] + droppedPerWord[1] + droppedPerWord[2] + droppedPerWord[3];
            double sd = Math.sqrt(n * q * (1 - q));
            assertTrue(Math.abs(dropped - n * q) <= 5 * sd + 1, String.format(Locale.ROOT,
                    "dropped %d of %d, expected %.1f +- %.1f; %s", dropped, n, n * q, sd, ctx));
            double sdWord = Math.sqrt(n / 4.0 * q * (1 - q));
            for (int k = 0; k < 4; k++) {
                assertTrue(Math.abs(droppedPerWord[k] - n / 4.0 * q) <= 5 * sdWord + 1, String.format(Locale.ROOT,
                        "word %d: dropped %d of %d, expected %.1f +- %.1f; %s", k, droppedPerWord[k], n / 4, n / 4.0 * q,
                        sdWord, ctx));
            }
            // two independent masks agree with probability q^2 + (1 - q)^2
            double agree = q * q + (1 - q) * (1 - q), sdAgree = Math.sqrt(n * agree * (1 - agree));
            for (int same : new int[] {same2, same3}) {
                assertTrue(Math.abs(same - n * agree) <= 5 * sdAgree + 1, String.format(Locale.ROOT,
                        "masks of neighbouring streams agree on %d of %d, independent ones would on %.1f +- %.1f; %s",
                        same, n, n * agree, sdAgree, ctx));
            }
            System.out.printf(Locale.ROOT, "dropout p %.4f: dropped fraction %.5f (expected %.5f, sd %.5f)%n", p,
                    dropped / (double) n, q, sd / n);
        }
    }

    /** p = 0: the output is an exact copy, special values included (out of place and in place). */
    @Test
    void zeroProbabilityIsAnExactCopy() {
        TestRandom r = TestRandom.fresh();
        int n = 40007;
        float[] x = r.gaussians(n, 3);
        float[] special = {-0f, 0f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN, Float.MIN_VALUE,
                -Float.MIN_NORMAL, Float.MAX_VALUE, -Float.MAX_VALUE, 1e-40f};
        System.arraycopy(special, 0, x, 17, special.length);
        long seed = r.nextLong(), offset = r.nextLong();
        Out o = run(cpu, x, x, 0.0, seed, offset);
        Tolerance.assertBitIdentical("p = 0 forward", x, o.y(), r.describe());
        Tolerance.assertBitIdentical("p = 0 backward", x, o.dx(), r.describe());
        try (Tensor t = Tensor.of(cpu, x, n)) {
            DropoutKernels.forward(t, 0.0, seed, offset, t);
            DropoutKernels.backward(t, 0.0, seed, offset, t);
            Tolerance.assertBitIdentical("p = 0 in place", x, t.toFloatArray(), r.describe());
        }
        // p > 0 with non-finite inputs: dropped elements are +0, kept ones scaled
        double p = 0.5;
        boolean[] keep = mask(p, seed, offset, n);
        Out h = run(cpu, x, x, p, seed, offset);
        Tolerance.assertBitIdentical("p = 0.5 with special values", reference(x, keep, p), h.y(), r.describe());
    }

    /** In place (y = x, dx = dy) equals out of place, and the backward's mask is the forward's. */
    @Test
    void inPlaceEqualsOutOfPlaceAndBackwardUsesTheForwardMask() {
        TestRandom r = TestRandom.fresh();
        int n = 5 * 7 * 13 * 3;
        float[] x = r.gaussians(n, 1);
        double p = randomP(r);
        long seed = r.nextLong(), offset = r.nextLong();
        Out o = run(cpu, x, x, p, seed, offset);
        Tolerance.assertBitIdentical("backward of dy = x equals the forward of x", o.y(), o.dx(), r.describe());
        try (Tensor t = Tensor.of(cpu, x, n)) {
            DropoutKernels.forward(t, p, seed, offset, t);
            Tolerance.assertBitIdentical("forward in place", o.y(), t.toFloatArray(), r.describe());
            t.copyFrom(x);
            DropoutKernels.backward(t, p, seed, offset, t);
            Tolerance.assertBitIdentical("backward in place", o.dx(), t.toFloatArray(), r.describe());
        }
        // another offset or seed is another mask
        Out other = run(cpu, x, x, p, seed, offset + 1);
        int differ = 0;
        for (int i = 0; i < n; i++) if ((o.y()[i] == 0f) != (other.y()[i] == 0f)) differ++;
        assertTrue(p < 0.01 || p > 0.99 || differ > 0, "offset + 1 gives the same mask; " + r.describe());
    }

    /**
     * Gradient check: L(x) = sum_i R_i y_i(x) with the float64 reference forward (mask fixed by
     * (seed, offset)); central differences with h = 1e-2 (exact for this piecewise-linear map up to
     * float64 rounding) against the native backward of R, within 1e-6 relative.
     */
    @Test
    void backwardMatchesFiniteDifferencesOfTheFloat64Forward() {
        TestRandom r = TestRandom.fresh();
        int n = 2 * 5 * 7 * 3;
        float[] x = r.gaussians(n, 1), rr = r.gaussians(n, 1);
        double p = 0.1 + 0.8 * r.nextDouble();
        long seed = r.nextLong(), offset = r.nextLong();
        boolean[] keep = mask(p, seed, offset, n);
        float[] dx = run(cpu, x, rr, p, seed, offset).dx();
        double[] fd = new double[n];
        for (int i = 0; i < n; i++) {
            float[] xp = x.clone(), xm = x.clone();
            double h = 1e-2;
            xp[i] = (float) (x[i] + h);
            xm[i] = (float) (x[i] - h);
            double lp = 0, lm = 0;
            double[] yp = reference64(xp, keep, p), ym = reference64(xm, keep, p);
            for (int k = 0; k < n; k++) {
                lp += rr[k] * yp[k];
                lm += rr[k] * ym[k];
            }
            fd[i] = (lp - lm) / ((double) xp[i] - xm[i]);
        }
        Tolerance.log(Tolerance.assertClose("dropout backward vs finite differences", dx, fd, 1e-7, 1e-6, r.describe()));
        int kept = 0;
        for (boolean k : keep) if (k) kept++;
        assertTrue(kept > 0 && kept < n, "degenerate mask: " + kept + " of " + n + " kept; " + r.describe());
    }

    @Test
    void rejectsBadArguments() {
        try (Tensor a = Tensor.allocate(cpu, DType.FLOAT32, 2, 3, 5);
             Tensor b = Tensor.allocate(cpu, DType.FLOAT32, 2, 3, 5);
             Tensor wrong = Tensor.allocate(cpu, DType.FLOAT32, 2, 3, 4);
             Tensor big = Tensor.allocate(cpu, DType.FLOAT32, 64)) {
            a.fill(1f);
            for (double p : new double[] {-1e-9, 1.0, 1.5, Double.NaN, Double.POSITIVE_INFINITY}) {
                assertThrows(IllegalArgumentException.class, () -> DropoutKernels.forward(a, p, 1, 2, b), "p " + p);
                assertThrows(IllegalArgumentException.class, () -> DropoutKernels.backward(a, p, 1, 2, b), "p " + p);
                // the front refuses it too, without the Java checks
                int st = d4j_h.d4j_dropout_forward(cpu.handle(), a.handle(), 30, p, 1, 2, b.handle());
                assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(), st, "native status for p " + p);
                st = d4j_h.d4j_dropout_backward(cpu.handle(), a.handle(), 30, p, 1, 2, b.handle());
                assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(), st, "native status for p " + p);
            }
            assertThrows(IllegalArgumentException.class, () -> DropoutKernels.forward(a, 0.5, 1, 2, wrong));
            assertThrows(NullPointerException.class, () -> DropoutKernels.forward(a, 0.5, 1, 2, null));
            assertThrows(NullPointerException.class, () -> DropoutKernels.backward(null, 0.5, 1, 2, a));
            // the front: a count larger than a buffer, a negative count, null buffers
            assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(),
                    d4j_h.d4j_dropout_forward(cpu.handle(), a.handle(), 31, 0.5, 1, 2, b.handle()));
            assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(),
                    d4j_h.d4j_dropout_forward(cpu.handle(), big.handle(), 64, 0.5, 1, 2, a.handle()));
            assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(),
                    d4j_h.d4j_dropout_backward(cpu.handle(), a.handle(), -1, 0.5, 1, 2, b.handle()));
            assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(), d4j_h.d4j_dropout_forward(cpu.handle(),
                    java.lang.foreign.MemorySegment.NULL, 4, 0.5, 1, 2, b.handle()));
            assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(), d4j_h.d4j_dropout_backward(cpu.handle(), a.handle(), 4, 0.5,
                    1, 2, java.lang.foreign.MemorySegment.NULL));
            assertEquals(d4j_h.D4J_ERR_INVALID_ARGUMENT(), d4j_h.d4j_dropout_forward(java.lang.foreign.MemorySegment.NULL,
                    a.handle(), 4, 0.5, 1, 2, b.handle()));
            // partial overlap (a view shifted by one element) is refused; exact aliasing is allowed
            try (Tensor head = big.view(0, 32); Tensor shifted = big.view(4, 32)) {
                assertThrows(D4jException.class, () -> DropoutKernels.forward(head, 0.5, 1, 2, shifted));
                assertThrows(D4jException.class, () -> DropoutKernels.backward(shifted, 0.5, 1, 2, head));
                DropoutKernels.forward(head, 0.5, 1, 2, head);
            }
            // count 0 is a no-op
            assertEquals(d4j_h.D4J_OK(), d4j_h.d4j_dropout_forward(cpu.handle(), a.handle(), 0, 0.5, 1, 2, b.handle()));
        }
    }
}
