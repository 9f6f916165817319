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

    /* timing: see d4j_timer_begin / d4j_timer_end / d4j_flush_cache / d4j_device_peak */
    d4j_status (*timer_begin)(void *state);
    d4j_status (*timer_end)(void *state, double *milliseconds);
    d4j_status (*flush_cache)(void *state);
    d4j_status (*device_peak)(void *state, double *bytes_per_second, double *flops);

    /* fills count floats at dst with value */
    d4j_status (*fill_f32)(void *state, float *dst, int64_t count, float value);

    /* ---- conv2d (issue 4) ---- */
    /* Conv geometry, validated by the front. Defined inside this struct (C++
     * nested type, d4j_backend_iface::conv2d_geom) so the family's additions
     * stay between its markers. */
    struct conv2d_geom {
        int32_t n, h, w, c_in;  /* stored input x */
        int32_t c_out, k, stride;
        int32_t pad_top, pad_left;
        int32_t upsample2x;
        int32_t h_in, w_in;     /* conv input size: 2h x 2w when upsample2x, else h x w */
        int32_t h_out, w_out;
    };
    /* y = conv(x) + bias (bias may be NULL). */
    d4j_status (*conv2d_forward)(void *state, const conv2d_geom *g, const float *x, const float *weight,
                                 const float *bias, float *y);
    /* dx written (if not NULL), dweight and dbias accumulated (if not NULL). */
    d4j_status (*conv2d_backward)(void *state, const conv2d_geom *g, const float *x, const float *weight,
                                  const float *dy, float *dx, float *dweight, float *dbias);
    /* ---- end conv2d ---- */
    /* ---- norm (issue 4) ---- */
    /* GroupNorm over v = x + tb[n, :] (tb NULL: v = x), hw = H*W; see d4j.h. */
    d4j_status (*group_norm_forward)(void *state, const float *x, const float *tb, const float *gamma,
                                     const float *beta, int32_t n, int64_t hw, int32_t c, int32_t groups, float eps,
                                     int32_t silu, float *y, float *mean, float *rstd);
    /* dx, dtb written, dgamma, dbeta accumulated; each may be NULL. beta NULL when !silu. */
    d4j_status (*group_norm_backward)(void *state, const float *dy, const float *x, const float *tb,
                                      const float *gamma, const float *beta, const float *mean, const float *rstd,
                                      int32_t n, int64_t hw, int32_t c, int32_t groups, int32_t silu, float *dx,
                                      float *dtb, float *dgamma, float *dbeta);
    d4j_status (*silu_forward)(void *state, const float *x, int64_t count, float *y);
    d4j_status (*silu_backward)(void *state, const float *dy, const float *x, int64_t count, float *dx);
    d4j_status (*residual_add)(void *state, const float *a, const float *b, int64_t count, float inv_scale,
                               float *out);
    /* da, db may be NULL */
    d4j_status (*residual_add_backward)(void *state, const float *dout, int64_t count, float inv_scale, float *da,
                                        float *db);
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
    /* *sumsq = sum of grad[i]^2 in float64, in a fixed order */
    d4j_status (*grad_sumsq)(void *state, const float *grad, int64_t count, double *sumsq);
    /* struct d4j_adamw_coef: native/common/optim_math.h (an elaborated name, so
     * this header needs no include for it) */
    d4j_status (*adamw)(void *state, const struct d4j_adamw_coef *coef, float *param, const float *grad, float *m,
                        float *v, int64_t count);
    /* ema -= one_minus_decay * (ema - param) */
    d4j_status (*ema_update)(void *state, float *ema, const float *param, int64_t count, float one_minus_decay);
    /* ---- end optim ---- */
    /* ---- concat (issue 4) ---- */
    /* out[r] = [a[r], b[r]]; validated by the front (see d4j.h) */
    d4j_status (*concat_forward)(void *state, const float *a, const float *b, int64_t rows, int32_t c1, int32_t c2,
                                 float *out);
    /* da, db written; either may be NULL */
    d4j_status (*concat_backward)(void *state, const float *dout, int64_t rows, int32_t c1, int32_t c2, float *da,
                                  float *db);
    /* ---- end concat ---- */
    /* ---- dropout (issue 4) ---- */
    /* y[i] = (uint32 element i of (seed, offset)) >= threshold ? x[i] * scale : 0 on count
     * floats; y may be x. Forward and backward (on dy) are this one map; see d4j.h. */
    d4j_status (*dropout)(void *state, const float *x, int64_t count, uint64_t seed, uint64_t offset,
                          uint32_t threshold, float scale, float *y);
    /* ---- end dropout ---- */
    /* ---- sampler (issue 5) ---- */
    /* The generalised reverse step of native/common/sampler_math.h (struct
     * d4j_sampler_coef, elaborated so this header needs no include for it).
     * threshold: device float32[batch] (x0_mode THRESHOLD only, else NULL);
     * m1: previous x0 predictions (NULL when every c_m1 is 0); x0_out: the
     * processed x0 prediction is written there when not NULL. x_prev may be
     * x, x0_out may be m1 (element-wise in place). */
    d4j_status (*sampler_step)(void *state, const struct d4j_sampler_coef *coef, int32_t batch, int64_t n,
                               int32_t x0_mode, float clip_range, const float *threshold, const float *x,
                               const float *out, const float *m1, float *x0_out, float *x_prev);
    /* threshold[b] = d4j_threshold_from_order_stats(v_k, v_{k+1}, frac, max_value) where v_j is the j-th
     * smallest (0-based) |x0_raw| of sample b (v_{k+1} = v_k when k + 1 = n). */
    d4j_status (*x0_threshold)(void *state, const struct d4j_sampler_coef *coef, int32_t batch, int64_t n,
                               const float *x, const float *out, int64_t k, double frac, float max_value,
                               float *threshold);
    /* ---- end sampler ---- */
    /* ---- vlb (issue 5) ---- */
    /* terms[b] (HOST float64) = sum over sample b's n elements of d4j_vlb_elem (native/common/vlb_math.h;
     * struct d4j_vlb_coef elaborated so this header needs no include for it), in a fixed order. x_t and
     * out are read only where the coefficients need them (the prior passes x0 for both). */
    d4j_status (*vlb_terms)(void *state, const struct d4j_vlb_coef *coef, int32_t batch, int64_t n, int32_t clip,
                            double clip_range, const float *x0, const float *x_t, const float *out, double *terms);
    /* ---- end vlb ---- */
    /* ---- graph (issue 5) ---- */
    /* Stream capture of the calling thread's calls into a graph (see
     * d4j_capture_begin); all four NULL when the backend cannot capture (the
     * front then reports D4J_ERR_UNSUPPORTED). The front guarantees that between
     * capture_begin and capture_end only the capturing thread calls into the
     * backend, and never alloc, free, write, read, synchronize, timers or calls
     * with host results. capture_end always ends the capture: with discard (a
     * recorded call failed) it frees everything and returns no graph; else
     * *graph owns the recorded work, its per-call device scratch and the host
     * snapshots of per-call metadata, with its size in *nodes, *device_bytes,
     * *host_bytes. graph_free waits for a running launch first. */
    d4j_status (*capture_begin)(void *state);
    d4j_status (*capture_end)(void *state, int32_t discard, void **graph, int64_t *nodes, int64_t *device_bytes,
                              int64_t *host_bytes);
    d4j_status (*graph_launch)(void *state, void *graph);
    d4j_status (*graph_free)(void *state, void *graph);
    /* ---- end graph ---- */
} d4j_backend_iface;

