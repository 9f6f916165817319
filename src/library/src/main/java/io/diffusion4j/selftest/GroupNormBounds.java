package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.max;

/**
 * float64 group statistics and the maxima of the first-order error scales of every GroupNorm
 * output (the formulas of NormKernelsTest.Ref), from the inputs alone.
 */
final class GroupNormBounds {
    final float[] mean32, rstd32;
    final double maxV, sy, sdx, sdtb, sdgamma, sdbeta;

    static double sigmoid(double z) {
        return 1.0 / (1.0 + Math.exp(-z));
    }

    GroupNormBounds(int n, int hw, int c, int groups, float[] x, float[] tb, float[] gamma, float[] beta, float eps,
                    boolean silu, float[] dy) {
        int cg = c / groups, size = n * hw * c;
        mean32 = new float[n * groups];
        rstd32 = new float[n * groups];
        double[] v = new double[size], xhat = new double[size], z = new double[size], sx = new double[size],
                sz = new double[size], dz = new double[size], sdz = new double[size];
        double mv = 0, syMax = 0;
        for (int e = 0; e < size; e++) {
            int ch = e % c, b = e / (hw * c);
            v[e] = tb == null ? x[e] : (double) (x[e] + tb[b * c + ch]); // the float32 sum the kernels normalise
            mv = Math.max(mv, Math.abs(v[e]));
        }
        double[] mean = new double[n * groups], rstd = new double[n * groups];
        for (int b = 0; b < n; b++) {
            for (int g = 0; g < groups; g++) {
                double sum = 0, ss = 0, count = (double) hw * cg;
                for (int q = 0; q < hw; q++) for (int ch = g * cg; ch < (g + 1) * cg; ch++) sum += v[(b * hw + q) * c + ch];
                double m = sum / count;
                for (int q = 0; q < hw; q++) {
                    for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                        double d = v[(b * hw + q) * c + ch] - m;
                        ss += d * d;
                    }
                }
                int sg = b * groups + g;
                mean[sg] = m;
                rstd[sg] = 1.0 / Math.sqrt(ss / count + eps);
                mean32[sg] = (float) m;
                rstd32[sg] = (float) rstd[sg];
            }
        }
        maxV = mv;
        for (int e = 0; e < size; e++) {
            int ch = e % c, b = e / (hw * c), sg = b * groups + ch / cg;
            double r = rstd[sg], tbAbs = tb == null ? 0 : Math.abs(tb[b * c + ch]);
            xhat[e] = (v[e] - mean[sg]) * r;
            z[e] = xhat[e] * gamma[ch] + beta[ch];
            double y = silu ? z[e] * sigmoid(z[e]) : z[e];
            sx[e] = r * (Math.abs(x[e]) + tbAbs + Math.abs(mean[sg])) + Math.abs(xhat[e]);
            sz[e] = Math.abs(gamma[ch]) * sx[e] + Math.abs(beta[ch]) + Math.abs(z[e]);
            double s = sigmoid(z[e]), grad = s * (1 + z[e] * (1 - s));
            syMax = Math.max(syMax, silu ? Math.abs(grad) * sz[e] + Math.abs(y) : sz[e]);
            dz[e] = silu ? dy[e] * grad : dy[e];
            sdz[e] = silu ? Math.abs(dy[e]) * (s * (1 + Math.abs(z[e]) * (1 + s)) + 0.6 * sz[e]) + Math.abs(dz[e])
                    : Math.abs(dz[e]);
        }
        sy = syMax;
        double[] sdg = new double[c], sdb = new double[c], sdtbA = new double[n * c];
        for (int e = 0; e < size; e++) {
            int ch = e % c;
            sdb[ch] += sdz[e];
            sdg[ch] += sdz[e] * Math.abs(xhat[e]) + Math.abs(dz[e]) * sx[e];
        }
        double sdxMax = 0;
        for (int b = 0; b < n; b++) {
            for (int g = 0; g < groups; g++) {
                double count = (double) hw * cg, m1 = 0, m2 = 0, sm1 = 0, sm2 = 0;
                for (int q = 0; q < hw; q++) {
                    for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                        int e = (b * hw + q) * c + ch;
                        double ga = gamma[ch];
                        m1 += ga * dz[e];
                        m2 += ga * dz[e] * xhat[e];
                        sm1 += Math.abs(ga) * sdz[e];
                        sm2 += Math.abs(ga) * (sdz[e] * Math.abs(xhat[e]) + Math.abs(dz[e]) * sx[e]);
                    }
                }
                m1 /= count;
                m2 /= count;
                sm1 /= count;
                sm2 /= count;
                double r = rstd[b * groups + g];
                for (int q = 0; q < hw; q++) {
                    for (int ch = g * cg; ch < (g + 1) * cg; ch++) {
                        int e = (b * hw + q) * c + ch;
                        double ga = gamma[ch];
                        double dx = r * (ga * dz[e] - m1 - xhat[e] * m2);
                        double s = r * (Math.abs(ga) * sdz[e] + sm1 + Math.abs(xhat[e]) * sm2 + sx[e] * Math.abs(m2))
                                + Math.abs(dx);
                        sdxMax = Math.max(sdxMax, s);
                        sdtbA[b * c + ch] += s;
                    }
                }
            }
        }
        sdx = sdxMax;
        sdtb = max(sdtbA);
        sdgamma = max(sdg);
        sdbeta = max(sdb);
    }
}
