package io.diffusion4j.selftest;

import io.diffusion4j.selftest.SelfTest.Shape;
import java.util.Locale;
import java.util.SplittableRandom;

/** Random inputs and small helpers shared by the families' cases. */
final class CaseInputs {
    private CaseInputs() {}

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
    static Shape dims(String label, int... d) {
        int n = 1;
        for (int i = 1; i < d.length; i++) n *= d[i];
        return new Shape(label, d[0], n);
    }

    static String dimsText(int... d) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < d.length; i++) b.append(i == 0 ? "" : "x").append(d[i]);
        return b.toString();
    }

    static String name(Enum<?> e) {
        return e.name().toLowerCase(Locale.ROOT);
    }
}
