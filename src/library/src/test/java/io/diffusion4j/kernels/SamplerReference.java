package io.diffusion4j.kernels;

import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.testutil.BoxMuller;
import java.util.Arrays;

/**
 * float64 references of the sampler kernels, written from diffusers' formulas (not from the front's
 * algebra): x0 prediction, dynamic thresholding (torch.quantile linear interpolation + clamp + divide),
 * DDPM / DDIM steps with a thresholded x0, and the DPM-Solver++ 2M update in diffusers' own form
 * (lambda = log alpha - log sigma, exp(-h) - 1, D1 = (m0 - m1) / r0). Each result comes with a per-element
 * scale: the sum of the absolute values of the terms added, for the tolerance.
 */
final class SamplerReference {
    private SamplerReference() {}

    record Result(double[] value, double[] scale) {}

    static double x0(PredictionType p, double ab, double x, double o) {
        return switch (p) {
            case EPSILON -> (x - Math.sqrt(1 - ab) * o) / Math.sqrt(ab);
            case SAMPLE -> o;
            case V_PREDICTION -> Math.sqrt(ab) * x - Math.sqrt(1 - ab) * o;
        };
    }

    static double eps(PredictionType p, double ab, double x, double o) {
        return switch (p) {
            case EPSILON -> o;
            case SAMPLE -> (x - Math.sqrt(ab) * o) / Math.sqrt(1 - ab);
            case V_PREDICTION -> Math.sqrt(ab) * o + Math.sqrt(1 - ab) * x;
        };
    }

    /** diffusers _threshold_sample's s per sample. */
    static double[] threshold(double[] ac, PredictionType p, float[] x, float[] o, int[] t, int n, double ratio,
                              double maxValue) {
        double[] s = new double[t.length];
        for (int b = 0; b < t.length; b++) {
            double[] a = new double[n];
            for (int i = 0; i < n; i++) a[i] = Math.abs(x0(p, ac[t[b]], x[b * n + i], o[b * n + i]));
            Arrays.sort(a);
            double pos = ratio * (n - 1);
            int k = (int) Math.floor(pos);
            double lo = a[k], hi = a[Math.min(k + 1, n - 1)];
            double q = lo + (pos - k) * (hi - lo);
            s[b] = Math.min(Math.max(q, 1.0), maxValue);
        }
        return s;
    }

    static double process(double x0, double s) {
        return Math.min(Math.max(x0, -s), s) / s;
    }

    /** DDPM step with thresholded x0 (s per sample), noise z from the kernel's per-sample stream. */
    static Result ddpm(double[] ac, PredictionType p, VarianceType v, double[] s, float[] x, float[] o, int[] t,
                       int[] prev, long[] seeds, long[] offsets, int n) {
        double[] r = new double[x.length], sc = new double[x.length];
        for (int b = 0; b < t.length; b++) {
            double ab = ac[t[b]], abp = prev[b] >= 0 ? ac[prev[b]] : 1.0;
            double alpha = ab / abp, beta = 1 - alpha;
            double c0 = Math.sqrt(abp) * beta / (1 - ab), c1 = Math.sqrt(alpha) * (1 - abp) / (1 - ab);
            double var = t[b] > 0 ? (v == VarianceType.FIXED_SMALL ? Math.max((1 - abp) / (1 - ab) * beta, 1e-20) : beta) : 0;
            float[] z = BoxMuller.normals(seeds[b], offsets[b], 0, n);
            for (int i = 0; i < n; i++) {
                int e = b * n + i;
                double x0 = process(x0(p, ab, x[e], o[e]), s[b]);
                double nz = Math.sqrt(var) * z[i];
                r[e] = c0 * x0 + c1 * x[e] + nz;
                sc[e] = Math.abs(c0 * x0) + Math.abs(c1 * x[e]) + Math.abs(nz) + x0Scale(p, ab, x[e], o[e]) * c0 / s[b];
            }
        }
        return new Result(r, sc);
    }

