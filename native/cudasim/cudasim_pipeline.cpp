// The asynchronous copies of the simulator's <cuda_pipeline_primitives.h>
// (see there for what they promise): a queue per simulated thread, copies
// performed when a wait_prior retires their batch, the checks of each copy,
// and their profiling records.
//
// The lanes of a warp are fibers of one OS thread (cudasim.cpp), so the
// queues live in a per-OS-thread array indexed by lane; a lane empties its
// queue when it starts and must have emptied it when it returns.
#include "cuda_pipeline_primitives.h"

#include "cudasim_internal.h"
#if D4J_SIM_PROFILE
#include "cudasim_profile.h"
#endif

#include <cstring>
#include <vector>

namespace d4j_sim {
namespace pipeline {
namespace {

struct Copy {
    char *dst;
    const char *src;
    uint32_t size, zfill;
    uint64_t batch;  // the count of commits before it was issued
};

struct Queue {
    std::vector<Copy> copies;  // in issue order
    uint64_t committed = 0;    // batches committed by the thread
};

thread_local Queue t_queues[32];

Queue &queue() { return t_queues[lane_id()]; }

// The same limit as nvcc's header: wait_prior of more than 8 batches waits for 8.
constexpr size_t kMaxPrior = 8;

}  // namespace

void memcpy_async(void *dst_shared, const void *src_global, size_t size, size_t zfill) {
    const uintptr_t pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
    if (size != 4 && size != 8 && size != 16)
        kernel_fault(format("__pipeline_memcpy_async: size_and_align %zu is not 4, 8 or 16", size));
    if (zfill > size)
        kernel_fault(format("__pipeline_memcpy_async: zfill %zu exceeds size_and_align %zu", zfill, size));
    if ((reinterpret_cast<uintptr_t>(dst_shared) & (size - 1)) != 0)
        kernel_fault(format("__pipeline_memcpy_async: destination %p is not %zu-byte aligned", dst_shared, size));
    if ((reinterpret_cast<uintptr_t>(src_global) & (size - 1)) != 0)
        kernel_fault(format("__pipeline_memcpy_async: source %p is not %zu-byte aligned", src_global, size));
    if (!is_shared_address(dst_shared, size))
        kernel_fault(format("__pipeline_memcpy_async: destination %p is not in shared memory", dst_shared));
    // the source must be global memory even when every byte is zero-filled (cp.async's src-size 0)
    if (!is_device_allocation(src_global, size - zfill == 0 ? 1 : size - zfill))
        kernel_fault(format("__pipeline_memcpy_async: source %p is not in a device allocation (global memory)",
                            src_global));
    Queue &q = queue();
    q.copies.push_back(Copy{static_cast<char *>(dst_shared), static_cast<const char *>(src_global), (uint32_t)size,
                            (uint32_t)zfill, q.committed});
    // until the copy lands, its destination holds nothing a kernel may rely on
    std::memset(dst_shared, 0xFF, size);
#if D4J_SIM_PROFILE
    // a global load and a shared store at the call site (two sites, so they form two warp instructions)
    if (prof::t_lane) {
        if (size > zfill)
            prof::t_lane->push_back({pc + 1, reinterpret_cast<uintptr_t>(src_global), (uint32_t)(size - zfill),
                                     prof::Load});
        prof::t_lane->push_back({pc, reinterpret_cast<uintptr_t>(dst_shared), (uint32_t)size, prof::Store});
    }
#else
    (void)pc;
#endif
}

void commit() { ++queue().committed; }

void wait_prior(size_t prior) {
    if (prior > kMaxPrior) prior = kMaxPrior;
    Queue &q = queue();
    if (q.committed < prior) return;  // fewer batches than may stay outstanding: nothing to retire
    const uint64_t retire_below = q.committed - prior;  // batches [0, retire_below) complete
    size_t kept = 0;
    for (size_t i = 0; i < q.copies.size(); ++i) {
        const Copy &c = q.copies[i];
        if (c.batch < retire_below) {
            std::memcpy(c.dst, c.src, c.size - c.zfill);
            std::memset(c.dst + (c.size - c.zfill), 0, c.zfill);
        } else {
            q.copies[kept++] = c;
        }
    }
    q.copies.resize(kept);
}

}  // namespace pipeline

void pipeline_lane_begin() {
    pipeline::Queue &q = pipeline::queue();
    q.copies.clear();
    q.committed = 0;
}

void pipeline_lane_end() {
    pipeline::Queue &q = pipeline::queue();
    if (q.copies.empty()) return;
    size_t uncommitted = 0;
    for (const pipeline::Copy &c : q.copies) uncommitted += c.batch == q.committed ? 1 : 0;
    const size_t n = q.copies.size();
    q.copies.clear();
    kernel_fault(format("thread (%u,%u,%u) returned with %zu cp.async cop%s still queued (%zu uncommitted, %zu "
                        "committed but not waited for with __pipeline_wait_prior)",
                        threadIdx.x, threadIdx.y, threadIdx.z, n, n == 1 ? "y" : "ies", uncommitted,
                        n - uncommitted));
}

}  // namespace d4j_sim
