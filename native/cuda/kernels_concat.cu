// The concat family on CUDA: channel concatenation of two NHWC tensors and
// its backward (a split). One grid-stride loop over the output elements
// (forward) or dout elements (backward): consecutive threads touch
// consecutive output floats, so the out/dout side is coalesced and the a/b
// side is coalesced within each run of c1 or c2 channels. Pure copies: the
// result equals the CPU's bit for bit.
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

namespace {

constexpr int kConcatThreads = 256;
constexpr unsigned kConcatMaxBlocks = 1u << 16;  // grid-stride beyond this

unsigned concat_blocks(int64_t total) {
    unsigned b = blocks_for(total, kConcatThreads);
    return b < kConcatMaxBlocks ? b : kConcatMaxBlocks;
}

__global__ void __launch_bounds__(kConcatThreads) concat_kernel(const float *a, const float *b, int64_t total,
                                                                int32_t c1, int32_t c2, float *out) {
    const int64_t c = (int64_t)c1 + c2;
    for (int64_t i = (int64_t)blockIdx.x * kConcatThreads + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * kConcatThreads) {
        const int64_t r = i / c, ch = i - r * c;
        out[i] = ch < c1 ? a[r * c1 + ch] : b[r * c2 + (ch - c1)];
    }
}

__global__ void __launch_bounds__(kConcatThreads) split_kernel(const float *dout, int64_t total, int32_t c1,
                                                               int32_t c2, float *da, float *db) {
    const int64_t c = (int64_t)c1 + c2;
    for (int64_t i = (int64_t)blockIdx.x * kConcatThreads + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * kConcatThreads) {
        const int64_t r = i / c, ch = i - r * c;
        if (ch < c1) {
            if (da) da[r * c1 + ch] = dout[i];
        } else if (db) {
            db[r * c2 + (ch - c1)] = dout[i];
        }
    }
}

}  // namespace

d4j_status concat_forward(void *state, const float *a, const float *b, int64_t rows, int32_t c1, int32_t c2,
                          float *out) {
    auto *s = static_cast<State *>(state);
    const int64_t total = rows * ((int64_t)c1 + c2);
    D4J_LAUNCH(concat_kernel, concat_blocks(total), kConcatThreads, 0, s->stream, a, b, total, c1, c2, out);
    return launched("concat_kernel");
}

d4j_status concat_backward(void *state, const float *dout, int64_t rows, int32_t c1, int32_t c2, float *da,
                           float *db) {
    auto *s = static_cast<State *>(state);
    const int64_t total = rows * ((int64_t)c1 + c2);
    D4J_LAUNCH(split_kernel, concat_blocks(total), kConcatThreads, 0, s->stream, dout, total, c1, c2, da, db);
    return launched("split_kernel");
}

}  // namespace d4j::cuda
