/*
 * The CUDA simulator's stand-in for <cuda_runtime.h>: the part of CUDA that
 * diffusion4j's kernels use, implemented on host threads, so the very same
 * .cu sources compile with g++ and run on the CPU (libd4j_cudasim.so).
 *
 * Execution model: a launch runs its blocks one after another. Within a
 * block, every warp runs on its own OS thread (warps are truly concurrent, as
 * on a GPU) and the 32 lanes of a warp are fibers on that thread, switched at
 * barriers and warp operations (lanes of a warp execute in lock-step on a GPU
 * too). __syncthreads is a real barrier across all warps; warp operations
 * exchange values among the lanes named by their mask. A barrier or warp
 * operation that cannot complete (a thread returned before a barrier others
 * wait at, threads wait at different barriers, mask lanes are missing or
 * disagree) stops the launch with a message naming the kernel and the block,
 * never a hang. Static __shared__ arrays are function statics, which is sound
 * because only one block of one kernel runs at a time in the whole process
 * (a global launch lock). x86-64 only (the fiber switch is a few lines of
 * assembly).
 *
 * Device memory is host memory, filled with 0xFF bytes (float NaN) on
 * allocation so unwritten elements show. Streams are executed in order at
 * the time of the call (every operation is synchronous).
 */
#ifndef D4J_CUDASIM_RUNTIME_H
#define D4J_CUDASIM_RUNTIME_H

#ifndef D4J_CUDA_SIM
#define D4J_CUDA_SIM 1
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#define CUDART_VERSION 13000

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};

namespace d4j_sim {
// Per OS thread: the simulated thread's coordinates.
extern thread_local uint3 t_threadIdx;
extern thread_local uint3 t_blockIdx;
extern thread_local dim3 t_blockDim;
extern thread_local dim3 t_gridDim;
}  // namespace d4j_sim

#define threadIdx (::d4j_sim::t_threadIdx)
#define blockIdx (::d4j_sim::t_blockIdx)
#define blockDim (::d4j_sim::t_blockDim)
#define gridDim (::d4j_sim::t_gridDim)
static constexpr int warpSize = 32;

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorLaunchFailure = 719,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorIllegalAddress = 700,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureUnmatched = 903,
    cudaErrorStreamCaptureWrongThread = 908,
    cudaErrorUnknown = 999
} cudaError_t;

typedef struct d4j_sim_stream *cudaStream_t;
typedef struct d4j_sim_event *cudaEvent_t;
typedef struct d4j_sim_graph *cudaGraph_t;
typedef struct d4j_sim_graph_exec *cudaGraphExec_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

#define cudaStreamNonBlocking 0x01

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int major;
    int minor;
    int multiProcessorCount;
};

enum cudaDeviceAttr {
    cudaDevAttrClockRate = 13,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrMemoryClockRate = 36,
    cudaDevAttrGlobalMemoryBusWidth = 37,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76
};

// Per-kernel attributes: the opt-in to more than 48 KiB of dynamic shared
// memory. The simulator keys a kernel by its name as D4J_LAUNCH spells it
// (#kernel), so cudaFuncSetAttribute is a macro here; the call reads the same
// as CUDA's cudaFuncSetAttribute(kernel, attr, value). A launch that needs more
// than 48 KiB without it fails as on a GPU (cudasim_limits.cpp).
enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8
};
namespace d4j_sim {
cudaError_t func_set_attribute(const char *kernel, cudaFuncAttribute attr, int value);
}
#define cudaFuncSetAttribute(kernel, attr, value) ::d4j_sim::func_set_attribute(#kernel, (attr), (value))

// The simulator reports 0 for the clock and memory attributes: it has no peak to compare with.
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);

cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

// ---- stream capture and graphs ------------------------------------------------
// While a stream is being captured, kernel launches, cudaMemcpyAsync and
// cudaMemsetAsync on it are recorded (a kernel with copies of its arguments; a
// copy with its pointers, so a graph copy reads its host source when the graph
// runs, as on a GPU) instead of executed; cudaGraphLaunch replays them in order
// as ordinary synchronous operations. Work on the stream from any thread is
// captured (capture belongs to the stream, as in CUDA). The capture mode rules
// of CUDA are enforced: a "potentially unsafe" call (cudaMalloc, cudaFree,
// cudaMallocHost, cudaFreeHost, synchronous cudaMemcpy / cudaMemset, device,
// stream and event synchronisation) from a thread that is prohibited from it
// (see cudaThreadExchangeStreamCaptureMode) fails with
// cudaErrorStreamCaptureUnsupported and invalidates that thread's captures;
// synchronising a capturing stream always does. Allocation and event nodes
// (cudaMallocAsync, cudaFreeAsync, cudaEventRecord on a capturing stream) and
// graph launches into a capture are not simulated: they fail the same way.
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
};
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
// numNodes only (nodes must be NULL): the simulator has no node handles.
typedef struct d4j_sim_graph_node *cudaGraphNode_t;
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *numNodes);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaFreeHost(void *ptr);

