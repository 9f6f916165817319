package io.diffusion4j.testutil;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.opentest4j.AssertionFailedError;

/** The helpers the kernel tests rely on, checked against known values so a helper bug cannot hide a kernel bug. */
class TestUtilSelfTest {
    @Test
    void erfAndPhiMatchTabulatedValues() {
        // erf values: Abramowitz & Stegun table 7.1 / standard high-precision values
        assertEquals(0.0, NormalDist.erf(0.0), 0.0);
        assertEquals(0.5204998778130465, NormalDist.erf(0.5), 1e-15);
        assertEquals(0.8427007929497149, NormalDist.erf(1.0), 1e-15);
        assertEquals(0.9953222650189527, NormalDist.erf(2.0), 1e-15);
        assertEquals(0.9999779095030014, NormalDist.erf(3.0), 1e-15);
        assertEquals(-0.8427007929497149, NormalDist.erf(-1.0), 1e-15);
        assertEquals(0.975, NormalDist.phi(1.959963984540054), 1e-14);
        assertEquals(0.5, NormalDist.phi(0.0), 0.0);
        assertEquals(0.15865525393145707, NormalDist.phi(-1.0), 1e-15);
        assertEquals(1.9494746, NormalDist.ksCritical(1e-3, 1) , 1e-6);
    }

    @Test
    void ksStatisticOfAPerfectQuantileSampleIsSmall() {
        int n = 10000;
        float[] q = new float[n];
        for (int i = 0; i < n; i++) q[i] = (float) inversePhi((i + 0.5) / n);
        assertTrue(NormalDist.ksStatistic(q) < 1.0 / n, "quantile sample");
        for (int i = 0; i < n; i++) q[i] += 0.1f;
        assertTrue(NormalDist.ksStatistic(q) > NormalDist.ksCritical(1e-3, n), "shifted sample is rejected");
    }

    private static double inversePhi(double p) { // bisection on phi, enough for the self-test
        double lo = -10, hi = 10;
        for (int i = 0; i < 200; i++) {
            double mid = 0.5 * (lo + hi);
            if (NormalDist.phi(mid) < p) lo = mid; else hi = mid;
        }
        return 0.5 * (lo + hi);
    }

    @Test
    void toleranceCatchesNaNAndReportsTheWorstElement() {
        double[] ref = {1.0, 2.0, 3.0};
        Tolerance.assertClose("ok", new float[] {1.0f, 2.0f, 3.0f}, ref, 0.0, 1e-7, "ctx");
        AssertionFailedError nan = assertThrows(AssertionFailedError.class,
                () -> Tolerance.assertClose("poison", new float[] {1.0f, Float.NaN, 3.0f}, ref, 1.0, 1.0, "ctx"));
        assertTrue(nan.getMessage().contains("index 1") && nan.getMessage().contains("NaN"), nan.getMessage());
        AssertionFailedError off = assertThrows(AssertionFailedError.class,
                () -> Tolerance.assertClose("off", new float[] {1.0f, 2.0f, 3.1f}, ref, 0.0, 1e-3, "seed 42"));
        assertTrue(off.getMessage().contains("index 2") && off.getMessage().contains("seed 42"), off.getMessage());
        assertThrows(AssertionFailedError.class, () -> Tolerance.assertBitIdentical("bits", new float[] {0.0f},
                new float[] {-0.0f}, "ctx"));
    }

    @Test
    void emulatedNormalsAreStandardAtTheirExtremes() {
        float[] z = new float[2];
        BoxMuller.emulate(0, 0, z); // u1 = 2^-24 (largest radius), angle 0
        assertEquals(Math.sqrt(-2 * Math.log(0x1p-24)), z[0], 2e-6);
        assertEquals(0.0f, z[1], 0.0f);
        BoxMuller.emulate(-1, -1, z); // u1 = 1 - 2^-24 (smallest radius), angle just below 2 pi
        assertTrue(Math.abs(z[0]) < 4e-4 && Math.abs(z[1]) < 1e-9, z[0] + " " + z[1]);
    }

    @Test
    void seedPropertyReplaysTheSameStream() {
        long s = TestRandom.fresh().seed();
        TestRandom a = TestRandom.of(s), b = TestRandom.of(s);
        assertEquals(a.nextLong(), b.nextLong());
        assertTrue(a.describe().contains(String.format("0x%016x", s)));
    }
}
