// Kernel families of the CPU backend, one file each.
#ifndef D4J_CPU_KERNELS_H
#define D4J_CPU_KERNELS_H

#include "../common/backend_iface.h"
#include "../common/variants.h"
#include "parallel.h"

namespace d4j::cpu {

extern const d4j_host_api *g_host;

struct State {
    explicit State(int threads) : pool(threads), variants(single_variants()) {}
    ThreadPool pool;
    VariantTable variants;  // one implementation per family on the CPU
};

// Elements per parallel task: large enough to amortise a task claim (~100 ns),
// small enough to balance 2..64 threads on 1M-element tensors.
constexpr int64_t kGrain = 16384;

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


inline ThreadPool &pool_of(void *state) { return static_cast<State *>(state)->pool; }

}  // namespace d4j::cpu
#endif
