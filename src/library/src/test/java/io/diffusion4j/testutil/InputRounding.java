package io.diffusion4j.testutil;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Precision;

/**
 * The roundings a tensor-core variant applies to the inputs of its products, written independently of the
 * native code (with scalb / rint, not bit manipulation): TF32 keeps 11 significant bits, rounding halves away
 * from zero (cvt.rna); BF16 keeps 8, rounding halves to even; below 2^-126 both keep the float's subnormal
 * spacing. FP32 leaves a value as it is.
 */
public final class InputRounding {
    private InputRounding() {}

    public static float round(Precision p, float v) {
        if (p == Precision.FP32 || v == 0 || !Float.isFinite(v)) return v;
        int bits = p == Precision.TF32 ? 11 : 8;
        int q = Math.max(Math.getExponent(v) + 1 - bits, -126 - (bits - 1)); // exponent of the last kept bit
        double scaled = Math.scalb((double) v, -q);
        double r = p == Precision.TF32 ? Math.signum(scaled) * Math.floor(Math.abs(scaled) + 0.5) : Math.rint(scaled);
        return (float) Math.scalb(r, q);
    }

    /** Every value rounded, widened to double (for a float64 reference). */
    public static double[] roundedDoubles(Precision p, float[] v) {
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) o[i] = round(p, v[i]);
        return o;
    }

    /** Every value rounded. */
    public static float[] rounded(Precision p, float[] v) {
        float[] o = new float[v.length];
        for (int i = 0; i < v.length; i++) o[i] = round(p, v[i]);
        return o;
    }

    /**
     * Checks a tensor-core output: within 2 (T + 2) u of the float64 result of the rounded inputs (FP32
     * accumulation of exact products, with room for a tensor core's own summation order), within productError +
     * that of the exact result (the stated tolerance), and far closer to the rounded result than to the exact one
     * (an FP32 computation would be the other way round, by about the same factor), so the rounding happened.
     */
    public static void checkRounded(String what, Precision p, float[] dev, double[] ofRounded, double[] roundedScale,
                                    double[] exact, double[] exactScale, int terms, String ctx) {
        double acc = 2 * (terms + 2) * Tolerance.U;
        Tolerance.log(Tolerance.assertCloseScaled(what + " vs float64 of rounded inputs", dev, ofRounded, roundedScale,
                0.0, acc, ctx));
        Tolerance.log(Tolerance.assertCloseScaled(what + " vs float64", dev, exact, exactScale, 0.0,
                p.productError() + acc, ctx));
        double toRounded = 0, toExact = 0;
        for (int i = 0; i < dev.length; i++) {
            toRounded += Math.abs(dev[i] - ofRounded[i]);
            toExact += Math.abs(dev[i] - exact[i]);
        }
        assertTrue(toExact > 8 * toRounded, what + ": summed distance to the float64 result of the rounded inputs "
                + toRounded + ", of the exact inputs " + toExact + ": the inputs were not rounded to " + p.cliName()
                + "; " + ctx);
    }
}
