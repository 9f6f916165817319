// The conv2d family on tensor cores (variants v2 to v5): the implicit GEMMs of
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

// C: a precision with its tile shape (Tf32x64, Tf32x128, Bf16x64, Bf16x128, Tf32Async128, Tf32Async128Vec).
template <class C>
__global__ void __launch_bounds__(C::Tile::kThreads, 1) conv_tc_fwd_kernel(FwdOp op, const float *bias, float *y) {
    typedef typename C::Tile T;
    tc_run<C>(op, (int64_t)blockIdx.x * T::kBM, (int64_t)blockIdx.y * T::kBN, 0, op.K,
                  [&](int64_t m, int64_t n, float v) { y[m * op.N + n] = v + (bias ? bias[n] : 0.0f); });
}

template <class C>
__global__ void __launch_bounds__(C::Tile::kThreads, 1) conv_tc_fwd_gn_kernel(FwdGnOp op, const float *bias, float *y) {
    typedef typename C::Tile T;
    tc_tile<C, T>(op, (int64_t)blockIdx.x * T::kBM, (int64_t)blockIdx.y * T::kBN, 0, op.K,
                  [&](int64_t m, int64_t n, float v) { y[m * op.N + n] = v + (bias ? bias[n] : 0.0f); });
}

template <class C>
__global__ void __launch_bounds__(C::Tile::kThreads, 1) conv_tc_dx_kernel(DxOp op, float *dx) {
    typedef typename C::Tile T;
    tc_run<C>(op, (int64_t)blockIdx.x * T::kBM, (int64_t)blockIdx.y * T::kBN, 0, op.K,
                  [&](int64_t m, int64_t n, float v) { dx[m * op.N + n] = v; });
}

template <class C>
__global__ void __launch_bounds__(C::Tile::kThreads, 1) conv_tc_dw_kernel(DwOp op, int64_t per_split, float *partial) {
    typedef typename C::Tile T;
    const int64_t k_begin = (int64_t)blockIdx.z * per_split;
    const int64_t k_end = k_begin + per_split < op.K ? k_begin + per_split : op.K;
    float *out = partial + (int64_t)blockIdx.z * op.M * op.N;
    tc_run<C>(op, (int64_t)blockIdx.x * T::kBM, (int64_t)blockIdx.y * T::kBN, k_begin, k_end,
                  [&](int64_t m, int64_t n, float v) { out[m * op.N + n] = v; });
}

template <class C>
dim3 tile_grid(int64_t M, int64_t N, int64_t z = 1) {
    // the front bounds every tensor below 2^31 elements and channels below 2^20
    typedef typename C::Tile T;
    return dim3((unsigned)((M + T::kBM - 1) / T::kBM), (unsigned)((N + T::kBN - 1) / T::kBN), (unsigned)z);
}

