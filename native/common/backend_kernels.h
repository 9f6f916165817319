/*
 * The kernels every backend implements, listed once.
 *
 * D4J_BACKEND_KERNELS(X) expands X(name, (parameters)) for each kernel; every
 * kernel returns d4j_status and takes the backend's state first. From this one
 * list come d4j_backend_iface's kernel slots (backend_iface.h), each backend's
 * declarations (D4J_BACKEND_KERNELS(D4J_DECLARE_KERNEL) inside its namespace)
 * and each backend's table (D4J_BACKEND_KERNELS(D4J_FILL_KERNEL_SLOT)), so a
 * slot cannot be missing, misplaced or typed differently from its function.
 *
 * The front has validated every argument (see d4j.h for the entry points these
 * serve): pointers are raw backend pointers of large enough, non-overlapping
 * buffers; coefficient records are per sample, on the host.
 */
#ifndef D4J_BACKEND_KERNELS_H
#define D4J_BACKEND_KERNELS_H

#include <stdint.h>

#include "../include/d4j.h"
#include "diffusion_math.h"

/* Conv geometry, validated by the front. */
typedef struct d4j_conv2d_geom {
    int32_t n, h, w, c_in; /* stored input x */
    int32_t c_out, k, stride;
    int32_t pad_top, pad_left;
    int32_t upsample2x;
    int32_t h_in, w_in; /* conv input size: 2h x 2w when upsample2x, else h x w */
    int32_t h_out, w_out;
    /* 1: the forward's weight is the backend's prepared form for this geometry (conv2d_prepare), not the HWIO
     * weights; only set by the front for a backend with conv2d_prepare */
    int32_t prepared;
} d4j_conv2d_geom;

/* The GroupNorm(+SiLU) a group_norm_conv2d_forward applies to its input as it
 * reads it (d4j_group_norm_conv2d_forward), validated by the front. */
typedef struct d4j_gn_input {
    const float *tb;           /* [n, c_in] or NULL */
    const float *gamma, *beta; /* [c_in] */
    const float *mean, *rstd;  /* [n, groups] */
    int32_t groups, silu;
} d4j_gn_input;

/* Records defined with their element math (optim_math.h, sampler_math.h,
 * vlb_math.h); named here as elaborated types, so this header needs no include
 * for them. */
