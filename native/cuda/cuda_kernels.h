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
// ---- end conv2d ----
// ---- norm (issue 4) ----
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
// ---- end optim ----


}  // namespace d4j::cuda
#endif
