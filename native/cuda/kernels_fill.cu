// Buffer fill (zeroing gradients, poisoning outputs in tests).
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

__global__ void fill_kernel(float *dst, int64_t count, float value) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) dst[i] = value;
}

d4j_status fill_f32(void *state, float *dst, int64_t count, float value) {
    auto *s = static_cast<State *>(state);
    const int threads = 256;
    D4J_LAUNCH(fill_kernel, blocks_for(count, threads), threads, 0, s->stream, dst, count, value);
    return launched("fill_kernel");
}

}  // namespace d4j::cuda
