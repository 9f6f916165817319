// CPU backend: memory, threading and the backend table. Kernel families live
// in their own files (kernels_*.cpp) and are declared in cpu_kernels.h.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <chrono>
#include <thread>
#include <vector>

#include "cpu_kernels.h"

namespace d4j::cpu {

const d4j_host_api *g_host = nullptr;

static const char *simd_level() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "sse2";
}

static d4j_status init(void **state) {
    unsigned hw = std::thread::hardware_concurrency();
    *state = new State((int)(hw == 0 ? 1 : hw));
    return D4J_OK;
}

static void shutdown(void *state) { delete static_cast<State *>(state); }

static d4j_status describe(void *state, char *dst, size_t cap) {
    std::snprintf(dst, cap, "CPU, %d threads, widest SIMD path %s", static_cast<State *>(state)->pool.threads(),
                  simd_level());
    return D4J_OK;
}

static d4j_status set_threads(void *state, int32_t threads) {
    static_cast<State *>(state)->pool.resize(threads);
    return D4J_OK;
}

static d4j_status alloc(void *, size_t bytes, void **ptr) {
    // 64-byte alignment: a cache line and a full AVX-512 vector.
    size_t rounded = (bytes + 63) & ~(size_t)63;
#if defined(__SANITIZE_ADDRESS__)
    // Under AddressSanitizer the allocation is exactly the bytes asked for: a write one element past the
    // end of a buffer is reported instead of landing in the rounding.
    void *p = nullptr;
    if (posix_memalign(&p, 64, bytes == 0 ? 1 : bytes) != 0) p = nullptr;
    (void)rounded;
#else
    void *p = std::aligned_alloc(64, rounded);
#endif
    if (p == nullptr) {
        g_host->set_error("out of host memory allocating %zu bytes", bytes);
        return D4J_ERR_OUT_OF_MEMORY;
    }
    *ptr = p;
    return D4J_OK;
}

static d4j_status release(void *, void *ptr) {
    std::free(ptr);
    return D4J_OK;
}

static d4j_status copy(void *, void *dst, const void *src, size_t bytes) {
    std::memcpy(dst, src, bytes);
    return D4J_OK;
}

static d4j_status synchronize(void *) { return D4J_OK; }

static const char *variants(void *state, const char *family) {
    return static_cast<State *>(state)->variants.variants(family);
}
static const char *tensor_core_variants(void *state, const char *family) {
    return static_cast<State *>(state)->variants.tensor_core_variants(family);
}
static const char *selected(void *state, const char *family) {
    return static_cast<State *>(state)->variants.selected(family);
}
static d4j_status select(void *state, const char *family, const char *variant) {
    return static_cast<State *>(state)->variants.select(g_host, "cpu", family, variant);
}

// The CPU kernels have no reduced-precision path: FP32 is the only setting.
static d4j_status set_precision(void *, int32_t precision) {
    if (precision == D4J_PRECISION_FP32) return D4J_OK;
    g_host->set_error("the cpu backend computes fp32 only; precision %s needs a GPU backend (cuda or cuda-sim)",
                      precision == D4J_PRECISION_TF32 ? "tf32" : "bf16");
    return D4J_ERR_UNSUPPORTED;
}
static int32_t precision(void *) { return D4J_PRECISION_FP32; }

// Kernels on the CPU run synchronously: the host clock brackets them exactly.
static std::chrono::steady_clock::time_point g_timer_start;  // one region per process, as documented

static d4j_status timer_begin(void *) {
    g_timer_start = std::chrono::steady_clock::now();
    return D4J_OK;
}

static d4j_status timer_end(void *, double *ms) {
    *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - g_timer_start).count();
    return D4J_OK;
}

static d4j_status flush_cache(void *) {
    // Larger than the last-level caches of current server CPUs' per-socket share.
    static std::vector<unsigned char> junk(64u << 20);
    static unsigned char v = 0;
    std::memset(junk.data(), ++v, junk.size());
    return D4J_OK;
}

static d4j_status device_peak(void *, double *bw, double *flops) {
    *bw = 0.0;  // not known from the CPU itself; the benchmarks measure it
    *flops = 0.0;
    return D4J_OK;
}

// Every slot filled by name, the kernels from the one list in common/backend_kernels.h.
static d4j_backend_iface make_iface() {
    d4j_backend_iface iface{};
    iface.version = D4J_BACKEND_IFACE_VERSION;
    iface.name = "cpu";
    D4J_BACKEND_SERVICES(D4J_FILL_SERVICE_SLOT)
    iface.free = release;
    iface.write = copy;
    iface.read = copy;
    D4J_BACKEND_KERNELS(D4J_FILL_KERNEL_SLOT)
    iface.conv2d_prepared_floats = conv2d_prepared_floats;
    iface.conv2d_prepare = conv2d_prepare;
    // capture_*: none, the CPU runs every call at once and has nothing to capture
    return iface;
}

static const d4j_backend_iface kIface = make_iface();

}  // namespace d4j::cpu

extern "C" __attribute__((visibility("default"))) const d4j_backend_iface *d4j_backend_entry(const d4j_host_api *host) {
    d4j::cpu::g_host = host;
    return &d4j::cpu::kIface;
}
