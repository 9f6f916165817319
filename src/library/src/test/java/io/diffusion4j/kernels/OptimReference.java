package io.diffusion4j.kernels;

import io.diffusion4j.kernels.OptimKernels.AdamW;

/**
 * References for the optimiser kernels, written from torch.optim.AdamW's and diffusers'
 * EMAModel's formulas:
 *
 * <ul>
 *   <li>float64 references with per-element error scales (the sum of the magnitudes of the terms
 *       whose float32 roundings add up), for {@code |out - ref| <= k u scale} checks;
 *   <li>float32 emulations of the kernels' exact operation sequence (native/common/optim_math.h,
 *       coefficients rounded as native/front/optim.cpp rounds them): Java float arithmetic is IEEE with round
 *       to nearest and no contraction, and {@code (float) Math.sqrt(double)} is the correctly
 *       rounded float square root, so a kernel that does what it documents matches bit for bit.
 * </ul>
 */
final class OptimReference {
    private OptimReference() {}

    /** The float32 coefficients of one AdamW step, as d4j_adamw derives them in float64. */
    record Coef(float gradScale, float paramDecay, float b1, float omb1, float b2, float omb2, float stepSize,
                float invSqrtBc2, float eps) {
        static Coef of(AdamW hp, long step, double gradScale) {
            double bc1 = 1.0 - Math.pow(hp.beta1(), step), bc2 = 1.0 - Math.pow(hp.beta2(), step);
            return new Coef((float) gradScale, (float) (1.0 - hp.lr() * hp.weightDecay()), (float) hp.beta1(),
                    (float) (1.0 - hp.beta1()), (float) hp.beta2(), (float) (1.0 - hp.beta2()),
                    (float) (hp.lr() / bc1), (float) (1.0 / Math.sqrt(bc2)), (float) hp.eps());
        }
    }

    /** The kernel's float32 operation sequence, in place on p, m, v over [from, to). */
    static void adamwF32(Coef c, float[] p, float[] grad, float[] m, float[] v, int from, int to) {
        for (int i = from; i < to; i++) {
            float g = grad[i] * c.gradScale();
            float mn = c.b1() * m[i] + c.omb1() * g;
            float vn = c.b2() * v[i] + c.omb2() * (g * g);
            float denom = (float) Math.sqrt(vn) * c.invSqrtBc2() + c.eps();
            float pd = p[i] * c.paramDecay();
            p[i] = pd - c.stepSize() * (mn / denom);
            m[i] = mn;
            v[i] = vn;
        }
    }

    /** float64 AdamW step from float32 state, with error scales (see OptimKernelsTest for the bounds). */
    record AdamRef(double[] p, double[] m, double[] v, double[] pScale, double[] mScale, double[] vScale) {}

    static AdamRef adamw64(AdamW hp, long step, double gradScale, float[] p, float[] grad, float[] m, float[] v) {
        int n = p.length;
        double b1 = hp.beta1(), b2 = hp.beta2(), lr = hp.lr();
        double bc1 = 1.0 - Math.pow(b1, step), bc2 = 1.0 - Math.pow(b2, step);
        AdamRef r = new AdamRef(new double[n], new double[n], new double[n], new double[n], new double[n], new double[n]);
        for (int i = 0; i < n; i++) {
            double g = grad[i] * gradScale;
            double pd = p[i] * (1.0 - lr * hp.weightDecay());   // decoupled weight decay first
            double mn = b1 * m[i] + (1.0 - b1) * g;
            double vn = b2 * v[i] + (1.0 - b2) * g * g;
            double denom = Math.sqrt(vn / bc2) + hp.eps();
            r.p[i] = pd - lr * (mn / bc1) / denom;
            r.m[i] = mn;
            r.v[i] = vn;
            r.mScale[i] = b1 * Math.abs(m[i]) + (1.0 - b1) * Math.abs(g);
            r.vScale[i] = vn;  // both terms are >= 0
            r.pScale[i] = Math.abs(pd) + lr / bc1 * (r.mScale[i] + Math.abs(mn)) / denom;
        }
        return r;
    }

    /** The kernel's EMA operation sequence: s - c (s - p), c = (float)(1 - decay); decay 0 copies p. */
    static void emaF32(double decay, float[] s, float[] p, int from, int to) {
        float c = (float) (1.0 - decay);
        for (int i = from; i < to; i++) s[i] = c == 1.0f ? p[i] : s[i] - c * (s[i] - p[i]);
    }

    /** float64 EMA {decay s + (1 - decay) p} and its error scale |ref| + (1 - decay)|s - p|. */
    static double[][] ema64(double decay, float[] s, float[] p) {
        double[] ref = new double[s.length], scale = new double[s.length];
        for (int i = 0; i < s.length; i++) {
            ref[i] = decay * s[i] + (1.0 - decay) * p[i];
            scale[i] = Math.abs(ref[i]) + (1.0 - decay) * Math.abs((double) s[i] - p[i]);
        }
        return new double[][] {ref, scale};
    }

    /** sum of squares with Neumaier compensation: within a few float64 ulps of the exact sum. */
    static double sumsq(float[] g) {
        double s = 0, comp = 0;
        for (float f : g) {
            double x = (double) f * f; // exact
            double t = s + x;
            comp += Math.abs(s) >= Math.abs(x) ? (s - t) + x : (x - t) + s;
            s = t;
        }
        return s + comp;
    }

    /** Random AdamW hyper-parameters in the ranges diffusion training uses. */
    static AdamW randomHyper(io.diffusion4j.testutil.TestRandom r) {
        double lr = Math.pow(10, -4 + 2 * r.nextDouble());
        double b1 = 0.8 + 0.15 * r.nextDouble(), b2 = 0.99 + 0.0099 * r.nextDouble();
        double eps = Math.pow(10, -8 + 2 * r.nextDouble());
        double wd = r.nextInt(4) == 0 ? 0.0 : 0.1 * r.nextDouble();
        return new AdamW(lr, b1, b2, eps, wd);
    }

    /** Gradients of mixed magnitudes (per-parameter scales spanning 1e-4..1e1) with some exact zeros. */
    static float[] gradients(io.diffusion4j.testutil.TestRandom r, int n) {
        float[] g = r.gaussians(n, 1.0);
        for (int i = 0; i < n; i++) {
            g[i] *= (float) Math.pow(10, -4 + 5 * ((i * 0x9E3779B9L >>> 7) % 1000) / 1000.0);
            if (r.nextInt(50) == 0) g[i] = 0.0f;
        }
        return g;
    }
}
