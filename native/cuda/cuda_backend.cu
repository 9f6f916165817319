// CUDA backend: device selection, memory, streams and the backend table.
// The CUDA runtime is linked statically; the driver (libcuda.so.1) is looked
// for first so a machine without one gets a plain reason, not a runtime error.
#include <dlfcn.h>

#include <atomic>
#include <cstdio>

#include "cuda_common.h"
#include "cuda_kernels.h"
#if D4J_SIM_PROFILE
#include "cudasim_profile.h"
#endif

namespace d4j::cuda {

const d4j_host_api *g_host = nullptr;

static std::atomic<uint64_t> g_next_serial{1};

// This thread's Scratch of backend s: a small thread_local cache keyed by the
// backend's serial (never reused, so an entry of a closed backend cannot match a
// new one at the same address), else the backend's map under its mutex.
static Scratch *thread_scratch(State *s) {
    struct Entry {
        uint64_t serial;
        Scratch *scratch;
    };
    static thread_local Entry cache[4] = {};
    static thread_local unsigned next = 0;
    for (const Entry &e : cache)
        if (e.serial == s->serial) return e.scratch;
    Scratch *sc;
    {
        std::lock_guard<std::mutex> lock(s->scratch_mu);
        std::unique_ptr<Scratch> &slot = s->scratches[std::this_thread::get_id()];
        if (!slot) slot = std::make_unique<Scratch>();
        sc = slot.get();
    }
    cache[next++ % 4] = Entry{s->serial, sc};
    return sc;
}

d4j_status ensure_scratch(State *s, size_t bytes, void **scratch) {
    if (capturing(s)) return capture_scratch(s, bytes, scratch);  // a region of its own, owned by the graph
    Scratch *sc = thread_scratch(s);
    if (bytes > sc->bytes) {
        size_t grow = bytes < 2 * sc->bytes ? 2 * sc->bytes : bytes;
        void *p = nullptr;
        D4J_CHECK(cudaMallocAsync(&p, grow, s->stream), "cudaMallocAsync(scratch)");
        if (sc->ptr) D4J_CHECK(cudaFreeAsync(sc->ptr, s->stream), "cudaFreeAsync(scratch)");
        sc->ptr = p;
        sc->bytes = grow;
    }
    *scratch = sc->ptr;
    return D4J_OK;
}

// CUDA 13.0 (the runtime this backend links), as cudaDriverGetVersion spells it.
constexpr int kNeededDriver = 13000;

static d4j_status init(void **state) {
#if D4J_SIM_PROFILE
    // The profiling build's kernels are compiled with FMA instructions (as nvcc contracts): refuse a CPU
    // without them rather than stop the process on an illegal instruction.
    if (!__builtin_cpu_supports("fma")) {
        g_host->set_error("the profiling simulator needs a CPU with FMA instructions (x86-64-v3); this one has none");
        return D4J_ERR_UNAVAILABLE;
    }
#endif
#ifndef D4J_CUDA_SIM
    void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (driver == nullptr) {
        g_host->set_error("no CUDA driver: libcuda.so.1 cannot be loaded (%s)", dlerror());
        return D4J_ERR_UNAVAILABLE;
    }
#endif
    // The runtime is linked statically from CUDA 13, which a driver older than
    // the r580 series cannot run: say so before any other call fails obscurely.
    int driver_version = 0;
    cudaError_t e = cudaDriverGetVersion(&driver_version);
    int count = 0;
    if (e == cudaSuccess && driver_version >= kNeededDriver) e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver || (e == cudaSuccess && driver_version < kNeededDriver)) {
        g_host->set_error("the CUDA backend needs an NVIDIA driver of the r580 series or newer (CUDA %d); this one "
                          "supports CUDA %d.%d",
                          kNeededDriver / 1000, driver_version / 1000, (driver_version % 1000) / 10);
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
    s->serial = g_next_serial.fetch_add(1);
    d4j_status st = check(cudaSetDevice(0), "cudaSetDevice");
    if (st == D4J_OK) st = check(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const size_t tickets = sizeof(unsigned long long) * kMaxGroupNormSamples;
    if (st == D4J_OK) st = check(cudaMalloc(reinterpret_cast<void **>(&s->gn_tickets), tickets), "cudaMalloc(tickets)");
    if (st == D4J_OK) st = check(cudaMemset(s->gn_tickets, 0, tickets), "cudaMemset(tickets)");
    if (st != D4J_OK) {
        if (s->gn_tickets) cudaFree(s->gn_tickets);
        if (s->stream) cudaStreamDestroy(s->stream);
        delete s;
        return st;
    }
    *state = s;
    return D4J_OK;
}

static void shutdown(void *state) {
    auto *s = static_cast<State *>(state);
    end_capture_at_shutdown(s);  // a capture left open by a dead thread
    cudaStreamSynchronize(s->stream);
    for (auto &entry : s->scratches)
        if (entry.second->ptr) cudaFree(entry.second->ptr);
    if (s->flush) cudaFree(s->flush);
    if (s->gn_tickets) cudaFree(s->gn_tickets);
    if (s->timer_start) cudaEventDestroy(s->timer_start);
    if (s->timer_stop) cudaEventDestroy(s->timer_stop);
    cudaStreamDestroy(s->stream);
    delete s;
}

static d4j_status describe(void *state, char *dst, size_t cap) {
    auto *s = static_cast<State *>(state);
    cudaDeviceProp p;
    D4J_CHECK(cudaGetDeviceProperties(&p, s->device), "cudaGetDeviceProperties");
    std::snprintf(dst, cap, "%s%s, sm_%d%d, %.1f GiB", p.name, D4J_SIM_PROFILE ? " with profiling counters" : "",
                  p.major, p.minor, p.totalGlobalMem / 1073741824.0);
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
static const char *tensor_core_variants(void *state, const char *family) {
    return static_cast<State *>(state)->variants.tensor_core_variants(family);
}
static const char *selected(void *state, const char *family) {
    return static_cast<State *>(state)->variants.selected(family);
}
static d4j_status select(void *state, const char *family, const char *variant) {
    return static_cast<State *>(state)->variants.select(g_host, D4J_CUDA_BACKEND_NAME, family, variant);
}
static d4j_status set_precision(void *state, int32_t precision) {
    static_cast<State *>(state)->variants.set_precision(precision);
    return D4J_OK;
}
static int32_t precision(void *state) { return static_cast<State *>(state)->variants.precision(); }

static d4j_status timer_begin(void *state) {
    auto *s = static_cast<State *>(state);
    if (s->timer_start == nullptr) {
        D4J_CHECK(cudaEventCreate(&s->timer_start), "cudaEventCreate");
        D4J_CHECK(cudaEventCreate(&s->timer_stop), "cudaEventCreate");
    }
    D4J_CHECK(cudaEventRecord(s->timer_start, s->stream), "cudaEventRecord");
    return D4J_OK;
}

static d4j_status timer_end(void *state, double *ms) {
    auto *s = static_cast<State *>(state);
    if (s->timer_start == nullptr) {
        g_host->set_error("d4j_timer_end without d4j_timer_begin");
        return D4J_ERR_INVALID_ARGUMENT;
    }
    D4J_CHECK(cudaEventRecord(s->timer_stop, s->stream), "cudaEventRecord");
    D4J_CHECK(cudaEventSynchronize(s->timer_stop), "cudaEventSynchronize");
    float f = 0.0f;
    D4J_CHECK(cudaEventElapsedTime(&f, s->timer_start, s->timer_stop), "cudaEventElapsedTime");
    *ms = f;
    return D4J_OK;
}

static d4j_status flush_cache(void *state) {
    auto *s = static_cast<State *>(state);
    if (s->flush == nullptr) {
        int l2 = 0;
        D4J_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, s->device), "cudaDeviceGetAttribute");
        s->flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : (8 << 20));
        D4J_CHECK(cudaMalloc(&s->flush, s->flush_bytes), "cudaMalloc(flush)");
    }
    D4J_CHECK(cudaMemsetAsync(s->flush, 0, s->flush_bytes, s->stream), "cudaMemsetAsync(flush)");
    return D4J_OK;
}

