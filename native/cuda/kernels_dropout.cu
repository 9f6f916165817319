// The dropout family on CUDA: y[i] = (u[i] >= threshold) ? x[i] * scale : 0
// with u[i] uint32 element i of the Philox stream (seed, offset), from the same
// native/common/philox.h as the CPU backend. The keep decision is an integer
// comparison and the kept value one correctly rounded multiply (__fmul_rn,
// never contracted), so the result equals the CPU's bit for bit. Forward and
// backward are this one map.
//
// One thread per Philox block (4 consecutive elements) in a grid-stride loop.
// y may be x: every element is read and written by the same thread, read first.
#include "../common/philox.h"
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

namespace {

constexpr int kDropThreads = 256;
constexpr unsigned kDropMaxBlocks = 1u << 16;  // grid-stride beyond this

__global__ void __launch_bounds__(kDropThreads) dropout_kernel(const float *x, int64_t count, uint64_t seed,
                                                               uint64_t offset, uint32_t threshold, float scale,
                                                               float *y) {
    const int64_t blocks = (count + 3) >> 2;
    for (int64_t j = (int64_t)blockIdx.x * kDropThreads + threadIdx.x; j < blocks;
         j += (int64_t)gridDim.x * kDropThreads) {
        const d4j_u32x4 w = d4j_philox_block(seed, offset, (uint64_t)j);
        const int64_t i = j * 4;
        for (int k = 0; k < 4 && i + k < count; ++k) {
            const float v = x[i + k];
            y[i + k] = w.v[k] >= threshold ? D4J_FMUL(v, scale) : 0.0f;
        }
    }
}

}  // namespace

d4j_status dropout(void *state, const float *x, int64_t count, uint64_t seed, uint64_t offset, uint32_t threshold,
                   float scale, float *y) {
    auto *s = static_cast<State *>(state);
    const int64_t blocks = (count + 3) / 4;
    const int64_t needed = (blocks + kDropThreads - 1) / kDropThreads;  // capped before narrowing
    const unsigned grid = needed < (int64_t)kDropMaxBlocks ? (unsigned)needed : kDropMaxBlocks;
    D4J_LAUNCH(dropout_kernel, grid, kDropThreads, 0, s->stream, x, count, seed, offset, threshold, scale, y);
    return launched("dropout_kernel");
}

}  // namespace d4j::cuda