namespace d4j_sim {

// Runs body once per simulated thread of every block; synchronous. Errors
// (bad configuration, barrier divergence, missing warp lanes, exceptions) are
// reported by the next cudaGetLastError with a message naming the kernel.
// On a capturing stream the launch (with a copy of body, whose captures must
// therefore be values: D4J_LAUNCH's lambda copies the arguments) is recorded.
void launch(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t stream,
            const std::function<void()> &body);

// Barrier over the block's threads; site identifies the call for divergence checks.
void syncthreads(const char *file, int line);
// Dynamic shared memory of the running block.
void *dynamic_shared();
// A full hardware fence: the simulator's warps are OS threads of one process,
// so it orders a thread's global and shared writes for every other thread, as
// __threadfence does on a GPU for the whole device (and __threadfence_block,
// a weaker promise, for the block). Out of line: the profiling build's kernel
// units are compiled with -fsanitize=thread, which refuses a fence inline.
void threadfence();

// Warp exchange: every lane in mask contributes `value` and receives the
// values of all lanes; returns false (after reporting) when lanes are missing.
void warp_exchange(unsigned mask, uint64_t value, uint64_t *all_lanes, const char *what);
unsigned lane_id();
unsigned warp_size_of_this_warp();

}  // namespace d4j_sim

#define __syncthreads() ::d4j_sim::syncthreads(__FILE__, __LINE__)

// ---- warp operations --------------------------------------------------------

template <class T>
static inline uint64_t d4j_sim_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffle of a type wider than 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}

template <class T>
static inline T d4j_sim_from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

template <class T>
static inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
    uint64_t lanes[32];
    ::d4j_sim::warp_exchange(mask, d4j_sim_bits(var), lanes, "__shfl_sync");
    unsigned lane = ::d4j_sim::lane_id();
    unsigned base = lane & ~(unsigned)(width - 1);
    return d4j_sim_from_bits<T>(lanes[base + ((unsigned)src_lane & (unsigned)(width - 1))]);
}

template <class T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    uint64_t lanes[32];
    ::d4j_sim::warp_exchange(mask, d4j_sim_bits(var), lanes, "__shfl_down_sync");
    unsigned lane = ::d4j_sim::lane_id();
    unsigned in_seg = lane & (unsigned)(width - 1);
    unsigned src = in_seg + delta < (unsigned)width ? lane + delta : lane;
    return d4j_sim_from_bits<T>(lanes[src]);
}

template <class T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    uint64_t lanes[32];
    ::d4j_sim::warp_exchange(mask, d4j_sim_bits(var), lanes, "__shfl_up_sync");
    unsigned lane = ::d4j_sim::lane_id();
    unsigned in_seg = lane & (unsigned)(width - 1);
    unsigned src = in_seg >= delta ? lane - delta : lane;
    return d4j_sim_from_bits<T>(lanes[src]);
}

template <class T>
static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    uint64_t lanes[32];
    ::d4j_sim::warp_exchange(mask, d4j_sim_bits(var), lanes, "__shfl_xor_sync");
    unsigned lane = ::d4j_sim::lane_id();
    unsigned src = lane ^ (unsigned)lane_mask;
    if ((src & ~(unsigned)(width - 1)) != (lane & ~(unsigned)(width - 1))) src = lane;
    return d4j_sim_from_bits<T>(lanes[src]);
}

static inline unsigned __ballot_sync(unsigned mask, int predicate) {
    uint64_t lanes[32];
    ::d4j_sim::warp_exchange(mask, predicate ? 1u : 0u, lanes, "__ballot_sync");
    unsigned r = 0;
    for (unsigned i = 0; i < 32; ++i)
        if ((mask >> i) & 1u) r |= (lanes[i] ? 1u : 0u) << i;
    return r;
}

static inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }
static inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    uint64_t lanes[32];
    ::d4j_sim::warp_exchange(mask, 0, lanes, "__syncwarp");
}

// ---- atomics ---------------------------------------------------------------

