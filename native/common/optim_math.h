/*
 * The element-wise math of the optimiser kernels (AdamW, EMA), shared verbatim
 * by the CPU backend and the CUDA backend (and its simulator build).
 *
 * Every float32 operation goes through the correctly rounded D4J_F* macros of
 * philox.h: on a device they are the __f*_rn intrinsics, which nvcc never
 * contracts into an FMA; the CPU and simulator builds use -ffp-contract=off.
 * So the same inputs give the same bits on every backend, and a Java float32
 * emulation of this exact operation sequence reproduces them (the tests use
 * that as a bit-level check on top of the float64 reference).
 *
 * Everything that depends only on the step (bias corrections, 1 - lr * wd,
 * 1 - beta) is computed once in float64 by the front and rounded once to
 * float32, as the diffusion kernels do with their per-sample coefficients.
 */
#ifndef D4J_OPTIM_MATH_H
#define D4J_OPTIM_MATH_H

#include "philox.h"

/* One AdamW step (torch.optim.AdamW, decoupled weight decay), per element:
 *   g  = grad * grad_scale                       (clipping folded in)
 *   p  = p * param_decay                         (param_decay = 1 - lr * weight_decay)
 *   m  = b1 * m + omb1 * g                       (omb1 = 1 - b1)
 *   v  = b2 * v + omb2 * g * g
 *   p  = p - step_size * (m / (sqrt(v) * inv_sqrt_bc2 + eps))
 * with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t): the
 * same arrangement as torch's single-tensor AdamW (denom = sqrt(v) / sqrt(bc2)
 * + eps; param.addcdiv_(m, denom, value = -step_size)). */
typedef struct d4j_adamw_coef {
    float grad_scale;
    float param_decay;
    float b1, omb1;
    float b2, omb2;
    float step_size;
    float inv_sqrt_bc2;
    float eps;
} d4j_adamw_coef;

D4J_HD void d4j_adamw_elem(const d4j_adamw_coef *c, float *p, float grad, float *m, float *v) {
    float g = D4J_FMUL(grad, c->grad_scale);
    float mn = D4J_FADD(D4J_FMUL(c->b1, *m), D4J_FMUL(c->omb1, g));
    float vn = D4J_FADD(D4J_FMUL(c->b2, *v), D4J_FMUL(c->omb2, D4J_FMUL(g, g)));
    float denom = D4J_FADD(D4J_FMUL(D4J_FSQRT(vn), c->inv_sqrt_bc2), c->eps);
    float pd = D4J_FMUL(*p, c->param_decay);
    *p = D4J_FSUB(pd, D4J_FMUL(c->step_size, D4J_FDIV(mn, denom)));
    *m = mn;
    *v = vn;
}

/* EMA in diffusers EMAModel.step's arrangement, s -= (1 - decay) * (s - p):
 * equal to decay * s + (1 - decay) * p, but a parameter that stopped moving
 * (s == p) keeps its EMA bit-exactly, whereas decay * s + (1 - decay) * p
 * with both factors rounded to float32 would drift by up to 1 ulp per step. */
/* decay = 0 (diffusers' first update) copies the parameter exactly: s - (s - p)
 * alone would not when s - p rounds. */
D4J_HD float d4j_ema_elem(float one_minus_decay, float s, float p) {
    float e = D4J_FSUB(s, D4J_FMUL(one_minus_decay, D4J_FSUB(s, p)));
    return one_minus_decay == 1.0f ? p : e;
}

#endif
