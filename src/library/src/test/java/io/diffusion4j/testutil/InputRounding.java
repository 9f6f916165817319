package io.diffusion4j.testutil;

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
}
