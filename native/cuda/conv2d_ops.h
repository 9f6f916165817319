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

#include "../common/norm_math.h"
#include "cuda_common.h"

namespace d4j::cuda::conv {

using Geom = d4j_backend_iface::conv2d_geom;

// K is walked in chunks of kBK; a dW pixel slice is a whole number of chunks.
constexpr int kBK = 16;

// Index arithmetic is 32-bit: the front bounds every tensor below 2^31
// elements, so every pixel, column and element index fits, and a GPU divides
// 32-bit integers in a fraction of the instructions a 64-bit division takes.

// The index in x of conv-input element u[b, ih, iw, ci] (nearest-2x upsampled
// when asked), or -1 in the padding.
__device__ __forceinline__ int32_t u_index(const Geom &g, int32_t b, int32_t ih, int32_t iw, int32_t ci) {
    if (ih < 0 || ih >= g.h_in || iw < 0 || iw >= g.w_in) return -1;
    if (g.upsample2x) {
        ih >>= 1;
        iw >>= 1;
    }
    return ((b * g.h + ih) * g.w + iw) * g.c_in + ci;
}

// Conv-input value u[b, ih, iw, ci], 0 in the padding.
__device__ __forceinline__ float read_u(const Geom &g, const float *x, int32_t b, int32_t ih, int32_t iw, int32_t ci) {
    const int32_t i = u_index(g, b, ih, iw, ci);
    return i < 0 ? 0.0f : x[i];
}

// The address of u[b, ih, iw, ci] in x (as read_u reads it), nullptr in the padding:
// what the asynchronous tensor-core path copies from.
__device__ __forceinline__ const float *addr_u(const Geom &g, const float *x, int32_t b, int32_t ih, int32_t iw,
                                               int32_t ci) {
    if (ih < 0 || ih >= g.h_in || iw < 0 || iw >= g.w_in) return nullptr;
    if (g.upsample2x) {
        ih >>= 1;
        iw >>= 1;
    }
    return x + ((b * g.h + ih) * g.w + iw) * g.c_in + ci;
}

// The im2col matrix u(pixel, col), col = tap * c_in + ci, in two halves so a
// caller walking a row or a column decomposes each index once: an output
// pixel's corner in the conv input, and a column's channel and tap offset.
struct PixelAt {
    int32_t b, ih0, iw0;  // sample, and the tap (0, 0) position in the padded input
};
struct ColAt {
    int32_t ci, dh, dw;
};
__device__ __forceinline__ PixelAt pixel_at(const Geom &g, int64_t pixel) {
    const int32_t p = (int32_t)pixel, hw = g.h_out * g.w_out;
    const int32_t b = p / hw, rem = p % hw, oh = rem / g.w_out, ow = rem % g.w_out;
    return PixelAt{b, oh * g.stride - g.pad_top, ow * g.stride - g.pad_left};
}
__device__ __forceinline__ ColAt col_at(const Geom &g, int64_t col) {
    const int32_t c = (int32_t)col, t = c / g.c_in;
    return ColAt{c - t * g.c_in, t / g.k, t % g.k};
}
__device__ __forceinline__ float im2col(const Geom &g, const float *x, const PixelAt &p, const ColAt &c) {
    return read_u(g, x, p.b, p.ih0 + c.dh, p.iw0 + c.dw, c.ci);
}
// Im2col entry: u at output pixel `pixel` (flat over [batch, h_out, w_out]) and
// column `col`. The forward pass reads it as A(m = pixel, k = col), the weight
// gradient as A(m = col, k = pixel).
__device__ __forceinline__ float read_im2col(const Geom &g, const float *x, int64_t pixel, int64_t col) {
    return im2col(g, x, pixel_at(g, pixel), col_at(g, col));
}

// Each Op reads A(m, k) = a(a_m(m), a_k(k)) and B(k, n) = b(b_k(k), b_n(n)):
// the index decompositions are separate, so the tensor-core engine, where a
// thread's k (or m, or n) is the same for all its staged elements, makes each
// once (kSplit); a(m, k) and bv(k, n) are the plain forms. a_src and b_src
// are the addresses of the same elements (nullptr for a zero), a_base and
// b_base a valid address of each operand's tensor, for the engine's
// asynchronous copies (tc_gemm.h, tc_tile_async).
struct FwdOp {
    static constexpr bool kAK = true;   // A(m, k): k -> ci contiguous
    static constexpr bool kBKc = false;  // B(k, n) = weight[k][n]: n contiguous
    static constexpr bool kSplit = true;
    Geom g;
    const float *x, *w;
    int64_t M, N, K;
    __device__ PixelAt a_m(int64_t m) const { return pixel_at(g, m); }
    __device__ ColAt a_k(int64_t k) const { return col_at(g, k); }
    __device__ float a(const PixelAt &m, const ColAt &k) const { return im2col(g, x, m, k); }
    __device__ int32_t b_k(int64_t k) const { return (int32_t)k * g.c_out; }
    __device__ int32_t b_n(int64_t n) const { return (int32_t)n; }
    __device__ float b(int32_t k, int32_t n) const { return w[k + n]; }
    __device__ float a(int64_t m, int64_t k) const { return a(a_m(m), a_k(k)); }
    __device__ float bv(int64_t k, int64_t n) const { return b(b_k(k), b_n(n)); }
    __device__ const float *a_src(const PixelAt &m, const ColAt &k) const {
        return addr_u(g, x, m.b, m.ih0 + k.dh, m.iw0 + k.dw, k.ci);
    }
    __device__ const float *b_src(int32_t k, int32_t n) const { return w + k + n; }
    __device__ const float *a_base() const { return x; }
    __device__ const float *b_base() const { return w; }
};

// The forward of group_norm_conv2d_forward: FwdOp's maps, with each stored
// input value v (+ tb) normalised as it is read, z = (v - mean) * rstd * gamma
// + beta and silu(z) when asked (norm_math.h, as the GroupNorm forward), the
// padding left 0. A column's constants come with its decomposition: gamma,
// beta and its group, and, given a row of the tile (a_k(k, m_first), which
// the tensor-core engine passes), tb, mean and rstd of that row's sample, so a
// thread whose column is fixed for a chunk loads them once per chunk instead
// of once per element; rows of another sample load their own.
struct FwdGnOp {
    static constexpr bool kAK = true;
    static constexpr bool kBKc = false;
    static constexpr bool kSplit = true;
    Geom g;
    const float *x, *w;
    int64_t M, N, K;
    d4j_gn_input gn;
    struct Col {
        ColAt at;
        float gamma, beta;
        int32_t group;
        int32_t b;             // the sample whose statistics follow, -1: none
        float tb, mean, rstd;  // of (b, at.ci)
    };
    struct Stats {
        float tb, mean, rstd;
    };
    __device__ Stats stats(int32_t b, const ColAt &c, int32_t group) const {
        const int32_t s = b * gn.groups + group;
        return Stats{gn.tb ? gn.tb[b * g.c_in + c.ci] : 0.0f, gn.mean[s], gn.rstd[s]};
    }
    __device__ PixelAt a_m(int64_t m) const { return pixel_at(g, m); }
    __device__ Col a_k(int64_t k, int64_t m_first) const {
        const ColAt c = col_at(g, k);
        const int32_t group = c.ci / (g.c_in / gn.groups);
        Col r{c, gn.gamma[c.ci], gn.beta[c.ci], group, -1, 0.0f, 0.0f, 0.0f};
        if (m_first >= 0) {
            r.b = (int32_t)m_first / (g.h_out * g.w_out);
            const Stats st = stats(r.b, c, group);
            r.tb = st.tb;
            r.mean = st.mean;
            r.rstd = st.rstd;
        }
        return r;
    }
    __device__ Col a_k(int64_t k) const { return a_k(k, -1); }
    __device__ float a(const PixelAt &p, const Col &c) const {
        const int32_t i = u_index(g, p.b, p.ih0 + c.at.dh, p.iw0 + c.at.dw, c.at.ci);
        if (i < 0) return 0.0f;
        const Stats st = p.b == c.b ? Stats{c.tb, c.mean, c.rstd} : stats(p.b, c.at, c.group);
        // x + tb rounded as the GroupNorm forward rounds it (tb = 0 adds nothing)
        const float v = gn.tb ? x[i] + st.tb : x[i];
        const float z = d4j_gn_z(d4j_gn_xhat(v, st.mean, st.rstd), c.gamma, c.beta);
        return gn.silu ? d4j_silu(z) : z;
    }
    __device__ int32_t b_k(int64_t k) const { return (int32_t)k * g.c_out; }
    __device__ int32_t b_n(int64_t n) const { return (int32_t)n; }
    __device__ float b(int32_t k, int32_t n) const { return w[k + n]; }
    __device__ float a(int64_t m, int64_t k) const { return a(a_m(m), a_k(k)); }
    __device__ float bv(int64_t k, int64_t n) const { return b(b_k(k), b_n(n)); }
};

struct DxOp {
    static constexpr bool kAK = true;   // A(m, k): k -> co contiguous in dy
    static constexpr bool kBKc = true;  // B(k, n) = weight[tap][n][co]: k -> co contiguous
    static constexpr bool kSplit = true;
    Geom g;
    const float *dy, *w;
    int64_t M, N, K;
    struct InPixel {
        int32_t b, ih, iw;  // a stored input pixel
    };
    struct Term {
        int32_t co, kh, kw, child_h, child_w;  // k = (child, tap, co)
    };
    __device__ InPixel a_m(int64_t m) const {
        const int32_t hw = g.h * g.w, pm = (int32_t)m, rem = pm % hw;
        return InPixel{pm / hw, rem / g.w, rem % g.w};
    }
    __device__ Term a_k(int64_t k) const {
        const int32_t pk = (int32_t)k, r = pk / g.c_out, taps = g.k * g.k, t = r % taps, child = r / taps;
        return Term{pk - r * g.c_out, t / g.k, t % g.k, child / 2, child % 2};
    }
    __device__ float a(const InPixel &p, const Term &t) const {
        int32_t ih = p.ih, iw = p.iw;
        if (g.upsample2x) {
            ih = 2 * ih + t.child_h;
            iw = 2 * iw + t.child_w;
        }
        const int32_t hn = ih + g.pad_top - t.kh, wn = iw + g.pad_left - t.kw;
        if (hn < 0 || wn < 0 || hn % g.stride != 0 || wn % g.stride != 0) return 0.0f;
        const int32_t oh = hn / g.stride, ow = wn / g.stride;
        if (oh >= g.h_out || ow >= g.w_out) return 0.0f;
        return dy[((p.b * g.h_out + oh) * g.w_out + ow) * g.c_out + t.co];
    }
    // the address a() reads, nullptr where it returns 0
    __device__ const float *a_src(const InPixel &p, const Term &t) const {
        int32_t ih = p.ih, iw = p.iw;
        if (g.upsample2x) {
            ih = 2 * ih + t.child_h;
            iw = 2 * iw + t.child_w;
        }
        const int32_t hn = ih + g.pad_top - t.kh, wn = iw + g.pad_left - t.kw;
        if (hn < 0 || wn < 0 || hn % g.stride != 0 || wn % g.stride != 0) return nullptr;
        const int32_t oh = hn / g.stride, ow = wn / g.stride;
        if (oh >= g.h_out || ow >= g.w_out) return nullptr;
        return dy + ((p.b * g.h_out + oh) * g.w_out + ow) * g.c_out + t.co;
    }
    __device__ const float *a_base() const { return dy; }
    __device__ const float *b_base() const { return w; }
    // B(k, n) = weight[tap][n][co]: the k part is tap * c_in * c_out + co
    __device__ int32_t b_k(int64_t k) const {
        const int32_t pk = (int32_t)k, r = pk / g.c_out, t = r % (g.k * g.k);
        return t * g.c_in * g.c_out + (pk - r * g.c_out);
    }
    __device__ int32_t b_n(int64_t n) const { return (int32_t)n * g.c_out; }
    __device__ float b(int32_t k, int32_t n) const { return w[k + n]; }
    __device__ const float *b_src(int32_t k, int32_t n) const { return w + k + n; }
    __device__ float a(int64_t m, int64_t k) const { return a(a_m(m), a_k(k)); }
    __device__ float bv(int64_t k, int64_t n) const { return b(b_k(k), b_n(n)); }
};

struct DwOp {
    static constexpr bool kAK = false;   // A(m, k) = u at pixel k, channel m: m -> ci contiguous
    static constexpr bool kBKc = false;  // B(k, n) = dy[k][n]: n contiguous
    static constexpr bool kSplit = true;
    Geom g;
    const float *x, *dy;
    int64_t M, N, K;
    __device__ ColAt a_m(int64_t m) const { return col_at(g, m); }
    __device__ PixelAt a_k(int64_t k) const { return pixel_at(g, k); }
    __device__ float a(const ColAt &m, const PixelAt &k) const { return im2col(g, x, k, m); }
    __device__ int32_t b_k(int64_t k) const { return (int32_t)k * g.c_out; }
    __device__ int32_t b_n(int64_t n) const { return (int32_t)n; }
    __device__ float b(int32_t k, int32_t n) const { return dy[k + n]; }
    __device__ float a(int64_t m, int64_t k) const { return a(a_m(m), a_k(k)); }
    __device__ float bv(int64_t k, int64_t n) const { return b(b_k(k), b_n(n)); }
    __device__ const float *a_src(const ColAt &m, const PixelAt &k) const {
        return addr_u(g, x, k.b, k.ih0 + m.dh, k.iw0 + m.dw, m.ci);
    }
    __device__ const float *b_src(int32_t k, int32_t n) const { return dy + k + n; }
    __device__ const float *a_base() const { return x; }
    __device__ const float *b_base() const { return dy; }
};

// The tensor-core kernels (kernels_conv2d_tc.cu): the same GEMMs with TF32 or
// BF16 inputs (precision: D4J_PRECISION_TF32 or D4J_PRECISION_BF16) and FP32
// accumulation, on 64 x 64 or 128 x 128 tiles (tile: 64, 128, kTcAsyncTile, or 0 to
// choose by the problem's size, tc_gemm.h's wide_tiles). tc_dw_partial writes
// partial[split][m][n] for the pixel slices of per_split pixels, like the SIMT dW.
d4j_status tc_forward(cudaStream_t stream, int precision, int tile, const FwdOp &op, const float *bias, float *y);
d4j_status tc_forward_gn(cudaStream_t stream, int precision, int tile, const FwdGnOp &op, const float *bias, float *y);
d4j_status tc_dx(cudaStream_t stream, int precision, int tile, const DxOp &op, float *dx);
d4j_status tc_dw_partial(cudaStream_t stream, int precision, int tile, const DwOp &op, int64_t per_split,
                         int64_t splits, float *partial);

// The tile argument of v5: TF32 operands staged by cp.async on 128 x 128 tiles of
// 4 warps (tc_gemm.h, tc_tile_async); at BF16, whose inputs must be converted
// before they are stored, the 128 x 128 register-staged tile (v4's).
constexpr int kTcAsyncTile = -128;

// The tile of a conv2d tensor-core variant: v2 chooses (kTcAsyncTile at TF32 where it takes 128 x 128),
// v3 64 x 64, v4 128 x 128, v5 kTcAsyncTile.
inline int tc_tile_of(const char *variant) {
    return variant[1] == '3' ? 64 : variant[1] == '4' ? 128 : variant[1] == '5' ? kTcAsyncTile : 0;
}

}  // namespace d4j::cuda::conv
#endif
