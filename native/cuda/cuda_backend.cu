// CUDA backend: device selection, memory, streams and the backend table.
// The CUDA runtime is linked statically; the driver (libcuda.so.1) is looked
// for first so a machine without one gets a plain reason, not a runtime error.
#include <dlfcn.h>

#include <cstdio>

#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

const d4j_host_api *g_host = nullptr;

d4j_status ensure_scratch(State *s, size_t bytes) {
    if (bytes <= s->scratch_bytes) return D4J_OK;
    size_t grow = bytes < 2 * s->scratch_bytes ? 2 * s->scratch_bytes : bytes;
    void *p = nullptr;
    D4J_CHECK(cudaMallocAsync(&p, grow, s->stream), "cudaMallocAsync(scratch)");
    if (s->scratch) D4J_CHECK(cudaFreeAsync(s->scratch, s->stream), "cudaFreeAsync(scratch)");
    s->scratch = p;
    s->scratch_bytes = grow;
    return D4J_OK;
}

static d4j_status init(void **state) {
#ifndef D4J_CUDA_SIM
    void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (driver == nullptr) {
        g_host->set_error("no CUDA driver: libcuda.so.1 cannot be loaded (%s)", dlerror());
        return D4J_ERR_UNAVAILABLE;
    }
#endif
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver) {
        int v = 0;
        cudaDriverGetVersion(&v);
        g_host->set_error("the CUDA driver is too old: it supports CUDA %d.%d, this library needs %d.%d", v / 1000,
                          (v % 1000) / 10, CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10);
        return D4J_ERR_UNAVAILABLE;
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
        g_host->set_error("no CUDA device is visible");
        return D4J_ERR_UNAVAILABLE;
    }
    if (e != cudaSuccess) {
        g_host->set_error("CUDA cannot start: %s", cudaGetErrorString(e));
        return D4J_ERR_UNAVAILABLE;
    }
    auto *s = new State();
    d4j_status st = check(cudaSetDevice(0), "cudaSetDevice");
    if (st == D4J_OK) st = check(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    if (st != D4J_OK) {
        delete s;
        return st;
    }
    *state = s;
    return D4J_OK;
}

static void shutdown(void *state) {
    auto *s = static_cast<State *>(state);
    cudaStreamSynchronize(s->stream);
    if (s->scratch) cudaFree(s->scratch);
    cudaStreamDestroy(s->stream);
    delete s;
}

static d4j_status describe(void *state, char *dst, size_t cap) {
    auto *s = static_cast<State *>(state);
    cudaDeviceProp p;
    D4J_CHECK(cudaGetDeviceProperties(&p, s->device), "cudaGetDeviceProperties");
    std::snprintf(dst, cap, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0);
    return D4J_OK;
}

static d4j_status set_threads(void *, int32_t) { return D4J_OK; }

static d4j_status alloc(void *, size_t bytes, void **ptr) {
    D4J_CHECK(cudaMalloc(ptr, bytes), "cudaMalloc");
    return D4J_OK;
}

static d4j_status release(void *state, void *ptr) {
    // Queued kernels may still use the memory: wait for them first.
    D4J_CHECK(cudaStreamSynchronize(static_cast<State *>(state)->stream), "cudaStreamSynchronize");
    D4J_CHECK(cudaFree(ptr), "cudaFree");
    return D4J_OK;
}

static d4j_status write(void *state, void *dst, const void *src, size_t bytes) {
    auto *s = static_cast<State *>(state);
    D4J_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->stream), "cudaMemcpyAsync(H2D)");
    D4J_CHECK(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize");
    return D4J_OK;
}

static d4j_status read(void *state, void *dst, const void *src, size_t bytes) {
    auto *s = static_cast<State *>(state);
    D4J_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s->stream), "cudaMemcpyAsync(D2H)");
    D4J_CHECK(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize");
    return D4J_OK;
}

static d4j_status synchronize(void *state) {
    D4J_CHECK(cudaStreamSynchronize(static_cast<State *>(state)->stream), "cudaStreamSynchronize");
    return D4J_OK;
}

static const char *variants(void *state, const char *family) {
    return static_cast<State *>(state)->variants.variants(family);
}
static const char *selected(void *state, const char *family) {
    return static_cast<State *>(state)->variants.selected(family);
}
static d4j_status select(void *state, const char *family, const char *variant) {
    return static_cast<State *>(state)->variants.select(g_host, D4J_CUDA_BACKEND_NAME, family, variant);
}

static const d4j_backend_iface kIface = {
    D4J_BACKEND_IFACE_VERSION,
    D4J_CUDA_BACKEND_NAME,
    init,
    shutdown,
    describe,
    set_threads,
    alloc,
    release,
    write,
    read,
    synchronize,
    variants,
    selected,
    select,
    rng_uint32,
    rng_normal,
    add_noise,
    diffusion_loss,
    reverse_step,
    timestep_embedding,
    fill_f32,
    /* ---- conv2d (issue 4) ---- */
    conv2d_forward,
    conv2d_backward,
    /* ---- end conv2d ---- */
    /* ---- norm (issue 4) ---- */
    group_norm_forward,
    group_norm_backward,
    silu_forward,
    silu_backward,
    residual_add,
    residual_add_backward,
    /* ---- end norm ---- */
    /* ---- linear_attention (issue 4) ---- */
    linear_forward,
    linear_backward,
    attention_forward,
    attention_backward,
    /* ---- end linear_attention ---- */
    /* ---- optim (issue 4) ---- */
    grad_sumsq,
    adamw,
    ema_update,
    /* ---- end optim ---- */
};

}  // namespace d4j::cuda

extern "C" __attribute__((visibility("default"))) const d4j_backend_iface *d4j_backend_entry(const d4j_host_api *host) {
    d4j::cuda::g_host = host;
    return &d4j::cuda::kIface;
}
