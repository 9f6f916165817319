// Shared by every .cu file of the CUDA backend: error handling, the backend
// state, and the one launch macro through which every kernel is started (so
// the same sources can later be built against a CUDA simulator).
#ifndef D4J_CUDA_COMMON_H
#define D4J_CUDA_COMMON_H

// In the simulator build (D4J_CUDA_SIM, compiled by g++ with -I native/cudasim)
// this is native/cudasim/cuda_runtime.h.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "../common/backend_iface.h"
#include "../common/variants.h"

namespace d4j::cuda {

extern const d4j_host_api *g_host;

// The most samples one GroupNorm call takes (the sample is gridDim.z).
constexpr int32_t kMaxGroupNormSamples = 65535;

// A calling thread's per-call scratch on one backend (see ensure_scratch).
struct Scratch {
    void *ptr = nullptr;
    size_t bytes = 0;
};

// Concurrency: the front lets several threads call kernels on one backend at
// once (its D4J_USE_BACKEND shared lock only keeps d4j_backend_close out). All
// of them enqueue on the one stream below, so device work stays in one order
// and a buffer written by one call is complete for any later call and for
// read/free, whichever thread makes it. What must not be shared is the
// per-call scratch: a call copies coefficients into it and launches kernels
// that read it later, so a second thread's copy would overwrite the first's
// before its kernels run (or free it when growing). Each calling thread
// therefore has its own scratch per backend. Enqueue order on the stream keeps
// a thread's successive uses of its scratch apart, exactly as for a single
// thread, so no lock is held around the copies and launches; the only lock is
// taken to find a thread's scratch the first time (per thread and backend, then
// cached in a thread_local). A scratch lives until shutdown: one per thread that
// ever called a scratch-using kernel on the backend (threads of a pool, or a
// new thread reusing a dead one's id, reuse it).
// Rejected: a per-backend mutex held from the copy to the launch (it would
// serialise all host threads on every kernel call and, where the runtime stages
// a pageable copy by waiting for the stream, make every other thread wait for
// the GPU); per-thread streams (a buffer made on one thread's stream and used
// on another's would need cross-stream events everywhere, e.g. parameters
// loaded on one thread and sampled on many).
struct State {
    int device = 0;
    cudaStream_t stream = nullptr;
    cudaEvent_t timer_start = nullptr, timer_stop = nullptr;
    void *flush = nullptr;  // 2 x L2 bytes, written by flush_cache
    size_t flush_bytes = 0;
    uint64_t serial = 0;      // unique per init in this process: keys the thread_local scratch cache
    std::mutex scratch_mu;    // guards scratches (first lookup per thread, shutdown)
    std::unordered_map<std::thread::id, std::unique_ptr<Scratch>> scratches;
    VariantTable variants = make_variants();
    // The capture in progress (graph.cu), set by the capturing thread between
    // capture_begin and capture_end; the front keeps other threads' calls on
    // this backend waiting meanwhile, so only that thread reads it.
    std::atomic<struct GraphCapture *> capture{nullptr};
    // GroupNorm statistics (kernels_norm.cu): one ticket counter word per
    // sample, allocated and zeroed at init (a captured graph's launches point
    // at it too), and the epoch each launch stamps its tickets with.
    unsigned long long *gn_tickets = nullptr;
    std::atomic<uint32_t> gn_epoch{0};

