package io.diffusion4j.selftest;

import io.diffusion4j.kernels.LinearKernels.AttentionShape;

/** float64 attention forward ([B, L, H, D]) rounded to float32, and E = max (D + 2) |scale| sum_d |q k|. */
final class AttentionReference {
    final float[] out, lse;
    final double e, maxLse;

    AttentionReference(AttentionShape a, float scale, float[] q, float[] k, float[] v) {
        int B = a.batch(), L = a.tokens(), H = a.heads(), D = a.headDim();
        out = new float[q.length];
        lse = new float[B * H * L];
        double eMax = 0, lseMax = 0;
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                for (int i = 0; i < L; i++) {
                    double[] s = new double[L];
                    double m = Double.NEGATIVE_INFINITY;
                    int qi = ((b * L + i) * H + h) * D;
                    for (int j = 0; j < L; j++) {
                        int kj = ((b * L + j) * H + h) * D;
                        double acc = 0, abs = 0;
                        for (int d = 0; d < D; d++) {
                            double t = (double) q[qi + d] * k[kj + d];
                            acc += t;
                            abs += Math.abs(t);
                        }
                        s[j] = scale * acc;
                        m = Math.max(m, s[j]);
                        eMax = Math.max(eMax, (D + 2) * Math.abs(scale) * abs);
                    }
                    double sum = 0;
                    for (int j = 0; j < L; j++) sum += Math.exp(s[j] - m);
                    double l = m + Math.log(sum);
                    lse[(b * H + h) * L + i] = (float) l;
                    lseMax = Math.max(lseMax, Math.abs(l));
                    for (int d = 0; d < D; d++) {
                        double acc = 0;
                        for (int j = 0; j < L; j++) acc += Math.exp(s[j] - m) / sum * v[((b * L + j) * H + h) * D + d];
                        out[qi + d] = (float) acc;
                    }
                }
            }
        }
        e = eMax;
        maxLse = lseMax;
    }
}
