// The CUDA simulator's runtime: launches, barriers, warp exchange, memory and
// streams on host threads. See cuda_runtime.h for the model.
#include "cuda_runtime.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace d4j_sim {

thread_local uint3 t_threadIdx;
thread_local uint3 t_blockIdx;
thread_local dim3 t_blockDim;
thread_local dim3 t_gridDim;

namespace {

// Thrown into simulated threads to unwind them when their block is aborted.
struct BlockAborted {};

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

class Workers;
Workers &workers();

// State of the block being executed. All sync primitives share one mutex:
// with it, "every live thread is waiting" is an exact deadlock test.
struct Block {
    std::mutex mu;
    std::condition_variable cv;
    const char *kernel = "";
    unsigned threads = 0;
    unsigned alive = 0;     // threads that have not returned
    unsigned blocked = 0;   // threads waiting in a barrier or warp operation
    bool aborted = false;
    std::string abort_message;

    // __syncthreads
    unsigned bar_arrived = 0;
    uint64_t bar_phase = 0;
    const char *bar_file = nullptr;
    int bar_line = 0;

    // per warp: lanes arrived, phase, mask, op name, double-buffered values
    struct Warp {
        unsigned arrived_mask = 0;
        unsigned mask = 0;
        uint64_t phase = 0;
        const char *what = nullptr;
        uint64_t values[2][32];
    };
    std::vector<Warp> warps;
    std::vector<unsigned char> exited;  // per thread
    std::vector<unsigned char> shared_mem;

    // Threads of a block that never synchronises are run one after another on
    // the launching thread (one valid CUDA schedule, and 100x cheaper than
    // waking 256 OS threads). The first barrier or warp operation switches
    // the block to concurrent mode: the threads not yet started are released
    // onto pool threads, and every later block of that kernel starts
    // concurrent. `run_thread` is the per-thread body used by both modes.
    bool concurrent = false;
    unsigned current = 0;      // sequential mode: the thread running now
    bool *kernel_syncs = nullptr;
    const std::function<void(unsigned)> *run_thread = nullptr;

    // Called with mu held at every sync primitive.
    void go_concurrent_locked();

    void abort_locked(const std::string &msg) {
        if (!aborted) {
            aborted = true;
            abort_message = msg;
        }
        cv.notify_all();
    }

    std::string where() const {
        return format("block (%u,%u,%u) of kernel %s", t_blockIdx.x, t_blockIdx.y, t_blockIdx.z, kernel);
    }

    // Called with mu held before a thread blocks: if every live thread would
    // then be waiting, nothing can ever release them.
    void check_deadlock_locked(const char *what) {
        if (blocked == alive) {
            abort_locked(format("deadlock in %s: all %u live threads wait (last at %s); a barrier or warp "
                                "operation is not reached by every thread it needs",
                                where().c_str(), alive, what));
        }
    }
};

Block *g_block = nullptr;      // the running block (one at a time: g_launch_mu)
std::mutex g_launch_mu;        // one block of one kernel at a time, process-wide
thread_local unsigned t_linear = 0;

// Persistent OS threads, one per simulated thread slot.
class Workers {
public:
    // Starts fn(id) for id in [first, first + count) on pool threads; returns at once.
    void start(unsigned first, unsigned count, const std::function<void(unsigned)> *fn) {
        grow(count);
        {
            std::lock_guard<std::mutex> lock(mu_);
            fn_ = fn;
            first_ = first;
            count_ = count;
            remaining_ = count;
            ++generation_;
        }
        cv_.notify_all();
    }

    // Waits until every started call has returned.
    void wait() {
        std::unique_lock<std::mutex> lock(mu_);
        done_.wait(lock, [&] { return remaining_ == 0; });
    }

private:
    void grow(unsigned count) {
        while (threads_.size() < count) {
            unsigned id = (unsigned)threads_.size();
            uint64_t start;
            {
                std::lock_guard<std::mutex> lock(mu_);
                start = generation_;
            }
            threads_.emplace_back([this, id, start] { loop(id, start); });
            threads_.back().detach();  // lives for the process; never joined at exit
        }
    }

