/*
 * Element math of the sampler kernel families, shared verbatim by the
 * CPU backend and the CUDA backend (and its simulator build).
 *
 * One generalised reverse-step element covers DDPM, DDIM and DPM-Solver++ 2M:
 *   x0   = x0_a * x + x0_b * o                       (the x0 prediction)
 *   x0   = clamp(x0, -r, r)            (mode CLIP)
 *        = clamp(x0, -s_b, s_b) / s_b  (mode THRESHOLD, s_b per sample, >= 1)
 *   eps  = eps_a * x + eps_b * o + eps_c * x0
 *   x'   = c_x0 * x0 + c_xt * x + c_eps * eps + c_m1 * m1 + sigma * z
 * where m1 is the previous step's (processed) x0 prediction (DPM-Solver++ 2M)
 * and z the per-sample normal stream (seed, offset, element index). The
 * per-sample coefficients come from the front, computed in float64.
 */
#ifndef D4J_SAMPLER_MATH_H
#define D4J_SAMPLER_MATH_H

#include "diffusion_math.h"

enum { D4J_X0_NONE = 0, D4J_X0_CLIP = 1, D4J_X0_THRESHOLD = 2 };

typedef struct d4j_sampler_coef {
    d4j_step_coef step; /* x0, eps and x' coefficients, sigma, noise stream */
    float c_m1;         /* coefficient of the previous x0 prediction (0: not read) */
    float pad_[3];
} d4j_sampler_coef;

/* The unprocessed x0 prediction; also what the dynamic-thresholding quantile
 * ranks, whose order statistics are bit-exact on every backend: so rounded
 * explicitly, never fused into an FMA on a device. */
D4J_HD float d4j_x0_raw(const d4j_step_coef *c, float x, float o) {
    return D4J_FADD(D4J_FMUL(c->x0_a, x), D4J_FMUL(c->x0_b, o));
}

/* Clip or threshold the x0 prediction; s: the sample's threshold (mode THRESHOLD only). */
D4J_HD float d4j_x0_process(float x0, int mode, float r, float s) {
    if (mode == D4J_X0_CLIP) return x0 < -r ? -r : (x0 > r ? r : x0);
    if (mode == D4J_X0_THRESHOLD) return (x0 < -s ? -s : (x0 > s ? s : x0)) / s;
    return x0;
}

/* x' from a processed x0; m1 is read only when c_m1 != 0. */
D4J_HD float d4j_sampler_update(const d4j_sampler_coef *c, float x, float o, float x0, float m1, float z) {
    const d4j_step_coef *s = &c->step;
    float eps = s->eps_a * x + s->eps_b * o + s->eps_c * x0;
    float r = s->c_x0 * x0 + s->c_xt * x + s->c_eps * eps;
    if (c->c_m1 != 0.0f) r = r + c->c_m1 * m1;
    return r + s->sigma * z;
}

/* The order-statistic combination of the quantile: torch.quantile's linear
 * interpolation between the k-th and (k+1)-th smallest values, then clamped to
 * [1, max_value] (diffusers _threshold_sample). Evaluated in float64 with each
 * operation rounded (no fused multiply-add on a device), identical on every
 * backend. */
D4J_HD float d4j_threshold_from_order_stats(float lo, float hi, double frac, float max_value) {
    double q = D4J_DADD((double)lo, D4J_DMUL(frac, D4J_DSUB((double)hi, (double)lo)));
    float s = (float)q;
    if (!(s >= 1.0f)) s = s != s ? s : 1.0f; /* NaN propagates, as torch.clamp */
    if (s > max_value) s = max_value;
    return s;
}

#endif