#define D4J_BACKEND_KERNELS(X)                                                                                       \
    /* rng */                                                                                                        \
    X(rng_uint32, (void *state, uint64_t seed, uint64_t offset, uint32_t *out, int64_t count))                       \
    X(rng_normal, (void *state, uint64_t seed, uint64_t offset, float *out, int64_t count))                          \
    /* diffusion: forward noising, training loss, DDPM/DDIM reverse step */                                          \
    X(add_noise, (void *state, const d4j_noise_coef *coef, int32_t batch, int64_t n, const float *x0, uint64_t seed, \
                  uint64_t offset, float *x_t, float *eps))                                                          \
    X(diffusion_loss, (void *state, const d4j_loss_coef *coef, int32_t batch, int64_t n, const float *out,           \
                       const float *x0, const float *eps, float *loss, float *grad))                                 \
    X(reverse_step, (void *state, const d4j_step_coef *coef, int32_t batch, int64_t n, int32_t clip,                 \
                     float clip_range, const float *x, const float *out, float *x_prev))                             \
    /* out[b, :] from arg = t_b * freqs[j] (float64), j < half */                                                    \
    X(timestep_embedding, (void *state, const float *t, int32_t batch, int32_t dim, const double *freqs,             \
                           int32_t half, int32_t flip_sin_to_cos, float *out))                                       \
    /* count floats at dst set to value */                                                                           \
    X(fill_f32, (void *state, float *dst, int64_t count, float value))                                               \
    /* conv2d: y = conv(x) + bias (bias may be NULL); backward writes dx (if not NULL) and accumulates dweight and   \
     * dbias (if not NULL) */                                                                                        \
    X(conv2d_forward, (void *state, const d4j_conv2d_geom *g, const float *x, const float *weight,                   \
                       const float *bias, float *y))                                                                 \
    X(conv2d_backward, (void *state, const d4j_conv2d_geom *g, const float *x, const float *weight,                  \
                        const float *dy, float *dx, float *dweight, float *dbias))                                   \
    /* conv2d_forward of the GroupNorm(+SiLU) of x, applied as the input is read (u = 0 in the padding) */          \
    X(group_norm_conv2d_forward, (void *state, const d4j_conv2d_geom *g, const d4j_gn_input *gn, const float *x,    \
                                  const float *weight, const float *bias, float *y))                                 \
    /* norm: GroupNorm over v = x + tb[n, :] (tb NULL: v = x), hw = H*W; backward writes dx, dtb and accumulates     \
     * dgamma, dbeta, each may be NULL (beta NULL when !silu); residual_add_backward's da, db may be NULL */         \
    X(group_norm_forward, (void *state, const float *x, const float *tb, const float *gamma, const float *beta,      \
                           int32_t n, int64_t hw, int32_t c, int32_t groups, float eps, int32_t silu, float *y,      \
                           float *mean, float *rstd))                                                                \
    X(group_norm_backward, (void *state, const float *dy, const float *x, const float *tb, const float *gamma,       \
                            const float *beta, const float *mean, const float *rstd, int32_t n, int64_t hw,          \
                            int32_t c, int32_t groups, int32_t silu, float *dx, float *dtb, float *dgamma,           \
                            float *dbeta))                                                                           \
    X(silu_forward, (void *state, const float *x, int64_t count, float *y))                                          \
    X(silu_backward, (void *state, const float *dy, const float *x, int64_t count, float *dx))                       \
    X(residual_add, (void *state, const float *a, const float *b, int64_t count, float inv_scale, float *out))       \
    X(residual_add_backward, (void *state, const float *dout, int64_t count, float inv_scale, float *da, float *db)) \
    /* linear and attention (the strided GEMM behind them is internal to each backend) */                            \
    X(linear_forward, (void *state, const float *x, const float *w, const float *b, int64_t rows, int32_t in,        \
                       int32_t out, float *y))                                                                       \
    X(linear_backward, (void *state, const float *x, const float *w, const float *dy, int64_t rows, int32_t in,      \
                        int32_t out, float *dx, float *dw, float *db))                                               \
    X(attention_forward, (void *state, const float *q, const float *k, const float *v, int32_t batch,                \
                          int32_t tokens, int32_t heads, int32_t head_dim, float scale, float *out, float *lse))     \
    X(attention_backward, (void *state, const float *q, const float *k, const float *v, const float *out,            \
                           const float *lse, const float *dout, int32_t batch, int32_t tokens, int32_t heads,        \
                           int32_t head_dim, float scale, float *dq, float *dk, float *dv))                          \
    /* optim: *sumsq = sum of grad[i]^2 in float64, in a fixed order; ema -= one_minus_decay * (ema - param) */      \
    X(grad_sumsq, (void *state, const float *grad, int64_t count, double *sumsq))                                    \
    X(adamw, (void *state, const struct d4j_adamw_coef *coef, float *param, const float *grad, float *m, float *v,   \
              int64_t count))                                                                                        \
    X(ema_update, (void *state, float *ema, const float *param, int64_t count, float one_minus_decay))               \
    /* concat: out[r] = [a[r], b[r]]; backward writes da, db, either may be NULL */                                  \
    X(concat_forward, (void *state, const float *a, const float *b, int64_t rows, int32_t c1, int32_t c2,            \
                       float *out))                                                                                  \
    X(concat_backward, (void *state, const float *dout, int64_t rows, int32_t c1, int32_t c2, float *da, float *db)) \
    /* dropout: y[i] = (uint32 element i of (seed, offset)) >= threshold ? x[i] * scale : 0 on count floats; y may   \
     * be x. Forward and backward (on dy) are this one map. */                                                       \
    X(dropout, (void *state, const float *x, int64_t count, uint64_t seed, uint64_t offset, uint32_t threshold,      \
                float scale, float *y))                                                                              \
    /* sampler: the generalised reverse step of sampler_math.h. threshold: device float32[batch] (x0_mode           \
     * THRESHOLD only, else NULL); m1: previous x0 predictions (NULL when every c_m1 is 0); x0_out: the processed   \
     * x0 prediction is written there when not NULL. x_prev may be x, x0_out may be m1 (element-wise in place).     \
     * x0_threshold: threshold[b] = d4j_threshold_from_order_stats(v_k, v_{k+1}, frac, max_value) where v_j is the  \
     * j-th smallest (0-based) |x0_raw| of sample b (v_{k+1} = v_k when k + 1 = n). */                               \
    X(sampler_step, (void *state, const struct d4j_sampler_coef *coef, int32_t batch, int64_t n, int32_t x0_mode,    \
                     float clip_range, const float *threshold, const float *x, const float *out, const float *m1,    \
                     float *x0_out, float *x_prev))                                                                  \
    X(x0_threshold, (void *state, const struct d4j_sampler_coef *coef, int32_t batch, int64_t n, const float *x,     \
                     const float *out, int64_t k, double frac, float max_value, float *threshold))                   \
    /* vlb: terms[b] (HOST float64) = sum over sample b's n elements of d4j_vlb_elem (vlb_math.h), in a fixed       \
     * order. x_t and out are read only where the coefficients need them (the prior passes x0 for both). */         \
    X(vlb_terms, (void *state, const struct d4j_vlb_coef *coef, int32_t batch, int64_t n, int32_t clip,              \
                  double clip_range, const float *x0, const float *x_t, const float *out, double *terms))           \
    /* conditioning: emb[b] += table[labels[b]]; d_table[labels[b]] += d_emb[b] in increasing b (labels on the      \
     * HOST, validated); out = uncond + scale * (cond - uncond); renoise: x = a_b src + s_b z, blended into x by     \
     * mask when mask is not NULL (conditioning_math.h); src may be x */                                            \
    X(class_embedding_forward, (void *state, const float *table, const int32_t *labels, int32_t batch, int32_t dim,  \
                                float *emb))                                                                         \
    X(class_embedding_backward, (void *state, const float *d_emb, const int32_t *labels, int32_t batch,             \
                                 int32_t dim, float *d_table))                                                       \
    X(guidance, (void *state, const float *cond, const float *uncond, int64_t count, float scale, float *out))       \
    X(renoise, (void *state, const struct d4j_renoise_coef *coef, int32_t batch, int64_t n, const float *src,        \
                const float *mask, float *x))

/* X for D4J_BACKEND_KERNELS: declares `d4j_status name(parameters);` in the enclosing namespace. */
#define D4J_DECLARE_KERNEL(name, params) d4j_status name params;

/* X for D4J_BACKEND_KERNELS inside a function building a backend's table: sets
 * slot `name` of the d4j_backend_iface named `iface` to the function of that name. */
#define D4J_FILL_KERNEL_SLOT(name, params) iface.name = name;

#endif
