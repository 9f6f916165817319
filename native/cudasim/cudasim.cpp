// The CUDA simulator's execution of kernels on host threads: launches, fibers,
// warp scheduling, barriers and warp exchange. See cuda_runtime.h for the
// model; stream capture and graphs are in cudasim_graph.cpp, the rest of the
// runtime API (errors, device queries, memory, streams, events) in
// cudasim_api.cpp, what they share in cudasim_internal.h.
//
// Execution of one block: each warp runs on its own OS thread (warps are
// truly concurrent, as on a GPU), and the lanes of a warp are fibers on that
// thread, switched by a small scheduler at barriers and warp operations
// (lanes of a warp are in lock-step on a GPU too). A barrier costs a fiber
// switch per thread plus one OS-level rendezvous per warp, instead of a
// kernel context switch per thread (one OS thread per simulated thread).
#include "cudasim_internal.h"
#if D4J_SIM_PROFILE
#include "cudasim_profile.h"
#endif

#include <dlfcn.h>
#include <link.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define D4J_SIM_ASAN 1
#endif

// Fiber context switch (x86-64 System V): saves the callee-saved registers,
// MXCSR and the x87 control word on the current stack, stores the stack
// pointer in *save, loads `next` and restores the same from there.
extern "C" void d4j_sim_switch(void **save, void *next);
asm(R"(
    .text
    .p2align 4
    .globl d4j_sim_switch
    .hidden d4j_sim_switch
    .type d4j_sim_switch, @function
d4j_sim_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size d4j_sim_switch, .-d4j_sim_switch
)");