typedef const d4j_backend_iface *(*d4j_backend_entry_fn)(const d4j_host_api *host);

/* The kernel families, in the order d4j_kernel_families reports them. */
#define D4J_KERNEL_FAMILIES                        \
    "rng,add_noise,diffusion_loss,reverse_step,timestep_embedding" \
    /* ---- conv2d (issue 4) ---- */                \
    ",conv2d"                                       \
    /* ---- end conv2d ---- */                      \
    /* ---- norm (issue 4) ---- */                  \
    ",group_norm,silu,residual_add"                 \
    /* ---- end norm ---- */                        \
    /* ---- linear_attention (issue 4) ---- */      \
    ",linear,attention"                             \
    /* ---- end linear_attention ---- */            \
    /* ---- optim (issue 4) ---- */                 \
    ",grad_norm,adamw,ema"                          \
    /* ---- end optim ---- */                       \
    /* ---- concat (issue 4) ---- */                \
    ",concat"                                       \
    /* ---- end concat ---- */                      \
    /* ---- dropout (issue 4) ---- */               \
    ",dropout"                                      \
    /* ---- end dropout ---- */                     \
    /* ---- sampler (issue 5) ---- */               \
    ",sampler_step,x0_threshold"                    \
    /* ---- end sampler ---- */                     \
    /* ---- vlb (issue 5) ---- */                   \
    ",vlb"                                          \
    /* ---- end vlb ---- */

#ifdef __cplusplus
}
#endif
#endif