// Launches kernel<C> for the precision and the tile (64, 128, kTcAsyncTile, or 0: the one that suits
// M x N x splits). kTcAsyncTile at BF16 is the register-staged 128 x 128 tile (see conv2d_ops.h). The
// choice (0) takes the cp.async tile wherever it takes 128 x 128 at TF32: the profiling simulator
// projects it faster than the register-staged one on every conv2d of the CIFAR-10 UNet. Async: the
// type that runs there, Tf32Async128, or Tf32x128 for an Op whose values are computed as they are
// staged (FwdGnOp: a copy cannot normalise). AsyncVec: the type that runs there when `vec` holds
// (vec_copies), Tf32Async128Vec's 16-byte copies, or Async again.
#define D4J_TC_LAUNCH(kernel, Async, AsyncVec, vec, M, N, splits, stream, ...)                                \
    do {                                                                                                      \
        const bool auto_wide_ = tile == 0 && wide_tiles((M), (N), (splits));                                  \
        const bool wide_ = tile == 128 || tile == kTcAsyncTile || auto_wide_;                                 \
        if (precision != D4J_PRECISION_BF16 && (tile == kTcAsyncTile || auto_wide_) && (vec)) {               \
            D4J_LAUNCH(kernel<AsyncVec>, tile_grid<AsyncVec>(M, N, splits), AsyncVec::Tile::kThreads, 0, stream, \
                       __VA_ARGS__);                                                                          \
            return launched(#kernel "<" #AsyncVec ">");                                                       \
        } else if (precision != D4J_PRECISION_BF16 && (tile == kTcAsyncTile || auto_wide_)) {                 \
            D4J_LAUNCH(kernel<Async>, tile_grid<Async>(M, N, splits), Async::Tile::kThreads, 0, stream, __VA_ARGS__); \
            return launched(#kernel "<" #Async ">");                                                          \
        } else if (precision == D4J_PRECISION_BF16 && wide_) {                                                      \
            D4J_LAUNCH(kernel<Bf16x128>, tile_grid<Bf16x128>(M, N, splits), Bf16x128::Tile::kThreads, 0, stream, __VA_ARGS__); \
            return launched(#kernel "<Bf16x128>");                                                            \
        } else if (precision == D4J_PRECISION_BF16) {                                                         \
            D4J_LAUNCH(kernel<Bf16x64>, tile_grid<Bf16x64>(M, N, splits), Bf16x64::Tile::kThreads, 0, stream, __VA_ARGS__);   \
            return launched(#kernel "<Bf16x64>");                                                             \
        } else if (wide_) {                                                                                   \
            D4J_LAUNCH(kernel<Tf32x128>, tile_grid<Tf32x128>(M, N, splits), Tf32x128::Tile::kThreads, 0, stream, __VA_ARGS__); \
            return launched(#kernel "<Tf32x128>");                                                            \
        } else {                                                                                              \
            D4J_LAUNCH(kernel<Tf32x64>, tile_grid<Tf32x64>(M, N, splits), Tf32x64::Tile::kThreads, 0, stream, __VA_ARGS__);   \
            return launched(#kernel "<Tf32x64>");                                                             \
        }                                                                                                     \
    } while (0)

// Whether the asynchronous tile may copy 16 bytes at a time (Tf32Async128Vec): in
// every Op the contiguous index is a channel, c_in or c_out wide, so with both
// multiples of 4 a group of 4 consecutive elements starting at a multiple of 4
// (of k, of m = (tap, ci), of n) stays in one tap and one pixel, is 4
// consecutive floats 16-byte aligned in a 16-byte aligned tensor, and is
// padding or in range as a whole (K, M and N are multiples of 4 too, and every
// k chunk starts at a multiple of kBK).
bool vec_copies(const Geom &g, const float *p, const float *q) {
    const auto aligned = [](const float *v) { return (reinterpret_cast<uintptr_t>(v) & 15) == 0; };
    return g.c_in % 4 == 0 && g.c_out % 4 == 0 && aligned(p) && aligned(q);
}

}  // namespace

d4j_status tc_forward(cudaStream_t stream, int precision, int tile, const FwdOp &op, const float *bias, float *y) {
    D4J_TC_LAUNCH(conv_tc_fwd_kernel, Tf32Async128, Tf32Async128Vec, vec_copies(op.g, op.x, op.w), op.M, op.N, 1, stream, op, bias, y);
}

d4j_status tc_forward_gn(cudaStream_t stream, int precision, int tile, const FwdGnOp &op, const float *bias, float *y) {
    D4J_TC_LAUNCH(conv_tc_fwd_gn_kernel, Tf32x128, Tf32x128, false, op.M, op.N, 1, stream, op, bias, y);
}

d4j_status tc_dx(cudaStream_t stream, int precision, int tile, const DxOp &op, float *dx) {
    D4J_TC_LAUNCH(conv_tc_dx_kernel, Tf32Async128, Tf32Async128Vec, vec_copies(op.g, op.dy, op.w), op.M, op.N, 1, stream, op, dx);
}

d4j_status tc_dw_partial(cudaStream_t stream, int precision, int tile, const DwOp &op, int64_t per_split,
                         int64_t splits, float *partial) {
    D4J_TC_LAUNCH(conv_tc_dw_kernel, Tf32Async128, Tf32Async128Vec, vec_copies(op.g, op.x, op.dy), op.M, op.N, splits, stream, op, per_split, partial);
}

}  // namespace d4j::cuda::conv
