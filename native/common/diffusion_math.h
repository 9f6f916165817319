/*
 * The element-wise math of the fused diffusion kernels, shared verbatim by the
 * CPU backend, the CUDA backend (and its simulator build).
 *
 * Split of work: everything that depends only on the sample (square roots and
 * ratios of alphas_cumprod, the loss weight, the posterior coefficients) is
 * computed once per sample in float64 on the host by the front library
 * (front/coefficients.cpp) and handed to the backends as small float32
 * records. The kernels then do a handful of float32 multiply-adds per element,
 * so they are bound by memory traffic, and both backends evaluate identical
 * expressions from identical coefficients.
 */
#ifndef D4J_DIFFUSION_MATH_H
#define D4J_DIFFUSION_MATH_H

#include "philox.h"

/* x_t = a * x0 + s * eps */
typedef struct d4j_noise_coef {
    float a; /* sqrt(alphas_cumprod[t]) */
    float s; /* sqrt(1 - alphas_cumprod[t]) */
} d4j_noise_coef;

/* target = c_eps * eps + c_x0 * x0; loss = lw * sum (o - target)^2;
 * grad = g * (o - target) */
typedef struct d4j_loss_coef {
    float c_eps;
    float c_x0;
    float lw; /* w / n_per_sample */
    float g;  /* 2 w / (batch * n_per_sample) */
} d4j_loss_coef;

/* One reverse step, DDPM and DDIM alike:
 *   x0  = x0_a * x + x0_b * o, then clamped to [-r, r] when clipping
 *   eps = eps_a * x + eps_b * o + eps_c * x0
 *   x'  = c_x0 * x0 + c_xt * x + c_eps * eps + sigma * z(seed, offset, i)
 * DDPM uses c_eps = 0 (posterior mean); DDIM uses c_xt = 0. sigma = 0 draws no noise. */
typedef struct d4j_step_coef {
    float x0_a, x0_b;
    float eps_a, eps_b, eps_c;
    float c_x0, c_xt, c_eps;
    float sigma;
    float pad_;
    uint64_t seed, offset;
} d4j_step_coef;

D4J_HD float d4j_noise_elem(d4j_noise_coef c, float x0, float eps) {
    return c.a * x0 + c.s * eps;
}

D4J_HD float d4j_loss_diff(d4j_loss_coef c, float o, float x0, float eps) {
    return o - (c.c_eps * eps + c.c_x0 * x0);
}

D4J_HD float d4j_step_elem(const d4j_step_coef *c, int clip, float r, float x, float o, float z) {
    float x0 = c->x0_a * x + c->x0_b * o;
    if (clip) x0 = x0 < -r ? -r : (x0 > r ? r : x0);
    float eps = c->eps_a * x + c->eps_b * o + c->eps_c * x0;
    return c->c_x0 * x0 + c->c_xt * x + c->c_eps * eps + c->sigma * z;
}

#endif
