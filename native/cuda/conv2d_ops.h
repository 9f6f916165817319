// The conv2d family's implicit-GEMM index maps, shared by the SIMT kernels
// (kernels_conv2d.cu) and the tensor-core kernels (kernels_conv2d_tc.cu):
//   forward: C[m][n] = sum_k A(m, k) B(k, n), m = output pixel, k = (tap, ci), n = co
//   dX:      m = stored input pixel, k = (child, tap, co), n = ci
//   dW:      m = (tap, ci), k = output pixel, n = co
// Each Op reads A and B straight from the NHWC / HWIO tensors (no im2col
// buffer); kAK / kBKc say whether the operand is contiguous along k, which
// the staging loops use to put consecutive threads on contiguous addresses.
#ifndef D4J_CUDA_CONV2D_OPS_H
#define D4J_CUDA_CONV2D_OPS_H

#include "cuda_common.h"

namespace d4j::cuda::conv {

using Geom = d4j_backend_iface::conv2d_geom;

// K is walked in chunks of kBK; a dW pixel slice is a whole number of chunks.
constexpr int kBK = 16;

// Index arithmetic is 32-bit: the front bounds every tensor below 2^31
// elements, so every pixel, column and element index fits, and a GPU divides
// 32-bit integers in a fraction of the instructions a 64-bit division takes.

// Conv-input value u[b, ih, iw, ci] (nearest-2x upsampled when asked), 0 in the padding.
__device__ __forceinline__ float read_u(const Geom &g, const float *x, int32_t b, int32_t ih, int32_t iw, int32_t ci) {
    if (ih < 0 || ih >= g.h_in || iw < 0 || iw >= g.w_in) return 0.0f;
    if (g.upsample2x) {
        ih >>= 1;
        iw >>= 1;
    }
    return x[((b * g.h + ih) * g.w + iw) * g.c_in + ci];
}

// Im2col entry: u at output pixel `pixel` (flat over [batch, h_out, w_out]) and
// column `col` = tap * c_in + ci. The forward pass reads it as A(m = pixel, k = col),
// the weight gradient as A(m = col, k = pixel).
__device__ __forceinline__ float read_im2col(const Geom &g, const float *x, int64_t pixel, int64_t col) {
    const int32_t p = (int32_t)pixel, c = (int32_t)col, hw = g.h_out * g.w_out;
    const int32_t b = p / hw, rem = p % hw, oh = rem / g.w_out, ow = rem % g.w_out;
    const int32_t ci = c % g.c_in, t = c / g.c_in;
    return read_u(g, x, b, oh * g.stride - g.pad_top + t / g.k, ow * g.stride - g.pad_left + t % g.k, ci);
}

struct FwdOp {
    static constexpr bool kAK = true;   // A(m, k): k -> ci contiguous
    static constexpr bool kBKc = false;  // B(k, n) = weight[k][n]: n contiguous
    Geom g;
    const float *x, *w;
    int64_t M, N, K;
    __device__ float a(int64_t m, int64_t k) const { return read_im2col(g, x, m, k); }
    __device__ float bv(int64_t k, int64_t n) const { return w[(int32_t)k * g.c_out + (int32_t)n]; }
};

struct DxOp {
    static constexpr bool kAK = true;   // A(m, k): k -> co contiguous in dy
    static constexpr bool kBKc = true;  // B(k, n) = weight[tap][n][co]: k -> co contiguous
    Geom g;
    const float *dy, *w;
    int64_t M, N, K;
    __device__ float a(int64_t m, int64_t k) const {
        const int32_t hw = g.h * g.w, pm = (int32_t)m, pk = (int32_t)k;
        const int32_t b = pm / hw, rem = pm % hw;
        int32_t ih = rem / g.w, iw = rem % g.w;
        const int32_t co = pk % g.c_out, r = pk / g.c_out;
        const int32_t taps = g.k * g.k;
        const int32_t t = r % taps, child = r / taps;
        if (g.upsample2x) {
            ih = 2 * ih + child / 2;
            iw = 2 * iw + child % 2;
        }
        const int32_t hn = ih + g.pad_top - t / g.k, wn = iw + g.pad_left - t % g.k;
        if (hn < 0 || wn < 0 || hn % g.stride != 0 || wn % g.stride != 0) return 0.0f;
        const int32_t oh = hn / g.stride, ow = wn / g.stride;
        if (oh >= g.h_out || ow >= g.w_out) return 0.0f;
        return dy[((b * g.h_out + oh) * g.w_out + ow) * g.c_out + co];
    }
    __device__ float bv(int64_t k, int64_t n) const {
        const int32_t pk = (int32_t)k, co = pk % g.c_out, t = (pk / g.c_out) % (g.k * g.k);
        return w[(t * g.c_in + (int32_t)n) * g.c_out + co];
    }
};

struct DwOp {
    static constexpr bool kAK = false;   // A(m, k) = u at pixel k, channel m: m -> ci contiguous
    static constexpr bool kBKc = false;  // B(k, n) = dy[k][n]: n contiguous
    Geom g;
    const float *x, *dy;
    int64_t M, N, K;
    __device__ float a(int64_t m, int64_t k) const { return read_im2col(g, x, k, m); }
    __device__ float bv(int64_t k, int64_t n) const { return dy[(int32_t)k * g.c_out + (int32_t)n]; }
};

// The tensor-core kernels (kernels_conv2d_tc.cu): the same GEMMs with TF32 or
// BF16 inputs (precision: D4J_PRECISION_TF32 or D4J_PRECISION_BF16) and FP32
// accumulation. tc_dw_partial writes partial[split][m][n] for the pixel slices
// of per_split pixels, like the SIMT dW.
d4j_status tc_forward(cudaStream_t stream, int precision, const FwdOp &op, const float *bias, float *y);
d4j_status tc_dx(cudaStream_t stream, int precision, const DxOp &op, float *dx);
d4j_status tc_dw_partial(cudaStream_t stream, int precision, const DwOp &op, int64_t per_split, int64_t splits,
                         float *partial);

}  // namespace d4j::cuda::conv
#endif