template <class T>
static inline T d4j_sim_atomic_update(T *addr, const std::function<T(T)> &f) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomic of unsupported width");
    typedef typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type U;
    U *p = reinterpret_cast<U *>(addr);
    U old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    for (;;) {
        T o = d4j_sim_from_bits<T>(old);
        T n = f(o);
        U nb = (U)d4j_sim_bits(n);
        if (__atomic_compare_exchange_n(p, &old, nb, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return o;
    }
}

template <class T>
static inline T atomicAdd(T *addr, T v) {
    return d4j_sim_atomic_update<T>(addr, [v](T o) { return (T)(o + v); });
}
template <class T>
static inline T atomicSub(T *addr, T v) {
    return d4j_sim_atomic_update<T>(addr, [v](T o) { return (T)(o - v); });
}
template <class T>
static inline T atomicMax(T *addr, T v) {
    return d4j_sim_atomic_update<T>(addr, [v](T o) { return o > v ? o : v; });
}
template <class T>
static inline T atomicMin(T *addr, T v) {
    return d4j_sim_atomic_update<T>(addr, [v](T o) { return o < v ? o : v; });
}
template <class T>
static inline T atomicExch(T *addr, T v) {
    return d4j_sim_atomic_update<T>(addr, [v](T) { return v; });
}
template <class T>
static inline T atomicCAS(T *addr, T compare, T v) {
    return d4j_sim_atomic_update<T>(addr, [compare, v](T o) { return o == compare ? v : o; });
}

// Memory fences (d4j_sim::threadfence). The blocks of a launch run one after
// another here, so a block that waits for another block's write would hang: a
// kernel may only use the fences to publish results that a later block (or
// launch) reads, as a ticket counter does.
static inline void __threadfence() { ::d4j_sim::threadfence(); }
static inline void __threadfence_block() { ::d4j_sim::threadfence(); }

// ---- intrinsics -------------------------------------------------------------

template <class T>
static inline T __ldg(const T *p) {
    return *p;
}
static inline float __fdividef(float a, float b) { return a / b; }

// Correctly rounded arithmetic. nvcc never fuses one of these with another
// operation into an FMA, whatever -fmad says; the kernels use them where the
// CPU backend computes the same expression unfused and the results must be
// bit-identical. g++ would fuse them after inlining (a product feeding a sum
// is contracted under -ffp-contract=fast, as the profiling simulator compiles
// the kernels to match nvcc's default), so each operand and the result pass
// through an empty asm statement that claims to change the register: the
// optimiser cannot see through it, so no contraction crosses one of these
// calls, and no instruction is emitted for it.
template <class T>
static inline T d4j_sim_opaque(T v) {
    static_assert(std::is_floating_point<T>::value, "an SSE register holds a float or a double");
    asm("" : "+x"(v));
    return v;
}
static inline float __fadd_rn(float a, float b) { return d4j_sim_opaque(d4j_sim_opaque(a) + d4j_sim_opaque(b)); }
static inline float __fsub_rn(float a, float b) { return d4j_sim_opaque(d4j_sim_opaque(a) - d4j_sim_opaque(b)); }
static inline float __fmul_rn(float a, float b) { return d4j_sim_opaque(d4j_sim_opaque(a) * d4j_sim_opaque(b)); }
static inline float __fdiv_rn(float a, float b) { return d4j_sim_opaque(d4j_sim_opaque(a) / d4j_sim_opaque(b)); }
static inline float __fsqrt_rn(float a) { return d4j_sim_opaque(std::sqrt(d4j_sim_opaque(a))); }
// One rounding of a * b + c (std::fma is exact whether or not the target has an FMA instruction).
static inline float __fmaf_rn(float a, float b, float c) {
    return d4j_sim_opaque(std::fma(d4j_sim_opaque(a), d4j_sim_opaque(b), d4j_sim_opaque(c)));
}
static inline double __dadd_rn(double a, double b) { return d4j_sim_opaque(d4j_sim_opaque(a) + d4j_sim_opaque(b)); }
static inline double __dsub_rn(double a, double b) { return d4j_sim_opaque(d4j_sim_opaque(a) - d4j_sim_opaque(b)); }
static inline double __dmul_rn(double a, double b) { return d4j_sim_opaque(d4j_sim_opaque(a) * d4j_sim_opaque(b)); }
static inline double __fma_rn(double a, double b, double c) {
    return d4j_sim_opaque(std::fma(d4j_sim_opaque(a), d4j_sim_opaque(b), d4j_sim_opaque(c)));
}
static inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
static inline float __saturatef(float a) { return a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a); }
static inline unsigned __float_as_uint(float f) { return (unsigned)d4j_sim_bits(f); }
static inline float __uint_as_float(unsigned u) { return d4j_sim_from_bits<float>(u); }
static inline int __float_as_int(float f) { return (int)d4j_sim_bits(f); }
static inline float __int_as_float(int i) { return d4j_sim_from_bits<float>((uint32_t)i); }

#endif
