/*
 * Element math of the norm family (GroupNorm + SiLU, residual add), shared
 * verbatim by the CPU backend and the CUDA backend (and its simulator build),
 * so both evaluate the same float32 expressions in the same order.
 *
 * The normalised value is always xhat = (v - mean) * rstd with the float32
 * mean and rstd that the forward saves, so the backward recomputes exactly
 * the xhat (and the pre-activation z) the forward used.
 */
#ifndef D4J_NORM_MATH_H
#define D4J_NORM_MATH_H

#include <math.h>

#include "philox.h" /* D4J_HD */

D4J_HD float d4j_sigmoid(float z) {
    /* expf(-z) overflows to +inf for z < -88: the result is then 0, as it should be. */
    return 1.0f / (1.0f + expf(-z));
}

D4J_HD float d4j_silu(float z) { return z * d4j_sigmoid(z); }

/* d/dz [z sigmoid(z)] = s (1 + z (1 - s)) */
D4J_HD float d4j_silu_grad(float z) {
    float s = d4j_sigmoid(z);
    return s * (1.0f + z * (1.0f - s));
}

D4J_HD float d4j_gn_xhat(float v, float mean, float rstd) { return (v - mean) * rstd; }

/* pre-activation z = xhat * gamma + beta */
D4J_HD float d4j_gn_z(float xhat, float gamma, float beta) { return xhat * gamma + beta; }

/* Gradient of the pre-activation z from dy (through SiLU when silu != 0). */
D4J_HD float d4j_gn_dz(float dy, float z, int silu) { return silu ? dy * d4j_silu_grad(z) : dy; }

/* dx = rstd * (gamma dz - m1 - xhat m2), m1 = mean_g(gamma dz), m2 = mean_g(gamma dz xhat) */
D4J_HD float d4j_gn_dx(float dz, float xhat, float gamma, float rstd, float m1, float m2) {
    return rstd * (gamma * dz - m1 - xhat * m2);
}

/* Chan et al.'s merge of two (count, mean, M2) summaries: numerically stable
 * for any mean, unlike E[v^2] - E[v]^2. */
typedef struct d4j_welford {
    double count, mean, m2;
} d4j_welford;

D4J_HD void d4j_welford_merge(d4j_welford *a, double nb, double mean_b, double m2_b) {
    if (nb == 0.0) return;
    double n = a->count + nb;
    double d = mean_b - a->mean;
    a->mean += d * (nb / n);
    a->m2 += m2_b + d * d * (a->count * nb / n);
    a->count = n;
}

#endif