    /** DDIM step with thresholded x0 and eps re-derived from it when useClipped. */
    static Result ddim(double[] ac, PredictionType p, double eta, boolean useClipped, double finalAlpha, double[] s,
                       float[] x, float[] o, int[] t, int[] prev, long[] seeds, long[] offsets, int n) {
        double[] r = new double[x.length], sc = new double[x.length];
        for (int b = 0; b < t.length; b++) {
            double ab = ac[t[b]], abp = prev[b] >= 0 ? ac[prev[b]] : finalAlpha;
            double variance = (1 - abp) / (1 - ab) * (1 - ab / abp);
            double std = eta * Math.sqrt(variance);
            double dir = Math.sqrt(1 - abp - std * std);
            float[] z = eta > 0 ? BoxMuller.normals(seeds[b], offsets[b], 0, n) : new float[n];
            for (int i = 0; i < n; i++) {
                int e = b * n + i;
                double x0 = process(x0(p, ab, x[e], o[e]), s[b]);
                double ep = useClipped ? (x[e] - Math.sqrt(ab) * x0) / Math.sqrt(1 - ab) : eps(p, ab, x[e], o[e]);
                double epScale = useClipped ? (Math.abs(x[e]) + Math.abs(Math.sqrt(ab) * x0)) / Math.sqrt(1 - ab)
                        : Math.abs(ep) + Math.abs(x[e]) + Math.abs(o[e]) * 10;
                r[e] = Math.sqrt(abp) * x0 + dir * ep + std * z[i];
                sc[e] = Math.abs(Math.sqrt(abp) * x0) + dir * epScale + Math.abs(std * z[i])
                        + x0Scale(p, ab, x[e], o[e]) * Math.sqrt(abp) / s[b];
            }
        }
        return new Result(r, sc);
    }

    /** Magnitude of the terms of the x0 prediction (its rounding error scale). */
    static double x0Scale(PredictionType p, double ab, double x, double o) {
        return switch (p) {
            case EPSILON -> (Math.abs(x) + Math.sqrt(1 - ab) * Math.abs(o)) / Math.sqrt(ab);
            case SAMPLE -> Math.abs(o);
            case V_PREDICTION -> Math.sqrt(ab) * Math.abs(x) + Math.sqrt(1 - ab) * Math.abs(o);
        };
    }

    record DpmResult(double[] xPrev, double[] xPrevScale, double[] x0, double[] x0Scale) {}

    /** diffusers' dpm_solver_first_order_update / multistep_dpm_solver_second_order_update (dpmsolver++, midpoint). */
    static DpmResult dpm(double[] ac, PredictionType p, double[] s, float[] x, float[] o, float[] m1, int[] t,
                         int[] prev, int[] last, int n) {
        double[] r = new double[x.length], rs = new double[x.length], m0 = new double[x.length], ms = new double[x.length];
        for (int b = 0; b < t.length; b++) {
            double abS0 = ac[t[b]];
            double alphaS0 = Math.sqrt(abS0), sigmaS0 = Math.sqrt(1 - abS0);
            double lambdaS0 = Math.log(alphaS0) - Math.log(sigmaS0);
            boolean fin = prev[b] < 0;
            double abT = fin ? 1.0 : ac[prev[b]];
            double alphaT = Math.sqrt(abT), sigmaT = Math.sqrt(1 - abT);
            double h = (Math.log(alphaT) - Math.log(sigmaT)) - lambdaS0; // +inf at the final sigma 0
            double em1 = Math.exp(-h) - 1.0;
            double r0 = Double.NaN;
            if (last[b] >= 0) {
                double abS1 = ac[last[b]];
                double lambdaS1 = Math.log(Math.sqrt(abS1)) - Math.log(Math.sqrt(1 - abS1));
                r0 = (lambdaS0 - lambdaS1) / h;
            }
            for (int i = 0; i < n; i++) {
                int e = b * n + i;
                double raw = x0(p, abS0, x[e], o[e]);
                double d0 = s == null ? raw : process(raw, s[b]);
                double d0s = x0Scale(p, abS0, x[e], o[e]) / (s == null ? 1 : s[b]);
                m0[e] = d0;
                ms[e] = d0s;
                double cx = fin ? 0.0 : sigmaT / sigmaS0;
                double v = cx * x[e] - alphaT * em1 * d0;
                double sc = Math.abs(cx * x[e]) + Math.abs(alphaT * em1) * d0s;
                if (last[b] >= 0) {
                    double d1 = (1.0 / r0) * (d0 - m1[e]);
                    v -= 0.5 * alphaT * em1 * d1;
                    sc += Math.abs(0.5 * alphaT * em1 / r0) * (d0s + Math.abs(d0) + Math.abs(m1[e])) + Math.abs(alphaT * em1 * d0);
                }
                r[e] = v;
                rs[e] = sc;
            }
        }
        return new DpmResult(r, rs, m0, ms);
    }
}
