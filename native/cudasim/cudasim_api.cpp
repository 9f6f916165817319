// The simulator's runtime API besides launches and graphs: errors, device
// queries, memory, streams and events. Memory is host memory (poisoned where
// CUDA leaves it uninitialised); streams run their work at once unless they
// are capturing (cudasim_graph.cpp).
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "cudasim_internal.h"
#if D4J_SIM_PROFILE
#include "cudasim_profile.h"
#endif

using d4j_sim::ok;
using d4j_sim::prohibited;
using d4j_sim::record_error;
using d4j_sim::refuse_on_capturing;
using d4j_sim::SimNode;

namespace d4j_sim {

thread_local cudaError_t t_last_error = cudaSuccess;
thread_local std::string t_last_message;

void record_error(cudaError_t e, const std::string &msg) {
    if (t_last_error == cudaSuccess) {
        t_last_error = e;
        t_last_message = msg;
    }
}

std::string format(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

}  // namespace d4j_sim

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int) {
    switch (attr) {
        case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
        case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
        case cudaDevAttrMultiProcessorCount: *value = 1; break;
        case cudaDevAttrL2CacheSize: *value = 4 << 20; break;
        default: *value = 0; break;  // clocks and bus width: not a real device
    }
    return ok();
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return ok();
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? ok() : cudaErrorInvalidValue; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    std::memset(p, 0, sizeof *p);
    std::snprintf(p->name, sizeof p->name, "cuda-sim (CUDA source on CPU threads)");
    p->totalGlobalMem = (size_t)16 << 30;
    p->sharedMemPerBlock = 48 * 1024;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 1;
    return ok();
}
cudaError_t cudaDriverGetVersion(int *v) {
    *v = CUDART_VERSION;
#ifdef D4J_SIM_TEETH
    // The test-only simulator plays an older driver when asked, to prove the backend refuses it.
    if (const char *fake = std::getenv("D4J_SIM_DRIVER_VERSION")) *v = std::atoi(fake);
#endif
    return ok();
}
cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = CUDART_VERSION;
    return ok();
}
cudaError_t cudaDeviceSynchronize(void) {
    if (prohibited("cudaDeviceSynchronize")) return cudaErrorStreamCaptureUnsupported;
    return ok();
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = d4j_sim::t_last_error;
    d4j_sim::t_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return d4j_sim::t_last_error; }

const char *cudaGetErrorString(cudaError_t e) {
    // The simulator keeps the detailed reason of the last failure on this thread.
    if (e != cudaSuccess && !d4j_sim::t_last_message.empty()) return d4j_sim::t_last_message.c_str();
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
        case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
        case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
        case cudaErrorIllegalState: return "the resource is in an illegal state";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        default: return "unknown error";
    }
}
const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
        case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
        case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
        case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
        case cudaErrorIllegalState: return "cudaErrorIllegalState";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        default: return "cudaErrorUnknown";
    }
}

namespace {

// The live device allocations (base -> bytes), for telling global memory from
// other addresses (cudasim_pipeline.cpp checks a cp.async source with it). A
// lookup caches the allocation it found per OS thread, valid until the next
// free (g_alloc_generation).
std::mutex g_alloc_mu;
std::map<uintptr_t, size_t> g_device_allocs;
std::atomic<uint64_t> g_alloc_generation{0};

void note_device_alloc(const void *p, size_t bytes) {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    g_device_allocs[reinterpret_cast<uintptr_t>(p)] = bytes;
}
void note_device_free(const void *p) {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    if (g_device_allocs.erase(reinterpret_cast<uintptr_t>(p)) != 0) g_alloc_generation.fetch_add(1);
}

}  // namespace

bool d4j_sim::is_device_allocation(const void *p, size_t bytes) {
    struct Cached {
        uintptr_t lo = 0, hi = 0;
        uint64_t generation = ~0ull;
    };
    thread_local Cached cached;
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uint64_t gen = g_alloc_generation.load();
    if (cached.generation == gen && a >= cached.lo && a + bytes <= cached.hi) return true;
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    auto it = g_device_allocs.upper_bound(a);
    if (it == g_device_allocs.begin()) return false;
    --it;
    if (a + bytes > it->first + it->second) return false;
    cached = Cached{it->first, it->first + it->second, gen};
    return true;
}

