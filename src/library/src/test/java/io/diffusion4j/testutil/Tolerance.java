package io.diffusion4j.testutil;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Locale;

/**
 * Element-wise comparisons of a kernel's float32 output with a float64 reference, in the style of
 * ggml's test-backend-ops: every element must satisfy {@code |out - ref| <= atol + rtol * s} where s
 * is {@code |ref|} ({@link #assertClose}) or a caller-supplied magnitude ({@link #assertCloseScaled},
 * typically the sum of the absolute values of the terms whose float32 rounding errors add up in the
 * element, so cancellation does not make the bound dishonest). A NaN or infinity anywhere in the
 * output (e.g. an element the kernel never wrote, left at its NaN poison) fails. The failure message
 * names the number of bad elements and the worst one (index, out, ref, |diff|, tolerance) and carries
 * the caller's context, which includes the test seed.
 */
public final class Tolerance {
    private Tolerance() {}

    /** u = 2^-24, the unit roundoff of float32. */
    public static final double U = 0x1p-24;

    /** What a passing comparison measured: the worst absolute error and worst error over the scale. */
    public record Report(String what, int elements, double maxAbsError, double maxErrorOverScale,
                         double worstFractionOfTolerance) {
        /** The worst error over scale in units of the float32 roundoff u = 2^-24. */
        public double maxErrorInU() {
            return maxErrorOverScale / U;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%s: %d elements, max|err| = %.3g, max err/scale = %.3g (%.2f u), "
                    + "worst = %.1f%% of tolerance", what, elements, maxAbsError, maxErrorOverScale, maxErrorInU(),
                    100 * worstFractionOfTolerance);
        }
    }

    /** Checks {@code |out - ref| <= atol + rtol * |ref|} for every element. */
    public static Report assertClose(String what, float[] out, double[] ref, double atol, double rtol, String context) {
        double[] scale = new double[ref.length];
        for (int i = 0; i < ref.length; i++) scale[i] = Math.abs(ref[i]);
        return check(what, out, ref, scale, atol, rtol, "|ref|", context);
    }

    /** Checks {@code |out - ref| <= atol + rtol * scale[i]} for every element. */
    public static Report assertCloseScaled(String what, float[] out, double[] ref, double[] scale, double atol,
                                           double rtol, String context) {
        return check(what, out, ref, scale, atol, rtol, "scale", context);
    }

    private static Report check(String what, float[] out, double[] ref, double[] scale, double atol, double rtol,
                                String scaleName, String context) {
        if (out.length != ref.length || scale.length != ref.length) {
            fail(what + ": output has " + out.length + " elements, reference " + ref.length + ", scale "
                    + scale.length + "; " + context);
        }
        int bad = 0, worst = -1;
        double worstRatio = -1, maxAbs = 0, maxRel = 0;
        for (int i = 0; i < out.length; i++) {
            double diff = Math.abs((double) out[i] - ref[i]);
            double tol = atol + rtol * scale[i];
            double ratio = Double.isFinite(out[i]) && Double.isFinite(diff) ? diff / tol : Double.POSITIVE_INFINITY;
            if (Double.isNaN(ratio)) ratio = diff == 0 ? 0 : Double.POSITIVE_INFINITY; // 0/0: exact match
            if (!(ratio <= 1.0)) bad++;
            if (ratio > worstRatio || worst < 0) {
                worstRatio = ratio;
                worst = i;
            }
            if (Double.isFinite(diff)) {
                maxAbs = Math.max(maxAbs, diff);
                if (scale[i] > 0) maxRel = Math.max(maxRel, diff / scale[i]);
            }
        }
        if (bad > 0) {
            double diff = Math.abs((double) out[worst] - ref[worst]);
            fail(String.format(Locale.ROOT,
                    "%s: %d of %d elements violate |out - ref| <= atol + rtol * %s (atol = %.3g, rtol = %.3g); "
                            + "worst at index %d: out = %s, ref = %.9g, |diff| = %.3g, tolerance = %.3g; %s",
                    what, bad, out.length, scaleName, atol, rtol, worst, Float.toString(out[worst]), ref[worst], diff,
                    atol + rtol * scale[worst], context));
        }
        return new Report(what, out.length, maxAbs, maxRel, Math.max(worstRatio, 0));
    }

    /** Both arrays have identical bits (Float.floatToRawIntBits) everywhere; reports the first difference. */
    public static void assertBitIdentical(String what, float[] expected, float[] actual, String context) {
        if (expected.length != actual.length) {
            fail(what + ": lengths " + expected.length + " and " + actual.length + "; " + context);
        }
        int bad = 0, first = -1;
        for (int i = 0; i < expected.length; i++) {
            if (Float.floatToRawIntBits(expected[i]) != Float.floatToRawIntBits(actual[i])) {
                if (first < 0) first = i;
                bad++;
            }
        }
        if (bad > 0) {
            fail(String.format(Locale.ROOT, "%s: %d of %d elements differ in bits; first at index %d: expected %s "
                            + "(0x%08x), got %s (0x%08x); %s", what, bad, expected.length, first,
                    Float.toString(expected[first]), Float.floatToRawIntBits(expected[first]),
                    Float.toString(actual[first]), Float.floatToRawIntBits(actual[first]), context));
        }
    }

    /** Both int arrays are equal; reports the first difference in hex. */
    public static void assertBitIdentical(String what, int[] expected, int[] actual, String context) {
        if (expected.length != actual.length) {
            fail(what + ": lengths " + expected.length + " and " + actual.length + "; " + context);
        }
        int bad = 0, first = -1;
        for (int i = 0; i < expected.length; i++) {
            if (expected[i] != actual[i]) {
                if (first < 0) first = i;
                bad++;
            }
        }
        if (bad > 0) {
            fail(String.format(Locale.ROOT, "%s: %d of %d words differ; first at index %d: expected 0x%08x, got 0x%08x; %s",
                    what, bad, expected.length, first, expected[first], actual[first], context));
        }
    }

    /** {@code v} widened to float64 for the reference side of a comparison; null stays null. */
    public static double[] toDouble(float[] v) {
        if (v == null) return null;
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) o[i] = v[i];
        return o;
    }

    /** max |v[i]| (0 for an empty array): the scale of an absolute tolerance. */
    public static double maxAbs(float[] v) {
        double m = 0;
        for (float x : v) m = Math.max(m, Math.abs(x));
        return m;
    }

    /** Prints a measured error line (collected from the test output for the error tables). */
    public static void log(Report r) {
        System.out.println("[d4j-error] " + r);
    }
}