    void loop(unsigned id, uint64_t seen) {
        for (;;) {
            const std::function<void(unsigned)> *fn;
            unsigned target;
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (id >= count_) continue;
                fn = fn_;
                target = first_ + id;
            }
            (*fn)(target);
            std::lock_guard<std::mutex> lock(mu_);
            if (--remaining_ == 0) done_.notify_all();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_, done_;
    const std::function<void(unsigned)> *fn_ = nullptr;
    unsigned first_ = 0, count_ = 0, remaining_ = 0;
    uint64_t generation_ = 0;
};

Workers &workers() {
    static Workers *w = new Workers();  // leaked on purpose: threads outlive static destruction
    return *w;
}

void Block::go_concurrent_locked() {
    if (concurrent) return;
    concurrent = true;
    *kernel_syncs = true;
    if (current + 1 < threads) workers().start(current + 1, threads - current - 1, run_thread);
}

// Kernels seen to synchronise: their blocks start concurrent. Guarded by g_launch_mu.
std::vector<std::pair<std::string, std::unique_ptr<bool>>> g_sync_kernels;

bool *sync_flag(const char *kernel) {
    for (auto &k : g_sync_kernels)
        if (k.first == kernel) return k.second.get();
    g_sync_kernels.emplace_back(kernel, std::make_unique<bool>(false));
    return g_sync_kernels.back().second.get();
}

}  // namespace

void launch(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t,
            const std::function<void()> &body) {
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
        grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || dynamic_smem > 227 * 1024) {
        record_error(cudaErrorInvalidConfiguration,
                     format("invalid launch configuration for kernel %s: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes "
                            "of dynamic shared memory",
                            kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z, dynamic_smem));
        return;
    }
    std::lock_guard<std::mutex> launch_lock(g_launch_mu);
    Block b;
    b.kernel = kernel;
    b.threads = (unsigned)threads;
    b.warps.resize((b.threads + 31) / 32);
    b.exited.resize(b.threads);
    b.shared_mem.resize(dynamic_smem);
    b.kernel_syncs = sync_flag(kernel);
    uint3 bidx = {0, 0, 0};
    const std::function<void(unsigned)> run_thread = [&](unsigned linear) {
        t_linear = linear;
        t_blockIdx = bidx;
        t_blockDim = block;
        t_gridDim = grid;
        t_threadIdx = {linear % block.x, (linear / block.x) % block.y, linear / (block.x * block.y)};
        try {
            body();
        } catch (const BlockAborted &) {
            // unwound because another thread found an error
        } catch (const std::exception &e) {
            std::lock_guard<std::mutex> lock(b.mu);
            b.abort_locked(format("exception in thread (%u,%u,%u) of %s: %s", t_threadIdx.x, t_threadIdx.y,
                                  t_threadIdx.z, b.where().c_str(), e.what()));
        }
        std::lock_guard<std::mutex> lock(b.mu);
        b.exited[linear] = 1;
        --b.alive;
        if (!b.aborted) {
            if (b.bar_arrived > 0) {
                b.abort_locked(format("__syncthreads at %s:%d in %s is not reached by thread (%u,%u,%u), which "
                                      "returned while %u threads wait there",
                                      b.bar_file, b.bar_line, b.where().c_str(), t_threadIdx.x, t_threadIdx.y,
                                      t_threadIdx.z, b.bar_arrived));
            }
            Block::Warp &w = b.warps[linear / 32];
            if (w.arrived_mask != 0 && ((w.mask >> (linear % 32)) & 1u)) {
                b.abort_locked(format("%s in %s: lane %u of warp %u returned without taking part (mask 0x%08x)",
                                      w.what, b.where().c_str(), linear % 32, linear / 32, w.mask));
            }
            if (b.alive > 0 && b.concurrent) b.check_deadlock_locked("thread exit");
        }
        b.cv.notify_all();
    };
    b.run_thread = &run_thread;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                b.alive = b.threads;
                b.blocked = 0;
                b.bar_arrived = 0;
                b.bar_file = nullptr;
                for (auto &w : b.warps) w.arrived_mask = 0;
                std::fill(b.exited.begin(), b.exited.end(), 0);
                // Shared memory starts as garbage on a GPU: poison it (0xFF = NaN).
                std::fill(b.shared_mem.begin(), b.shared_mem.end(), 0xFF);
                bidx = {bx, by, bz};
                g_block = &b;
                if (*b.kernel_syncs) {
                    b.concurrent = true;
                    workers().start(0, b.threads, &run_thread);
                    workers().wait();
                } else {
                    b.concurrent = false;
                    for (unsigned i = 0; i < b.threads; ++i) {
                        b.current = i;
                        run_thread(i);
                        bool conc;
                        {
                            std::lock_guard<std::mutex> lock(b.mu);
                            conc = b.concurrent;
                        }
                        if (conc) {  // thread i synchronised: the rest were started on the pool
                            if (i + 1 < b.threads) workers().wait();
                            break;
                        }
                    }
                }
                g_block = nullptr;
                if (b.aborted) {
                    record_error(cudaErrorLaunchFailure, b.abort_message);
                    return;
                }
            }
}

void syncthreads(const char *file, int line) {
    Block &b = *g_block;
    std::unique_lock<std::mutex> lock(b.mu);
    if (b.aborted) throw BlockAborted();
    b.go_concurrent_locked();
    if (b.alive != b.threads) {
        // Some thread returned without reaching this barrier: divergence.
        unsigned who = 0;
        while (who < b.threads && !b.exited[who]) ++who;
        b.abort_locked(format("__syncthreads at %s:%d in %s is not reached by thread %u, which returned before it",
                              file, line, b.where().c_str(), who));
        throw BlockAborted();
    }
    if (b.bar_arrived == 0) {
        b.bar_file = file;
        b.bar_line = line;
    } else if (b.bar_line != line || std::strcmp(b.bar_file, file) != 0) {
        b.abort_locked(format("threads of %s wait at different __syncthreads: %s:%d and %s:%d", b.where().c_str(),
                              b.bar_file, b.bar_line, file, line));
        throw BlockAborted();
    }
    if (++b.bar_arrived == b.alive) {
        b.bar_arrived = 0;
        b.blocked -= b.alive - 1;  // everyone else leaves the barrier
        ++b.bar_phase;
        b.cv.notify_all();
        return;
    }
    ++b.blocked;
    b.check_deadlock_locked("__syncthreads");
    const uint64_t phase = b.bar_phase;
    b.cv.wait(lock, [&] { return b.bar_phase != phase || b.aborted; });
    if (b.bar_phase == phase) throw BlockAborted();
}

