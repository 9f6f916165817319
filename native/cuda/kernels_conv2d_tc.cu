// The conv2d family on tensor cores (variant v2): the implicit GEMMs of
// conv2d_ops.h with the WMMA API, TF32 (m16n16k8) or BF16 (m16n16k16) inputs
// and FP32 accumulation.
//
// The tile engine (tc_gemm.h) stages the operands through the index maps;
// dW splits the pixels into fixed slices summed in order by the SIMT file's
// second kernel, as the SIMT dW does.
#include "conv2d_ops.h"
#include "cuda_common.h"
#include "tc_gemm.h"

namespace d4j::cuda::conv {

namespace {

using namespace tc;
static_assert(kTcBK == kBK, "a dW pixel slice is a whole number of the engine's k chunks");

template <class P>
__global__ void __launch_bounds__(kTcThreads, 1) conv_tc_fwd_kernel(FwdOp op, const float *bias, float *y) {
    tc_tile<P>(op, (int64_t)blockIdx.x * kTcBM, (int64_t)blockIdx.y * kTcBN, 0, op.K,
               [&](int64_t m, int64_t n, float v) { y[m * op.N + n] = v + (bias ? bias[n] : 0.0f); });
}

template <class P>
__global__ void __launch_bounds__(kTcThreads, 1) conv_tc_dx_kernel(DxOp op, float *dx) {
    tc_tile<P>(op, (int64_t)blockIdx.x * kTcBM, (int64_t)blockIdx.y * kTcBN, 0, op.K,
               [&](int64_t m, int64_t n, float v) { dx[m * op.N + n] = v; });
}

template <class P>
__global__ void __launch_bounds__(kTcThreads, 1) conv_tc_dw_kernel(DwOp op, int64_t per_split, float *partial) {
    const int64_t k_begin = (int64_t)blockIdx.z * per_split;
    const int64_t k_end = k_begin + per_split < op.K ? k_begin + per_split : op.K;
    float *out = partial + (int64_t)blockIdx.z * op.M * op.N;
    tc_tile<P>(op, (int64_t)blockIdx.x * kTcBM, (int64_t)blockIdx.y * kTcBN, k_begin, k_end,
               [&](int64_t m, int64_t n, float v) { out[m * op.N + n] = v; });
}

dim3 tile_grid(int64_t M, int64_t N, int64_t z = 1) {
    // the front bounds every tensor below 2^31 elements and channels below 2^20
    return dim3((unsigned)((M + kTcBM - 1) / kTcBM), (unsigned)((N + kTcBN - 1) / kTcBN), (unsigned)z);
}

}  // namespace

d4j_status tc_forward(cudaStream_t stream, int precision, const FwdOp &op, const float *bias, float *y) {
    if (precision == D4J_PRECISION_BF16) {
        D4J_LAUNCH(conv_tc_fwd_kernel<Bf16>, tile_grid(op.M, op.N), kTcThreads, 0, stream, op, bias, y);
        return launched("conv_tc_fwd_kernel<Bf16>");
    }
    D4J_LAUNCH(conv_tc_fwd_kernel<Tf32>, tile_grid(op.M, op.N), kTcThreads, 0, stream, op, bias, y);
    return launched("conv_tc_fwd_kernel<Tf32>");
}

d4j_status tc_dx(cudaStream_t stream, int precision, const DxOp &op, float *dx) {
    if (precision == D4J_PRECISION_BF16) {
        D4J_LAUNCH(conv_tc_dx_kernel<Bf16>, tile_grid(op.M, op.N), kTcThreads, 0, stream, op, dx);
        return launched("conv_tc_dx_kernel<Bf16>");
    }
    D4J_LAUNCH(conv_tc_dx_kernel<Tf32>, tile_grid(op.M, op.N), kTcThreads, 0, stream, op, dx);
    return launched("conv_tc_dx_kernel<Tf32>");
}

d4j_status tc_dw_partial(cudaStream_t stream, int precision, const DwOp &op, int64_t per_split, int64_t splits,
                         float *partial) {
    if (precision == D4J_PRECISION_BF16) {
        D4J_LAUNCH(conv_tc_dw_kernel<Bf16>, tile_grid(op.M, op.N, splits), kTcThreads, 0, stream, op, per_split,
                   partial);
        return launched("conv_tc_dw_kernel<Bf16>");
    }
    D4J_LAUNCH(conv_tc_dw_kernel<Tf32>, tile_grid(op.M, op.N, splits), kTcThreads, 0, stream, op, per_split, partial);
    return launched("conv_tc_dw_kernel<Tf32>");
}

}  // namespace d4j::cuda::conv
