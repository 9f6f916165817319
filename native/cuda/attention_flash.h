// Attention on tensor cores (variant v2 of the "attention" family), in the
// manner of FlashAttention-2: no L x L matrix in global memory, scores
// recomputed tile by tile from q and k, FP32 accumulation of products whose
// inputs are rounded to TF32 or BF16 (kernels_attention_flash.cu).
#ifndef D4J_CUDA_ATTENTION_FLASH_H
#define D4J_CUDA_ATTENTION_FLASH_H

#include <cuda_runtime.h>

#include <cstdint>

#include "../common/backend_iface.h"

namespace d4j::cuda::flash {

// q, k, v, out, dout, dq, dk, dv: [B, L, H, D] float32; lse, dsum: [B, H, L].
struct Dims {
    int64_t B, L, H, D;
    float scale;
};

// The largest head dimension the kernels take (the front's limit).
constexpr int kMaxHeadDim = 512;

// out and lse (lse may be null) as attention_forward defines them. precision:
// D4J_PRECISION_TF32 or D4J_PRECISION_BF16, the format q, k, v and the
// probabilities are rounded to before their products.
d4j_status forward(cudaStream_t stream, int precision, const Dims &a, const float *q, const float *k, const float *v,
                   float *out, float *lse);

// dq, dk, dv as attention_backward defines them; dsum: B*H*L floats of
// scratch (Dsum = rowsum(dout * out), written by the first kernel and read by
// the second).
d4j_status backward(cudaStream_t stream, int precision, const Dims &a, const float *q, const float *k,
                    const float *v, const float *out, const float *lse, const float *dout, float *dsum, float *dq,
                    float *dk, float *dv);

}  // namespace d4j::cuda::flash
#endif
