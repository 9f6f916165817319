#ifndef D4J_CUDA_KERNELS_H
#define D4J_CUDA_KERNELS_H

#include "../common/backend_iface.h"

namespace d4j::cuda {

d4j_status rng_uint32(void *state, uint64_t seed, uint64_t offset, uint32_t *out, int64_t count);
d4j_status rng_normal(void *state, uint64_t seed, uint64_t offset, float *out, int64_t count);
d4j_status add_noise(void *state, const d4j_noise_coef *coef, int32_t batch, int64_t n, const float *x0,
                     uint64_t seed, uint64_t offset, float *x_t, float *eps);
d4j_status diffusion_loss(void *state, const d4j_loss_coef *coef, int32_t batch, int64_t n, const float *out,
                          const float *x0, const float *eps, float *loss, float *grad);
d4j_status reverse_step(void *state, const d4j_step_coef *coef, int32_t batch, int64_t n, int32_t clip,
                        float clip_range, const float *x, const float *out, float *x_prev);
d4j_status timestep_embedding(void *state, const float *t, int32_t batch, int32_t dim, const double *freqs,
                              int32_t half, int32_t flip_sin_to_cos, float *out);
d4j_status fill_f32(void *state, float *dst, int64_t count, float value);

// ---- conv2d (issue 4) ----
d4j_status conv2d_forward(void *state, const d4j_backend_iface::conv2d_geom *g, const float *x, const float *weight,
                          const float *bias, float *y);
d4j_status conv2d_backward(void *state, const d4j_backend_iface::conv2d_geom *g, const float *x, const float *weight,
                           const float *dy, float *dx, float *dweight, float *dbias);
// ---- end conv2d ----
// ---- norm (issue 4) ----
d4j_status group_norm_forward(void *state, const float *x, const float *tb, const float *gamma, const float *beta,
                              int32_t n, int64_t hw, int32_t c, int32_t groups, float eps, int32_t silu, float *y,
                              float *mean, float *rstd);
d4j_status group_norm_backward(void *state, const float *dy, const float *x, const float *tb, const float *gamma,
                               const float *beta, const float *mean, const float *rstd, int32_t n, int64_t hw,
                               int32_t c, int32_t groups, int32_t silu, float *dx, float *dtb, float *dgamma,
                               float *dbeta);
d4j_status silu_forward(void *state, const float *x, int64_t count, float *y);
d4j_status silu_backward(void *state, const float *dy, const float *x, int64_t count, float *dx);
d4j_status residual_add(void *state, const float *a, const float *b, int64_t count, float inv_scale, float *out);
d4j_status residual_add_backward(void *state, const float *dout, int64_t count, float inv_scale, float *da,
                                 float *db);
// ---- end norm ----
// ---- linear_attention (issue 4) ----
d4j_status linear_forward(void *state, const float *x, const float *w, const float *b, int64_t rows, int32_t in,
                          int32_t out, float *y);
d4j_status linear_backward(void *state, const float *x, const float *w, const float *dy, int64_t rows, int32_t in,
                           int32_t out, float *dx, float *dw, float *db);
d4j_status attention_forward(void *state, const float *q, const float *k, const float *v, int32_t batch,
                             int32_t tokens, int32_t heads, int32_t head_dim, float scale, float *out, float *lse);
d4j_status attention_backward(void *state, const float *q, const float *k, const float *v, const float *out,
                              const float *lse, const float *dout, int32_t batch, int32_t tokens, int32_t heads,
                              int32_t head_dim, float scale, float *dq, float *dk, float *dv);
// ---- end linear_attention ----
// ---- optim (issue 4) ----
d4j_status grad_sumsq(void *state, const float *grad, int64_t count, double *sumsq);
d4j_status adamw(void *state, const struct d4j_adamw_coef *coef, float *param, const float *grad, float *m, float *v,
                 int64_t count);
d4j_status ema_update(void *state, float *ema, const float *param, int64_t count, float one_minus_decay);
// ---- end optim ----
// ---- concat (issue 4) ----
d4j_status concat_forward(void *state, const float *a, const float *b, int64_t rows, int32_t c1, int32_t c2,
                          float *out);
d4j_status concat_backward(void *state, const float *dout, int64_t rows, int32_t c1, int32_t c2, float *da,
                           float *db);
// ---- end concat ----


}  // namespace d4j::cuda
#endif
