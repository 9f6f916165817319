/*
 * The internal interface between the front library (libd4j.so, which exports
 * d4j.h) and a backend library (libd4j_cpu.so, libd4j_cuda.so, ...).
 *
 * Every backend exports one symbol, d4j_backend_entry, returning a table of
 * function pointers. The front has already validated everything: handles,
 * sizes (no overflow, buffers large enough), timesteps, schedules. Backends
 * receive raw backend pointers and per-sample coefficient records on the host,
 * and report their own failures (device errors, out of memory) through
 * host->set_error.
 */
#ifndef D4J_BACKEND_IFACE_H
#define D4J_BACKEND_IFACE_H

#include <stddef.h>
#include <stdint.h>

#include "../include/d4j.h"
#include "diffusion_math.h"

#define D4J_BACKEND_IFACE_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

typedef struct d4j_host_api {
    /* printf-style; stores the message as the calling thread's last error. */
    void (*set_error)(const char *fmt, ...);
} d4j_host_api;

typedef struct d4j_backend_iface {
    int32_t version; /* D4J_BACKEND_IFACE_VERSION */
    const char *name;
    /* Fails with D4J_ERR_UNAVAILABLE and a reason when the backend cannot run here. */
    d4j_status (*init)(void **state);
    void (*shutdown)(void *state);
    d4j_status (*describe)(void *state, char *dst, size_t cap);
    d4j_status (*set_threads)(void *state, int32_t threads);

    d4j_status (*alloc)(void *state, size_t bytes, void **ptr);
    d4j_status (*free)(void *state, void *ptr);
    d4j_status (*write)(void *state, void *dst, const void *src, size_t bytes);
    d4j_status (*read)(void *state, void *dst, const void *src, size_t bytes);
    d4j_status (*synchronize)(void *state);

    /* Kernel variants: the comma-separated variant names of a family (default
     * first), NULL for an unknown family; the selected one; selection by name. */
    const char *(*variants)(void *state, const char *family);
    const char *(*selected)(void *state, const char *family);
    d4j_status (*select)(void *state, const char *family, const char *variant);

    d4j_status (*rng_uint32)(void *state, uint64_t seed, uint64_t offset, uint32_t *out, int64_t count);
    d4j_status (*rng_normal)(void *state, uint64_t seed, uint64_t offset, float *out, int64_t count);

    d4j_status (*add_noise)(void *state, const d4j_noise_coef *coef, int32_t batch, int64_t n, const float *x0,
                            uint64_t seed, uint64_t offset, float *x_t, float *eps);
    d4j_status (*diffusion_loss)(void *state, const d4j_loss_coef *coef, int32_t batch, int64_t n, const float *out,
                                 const float *x0, const float *eps, float *loss, float *grad);
    d4j_status (*reverse_step)(void *state, const d4j_step_coef *coef, int32_t batch, int64_t n, int32_t clip,
                               float clip_range, const float *x, const float *out, float *x_prev);
    /* out[b, :] from arg = t_b * freqs[j] (float64), j < half. */
    d4j_status (*timestep_embedding)(void *state, const float *t, int32_t batch, int32_t dim, const double *freqs,
                                     int32_t half, int32_t flip_sin_to_cos, float *out);

    /* fills count floats at dst with value */
    d4j_status (*fill_f32)(void *state, float *dst, int64_t count, float value);

    /* ---- conv2d (issue 4) ---- */
    /* ---- end conv2d ---- */
    /* ---- norm (issue 4) ---- */
    /* ---- end norm ---- */
    /* ---- linear_attention (issue 4) ---- */
    /* Generic strided GEMM over the linear layer's three products is internal to
     * the backends; these are the validated entry points (see d4j.h). */
    d4j_status (*linear_forward)(void *state, const float *x, const float *w, const float *b, int64_t rows,
                                 int32_t in, int32_t out, float *y);
    d4j_status (*linear_backward)(void *state, const float *x, const float *w, const float *dy, int64_t rows,
                                  int32_t in, int32_t out, float *dx, float *dw, float *db);
    d4j_status (*attention_forward)(void *state, const float *q, const float *k, const float *v, int32_t batch,
                                    int32_t tokens, int32_t heads, int32_t head_dim, float scale, float *out,
                                    float *lse);
    d4j_status (*attention_backward)(void *state, const float *q, const float *k, const float *v, const float *out,
                                     const float *lse, const float *dout, int32_t batch, int32_t tokens,
                                     int32_t heads, int32_t head_dim, float scale, float *dq, float *dk, float *dv);
    /* ---- end linear_attention ---- */
    /* ---- optim (issue 4) ---- */
    /* ---- end optim ---- */
} d4j_backend_iface;

typedef const d4j_backend_iface *(*d4j_backend_entry_fn)(const d4j_host_api *host);

/* The kernel families, in the order d4j_kernel_families reports them. */
#define D4J_KERNEL_FAMILIES                        \
    "rng,add_noise,diffusion_loss,reverse_step,timestep_embedding" \
    /* ---- conv2d (issue 4) ---- */                \
    /* ---- end conv2d ---- */                      \
    /* ---- norm (issue 4) ---- */                  \
    /* ---- end norm ---- */                        \
    /* ---- linear_attention (issue 4) ---- */      \
    ",linear,attention"                             \
    /* ---- end linear_attention ---- */            \
    /* ---- optim (issue 4) ---- */                 \
    /* ---- end optim ---- */

#ifdef __cplusplus
}
#endif
#endif
