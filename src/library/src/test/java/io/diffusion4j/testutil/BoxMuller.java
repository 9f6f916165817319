package io.diffusion4j.testutil;

/**
 * The normal transform of diffusion4j's RNG in two forms:
 *
 * <ul>
 *   <li>{@link #emulate}: a bit-exact Java emulation of the float32 Box-Muller of
 *       native/common/philox.h. Java float arithmetic is IEEE 754 binary32 with round-to-nearest,
 *       and the JVM never contracts a*b+c into a fused multiply-add, so the same operations in the
 *       same order give the same bits as the native code compiled with -ffp-contract=off (and as the
 *       device's __f*_rn intrinsics). {@code (float) Math.sqrt(x)} of a float x is the correctly
 *       rounded float square root (a double carries more than 2*24+2 bits, so the double rounding is
 *       innocuous). Constants such as {@code 1.0f / 13.0f} are folded with correct rounding by both
 *       javac and the C compiler, and decimal float literals are correctly rounded on both sides.
 *   <li>{@link #exact}: the float64 "true" Box-Muller with Math.log / sin / cos on the same uniform
 *       inputs u1 = (2 (a >>> 9) + 1) 2^-24 and u2 = (b >>> 8) 2^-24.
 * </ul>
 */
public final class BoxMuller {
    private BoxMuller() {}

    private static final float TWO_M24 = 5.9604644775390625e-08f; // 2^-24
    private static final float TWO_M22 = 2.384185791015625e-07f;  // 2^-22

    /** Emulation of d4j_ln_unit: ln(u) for a normal float u in (0, 1]. */
    static float lnUnit(float u) {
        int bits = Float.floatToRawIntBits(u);
        int e = ((bits >>> 23) & 0xFF) - 127;
        float m = Float.intBitsToFloat((bits & 0x007F_FFFF) | 0x3F80_0000); // [1, 2)
        if (m > 1.41421356f) {
            m = m * 0.5f;
            e += 1;
        }
        float f = m - 1.0f;
        float s = f / (2.0f + f);
        float s2 = s * s;
        float p = 1.0f / 13.0f;
        p = p * s2 + 1.0f / 11.0f;
        p = p * s2 + 1.0f / 9.0f;
        p = p * s2 + 1.0f / 7.0f;
        p = p * s2 + 1.0f / 5.0f;
        p = p * s2 + 1.0f / 3.0f;
        float lnm = 2.0f * s + (2.0f * s) * (s2 * p);
        float fe = (float) e;
        final float ln2Hi = 0.693145752f;
        final float ln2Lo = 1.42860677e-06f;
        return fe * ln2Hi + (fe * ln2Lo + lnm);
    }

    /** Emulation of d4j_sincos_small: {sin x, cos x} for x in [0, pi/4]. */
    static void sincosSmall(float x, float[] sc) {
        float x2 = x * x;
        float ps = -1.0f / 39916800.0f;
        ps = ps * x2 + 1.0f / 362880.0f;
        ps = ps * x2 + -1.0f / 5040.0f;
        ps = ps * x2 + 1.0f / 120.0f;
        ps = ps * x2 + -1.0f / 6.0f;
        sc[0] = x + (x * x2) * ps;
        float pc = 1.0f / 3628800.0f;
        pc = pc * x2 + -1.0f / 40320.0f;
        pc = pc * x2 + 1.0f / 720.0f;
        pc = pc * x2 + -1.0f / 24.0f;
        pc = pc * x2 + 0.5f;
        sc[1] = 1.0f - x2 * pc;
    }

    /** Bit-exact emulation of d4j_box_muller: the two normals {z0, z1} from words a and b. */
    public static void emulate(int a, int b, float[] z) {
        float u1 = (float) (((a >>> 9) << 1) + 1) * TWO_M24;
        float radius = (float) Math.sqrt(-2.0f * lnUnit(u1));
        int k = b >>> 8;
        int q = k >>> 22;
        int rk = k & 0x3F_FFFF;
        boolean complement = rk > 0x20_0000;
        if (complement) rk = 0x40_0000 - rk;
        float x = ((float) rk * TWO_M22) * 1.57079632679489662f;
        float[] sc = new float[2];
        sincosSmall(x, sc);
        float s = sc[0], c = sc[1];
        if (complement) {
            float t = s;
            s = c;
            c = t;
        }
        float sn, cs;
        switch (q) {
            case 0 -> { sn = s; cs = c; }
            case 1 -> { sn = c; cs = -s; }
            case 2 -> { sn = -s; cs = -c; }
            default -> { sn = -c; cs = s; }
        }
        z[0] = radius * cs;
        z[1] = radius * sn;
    }

    /** u1 of a word: (2 (a >>> 9) + 1) 2^-24, in (0, 1), exact in float64. */
    public static double u1(int a) {
        return (2.0 * (a >>> 9) + 1.0) * 0x1p-24;
    }

    /** u2 of a word: (b >>> 8) 2^-24, in [0, 1), exact in float64. */
    public static double u2(int b) {
        return (b >>> 8) * 0x1p-24;
    }

    /** The float64 Box-Muller radius sqrt(-2 ln u1). */
    public static double radius(int a) {
        return Math.sqrt(-2.0 * Math.log(u1(a)));
    }

    /** Float64 Box-Muller on the same uniforms: {R cos(2 pi u2), R sin(2 pi u2)}. */
    public static void exact(int a, int b, double[] z) {
        double r = radius(a);
        double theta = 2.0 * Math.PI * u2(b);
        z[0] = r * Math.cos(theta);
        z[1] = r * Math.sin(theta);
    }

    /** Emulated float32 normals first .. first+count-1 of the stream (seed, offset). */
    public static float[] normals(long seed, long offset, long first, int count) {
        float[] out = new float[count];
        float[] z = new float[2];
        long j = -1;
        float[] blk = new float[4];
        for (int k = 0; k < count; k++) {
            long i = first + k;
            if ((i >>> 2) != j) {
                j = i >>> 2;
                int[] w = Philox.block(seed, offset, j);
                emulate(w[0], w[1], z);
                blk[0] = z[0];
                blk[1] = z[1];
                emulate(w[2], w[3], z);
                blk[2] = z[0];
                blk[3] = z[1];
            }
            out[k] = blk[(int) (i & 3)];
        }
        return out;
    }

    /** Float64 Box-Muller normals (and their radii) of elements first .. first+count-1. */
    public static double[][] exactNormals(long seed, long offset, long first, int count) {
        double[] out = new double[count];
        double[] radii = new double[count];
        double[] z = new double[2];
        for (int k = 0; k < count; k++) {
            long i = first + k;
            int[] w = Philox.block(seed, offset, i >>> 2);
            int pair = (int) (i & 2); // words 0,1 for elements 4j, 4j+1; words 2,3 for 4j+2, 4j+3
            exact(w[pair], w[pair + 1], z);
            out[k] = z[(int) (i & 1)];
            radii[k] = radius(w[pair]);
        }
        return new double[][] {out, radii};
    }
}