    static VariantTable make_variants() {
        VariantTable t;
        t.add("rng", {"v1"});
        t.add("add_noise", {"v1"});
        // v1: shared-memory tree reduction; v2: warp shuffles, one barrier.
#ifdef D4J_SIM_TEETH
        // Deliberately broken copies, built only into the simulator test
        // libraries, to prove the harness catches such bugs.
        t.add("diffusion_loss", {"v1", "v2", "broken_divergent_sync", "broken_missing_sync", "broken_off_by_one"});
#else
        t.add("diffusion_loss", {"v1", "v2"});
#endif
        t.add("reverse_step", {"v1"});
        t.add("timestep_embedding", {"v1"});
        // v1: shared-memory tiled implicit GEMM on the FP32 cores; v2, v3, v4:
        // the same GEMMs on tensor cores (TF32 or BF16 inputs, FP32
        // accumulation) with 128 x 128 tiles where the problem fills the GPU
        // with them (v5's at TF32, v4's at BF16), else 64 x 64 (v2), always
        // 64 x 64 (v3), always 128 x 128 register-staged (v4); v5: TF32
        // operands staged by cp.async on 128 x 128 tiles of 4 warps (at BF16,
        // v4's kernels: a cp.async copy cannot convert to BF16)
        t.add("conv2d", {"v1"}, {"v2", "v3", "v4", "v5"});
        t.add("group_norm", {"v1"});
        t.add("silu", {"v1"});
#ifdef D4J_SIM_TEETH
        // a kernel using more registers than its launch leaves room for
        t.add("residual_add", {"v1", "broken_too_many_registers"});
#else
        t.add("residual_add", {"v1"});
#endif
        // linear v1: 64x64 shared-memory tiles, 4x4 outputs per thread;
        // v2: one thread per output reading global memory (baseline);
        // v3: tensor cores (TF32 or BF16 inputs, FP32 accumulation).
#ifdef D4J_SIM_TEETH
        // A second tensor-core variant that runs v1's kernel (gemm launches v1
        // for every index but v2's, and only "v3" goes to the tensor cores), so
        // the tests can tell the first tensor-core variant from the others.
        t.add("linear", {"v1", "v2"}, {"v3", "tensor_core_stub"});
#else
        t.add("linear", {"v1", "v2"}, {"v3"});
#endif
        // attention v1: a block per query row, scores in shared memory, FP32;
        // v2: FlashAttention-2 tiles on tensor cores (TF32 or BF16 inputs)
#ifdef D4J_SIM_TEETH
        // over 48 KiB of dynamic shared memory without and with the kernel's opt-in
        t.add("attention", {"v1", "broken_smem_not_allowed", "smem_allowed"}, {"v2"});
#else
        t.add("attention", {"v1"}, {"v2"});
#endif
        t.add("grad_norm", {"v1"});
        t.add("adamw", {"v1"});
        t.add("ema", {"v1"});
        t.add("concat", {"v1"});
        t.add("dropout", {"v1"});
        t.add("sampler_step", {"v1"});
        t.add("x0_threshold", {"v1"});  // per-sample radix select, one block per sample
        t.add("vlb", {"v1"});  // float64 chunk partials, fixed-order tree, per-sample second pass
        t.add("class_embedding", {"v1"});
        t.add("guidance", {"v1"});
        t.add("renoise", {"v1"});

        return t;
    }
};

// The precision the matrix families compute in (d4j_backend_set_precision), for
// a kernel launcher to read at launch time: D4J_PRECISION_FP32, or TF32 / BF16,
// the format a tensor-core variant rounds the inputs of its products to before
// accumulating in FP32. Whether a family runs a tensor-core variant at all is
// its selection: s->variants.tensor_core("conv2d") (a SIMT variant computes FP32
// at every precision).
inline d4j_precision matrix_precision(const State *s) { return (d4j_precision)s->variants.precision(); }

// Turns a CUDA error into a status plus message naming the call site.
inline d4j_status check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return D4J_OK;
    g_host->set_error("CUDA error in %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return e == cudaErrorMemoryAllocation ? D4J_ERR_OUT_OF_MEMORY : D4J_ERR_DEVICE;
}

// The calling thread's scratch on this backend, grown to at least `bytes`
// (stream-ordered: the old one is freed after queued work that may still read
// it), into *scratch. Valid for this thread's launches of the current call.
d4j_status ensure_scratch(State *s, size_t bytes, void **scratch);

// Graph capture (graph.cu). While the calling thread captures on s, every
// ensure_scratch call returns a fresh device region owned by the graph (no
// later recorded call writes it, and it lives as long as the graph), and
// per-call host metadata must be copied with upload_host, which snapshots the
// source into host memory the graph owns (pinned on a GPU) before recording the
// copy: a recorded copy reads its source every time the graph runs.
struct GraphCapture;
inline bool capturing(const State *s) { return s->capture.load(std::memory_order_relaxed) != nullptr; }
d4j_status capture_scratch(State *s, size_t bytes, void **scratch);
// Host -> device copy of per-call metadata (coefficient records, timesteps)
// into scratch; outside a capture one cudaMemcpyAsync (which stages pageable
// memory before it returns, so src may go away at once).
d4j_status upload_host(State *s, void *dst, const void *src, size_t bytes, const char *what);
d4j_status capture_begin(void *state);
d4j_status capture_end(void *state, int32_t discard, void **graph, int64_t *nodes, int64_t *device_bytes,
                       int64_t *host_bytes);
d4j_status graph_launch(void *state, void *graph);
d4j_status graph_free(void *state, void *graph);
void end_capture_at_shutdown(State *s);

#define D4J_CHECK(expr, what)                            \
    do {                                                 \
        d4j_status st_ = ::d4j::cuda::check((expr), what); \
        if (st_ != D4J_OK) return st_;                   \
    } while (0)

// Every launch goes through here, so the same source builds for the GPU and
// for the simulator (which runs the kernel body once per simulated thread).
// The simulator evaluates and copies the arguments at the launch (a tuple the
// closure owns), as a GPU launch does, so a launch recorded into a graph
// (stream capture) replays with the values it was launched with, even when an
// argument was read through a host pointer (e.g. *coef) that is gone by then.
// The profiling build of the simulator (libd4j_cudasim_prof.so) defines it as 1.
#ifndef D4J_SIM_PROFILE
#define D4J_SIM_PROFILE 0
#endif

#ifdef D4J_CUDA_SIM
#define D4J_LAUNCH(kernel, grid, block, smem, stream, ...) \
    ::d4j_sim::launch(#kernel, dim3(grid), dim3(block), (smem), (stream),                                   \
                      [d4j_args_ = std::make_tuple(__VA_ARGS__)]() {                                            \
                          std::apply([](const auto &...a) { kernel(a...); }, d4j_args_);                        \
                      })
// Dynamic shared memory: `extern __shared__ T name[]` on the device.
#define D4J_DYNAMIC_SHARED(T, name) T *name = static_cast<T *>(::d4j_sim::dynamic_shared())
#else
#define D4J_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define D4J_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// Full unrolling of a loop over fragment or register arrays, so their indices
// are constants and the arrays stay in registers (nvcc's #pragma unroll; the
// simulator's g++ needs no hint for correctness and knows no such pragma).
// D4J_NO_UNROLL keeps a loop rolled where its unrolled body would need more
// registers than the kernel has left.
#ifdef D4J_CUDA_SIM
#define D4J_UNROLL
#define D4J_NO_UNROLL
#else
#define D4J_UNROLL _Pragma("unroll")
#define D4J_NO_UNROLL _Pragma("unroll 1")
#endif

// The backend's name as reported to the front.
#ifdef D4J_CUDA_SIM
#define D4J_CUDA_BACKEND_NAME "cuda-sim"
#else
#define D4J_CUDA_BACKEND_NAME "cuda"
#endif

inline d4j_status launched(const char *kernel) { return check(cudaGetLastError(), kernel); }

// A launch with more than 48 KiB of dynamic shared memory fails unless the
// kernel was first allowed that much; this allows it when a launch needs it
// (the simulator refuses such a launch without it, as a GPU does).
constexpr size_t kDefaultDynamicSmem = 48 * 1024;
#define D4J_ALLOW_DYNAMIC_SMEM(kernel, bytes)                                                                  \
    do {                                                                                                       \
        if ((size_t)(bytes) > ::d4j::cuda::kDefaultDynamicSmem)                                                \
            D4J_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(bytes)), \
                      "cudaFuncSetAttribute(" #kernel ")");                                                    \
    } while (0)

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// Fixed-order tree reduction of one value per thread in shared memory (kThreads
// threads, each having stored sums[threadIdx.x] followed by a __syncthreads);
// the block's sum ends in sums[0]. The fixed order keeps results deterministic.
template <int kThreads, class T>
__device__ __forceinline__ void block_tree_sum(T *sums) {
    for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) sums[threadIdx.x] += sums[threadIdx.x + stride];
        __syncthreads();
    }
}

// gridDim.y carries the sample index in the per-sample kernels, which caps a call's batch.
inline d4j_status check_grid_batch(int32_t batch) {
    if (batch <= 65535) return D4J_OK;
    g_host->set_error("the CUDA backend takes at most 65535 samples per call, got %d", batch);
    return D4J_ERR_INVALID_ARGUMENT;
}

}  // namespace d4j::cuda
#endif
