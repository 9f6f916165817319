/*
 * The CUDA simulator's stand-in for <cuda_pipeline_primitives.h>: the
 * asynchronous global -> shared copies of Ampere (cp.async), declared as nvcc
 * declares them, so the same kernel source compiles with both:
 *
 *   __pipeline_memcpy_async(dst_shared, src_global, size_and_align, zfill = 0)
 *       queues a copy of size_and_align (4, 8 or 16) bytes: the first
 *       size_and_align - zfill come from src_global, the last zfill are zeros;
 *   __pipeline_commit()        closes the thread's batch of queued copies;
 *   __pipeline_wait_prior(N)   waits until at most the N most recently
 *                              committed batches are outstanding (N above 8
 *                              counts as 8, as in nvcc's header).
 *
 * What a GPU leaves to chance, the simulator makes visible (cudasim_pipeline.cpp):
 * - A copy lands only when a wait_prior of its thread retires its batch; until
 *   then its destination reads as poison (0xFF bytes: a float NaN), so a kernel
 *   that reads the buffer before waiting (or before the barrier after the wait,
 *   for another thread's copies) computes NaN instead of passing by luck.
 *   Uncommitted copies are not retired by any wait_prior.
 * - A copy whose destination is not shared memory, whose source is not in a
 *   device allocation (cudaMalloc), whose addresses are not aligned to its
 *   size, whose size is not 4, 8 or 16 or whose zfill exceeds its size stops the
 *   launch with a message naming the kernel and the block.
 * - A thread that returns with copies still queued (uncommitted or not waited
 *   for) stops the launch too: what happens to them on a GPU is unspecified.
 *
 * Counting (libd4j_cudasim_prof.so): each copy is recorded at the issuing call
 * as a global load of its size - zfill source bytes and a shared store of its
 * size bytes, so sectors and bank wavefronts count as for a GPU's cp.async
 * (which bypasses the registers, not the memory system).
 */
#ifndef D4J_CUDASIM_PIPELINE_PRIMITIVES_H
#define D4J_CUDASIM_PIPELINE_PRIMITIVES_H

#include "cuda_runtime.h"

#include <cstddef>

namespace d4j_sim {
namespace pipeline {
// cudasim_pipeline.cpp: the calling simulated thread's queue.
void memcpy_async(void *dst_shared, const void *src_global, size_t size_and_align, size_t zfill);
void commit();
void wait_prior(size_t prior);
}  // namespace pipeline
}  // namespace d4j_sim

static inline void __pipeline_memcpy_async(void *__restrict__ dst_shared, const void *__restrict__ src_global,
                                           size_t size_and_align, size_t zfill = 0) {
    ::d4j_sim::pipeline::memcpy_async(dst_shared, src_global, size_and_align, zfill);
}
static inline void __pipeline_commit() { ::d4j_sim::pipeline::commit(); }
static inline void __pipeline_wait_prior(size_t prior) { ::d4j_sim::pipeline::wait_prior(prior); }

#endif
