/*
 * Element math of the variational-bound kernel family "vlb", shared
 * verbatim by the CPU backend and the CUDA backend (and its simulator build).
 *
 * The terms are those of improved-diffusion's _vb_terms_bpd / _prior_bpd
 * (losses.py normal_kl, discretized_gaussian_log_likelihood,
 * approx_standard_normal_cdf), per element, in nats. Unlike the training and
 * sampling kernels, everything is evaluated in float64 from float32 inputs:
 * this is an evaluation, once per timestep per batch, next to a whole UNet
 * forward pass, and float64 keeps the decoder's CDF differences and the
 * 784..N-element sums honest. The per-sample coefficients come from the
 * front, computed in float64 from alphas_cumprod and kept in float64.
 * Honest, not exact: a cdf below is good to ~2^-53 absolute whatever its
 * size, so a tail bin probability P only to ~2^-53 / P relative (~1e-4 nats
 * at the 1e-12 floor), the formula's own limit in float64; VlbKernelsTest
 * derives the bound it holds the kernel to.
 *
 * Gaussian KL (t > 0, and the prior with x0_a = x0_b = 0):
 *   x0_hat = x0_a * x_t + x0_b * o, clamped to [-r, r] when clipping
 *   kl     = k + q * (c1 * (x0 - x0_hat))^2
 * which is normal_kl(true_mean, lv1, model_mean, lv2) with
 *   true_mean - model_mean = c1 * (x0 - x0_hat)  (the c2 * x_t parts cancel),
 *   k = 0.5 * (-1 + lv2 - lv1 + exp(lv1 - lv2)), q = 0.5 * exp(-lv2).
 *
 * Discretized Gaussian decoder (t = 0), 8-bit data in [-1, 1]:
 *   mean = c1 * x0_hat + c2 * x_t,  centered = x0 - mean
 *   cdf+ = Phi~(inv_stdv * (centered + 1/255)),  cdf- = Phi~(inv_stdv * (centered - 1/255))
 *   nll  = -log(max(cdf+, 1e-12))          if x0 < -0.999
 *          -log(max(1 - cdf-, 1e-12))      if x0 >  0.999
 *          -log(max(cdf+ - cdf-, 1e-12))   otherwise
 *   Phi~(x) = 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
 */
#ifndef D4J_VLB_MATH_H
#define D4J_VLB_MATH_H

#include <math.h>

#include "philox.h"

typedef struct d4j_vlb_coef {
    double x0_a, x0_b; /* x0 prediction from (x_t, model_output) */
    double c1, c2;     /* posterior mean coefficients of x0 and x_t */
    double k, q;       /* KL constant and quadratic weight */
    double inv_stdv;   /* decoder: 1 / sigma */
    int32_t decoder;   /* 1: decoder NLL, 0: KL */
    int32_t pad_;
} d4j_vlb_coef;

/* improved-diffusion's approx_standard_normal_cdf (the GELU tanh form). */
D4J_HD double d4j_vlb_cdf(double x) {
    return 0.5 * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

D4J_HD double d4j_vlb_log_clamped(double p) { return log(p > 1e-12 ? p : 1e-12); }

/* One element's term in nats; clip: clamp x0_hat to [-r, r]. */
D4J_HD double d4j_vlb_elem(const d4j_vlb_coef *c, int clip, double r, float x0f, float xt, float o) {
    double x0h = c->x0_a * (double)xt + c->x0_b * (double)o;
    if (clip) x0h = x0h < -r ? -r : (x0h > r ? r : x0h);
    const double x0 = (double)x0f;
    if (!c->decoder) {
        const double d = c->c1 * (x0 - x0h);
        return c->k + c->q * (d * d);
    }
    const double centered = x0 - (c->c1 * x0h + c->c2 * (double)xt);
    const double half_bin = 1.0 / 255.0;
    if (x0 < -0.999) return -d4j_vlb_log_clamped(d4j_vlb_cdf(c->inv_stdv * (centered + half_bin)));
    const double cdf_min = d4j_vlb_cdf(c->inv_stdv * (centered - half_bin));
    if (x0 > 0.999) return -d4j_vlb_log_clamped(1.0 - cdf_min);
    return -d4j_vlb_log_clamped(d4j_vlb_cdf(c->inv_stdv * (centered + half_bin)) - cdf_min);
}

#endif