// FP32 lanes per SM by compute capability (CUDA C Programming Guide, arithmetic instruction throughput).
static int fp32_lanes_per_sm(int major, int minor) {
    if (major == 8 && minor == 0) return 64;
    if (major >= 8) return 128;
    if (major == 7) return 64;
    return 0;
}

static d4j_status device_peak(void *state, double *bw, double *flops) {
    auto *s = static_cast<State *>(state);
    int mem_khz = 0, bus_bits = 0, sm = 0, clock_khz = 0, major = 0, minor = 0;
    D4J_CHECK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, s->device), "cudaDeviceGetAttribute");
    D4J_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, s->device), "cudaDeviceGetAttribute");
    D4J_CHECK(cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, s->device), "cudaDeviceGetAttribute");
    D4J_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, s->device), "cudaDeviceGetAttribute");
    D4J_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, s->device), "cudaDeviceGetAttribute");
    D4J_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, s->device), "cudaDeviceGetAttribute");
    // double data rate: two transfers per memory clock
    *bw = 2.0 * mem_khz * 1e3 * (bus_bits / 8.0);
    // one FMA = 2 FLOP per lane per clock
    *flops = 2.0 * sm * fp32_lanes_per_sm(major, minor) * (clock_khz * 1e3);
    return D4J_OK;
}

#if D4J_SIM_PROFILE
// The profiling simulator's counters (cudasim/cudasim_profile.h): launches are
// synchronous there, so the records are complete when a call returns.
static d4j_status profile_begin(void *, int64_t max_blocks) {
    std::string why;
    d4j_status st = d4j_sim::prof::begin(max_blocks, &why);
    if (st != D4J_OK) g_host->set_error("profiling cannot start: %s", why.c_str());
    return st;
}
static d4j_status profile_read(void *, d4j_kernel_profile *records, int64_t capacity, int64_t *count) {
    return d4j_sim::prof::read(records, capacity, count);
}
static d4j_status profile_end(void *) { return d4j_sim::prof::end(); }
#endif

// Every slot filled by name, the kernels from the one list in common/backend_kernels.h.
static d4j_backend_iface make_iface() {
    d4j_backend_iface iface{};
    iface.version = D4J_BACKEND_IFACE_VERSION;
    iface.name = D4J_CUDA_BACKEND_NAME;
    D4J_BACKEND_SERVICES(D4J_FILL_SERVICE_SLOT)
    iface.free = release;
    iface.write = write;
    iface.read = read;
    D4J_BACKEND_KERNELS(D4J_FILL_KERNEL_SLOT)
    iface.capture_begin = capture_begin;
    iface.capture_end = capture_end;
    iface.graph_launch = graph_launch;
    iface.graph_free = graph_free;
#if D4J_SIM_PROFILE
    iface.profile_begin = profile_begin;
    iface.profile_read = profile_read;
    iface.profile_end = profile_end;
#endif
    return iface;
}

static const d4j_backend_iface kIface = make_iface();

}  // namespace d4j::cuda

extern "C" __attribute__((visibility("default"))) const d4j_backend_iface *d4j_backend_entry(const d4j_host_api *host) {
    d4j::cuda::g_host = host;
    return &d4j::cuda::kIface;
}
