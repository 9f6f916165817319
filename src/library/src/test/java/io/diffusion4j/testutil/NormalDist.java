package io.diffusion4j.testutil;

import java.util.Arrays;

/** Standard normal distribution function and the one-sample Kolmogorov-Smirnov statistic, in float64. */
public final class NormalDist {
    private NormalDist() {}

    private static final double TWO_OVER_SQRT_PI = 1.1283791670955126; // 2 / sqrt(pi)

    /**
     * erf(z) from the everywhere-convergent series with positive terms
     * erf(z) = 2/sqrt(pi) exp(-z^2) sum_{n>=0} 2^n z^(2n+1) / (1 * 3 * ... * (2n+1))
     * (Abramowitz &amp; Stegun 7.1.6). No cancellation, so the absolute error is a few 1e-16 for the
     * |z| &lt; 6 needed here; beyond that erf is 1 to double precision.
     */
    public static double erf(double z) {
        if (Double.isNaN(z)) return Double.NaN;
        double a = Math.abs(z);
        if (a >= 6.0) return Math.copySign(1.0, z);
        double term = a, sum = a;
        for (int n = 1; n < 1000; n++) {
            term *= 2.0 * a * a / (2 * n + 1);
            sum += term;
            if (term < 1e-17 * sum) break;
        }
        double r = TWO_OVER_SQRT_PI * Math.exp(-a * a) * sum;
        return Math.copySign(Math.min(r, 1.0), z);
    }

    /** Phi(x) = P(N(0,1) &lt;= x) = (1 + erf(x / sqrt 2)) / 2. */
    public static double phi(double x) {
        return 0.5 * (1.0 + erf(x / Math.sqrt(2.0)));
    }

    /** sup_x |F_n(x) - Phi(x)| of the sample (the sample is copied and sorted). */
    public static double ksStatistic(float[] sample) {
        double[] s = new double[sample.length];
        for (int i = 0; i < s.length; i++) s[i] = sample[i];
        Arrays.sort(s);
        int n = s.length;
        double d = 0.0;
        for (int i = 0; i < n; i++) {
            double f = phi(s[i]);
            d = Math.max(d, Math.max((i + 1.0) / n - f, f - (double) i / n));
        }
        return d;
    }

    /**
     * Asymptotic critical value of the KS statistic: reject at level alpha when
     * D &gt; sqrt(-ln(alpha / 2) / 2) / sqrt(n) (1.9495 / sqrt(n) for alpha = 1e-3).
     */
    public static double ksCritical(double alpha, int n) {
        return Math.sqrt(-Math.log(alpha / 2.0) / 2.0) / Math.sqrt(n);
    }

    /** Pearson correlation coefficient of two equally long samples. */
    public static double correlation(float[] x, float[] y) {
        int n = x.length;
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) {
            mx += x[i];
            my += y[i];
        }
        mx /= n;
        my /= n;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++) {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }
        return sxy / Math.sqrt(sxx * syy);
    }
}
