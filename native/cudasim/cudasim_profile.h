// The profiling simulator (libd4j_cudasim_prof.so): what a GPU profiler would
// count, from the unmodified .cu sources.
//
// How the counts are taken. The kernel translation units of the profiling
// build are compiled with GCC's ThreadSanitizer instrumentation
// (-fsanitize=thread), which calls __tsan_readN/__tsan_writeN before every
// memory access, and with -fsanitize-coverage=trace-pc, which calls
// __sanitizer_cov_trace_pc at the start of every basic block. The runtime
// library of neither is linked: cudasim_profile.cpp defines those functions
// itself. Each records (call site, address, size) into the running lane's log.
// The kernels stay the code a GPU runs: nothing is written into them.
//
// The lanes of a warp run one after another between synchronisation points
// (see cudasim.cpp), so a warp instruction is rebuilt when every lane of the
// warp has stopped (at a barrier, a warp operation or its end): the k-th
// execution of a call site by each lane is the same warp instruction. Its
// active lanes are the lanes that executed it that time. For a global access
// that gives the 32-byte sectors the warp touches; for a shared access, the
// bank wavefronts; for a basic block, the floating-point operations in it
// (counted once, from the disassembly, by native/tools/flop_table.cpp) times
// the active lanes.
//
// The rebuild is exact for lanes that agree on how many times they reach a
// site since the last synchronisation point; when lanes diverge inside a loop
// (one lane takes a branch on iterations 1 and 3, another on 2 and 4) the two
// executions are paired as one instruction where a GPU issues two.
#ifndef D4J_CUDASIM_PROFILE_H
#define D4J_CUDASIM_PROFILE_H

#include "cuda_runtime.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../include/d4j.h"

namespace d4j_sim {
namespace prof {

// One recorded event of a lane.
struct Rec {
    uintptr_t pc;    // the instrumented call's return address
    uintptr_t addr;  // 0 for a basic block
    uint32_t size;   // bytes; 0 for a basic block; a Tensor record: the lane's share of the operations
    uint32_t kind;   // Kind
};
// Tensor, TensorBf16: a lane's part of a warp matrix multiply-accumulate with TF32 or BF16 inputs
// (cudasim_wmma.cpp records it).
enum Kind : uint32_t { Block = 0, Load = 1, Store = 2, Atomic = 3, Tensor = 4, TensorBf16 = 5 };

// The running lane's log on this OS thread; null outside a profiled block.
extern thread_local std::vector<Rec> *t_lane;

// True while profiling is on (d4j_profile_begin .. d4j_profile_end).
bool enabled();

// A launch begins (false: profiling is off, nothing else of this interface is called).
bool launch_begin(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem);
// Whether the block with this linear index is simulated (a representative subset of a large grid).
bool block_selected(uint64_t linear);
// A selected block begins; its dynamic shared memory.
void block_begin(const void *dynamic_smem, size_t bytes, unsigned warps);
// The log of lane `lane` of warp slot `warp` (cleared at each flush).
std::vector<Rec> *lane_log(unsigned warp, unsigned lane);
// Every lane of the warp has stopped: rebuild its warp instructions from the logs and count them.
void warp_flush(unsigned warp, unsigned lanes);
// The warp arrived at a __syncthreads.
void warp_barrier(unsigned warp);
void block_end();
void launch_end();

// Device allocations (global memory), for telling global from other addresses.
void note_alloc(const void *p, size_t bytes);
void note_free(const void *p);

// The API behind d4j_profile_*: begin clears the records and turns counting
// on (at most max_blocks blocks simulated per launch, 0 = all of them); read
// copies them; end turns counting off.
d4j_status begin(int64_t max_blocks, std::string *error);
d4j_status read(d4j_kernel_profile *dst, int64_t capacity, int64_t *count);
d4j_status end();

}  // namespace prof
}  // namespace d4j_sim

#endif
