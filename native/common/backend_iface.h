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
#include "backend_kernels.h"

#define D4J_BACKEND_IFACE_VERSION 7

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
    /* The family's tensor-core variants, comma-separated ("" when none; NULL for an unknown family). */
    const char *(*tensor_core_variants)(void *state, const char *family);
    /* Precision of the matrix families (d4j_backend_set_precision): the front
     * has checked that the value is a d4j_precision; a backend that cannot
     * compute in it answers D4J_ERR_UNSUPPORTED with a message and keeps its
     * setting. precision: the current setting, a d4j_precision value. */
    d4j_status (*set_precision)(void *state, int32_t precision);
    int32_t (*precision)(void *state);

    /* timing: see d4j_timer_begin / d4j_timer_end / d4j_flush_cache / d4j_device_peak */
    d4j_status (*timer_begin)(void *state);
    d4j_status (*timer_end)(void *state, double *milliseconds);
    d4j_status (*flush_cache)(void *state);
    d4j_status (*device_peak)(void *state, double *bytes_per_second, double *flops);

    /* The kernels, one slot each, in the order of backend_kernels.h. */
#define D4J_KERNEL_SLOT(name, params) d4j_status(*name) params;
    D4J_BACKEND_KERNELS(D4J_KERNEL_SLOT)
#undef D4J_KERNEL_SLOT

    /* Conv geometry under its older name, as the conv2d kernels spell it. */
    typedef d4j_conv2d_geom conv2d_geom;

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

    /* Prepared convolution weights (see d4j_conv2d_prepare); both NULL when the backend has no prepared form.
     * conv2d_prepared_floats: the floats of the prepared form of a geometry (g->n is 1), 0 when the geometry has
     * none; conv2d_prepare writes that many floats from the HWIO weights. A forward with g->prepared = 1 gets them
     * as its weight and must refuse (D4J_ERR_INVALID_ARGUMENT) a form made for another geometry. */
    int64_t (*conv2d_prepared_floats)(void *state, const d4j_conv2d_geom *g);
    d4j_status (*conv2d_prepare)(void *state, const d4j_conv2d_geom *g, const float *weight, float *prepared);

    /* Kernel counters (see d4j_profile_begin); all three NULL except in the
     * profiling simulator (the front then reports D4J_ERR_UNSUPPORTED). */
    d4j_status (*profile_begin)(void *state, int64_t max_blocks);
    d4j_status (*profile_read)(void *state, d4j_kernel_profile *records, int64_t capacity, int64_t *count);
    d4j_status (*profile_end)(void *state);
} d4j_backend_iface;

typedef const d4j_backend_iface *(*d4j_backend_entry_fn)(const d4j_host_api *host);

/* The service slots a backend fills with its functions of the same name (free,
 * write and read are set by hand: those names belong to the C library). */
#define D4J_BACKEND_SERVICES(X)                                                                              \
    X(init) X(shutdown) X(describe) X(set_threads) X(alloc) X(synchronize) X(variants) X(selected) X(select) \
    X(tensor_core_variants) X(set_precision) X(precision) X(timer_begin) X(timer_end) X(flush_cache) X(device_peak)

/* X for D4J_BACKEND_SERVICES inside a function building a backend's table (see D4J_FILL_KERNEL_SLOT). */
#define D4J_FILL_SERVICE_SLOT(name) iface.name = name;

/* The kernel families, in the order d4j_kernel_families reports them. */
#define D4J_KERNEL_FAMILIES                                                    \
    "rng,add_noise,diffusion_loss,reverse_step,timestep_embedding,conv2d,"     \
    "group_norm,silu,residual_add,linear,attention,grad_norm,adamw,ema,"       \
    "concat,dropout,sampler_step,x0_threshold,vlb,class_embedding,guidance,"    \
    "renoise"

#ifdef __cplusplus
}
#endif
#endif
