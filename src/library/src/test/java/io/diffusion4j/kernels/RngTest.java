package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.BoxMuller;
import io.diffusion4j.testutil.NormalDist;
import io.diffusion4j.testutil.Philox;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Arrays;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The counter-based RNG of the CPU backend (d4j_rng_uint32, d4j_rng_normal) against the Java
 * Philox4x32-10 and the Java emulation of the float32 Box-Muller in testutil, which are themselves
 * checked against the Random123 known answers and a float64 Box-Muller.
 */
class RngTest {
    /**
     * Random123 known-answer vectors, tests/kat_vectors, rows "philox4x32 10":
     * counter[4] key[2] -> output[4]. Values as published by D. E. Shaw Research.
     */
    static final int[][] KAT = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
         0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };

    /**
     * Bound of a float32 normal against the float64 Box-Muller on the same uniforms:
     * |z - z64| <= 5 u R with u = 2^-24 and R = sqrt(-2 ln u1) the float64 radius (about 3.0e-7 R; R
     * is at most 5.77, so at most 1.7e-6 absolute, and tiny near z = 0 only when R is). Derivation:
     * {@link #boxMullerErrorExhaustive} sweeps all 2^23 radii (worst relative error measured 2.16 u)
     * and all 2^24 angles (worst absolute error of cos/sin including the final product, 2.27 u);
     * their sum 4.43 u is rounded up to 5 u. The worst over 2^20 random native normals is about 3.3 u.
     */
    static final double NORMAL_BOUND_IN_U = 5.0;

    /** Elements per parallel task of the CPU backend (cpu_kernels.h kGrain); sizes cross it. */
    static final int GRAIN = 16384;

    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
            cpu.close();
        }
    }

    static int[] nativeBits(Backend be, long seed, long offset, int count) {
        try (Tensor t = Tensor.allocate(be, DType.UINT32, count)) {
            int[] poison = new int[count];
            Arrays.fill(poison, 0xDEADBEEF);
            t.copyFrom(poison);
            DiffusionKernels.randomBits(be, seed, offset, t);
            return t.toIntArray();
        }
    }

    static float[] nativeNormals(Backend be, long seed, long offset, int count) {
        try (Tensor t = Tensor.allocate(be, DType.FLOAT32, count)) {
            t.fill(Float.NaN);
            DiffusionKernels.randomNormal(be, seed, offset, t);
            return t.toFloatArray();
        }
    }

    static String stream(long seed, long offset, int count) {
        return String.format(Locale.ROOT, "stream seed=0x%016x offset=0x%016x count=%d", seed, offset, count);
    }

    // ---- Philox known answers ---------------------------------------------------------------

    @Test
    void javaPhiloxMatchesRandom123KnownAnswers() {
        for (int[] v : KAT) {
            int[] out = Philox.philox4x32_10(Arrays.copyOfRange(v, 0, 4), Arrays.copyOfRange(v, 4, 6));
            assertArrayEquals(Arrays.copyOfRange(v, 6, 10), out, () -> "Java Philox4x32-10 KAT " + hex(v));
        }
    }

    /**
     * KAT 1 (counter and key all zero) is block 0 of stream (seed 0, offset 0). KATs 2 and 3 need
     * counter words 0 and 1 (the block index j = i / 4 of element i) of 0xffffffff... and
     * 0x85a308d3243f6a88, which no call can reach (elements start at index 0 of every call, so j
     * stays below count / 4). Their key and counter words 2, 3 are reached exactly by seed =
     * key[1]:key[0] and offset = counter[3]:counter[2]; those streams are checked block by block
     * against the Java Philox, which matches all three KATs (previous test). Together this pins the
     * key and counter-word mapping of d4j.h to the official vectors.
     */
    @Test
    void nativePhiloxMatchesRandom123KnownAnswers() {
        int[] zero = nativeBits(cpu, 0L, 0L, 4);
        assertArrayEquals(Arrays.copyOfRange(KAT[0], 6, 10), zero, "native d4j_rng_uint32(seed 0, offset 0) = KAT 1");
        for (int[] v : KAT) {
            long seed = (v[4] & 0xFFFFFFFFL) | ((long) v[5] << 32);
            long offset = (v[2] & 0xFFFFFFFFL) | ((long) v[3] << 32);
            int count = 4 * 1031 + 3;
            int[] got = nativeBits(cpu, seed, offset, count);
            for (int j = 0; j * 4 < count; j++) {
                int[] ctr = {j, 0, v[2], v[3]};
                int[] want = Philox.philox4x32_10(ctr, new int[] {v[4], v[5]});
                for (int k = 0; k < 4 && 4 * j + k < count; k++) {
                    assertEquals(want[k], got[4 * j + k], "KAT key/offset words " + hex(v) + ", element "
                            + (4 * j + k));
                }
            }
        }
    }

    private static String hex(int[] v) {
        StringBuilder b = new StringBuilder();
        for (int x : v) b.append(String.format("%08x ", x));
        return b.toString().trim();
    }

    // ---- raw words --------------------------------------------------------------------------

    @Test
    void nativeUint32MatchesJavaPhilox() {
        TestRandom r = TestRandom.fresh();
        int[] counts = {1, 2, 3, 5, 7, 13, 4097, GRAIN - 1, GRAIN + 1, 3 * GRAIN + 5};
        for (int count : counts) {
            long seed = r.nextLong(), offset = r.nextLong();
            int[] got = nativeBits(cpu, seed, offset, count);
            int[] want = Philox.uint32(seed, offset, 0, count);
            Tolerance.assertBitIdentical("uint32", want, got, stream(seed, offset, count) + "; " + r.describe());
        }
        // Extreme seeds and offsets: the unsigned 64-bit range ends and the word boundaries.
        long[] special = {0L, 1L, -1L, Long.MIN_VALUE, Long.MAX_VALUE, 0xFFFFFFFFL, 0x1_0000_0000L};
        for (long seed : special) {
            for (long offset : special) {
                int[] got = nativeBits(cpu, seed, offset, 9);
                Tolerance.assertBitIdentical("uint32", Philox.uint32(seed, offset, 0, 9), got, stream(seed, offset, 9));
            }
        }
    }

    /** A window at an odd start position equals the same positions of a longer call. */
    @Test
    void uint32AtOddStartPositionsMatchesJava() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong(), offset = r.nextLong();
        int count = 2 * GRAIN + 11;
        int[] all = nativeBits(cpu, seed, offset, count);
        for (int start : new int[] {1, 3, 5, GRAIN - 3, GRAIN + 1, count - 7}) {
            int len = Math.min(37, count - start);
            int[] want = Philox.uint32(seed, offset, start, len);
            Tolerance.assertBitIdentical("uint32 window at " + start, want, Arrays.copyOfRange(all, start, start + len),
                    stream(seed, offset, count) + "; " + r.describe());
        }
    }

    // ---- normals ----------------------------------------------------------------------------

    /** 2^20 + 3 native normals equal the Java emulation bit for bit, plus odd-sized calls. */
    @Test
    void nativeNormalsAreBitExactToJavaEmulation() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong(), offset = r.nextLong();
        int count = (1 << 20) + 3;
        float[] got = nativeNormals(cpu, seed, offset, count);
        float[] want = BoxMuller.normals(seed, offset, 0, count);
        Tolerance.assertBitIdentical("normal", want, got, stream(seed, offset, count) + "; " + r.describe());
        for (int small : new int[] {1, 2, 3, 5, 6, 7, 9, GRAIN + 3}) {
            long s = r.nextLong(), o = r.nextLong();
            Tolerance.assertBitIdentical("normal", BoxMuller.normals(s, o, 0, small), nativeNormals(cpu, s, o, small),
                    stream(s, o, small) + "; " + r.describe());
        }
    }

    /** Native normals against the float64 Box-Muller on the same uniforms: |z - z64| <= 5 u R. */
    @Test
    void nativeNormalsAgreeWithFloat64BoxMuller() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong(), offset = r.nextLong();
        int count = (1 << 20) + 1;
        float[] got = nativeNormals(cpu, seed, offset, count);
        double[][] exact = BoxMuller.exactNormals(seed, offset, 0, count);
        Tolerance.Report rep = Tolerance.assertCloseScaled("normal vs float64 Box-Muller (scale = R)", got, exact[0],
                exact[1], 0.0, NORMAL_BOUND_IN_U * U, stream(seed, offset, count) + "; " + r.describe());
        Tolerance.log(rep);
    }

    /**
     * The error budget behind NORMAL_BOUND_IN_U, measured exhaustively on the Java emulation (which
     * is bit-identical to the native transform): every one of the 2^23 possible u1 with the angle 0
     * (z0 = radius exactly), and every one of the 2^24 possible u2 at a fixed radius.
     */
    @Test
    void boxMullerErrorExhaustive() {
        float[] z = new float[2];
        double worstRadius = 0;
        for (int k = 0; k < (1 << 23); k++) {
            int a = k << 9;
            BoxMuller.emulate(a, 0, z);
            double rr = BoxMuller.radius(a);
            assertTrue(z[1] == 0.0f && z[0] > 0.0f, "angle 0 gives (R, 0)");
            worstRadius = Math.max(worstRadius, Math.abs(z[0] - rr) / rr);
        }
        int a0 = 0x5A000000;
        BoxMuller.emulate(a0, 0, z);
        float rf = z[0];
        double worstAngle = 0;
        for (int k = 0; k < (1 << 24); k++) {
            int b = k << 8;
            BoxMuller.emulate(a0, b, z);
            double th = 2 * Math.PI * BoxMuller.u2(b);
            worstAngle = Math.max(worstAngle, Math.max(Math.abs(z[0] - rf * Math.cos(th)),
                    Math.abs(z[1] - rf * Math.sin(th))) / rf);
        }
        System.out.printf(Locale.ROOT, "[d4j-error] Box-Muller exhaustive: radius rel %.3g (%.2f u), "
                + "angle abs %.3g (%.2f u)%n", worstRadius, worstRadius / U, worstAngle, worstAngle / U);
        assertTrue(worstRadius <= 2.5 * U, "radius relative error " + worstRadius / U + " u > 2.5 u");
        assertTrue(worstAngle <= 2.5 * U, "angle error " + worstAngle / U + " u > 2.5 u");
        assertTrue(worstRadius + worstAngle <= NORMAL_BOUND_IN_U * U, "budget exceeds the stated bound");
    }

    /** Mean, variance and Kolmogorov-Smirnov (alpha = 1e-6, so a correct generator fails about once per million runs) of 2^20 + 5 native normals. */
    @Test
    void normalsHaveStandardNormalDistribution() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong(), offset = r.nextLong();
        int n = (1 << 20) + 5;
        float[] z = nativeNormals(cpu, seed, offset, n);
        String ctx = stream(seed, offset, n) + "; " + r.describe();
        double sum = 0, sq = 0;
        for (float v : z) {
            assertTrue(Float.isFinite(v), ctx);
            sum += v;
        }
        double mean = sum / n;
        for (float v : z) sq += (v - mean) * (v - mean);
        double var = sq / (n - 1);
        // 5 sigma: the sample mean has sd 1/sqrt(n), the sample variance sd sqrt(2/n) for N(0,1).
        assertTrue(Math.abs(mean) < 5 / Math.sqrt(n), "mean " + mean + "; " + ctx);
        assertTrue(Math.abs(var - 1) < 5 * Math.sqrt(2.0 / n), "variance " + var + "; " + ctx);
        double d = NormalDist.ksStatistic(z);
        double crit = NormalDist.ksCritical(1e-6, n);
        System.out.printf(Locale.ROOT, "[d4j-error] normals n=%d: mean %.3g, var-1 %.3g, KS D = %.3g (critical %.3g)%n",
                n, mean, var - 1, d, crit);
        assertTrue(d < crit, "KS statistic " + d + " >= critical value " + crit + " (alpha 1e-6); " + ctx);
    }

    /** Streams of neighbouring seeds and offsets are uncorrelated and share no prefix. */
    @Test
    void streamsAreIndependentAcrossSeedsAndOffsets() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong(), offset = r.nextLong();
        int n = 1 << 18;
        double bound = 5 / Math.sqrt(n);
        long[][] variants = {
            {seed, offset},
            {seed + 1, offset}, {seed ^ (1L << 32), offset}, {r.nextLong(), offset},
            {seed, offset + 1}, {seed, offset ^ (1L << 32)}, {seed, r.nextLong()},
            {offset, seed}, // swapped roles
        };
        float[][] z = new float[variants.length][];
        int[][] words = new int[variants.length][];
        for (int v = 0; v < variants.length; v++) {
            z[v] = nativeNormals(cpu, variants[v][0], variants[v][1], n);
            words[v] = nativeBits(cpu, variants[v][0], variants[v][1], 8);
        }
        String ctx = r.describe();
        for (int a = 0; a < variants.length; a++) {
            for (int b = a + 1; b < variants.length; b++) {
                String pair = String.format(Locale.ROOT, "(seed 0x%x, offset 0x%x) vs (seed 0x%x, offset 0x%x); %s",
                        variants[a][0], variants[a][1], variants[b][0], variants[b][1], ctx);
                double corr = NormalDist.correlation(z[a], z[b]);
                assertTrue(Math.abs(corr) < bound, "correlation " + corr + " >= " + bound + ": " + pair);
                assertFalse(Arrays.equals(words[a], words[b]), "identical uint32 prefixes: " + pair);
                for (int k = 0; k < 4; k++) {
                    assertFalse(z[a][k] == z[b][k] && z[a][k + 1] == z[b][k + 1], "identical normal pairs: " + pair);
                }
            }
        }
        // Within one stream: neighbours (same Philox block, different blocks) are uncorrelated too.
        for (int lag : new int[] {1, 2, 3, 4, 5}) {
            float[] x = Arrays.copyOfRange(z[0], 0, n - lag), y = Arrays.copyOfRange(z[0], lag, n);
            double corr = NormalDist.correlation(x, y);
            assertTrue(Math.abs(corr) < bound, "lag-" + lag + " autocorrelation " + corr + "; " + ctx);
        }
    }

    /** 1 and 2 worker threads give bit-identical words and normals (sizes span several tasks). */
    @Test
    void resultsDoNotDependOnThreadCount() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong(), offset = r.nextLong();
        int count = 3 * GRAIN + 7;
        try {
            cpu.setThreads(1);
            int[] w1 = nativeBits(cpu, seed, offset, count);
            float[] z1 = nativeNormals(cpu, seed, offset, count);
            cpu.setThreads(2);
            int[] w2 = nativeBits(cpu, seed, offset, count);
            float[] z2 = nativeNormals(cpu, seed, offset, count);
            String ctx = stream(seed, offset, count) + "; " + r.describe();
            Tolerance.assertBitIdentical("uint32, 1 vs 2 threads", w1, w2, ctx);
            Tolerance.assertBitIdentical("normal, 1 vs 2 threads", z1, z2, ctx);
            Tolerance.assertBitIdentical("normal vs emulation", BoxMuller.normals(seed, offset, 0, count), z2, ctx);
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
    }
}