namespace {

// The allocation of the malloc-like calls: nullptr for 0 bytes, a failure recorded under the call's name;
// device memory is poisoned (0xFF) because a GPU does not zero it.
cudaError_t host_alloc(void **ptr, size_t bytes, const char *call, bool device) {
    // 256-byte aligned, as cudaMalloc's memory is (coalescing counts depend on it); the size is
    // not rounded up, so the sanitized build still sees an access one past the end.
    void *p = nullptr;
    if (bytes != 0 && posix_memalign(&p, 256, bytes) != 0) p = nullptr;
    if (bytes != 0 && p == nullptr) {
        record_error(cudaErrorMemoryAllocation, d4j_sim::format("%s of %zu bytes failed", call, bytes));
        return cudaErrorMemoryAllocation;
    }
    if (p && device) std::memset(p, 0xFF, bytes);
    if (device) note_device_alloc(p, bytes);
#if D4J_SIM_PROFILE
    if (device) d4j_sim::prof::note_alloc(p, bytes);
#endif
    *ptr = p;
    return ok();
}

}  // namespace

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    if (ptr == nullptr) return cudaErrorInvalidValue;
    if (prohibited("cudaMalloc")) return cudaErrorStreamCaptureUnsupported;
    return host_alloc(ptr, bytes, "cudaMalloc", true);
}
cudaError_t cudaFree(void *ptr) {
    if (prohibited("cudaFree")) return cudaErrorStreamCaptureUnsupported;
#if D4J_SIM_PROFILE
    d4j_sim::prof::note_free(ptr);
#endif
    note_device_free(ptr);
    std::free(ptr);
    return ok();
}
cudaError_t cudaMallocHost(void **ptr, size_t bytes) {
    if (ptr == nullptr) return cudaErrorInvalidValue;
    if (prohibited("cudaMallocHost")) return cudaErrorStreamCaptureUnsupported;
    return host_alloc(ptr, bytes, "cudaMallocHost", false);
}
cudaError_t cudaFreeHost(void *ptr) {
    if (prohibited("cudaFreeHost")) return cudaErrorStreamCaptureUnsupported;
    std::free(ptr);
    return ok();
}
// Stream-ordered allocation nodes are not simulated: refused on a capturing stream.
cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t s) {
    if (refuse_on_capturing(s, "cudaMallocAsync (allocation nodes are not simulated)"))
        return cudaErrorStreamCaptureUnsupported;
    if (ptr == nullptr) return cudaErrorInvalidValue;
    return host_alloc(ptr, bytes, "cudaMallocAsync", true);
}
cudaError_t cudaFreeAsync(void *ptr, cudaStream_t s) {
    if (refuse_on_capturing(s, "cudaFreeAsync (allocation nodes are not simulated)"))
        return cudaErrorStreamCaptureUnsupported;
#if D4J_SIM_PROFILE
    d4j_sim::prof::note_free(ptr);
#endif
    note_device_free(ptr);
    std::free(ptr);
    return ok();
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) {
    if (prohibited("cudaMemcpy")) return cudaErrorStreamCaptureUnsupported;
    if (bytes) std::memmove(dst, src, bytes);
    return ok();
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind, cudaStream_t s) {
    SimNode n;
    n.kind = SimNode::Memcpy;
    n.dst = dst;
    n.src = src;
    n.bytes = bytes;
    return d4j_sim::enqueue_data_node(s, std::move(n));
}
cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
    if (prohibited("cudaMemset")) return cudaErrorStreamCaptureUnsupported;
    if (bytes) std::memset(dst, value, bytes);
    return ok();
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s) {
    SimNode n;
    n.kind = SimNode::Memset;
    n.dst = dst;
    n.value = value;
    n.bytes = bytes;
    return d4j_sim::enqueue_data_node(s, std::move(n));
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new d4j_sim_stream();
    (*s)->flags = flags;
    return ok();
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return ok();
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (refuse_on_capturing(s, "cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
    if (prohibited("cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
    return ok();
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new d4j_sim_event{0.0};
    return ok();
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return ok();
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (refuse_on_capturing(s, "cudaEventRecord (event nodes are not simulated)"))
        return cudaErrorStreamCaptureUnsupported;
    e->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    return ok();
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
    if (prohibited("cudaEventSynchronize")) return cudaErrorStreamCaptureUnsupported;
    return ok();
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(b->ms - a->ms);
    return ok();
}
