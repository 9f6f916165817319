// The linear family on tensor cores (variant v3, kernels_linear_tc.cu): the
// three products of a linear layer with TF32 or BF16 inputs and FP32
// accumulation, for the launchers in kernels_linear_attention.cu.
//   forward: y[rows, out]  = x w^T (+ bias)
//   dX:      dx[rows, in]  = dy w
//   dW:      dw[out, in]  += dy^T x
#ifndef D4J_CUDA_LINEAR_TC_H
#define D4J_CUDA_LINEAR_TC_H

#include <cstring>

#include "cuda_common.h"

namespace d4j::cuda::lin {

// Whether the linear family's selection is v3 (read once per call). The teeth
// simulator lists a test-only tensor-core variant after it that runs v1.
inline bool tensor_core_selected(const State *s) {
    const char *v = s->variants.selected("linear");
    return s->variants.tensor_core("linear") && v != nullptr && std::strcmp(v, "v3") == 0;
}

d4j_status tc_forward(State *s, int precision, const float *x, const float *w, const float *bias, int64_t rows,
                      int64_t in, int64_t out, float *y);
d4j_status tc_dx(State *s, int precision, const float *dy, const float *w, int64_t rows, int64_t in, int64_t out,
                 float *dx);
d4j_status tc_dw(State *s, int precision, const float *dy, const float *x, int64_t rows, int64_t in, int64_t out,
                 float *dw);

}  // namespace d4j::cuda::lin
#endif
