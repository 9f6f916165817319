// The linear family on tensor cores (variant v3): forward, dX and dW as
// GEMMs C[m][n] = sum_k A(m, k) B(k, n) on the tile engine of tc_gemm.h, TF32
// (m16n16k8) or BF16 (m16n16k16) inputs, FP32 accumulation. One Op per
// product reads A and B straight from the row-major tensors:
//   forward: m = row, k = input feature, n = output feature;  A = x, B = w^T
//   dX:      m = row, k = output feature, n = input feature;  A = dy, B = w
//   dW:      m = output feature, k = row, n = input feature;  A = dy^T, B = x
//
// Split K. A product whose output covers few 64 x 64 tiles but sums over a
// long K (dW over thousands of rows, a layer applied to a small batch) would
// leave most SMs idle, so K is cut into fixed slices: one block per (tile,
// slice) writes its partial tile into scratch, and a second kernel adds the
// slices in slice order and applies the epilogue (bias, or += for dW). The
// slicing depends only on the shape, so results are deterministic; no atomics.
#include "cuda_common.h"
#include "linear_tc.h"
#include "tc_gemm.h"

namespace d4j::cuda::lin {

namespace {

using namespace tc;

struct FwdOp {
    static constexpr bool kAK = true;   // A(m, k) = x[m][k]
    static constexpr bool kBKc = true;  // B(k, n) = w[n][k]
    const float *x, *w;
    int64_t M, N, K;
    __device__ float a(int64_t m, int64_t k) const { return x[m * K + k]; }
    __device__ float bv(int64_t k, int64_t n) const { return w[n * K + k]; }
};

struct DxOp {
    static constexpr bool kAK = true;    // A(m, k) = dy[m][k]
    static constexpr bool kBKc = false;  // B(k, n) = w[k][n]
    const float *dy, *w;
    int64_t M, N, K;
    __device__ float a(int64_t m, int64_t k) const { return dy[m * K + k]; }
    __device__ float bv(int64_t k, int64_t n) const { return w[k * N + n]; }
};

struct DwOp {
    static constexpr bool kAK = false;   // A(m, k) = dy[k][m]
    static constexpr bool kBKc = false;  // B(k, n) = x[k][n]
    const float *dy, *x;
    int64_t M, N, K;
    __device__ float a(int64_t m, int64_t k) const { return dy[k * M + m]; }
    __device__ float bv(int64_t k, int64_t n) const { return x[k * N + n]; }
};

// What becomes of C[m][n] = v at dst[m * N + n]: v (+ bias[n]), or added to
// what is there (dW), as the SIMT variants store it.
struct Epilogue {
    float *dst;
    const float *bias;
    int accumulate;
    __device__ void operator()(int64_t i, int64_t n, float v) const {
        if (accumulate) dst[i] += v;
        else dst[i] = bias ? bias[n] + v : v;
    }
};

// The tile of block (x, y) over slice z of K: into partial[z][m][n] when K
// is split (partial given), else through the epilogue.
template <class P, class Op>
__device__ __forceinline__ void product(const Op &op, int64_t per_split, float *partial, const Epilogue &e) {
    const int64_t k_begin = (int64_t)blockIdx.z * per_split;
    const int64_t k_end = k_begin + per_split < op.K ? k_begin + per_split : op.K;
    float *out = partial ? partial + (int64_t)blockIdx.z * op.M * op.N : nullptr;
    tc_tile<P>(op, (int64_t)blockIdx.x * kTcBM, (int64_t)blockIdx.y * kTcBN, k_begin, k_end,
               [&](int64_t m, int64_t n, float v) {
                   if (out) out[m * op.N + n] = v;
                   else e(m * op.N + n, n, v);
               });
}

template <class P>
__global__ void __launch_bounds__(kTcThreads) linear_tc_fwd_kernel(FwdOp op, int64_t per_split, float *partial,
                                                                   Epilogue e) {
    product<P>(op, per_split, partial, e);
}

template <class P>
__global__ void __launch_bounds__(kTcThreads) linear_tc_dx_kernel(DxOp op, int64_t per_split, float *partial,
                                                                  Epilogue e) {
    product<P>(op, per_split, partial, e);
}

template <class P>
__global__ void __launch_bounds__(kTcThreads) linear_tc_dw_kernel(DwOp op, int64_t per_split, float *partial,
                                                                  Epilogue e) {
    product<P>(op, per_split, partial, e);
}

// C[i] = sum over s < splits of partial[s][i], in s order, through the epilogue.
__global__ void linear_tc_sum_kernel(const float *partial, int64_t count, int64_t n_cols, int splits, Epilogue e) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float s = 0.0f;
    for (int k = 0; k < splits; ++k) s += partial[(int64_t)k * count + i];
    e(i, i % n_cols, s);
}

// The K slicing of an M x N x K product: enough (tile, slice) blocks for two
// per SM of an H100 (132 SMs) where K allows, each slice at least kMinSlice
// deep (whole engine chunks, so its loads stay pipelined and its partial tile
// costs less traffic than its operands), at most kMaxSplits slices and the
// partials within kMaxPartial floats of scratch.
constexpr int64_t kTargetBlocks = 2 * 132;
constexpr int64_t kMinSlice = 8 * kTcBK;
constexpr int64_t kMaxSplits = 64;
constexpr int64_t kMaxPartial = (int64_t)1 << 24;  // 64 MiB

struct Split {
    int64_t per_split, splits;
};

Split split_for(int64_t M, int64_t N, int64_t K) {
    const int64_t tiles = ((M + kTcBM - 1) / kTcBM) * ((N + kTcBN - 1) / kTcBN);
    int64_t splits = (kTargetBlocks + tiles - 1) / tiles;
    if (splits > K / kMinSlice) splits = K / kMinSlice;
    if (splits > kMaxSplits) splits = kMaxSplits;
    if (splits > kMaxPartial / (M * N)) splits = kMaxPartial / (M * N);
    if (splits < 2) return {K, 1};
    const int64_t per_split = ((K + splits - 1) / splits + kTcBK - 1) / kTcBK * kTcBK;
    return {per_split, (K + per_split - 1) / per_split};
}

// A product's launch: its grid (x: m tiles, y: n tiles, z: K slices) and,
// when K is split, the partials in this thread's scratch. empty: nothing to do.
struct Plan {
    dim3 grid;
    int64_t per_split, splits;
    float *partial;
    bool empty;
};

d4j_status plan(State *s, const char *what, int64_t M, int64_t N, int64_t K, Plan *p) {
    *p = Plan{dim3(1), K, 1, nullptr, M == 0 || N == 0};
    if (p->empty) return D4J_OK;
    const int64_t gx = (M + kTcBM - 1) / kTcBM, gy = (N + kTcBN - 1) / kTcBN;
    if (gx > 2147483647LL || gy > 65535) {
        g_host->set_error("%s: a %lld x %lld product needs a %lld x %lld grid, above the CUDA limit (2^31-1 x 65535)",
                          what, (long long)M, (long long)N, (long long)gx, (long long)gy);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    const Split sp = split_for(M, N, K);
    p->per_split = sp.per_split;
    p->splits = sp.splits;
    p->grid = dim3((unsigned)gx, (unsigned)gy, (unsigned)sp.splits);
    if (sp.splits == 1) return D4J_OK;
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    d4j_status st = ensure_scratch(s, sizeof(float) * (size_t)(sp.splits * M * N), &scratch);
    p->partial = static_cast<float *>(scratch);
    return st;
}

// After the tile kernel (status st): the slices' sum when K was split.
d4j_status finish(State *s, const Plan &p, d4j_status st, int64_t M, int64_t N, const Epilogue &e) {
    if (st != D4J_OK || p.splits == 1) return st;
    const int64_t count = M * N;
    D4J_LAUNCH(linear_tc_sum_kernel, blocks_for(count, 256), 256, 0, s->stream, p.partial, count, N, (int)p.splits,
               e);
    return launched("linear_tc_sum_kernel");
}

}  // namespace

d4j_status tc_forward(State *s, int precision, const float *x, const float *w, const float *bias, int64_t rows,
                      int64_t in, int64_t out, float *y) {
    const FwdOp op{x, w, rows, out, in};
    const Epilogue e{y, bias, 0};
    Plan p;
    d4j_status st = plan(s, "linear_forward", op.M, op.N, op.K, &p);
    if (st != D4J_OK || p.empty) return st;
    if (precision == D4J_PRECISION_BF16) {
        D4J_LAUNCH(linear_tc_fwd_kernel<Bf16>, p.grid, kTcThreads, 0, s->stream, op, p.per_split, p.partial, e);
        st = launched("linear_tc_fwd_kernel<Bf16>");
    } else {
        D4J_LAUNCH(linear_tc_fwd_kernel<Tf32>, p.grid, kTcThreads, 0, s->stream, op, p.per_split, p.partial, e);
        st = launched("linear_tc_fwd_kernel<Tf32>");
    }
    return finish(s, p, st, op.M, op.N, e);
}

d4j_status tc_dx(State *s, int precision, const float *dy, const float *w, int64_t rows, int64_t in, int64_t out,
                 float *dx) {
    const DxOp op{dy, w, rows, in, out};
    const Epilogue e{dx, nullptr, 0};
    Plan p;
    d4j_status st = plan(s, "linear_backward (dx)", op.M, op.N, op.K, &p);
    if (st != D4J_OK || p.empty) return st;
    if (precision == D4J_PRECISION_BF16) {
        D4J_LAUNCH(linear_tc_dx_kernel<Bf16>, p.grid, kTcThreads, 0, s->stream, op, p.per_split, p.partial, e);
        st = launched("linear_tc_dx_kernel<Bf16>");
    } else {
        D4J_LAUNCH(linear_tc_dx_kernel<Tf32>, p.grid, kTcThreads, 0, s->stream, op, p.per_split, p.partial, e);
        st = launched("linear_tc_dx_kernel<Tf32>");
    }
    return finish(s, p, st, op.M, op.N, e);
}

d4j_status tc_dw(State *s, int precision, const float *dy, const float *x, int64_t rows, int64_t in, int64_t out,
                 float *dw) {
    const DwOp op{dy, x, out, in, rows};
    const Epilogue e{dw, nullptr, 1};
    Plan p;
    d4j_status st = plan(s, "linear_backward (dw)", op.M, op.N, op.K, &p);
    if (st != D4J_OK || p.empty) return st;
    if (precision == D4J_PRECISION_BF16) {
        D4J_LAUNCH(linear_tc_dw_kernel<Bf16>, p.grid, kTcThreads, 0, s->stream, op, p.per_split, p.partial, e);
        st = launched("linear_tc_dw_kernel<Bf16>");
    } else {
        D4J_LAUNCH(linear_tc_dw_kernel<Tf32>, p.grid, kTcThreads, 0, s->stream, op, p.per_split, p.partial, e);
        st = launched("linear_tc_dw_kernel<Tf32>");
    }
    return finish(s, p, st, op.M, op.N, e);
}

}  // namespace d4j::cuda::lin
