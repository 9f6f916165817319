// RNG kernel family on CUDA. One thread per Philox block (4 outputs), the same
// functions as the CPU backend (native/common/philox.h), so the same bits.
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

__global__ void rng_uint32_kernel(uint64_t seed, uint64_t offset, uint32_t *out, int64_t count) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t i = j * 4;
    if (i >= count) return;
    d4j_u32x4 w = d4j_philox_block(seed, offset, (uint64_t)j);
    for (int k = 0; k < 4 && i + k < count; ++k) out[i + k] = w.v[k];
}

__global__ void rng_normal_kernel(uint64_t seed, uint64_t offset, float *out, int64_t count) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t i = j * 4;
    if (i >= count) return;
    float z[4];
    d4j_normal4(seed, offset, (uint64_t)j, z);
    for (int k = 0; k < 4 && i + k < count; ++k) out[i + k] = z[k];
}

d4j_status rng_uint32(void *state, uint64_t seed, uint64_t offset, uint32_t *out, int64_t count) {
    auto *s = static_cast<State *>(state);
    const int threads = 256;
    D4J_LAUNCH(rng_uint32_kernel, blocks_for((count + 3) / 4, threads), threads, 0, s->stream, seed, offset, out, count);
    return launched("rng_uint32_kernel");
}

d4j_status rng_normal(void *state, uint64_t seed, uint64_t offset, float *out, int64_t count) {
    auto *s = static_cast<State *>(state);
    const int threads = 256;
    D4J_LAUNCH(rng_normal_kernel, blocks_for((count + 3) / 4, threads), threads, 0, s->stream, seed, offset, out, count);
    return launched("rng_normal_kernel");
}

}  // namespace d4j::cuda