void *dynamic_shared() { return g_block->shared_mem.empty() ? nullptr : g_block->shared_mem.data(); }

unsigned lane_id() { return t_linear % 32; }

unsigned warp_size_of_this_warp() {
    unsigned w = t_linear / 32;
    unsigned last = g_block->threads;
    return last - w * 32 < 32 ? last - w * 32 : 32;
}

void warp_exchange(unsigned mask, uint64_t value, uint64_t *all_lanes, const char *what) {
    Block &b = *g_block;
    const unsigned lane = t_linear % 32, warp = t_linear / 32;
    std::unique_lock<std::mutex> lock(b.mu);
    if (b.aborted) throw BlockAborted();
    b.go_concurrent_locked();
    Block::Warp &w = b.warps[warp];
    if (!((mask >> lane) & 1u)) {
        b.abort_locked(format("%s in %s: lane %u calls it with mask 0x%08x, which excludes itself", what,
                              b.where().c_str(), lane, mask));
        throw BlockAborted();
    }
    const unsigned present = warp_size_of_this_warp() == 32 ? 0xffffffffu : ((1u << warp_size_of_this_warp()) - 1u);
    unsigned exited_mask = 0;
    for (unsigned i = 0; i < 32 && warp * 32 + i < b.threads; ++i)
        if (b.exited[warp * 32 + i]) exited_mask |= 1u << i;
    if ((mask & ~present) != 0 || (mask & exited_mask) != 0) {
        b.abort_locked(format("%s in %s: mask 0x%08x names lanes that %s (warp %u)", what, b.where().c_str(), mask,
                              (mask & ~present) ? "do not exist" : "have returned", warp));
        throw BlockAborted();
    }
    if (w.arrived_mask == 0) {
        w.mask = mask;
        w.what = what;
    } else if (w.mask != mask || std::strcmp(w.what, what) != 0) {
        b.abort_locked(format("lanes of warp %u in %s disagree: %s with mask 0x%08x and %s with mask 0x%08x", warp,
                              b.where().c_str(), w.what, w.mask, what, mask));
        throw BlockAborted();
    }
    const unsigned buf = (unsigned)(w.phase & 1u);
    w.values[buf][lane] = value;
    w.arrived_mask |= 1u << lane;
    if (w.arrived_mask == mask) {
        w.arrived_mask = 0;
        b.blocked -= (unsigned)__builtin_popcount(mask) - 1;
        ++w.phase;
        b.cv.notify_all();
    } else {
        ++b.blocked;
        b.check_deadlock_locked(what);
        const uint64_t phase = w.phase;
        b.cv.wait(lock, [&] { return w.phase != phase || b.aborted; });
        if (w.phase == phase) throw BlockAborted();
    }
    std::memcpy(all_lanes, w.values[buf], sizeof w.values[buf]);
}

}  // namespace d4j_sim

// ---- runtime API --------------------------------------------------------------

using d4j_sim::record_error;

struct d4j_sim_stream {
    unsigned flags;
};
struct d4j_sim_event {
    double ms;
};

static cudaError_t ok() { return cudaSuccess; }

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
    return ok();
}
cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = CUDART_VERSION;
    return ok();
}
cudaError_t cudaDeviceSynchronize(void) { return ok(); }

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
        default: return "cudaErrorUnknown";
    }
}

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    if (ptr == nullptr) return cudaErrorInvalidValue;
    void *p = bytes == 0 ? nullptr : std::malloc(bytes);
    if (bytes != 0 && p == nullptr) {
        record_error(cudaErrorMemoryAllocation, d4j_sim::format("cudaMalloc of %zu bytes failed", bytes));
        return cudaErrorMemoryAllocation;
    }
    if (p) std::memset(p, 0xFF, bytes);  // device memory is not zeroed: poison it
    *ptr = p;
    return ok();
}
cudaError_t cudaFree(void *ptr) {
    std::free(ptr);
    return ok();
}
cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t) { return cudaMalloc(ptr, bytes); }
cudaError_t cudaFreeAsync(void *ptr, cudaStream_t) { return cudaFree(ptr); }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) {
    if (bytes) std::memmove(dst, src, bytes);
    return ok();
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
    if (bytes) std::memset(dst, value, bytes);
    return ok();
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t) { return cudaMemset(dst, value, bytes); }

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new d4j_sim_stream{flags};
    return ok();
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return ok();
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return ok(); }
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new d4j_sim_event{0.0};
    return ok();
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return ok();
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    e->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    return ok();
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return ok(); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(b->ms - a->ms);
    return ok();
}