namespace d4j_sim {

thread_local uint3 t_threadIdx;
thread_local uint3 t_blockIdx;
thread_local dim3 t_blockDim;
thread_local dim3 t_gridDim;

namespace {

// Thrown into simulated threads to unwind them when their block is aborted.
struct BlockAborted {};

void futex_wait(std::atomic<uint32_t> *word, uint32_t expected) {
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t> *word) {
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

enum class LaneState { Ready, AtBarrier, AtWarpOp, Done };

struct Lane {
    void *sp = nullptr;         // saved stack pointer while switched out
    char *stack = nullptr;      // mmap'd stack (with a guard page below)
    size_t stack_size = 0;
    LaneState state = LaneState::Done;
    unsigned linear = 0;        // thread index within the block
    uint3 tid{0, 0, 0};
    const char *bar_file = nullptr;
    int bar_line = 0;
    unsigned op_mask = 0;
    const char *op_what = nullptr;
};

struct Block;

// One warp's scheduler, running on one OS thread.
struct WarpRunner {
    Lane lanes[32];
    unsigned count = 0;         // lanes that exist in this warp
    unsigned first = 0;         // linear index of lane 0
    void *sched_sp = nullptr;   // the scheduler's saved stack pointer
    int current = -1;           // lane running now
    Block *block = nullptr;
    // warp exchange values, double-buffered by phase parity
    uint64_t values[2][32];
    uint64_t phase = 0;
    unsigned arrived = 0;
    unsigned exited = 0;        // mask of lanes that returned
#if D4J_SIM_ASAN
    const void *sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
#endif
};

thread_local WarpRunner *t_warp = nullptr;

constexpr size_t kLaneStack = 256 * 1024;  // generous: ASan frames are large

struct Block {
    const char *kernel = "";
    unsigned threads = 0;
    unsigned warps = 0;
    dim3 grid, block;
    uint3 idx{0, 0, 0};
    bool profiled = false;         // the profiling build counts this block
    const std::function<void()> *body = nullptr;
    std::vector<unsigned char> shared_mem;

    std::mutex mu;                 // guards the fields below
    bool aborted = false;
    std::string abort_message;
    std::atomic<bool> aborted_flag{false};
    // block barrier across warps
    unsigned bar_warps = 0;        // warps arrived at the barrier
    const char *bar_file = nullptr;
    int bar_line = 0;
    std::atomic<uint32_t> bar_seq{0};
    unsigned exited_threads = 0;

    std::string where() const {
        return format("block (%u,%u,%u) of kernel %s", idx.x, idx.y, idx.z, kernel);
    }

    void abort(const std::string &msg) {
        std::lock_guard<std::mutex> lock(mu);
        if (!aborted) {
            aborted = true;
            abort_message = msg;
            aborted_flag.store(true, std::memory_order_release);
        }
        bar_seq.fetch_add(1, std::memory_order_release);
        futex_wake_all(&bar_seq);
    }

    bool is_aborted() const { return aborted_flag.load(std::memory_order_acquire); }
};

Block *g_block = nullptr;   // the running block (one at a time: g_launch_mu)
std::atomic<uint64_t> g_launch_serial{0};
std::mutex g_launch_mu;     // one block of one kernel at a time, process-wide

// ---- fibers -----------------------------------------------------------------

void switch_to_scheduler(WarpRunner &w) {
    Lane &l = w.lanes[w.current];
#if D4J_SIM_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, w.sched_stack_bottom, w.sched_stack_size);
    d4j_sim_switch(&l.sp, w.sched_sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    d4j_sim_switch(&l.sp, w.sched_sp);
#endif
    // resumed by the scheduler: restore this lane's coordinates
    t_threadIdx = l.tid;
}

void lane_main() {
#if D4J_SIM_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &t_warp->sched_stack_bottom, &t_warp->sched_stack_size);
#endif
    WarpRunner &w = *t_warp;
    Block &b = *w.block;
    try {
        pipeline_lane_begin();
        (*b.body)();
        pipeline_lane_end();
    } catch (const BlockAborted &) {
        // unwound because another thread found an error
    } catch (const std::exception &e) {
        b.abort(format("exception in thread (%u,%u,%u) of %s: %s", t_threadIdx.x, t_threadIdx.y, t_threadIdx.z,
                       b.where().c_str(), e.what()));
    }
    Lane &l = w.lanes[w.current];
    l.state = LaneState::Done;
    w.exited |= 1u << (unsigned)w.current;
    {
        std::lock_guard<std::mutex> lock(b.mu);
        ++b.exited_threads;
    }
    // never resumed: the scheduler reuses the stack for the next block
    for (;;) switch_to_scheduler(w);
}

// Prepares a lane's stack so the first switch into it starts lane_main.
void prime(Lane &l) {
    if (l.stack == nullptr) {
        void *p = mmap(nullptr, kLaneStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        mprotect(p, 4096, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
        l.stack = static_cast<char *>(p);
        l.stack_size = kLaneStack;
    }
#if D4J_SIM_ASAN
    // A finished lane never unwinds its last frames: clear their redzones before reuse.
    __asan_unpoison_memory_region(l.stack + 4096, l.stack_size - 4096);
#endif
    uintptr_t top = reinterpret_cast<uintptr_t>(l.stack + l.stack_size) & ~(uintptr_t)15;
    uint64_t *sp = reinterpret_cast<uint64_t *>(top);
    *--sp = 0;                                          // padding: lane_main entry sees rsp % 16 == 8
    *--sp = reinterpret_cast<uint64_t>(&lane_main);     // return address of the first switch
    for (int r = 0; r < 6; ++r) *--sp = 0;              // rbp rbx r12 r13 r14 r15
    uint32_t mxcsr = 0;
    uint16_t fpucw = 0;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    *--sp = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    l.sp = sp;
}

void run_lane(WarpRunner &w, unsigned i) {
    w.current = (int)i;
    t_threadIdx = w.lanes[i].tid;
#if D4J_SIM_PROFILE
    prof::t_lane = w.block->profiled ? prof::lane_log(w.first / 32, i) : nullptr;
#endif
#if D4J_SIM_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, w.lanes[i].stack, w.lanes[i].stack_size);
    d4j_sim_switch(&w.sched_sp, w.lanes[i].sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    d4j_sim_switch(&w.sched_sp, w.lanes[i].sp);
#endif
#if D4J_SIM_PROFILE
    prof::t_lane = nullptr;
#endif
    w.current = -1;
}

// The block barrier across warps: the warp's OS thread waits here while all
// its live lanes are at a __syncthreads. Returns false when the block aborted.
bool warp_arrives_at_barrier(Block &b, const Lane &sample) {
    std::unique_lock<std::mutex> lock(b.mu);
    if (b.aborted) return false;
    if (b.bar_warps == 0) {
        b.bar_file = sample.bar_file;
        b.bar_line = sample.bar_line;
    } else if (b.bar_line != sample.bar_line || std::strcmp(b.bar_file, sample.bar_file) != 0) {
        lock.unlock();
        b.abort(format("threads of %s wait at different __syncthreads: %s:%d and %s:%d", b.where().c_str(), b.bar_file,
                       b.bar_line, sample.bar_file, sample.bar_line));
        return false;
    }
    if (b.exited_threads != 0) {
        lock.unlock();
        b.abort(format("__syncthreads at %s:%d in %s is not reached by %u thread(s), which returned before it",
                       sample.bar_file, sample.bar_line, b.where().c_str(), b.exited_threads));
        return false;
    }
    const uint32_t seq = b.bar_seq.load();
    if (++b.bar_warps == b.warps) {
        b.bar_warps = 0;
        b.bar_seq.fetch_add(1, std::memory_order_release);
        futex_wake_all(&b.bar_seq);
        return true;
    }
    lock.unlock();
    while (b.bar_seq.load(std::memory_order_acquire) == seq && !b.is_aborted()) futex_wait(&b.bar_seq, seq);
    return !b.is_aborted();
}

// Runs one warp of the running block to completion on this OS thread.
void run_warp(Block &b, unsigned warp, WarpRunner &w) {
    t_warp = &w;
    t_blockIdx = b.idx;
    t_blockDim = b.block;
    t_gridDim = b.grid;
    w.block = &b;
    w.first = warp * 32;
    w.count = std::min(32u, b.threads - w.first);
    w.phase = 0;
    w.arrived = 0;
    w.exited = 0;
    for (unsigned i = 0; i < w.count; ++i) {
        Lane &l = w.lanes[i];
        l.linear = w.first + i;
        l.tid = {l.linear % b.block.x, (l.linear / b.block.x) % b.block.y, l.linear / (b.block.x * b.block.y)};
        l.state = LaneState::Ready;
        prime(l);
    }
    for (;;) {
        bool any_ready = false;
        for (unsigned i = 0; i < w.count; ++i) {
            if (w.lanes[i].state == LaneState::Ready) {
                any_ready = true;
                run_lane(w, i);
            }
        }
        if (any_ready) continue;
#if D4J_SIM_PROFILE
        // every lane has stopped: its accesses since the last stop are warp instructions now
        if (b.profiled) prof::warp_flush(warp, w.count);
#endif
        unsigned live = 0, at_bar = 0, at_op = 0;
        for (unsigned i = 0; i < w.count; ++i) {
            LaneState s = w.lanes[i].state;
            if (s != LaneState::Done) ++live;
            if (s == LaneState::AtBarrier) ++at_bar;
            if (s == LaneState::AtWarpOp) ++at_op;
        }
        if (live == 0) break;
        bool release = false;
        if (b.is_aborted()) {
            release = true;  // resume everyone so they unwind
        } else if (at_bar == live && at_op == 0) {
            // every live lane of the warp is at a barrier: check they agree, then rendezvous
            const Lane *first = nullptr;
            for (unsigned i = 0; i < w.count && !b.is_aborted(); ++i) {
                const Lane &l = w.lanes[i];
                if (l.state != LaneState::AtBarrier) continue;
                if (first == nullptr) {
                    first = &l;
                } else if (l.bar_line != first->bar_line || std::strcmp(l.bar_file, first->bar_file) != 0) {
                    b.abort(format("threads of %s wait at different __syncthreads: %s:%d and %s:%d",
                                   b.where().c_str(), first->bar_file, first->bar_line, l.bar_file, l.bar_line));
                }
            }
#if D4J_SIM_PROFILE
            if (b.profiled) prof::warp_barrier(warp);
#endif
            if (!b.is_aborted()) warp_arrives_at_barrier(b, *first);
            release = true;
        } else {
            // lanes wait on each other in ways that cannot resolve
            std::string detail;
            for (unsigned i = 0; i < w.count; ++i) {
                const Lane &l = w.lanes[i];
                if (l.state == LaneState::AtBarrier) {
                    detail = format("lane %u waits at __syncthreads %s:%d", i, l.bar_file, l.bar_line);
                } else if (l.state == LaneState::AtWarpOp) {
                    detail = format("lane %u waits in %s (mask 0x%08x)", i, l.op_what, l.op_mask);
                    break;
                }
            }
            b.abort(format("deadlock in warp %u of %s: %s while other lanes returned or wait elsewhere", warp,
                           b.where().c_str(), detail.c_str()));
            release = true;
        }
        if (release) {
            for (unsigned i = 0; i < w.count; ++i) {
                LaneState &s = w.lanes[i].state;
                if (s == LaneState::AtBarrier || s == LaneState::AtWarpOp) s = LaneState::Ready;
            }
        }
    }
    {
        // A warp that returns while others wait at a barrier leaves them stranded.
        std::unique_lock<std::mutex> lock(b.mu);
        if (b.bar_warps > 0 && !b.aborted) {
            const char *file = b.bar_file;
            int line = b.bar_line;
            lock.unlock();
            b.abort(format("__syncthreads at %s:%d in %s is not reached by warp %u, whose threads returned", file,
                           line, b.where().c_str(), warp));
        }
    }
    t_warp = nullptr;
}

// Persistent OS threads, one per warp slot.
class Workers {
public:
    void run(unsigned count, const std::function<void(unsigned)> &fn) {
        grow(count);
        {
            std::lock_guard<std::mutex> lock(mu_);
            fn_ = &fn;
            count_ = count;
            remaining_ = count;
            ++generation_;
        }
        cv_.notify_all();
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
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (id >= count_) continue;
                fn = fn_;
            }
            (*fn)(id);
            std::lock_guard<std::mutex> lock(mu_);
            if (--remaining_ == 0) done_.notify_all();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_, done_;
    const std::function<void(unsigned)> *fn_ = nullptr;
    unsigned count_ = 0, remaining_ = 0;
    uint64_t generation_ = 0;
};

Workers &workers() {
    static Workers *w = new Workers();  // leaked on purpose: threads outlive static destruction
    return *w;
}

// One scheduler (with its lane stacks) per warp slot, reused by every block.
std::vector<std::unique_ptr<WarpRunner>> g_runners;

}  // namespace

// Runs a launch now (a replayed graph node too).
void run_launch(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem, const std::function<void()> &body) {
    if (!valid_config(kernel, grid, block, dynamic_smem)) return;
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    std::lock_guard<std::mutex> launch_lock(g_launch_mu);
    g_launch_serial.fetch_add(1, std::memory_order_relaxed);
    Block b;
    b.kernel = kernel;
    b.threads = (unsigned)threads;
    b.warps = (b.threads + 31) / 32;
    b.grid = grid;
    b.block = block;
    b.body = &body;
    b.shared_mem.resize(dynamic_smem);
    while (g_runners.size() < b.warps) g_runners.push_back(std::make_unique<WarpRunner>());
    const std::function<void(unsigned)> warp_fn = [&](unsigned warp) { run_warp(b, warp, *g_runners[warp]); };
#if D4J_SIM_PROFILE
    const bool profiling = prof::launch_begin(kernel, grid, block, dynamic_smem);
#endif
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
#if D4J_SIM_PROFILE
                // a representative subset of the blocks when the grid is large
                if (profiling && !prof::block_selected(((uint64_t)bz * grid.y + by) * grid.x + bx)) continue;
                b.profiled = profiling;
                if (profiling) prof::block_begin(b.shared_mem.data(), b.shared_mem.size(), b.warps);
#endif
                b.idx = {bx, by, bz};
                b.bar_warps = 0;
                b.exited_threads = 0;
                // Shared memory starts as garbage on a GPU: poison it (0xFF = NaN).
                std::fill(b.shared_mem.begin(), b.shared_mem.end(), 0xFF);
                g_block = &b;
                if (b.warps == 1) {
                    warp_fn(0);  // no other warp to run beside it: stay on this thread
                } else {
                    workers().run(b.warps, warp_fn);
                }
                g_block = nullptr;
                if (b.is_aborted()) {
                    record_error(cudaErrorLaunchFailure, b.abort_message);
                    return;
                }
#if D4J_SIM_PROFILE
                if (profiling) prof::block_end();
#endif
            }
#if D4J_SIM_PROFILE
    if (profiling) prof::launch_end();
#endif
}

void launch(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t stream,
            const std::function<void()> &body) {
    if (capture_launch(stream, kernel, grid, block, dynamic_smem, body)) return;
    run_launch(kernel, grid, block, dynamic_smem, body);
}

void syncthreads(const char *file, int line) {
    WarpRunner &w = *t_warp;
    Block &b = *w.block;
    if (b.is_aborted()) throw BlockAborted();
    Lane &l = w.lanes[w.current];
    l.state = LaneState::AtBarrier;
    l.bar_file = file;
    l.bar_line = line;
    switch_to_scheduler(w);
    if (b.is_aborted()) throw BlockAborted();
}

uint64_t launch_serial() { return g_launch_serial.load(std::memory_order_relaxed); }

void kernel_fault(const std::string &msg) {
    Block &b = *t_warp->block;
    b.abort(format("%s in %s", msg.c_str(), b.where().c_str()));
    throw BlockAborted();
}

namespace {
// The writable PT_LOAD segments of the object that holds this code (and the
// kernels compiled with it): where static __shared__ arrays live.
struct Segment {
    uintptr_t lo, hi;
};
std::vector<Segment> writable_segments_of_this_object() {
    std::vector<Segment> out;
    struct Ctx {
        uintptr_t self;
        std::vector<Segment> *out;
    } ctx{reinterpret_cast<uintptr_t>(&writable_segments_of_this_object), &out};
    dl_iterate_phdr(
        [](struct dl_phdr_info *pi, size_t, void *data) -> int {
            Ctx &c = *static_cast<Ctx *>(data);
            bool mine = false;
            for (int i = 0; i < pi->dlpi_phnum && !mine; ++i) {
                const ElfW(Phdr) &ph = pi->dlpi_phdr[i];
                const uintptr_t lo = pi->dlpi_addr + ph.p_vaddr;
                mine = ph.p_type == PT_LOAD && c.self >= lo && c.self < lo + ph.p_memsz;
            }
            if (!mine) return 0;
            for (int i = 0; i < pi->dlpi_phnum; ++i) {
                const ElfW(Phdr) &ph = pi->dlpi_phdr[i];
                if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W))
                    c.out->push_back({pi->dlpi_addr + ph.p_vaddr, pi->dlpi_addr + ph.p_vaddr + ph.p_memsz});
            }
            return 1;
        },
        &ctx);
    return out;
}
}  // namespace

bool is_shared_address(const void *p, size_t bytes) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (g_block != nullptr && !g_block->shared_mem.empty()) {
        const uintptr_t lo = reinterpret_cast<uintptr_t>(g_block->shared_mem.data());
        if (a >= lo && a + bytes <= lo + g_block->shared_mem.size()) return true;
    }
    static const std::vector<Segment> statics = writable_segments_of_this_object();
    for (const Segment &s : statics)
        if (a >= s.lo && a + bytes <= s.hi) return true;
    return false;
}

void *dynamic_shared() { return g_block->shared_mem.empty() ? nullptr : g_block->shared_mem.data(); }

void threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

unsigned lane_id() { return (unsigned)t_warp->current; }

unsigned warp_size_of_this_warp() { return t_warp->count; }

void warp_exchange(unsigned mask, uint64_t value, uint64_t *all_lanes, const char *what) {
    WarpRunner &w = *t_warp;
    Block &b = *w.block;
    if (b.is_aborted()) throw BlockAborted();
    const unsigned lane = (unsigned)w.current;
    const unsigned present = w.count == 32 ? 0xffffffffu : ((1u << w.count) - 1u);
    if (!((mask >> lane) & 1u)) {
        b.abort(format("%s in %s: lane %u calls it with mask 0x%08x, which excludes itself", what, b.where().c_str(),
                       lane, mask));
        throw BlockAborted();
    }
    if ((mask & ~present) != 0 || (mask & w.exited) != 0) {
        b.abort(format("%s in %s: mask 0x%08x names lanes that %s (warp %u)", what, b.where().c_str(), mask,
                       (mask & ~present) ? "do not exist" : "have returned", w.first / 32));
        throw BlockAborted();
    }
    if (w.arrived != 0) {
        // lanes already waiting must be in the same operation with the same mask
        for (unsigned i = 0; i < w.count; ++i) {
            const Lane &o = w.lanes[i];
            if (o.state == LaneState::AtWarpOp && (o.op_mask != mask || std::strcmp(o.op_what, what) != 0)) {
                b.abort(format("lanes of warp %u in %s disagree: %s with mask 0x%08x and %s with mask 0x%08x",
                               w.first / 32, b.where().c_str(), o.op_what, o.op_mask, what, mask));
                throw BlockAborted();
            }
        }
    }
    const unsigned buf = (unsigned)(w.phase & 1u);
    w.values[buf][lane] = value;
    w.arrived |= 1u << lane;
    if (w.arrived == mask) {
        // last to arrive: complete the exchange and let the others go
        w.arrived = 0;
        ++w.phase;
        for (unsigned i = 0; i < w.count; ++i)
            if (((mask >> i) & 1u) && i != lane) w.lanes[i].state = LaneState::Ready;
    } else {
        Lane &l = w.lanes[lane];
        l.state = LaneState::AtWarpOp;
        l.op_mask = mask;
        l.op_what = what;
        switch_to_scheduler(w);
        if (b.is_aborted()) throw BlockAborted();
    }
    // The buffer stays valid: a lane cannot start the next exchange into it
    // before every lane of this one has taken part in the one after it.
    std::memcpy(all_lanes, w.values[buf], sizeof w.values[buf]);
}

}  // namespace d4j_sim
