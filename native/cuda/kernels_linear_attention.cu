// Linear layers and multi-head attention on CUDA.
//
// Linear: the three products (forward, dX, dW) are one strided SGEMM
//   C[m, n] (+)= sum_k A(m, k) B(k, n),  A(m, k) = A[m*sam + k*sak], B(k, n) = B[k*sbk + n*sbn]
// in two variants of the "linear" family:
//   v1: 64 x 64 block tile, 16-deep k slices staged in shared memory, 256
//       threads each owning a 4 x 4 register tile (strided by 16 so that
//       shared-memory reads are conflict-free and C stores coalesce);
//   v2: one thread per C element reading global memory (the baseline);
//   v3: the same products on tensor cores (kernels_linear_tc.cu).
// Each C element is summed by one thread in k order: deterministic. The bias
// gradient is two passes (per-chunk column sums, then the chunks in order).
//
// Attention v1: one block per (query row, batch*head). The row's scores live
// in shared memory (tokens floats); max and sum are block tree reductions, and
// the weighted sums over tokens are split into G = 256 / head_dim groups
// whose partials are added in group order (head dimensions above 256 in
// slices of 256). The backward pass is a row kernel (Dsum, dq) and a column
// kernel (dk, dv), so no output needs atomics. v2 (tensor cores) is
// kernels_attention_flash.cu.
#include "attention_flash.h"
#include "cuda_common.h"
#include "cuda_kernels.h"
#include "linear_tc.h"

namespace d4j::cuda {

namespace {

constexpr int kTile = 64;
constexpr int kDepth = 16;
constexpr int kGemmThreads = 256;  // 16 x 16, 4 x 4 outputs each

struct GemmArgs {
    int64_t M, N, K;
    const float *A;
    int64_t sam, sak;
    const float *B;
    int64_t sbk, sbn;
    float *C;
    const float *bias;  // added when not accumulating, or null
    int accumulate;
};

__device__ inline void store_c(const GemmArgs &g, int64_t m, int64_t n, float acc) {
    float *c = g.C + m * g.N + n;
    if (g.accumulate) *c += acc;
    else *c = g.bias ? g.bias[n] + acc : acc;
}

__global__ void gemm_tiled_kernel(GemmArgs g) {
    __shared__ float As[kDepth][kTile];
    __shared__ float Bs[kDepth][kTile];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int64_t m0 = (int64_t)blockIdx.x * kTile, n0 = (int64_t)blockIdx.y * kTile;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int64_t k0 = 0; k0 < g.K; k0 += kDepth) {
        // 64 x 16 elements of each operand, 4 per thread; consecutive threads
        // walk the operand's unit-stride dimension so global loads coalesce.
        for (int e = threadIdx.x; e < kTile * kDepth; e += kGemmThreads) {
            int mm, kk;
            if (g.sak == 1) { mm = e / kDepth; kk = e % kDepth; }
            else { kk = e / kTile; mm = e % kTile; }
            const int64_t m = m0 + mm, k = k0 + kk;
            As[kk][mm] = (m < g.M && k < g.K) ? g.A[m * g.sam + k * g.sak] : 0.0f;
            int nn;
            if (g.sbk == 1) { nn = e / kDepth; kk = e % kDepth; }
            else { kk = e / kTile; nn = e % kTile; }
            const int64_t n = n0 + nn, k2 = k0 + kk;
            Bs[kk][nn] = (n < g.N && k2 < g.K) ? g.B[k2 * g.sbk + n * g.sbn] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < kDepth; ++kk) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int64_t m = m0 + ty + 16 * i;
        if (m >= g.M) continue;
        for (int j = 0; j < 4; ++j) {
            const int64_t n = n0 + tx + 16 * j;
            if (n < g.N) store_c(g, m, n, acc[i][j]);
        }
    }
}

__global__ void gemm_simple_kernel(GemmArgs g) {
    const int64_t n = (int64_t)blockIdx.y * 16 + threadIdx.x % 16;
    const int64_t m = (int64_t)blockIdx.x * 16 + threadIdx.x / 16;
    if (m >= g.M || n >= g.N) return;
    float acc = 0.0f;
    for (int64_t k = 0; k < g.K; ++k) acc += g.A[m * g.sam + k * g.sak] * g.B[k * g.sbk + n * g.sbn];
    store_c(g, m, n, acc);
}

d4j_status gemm(State *s, const GemmArgs &g) {
    const bool simple = s->variants.index("linear") == 1;
    const int64_t tile = simple ? 16 : kTile;
    const int64_t gx = (g.M + tile - 1) / tile, gy = (g.N + tile - 1) / tile;
    if (gx > 2147483647LL || gy > 65535) {
        g_host->set_error("linear: a %lld x %lld product needs a %lld x %lld grid, above the CUDA limit (2^31-1 x 65535)",
                          (long long)g.M, (long long)g.N, (long long)gx, (long long)gy);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    const dim3 grid((unsigned)gx, (unsigned)gy);
    if (simple) {
        D4J_LAUNCH(gemm_simple_kernel, grid, 256, 0, s->stream, g);
        return launched("gemm_simple_kernel");
    }
    D4J_LAUNCH(gemm_tiled_kernel, grid, kGemmThreads, 0, s->stream, g);
    return launched("gemm_tiled_kernel");
}

constexpr int kBiasRows = 256;  // rows summed per partial

// partial[c, n] = sum of dy[m, n] for m in chunk c, in m order.
__global__ void bias_partial_kernel(const float *dy, int64_t rows, int64_t n_total, float *partial) {
    const int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= n_total) return;
    const int64_t m0 = (int64_t)blockIdx.y * kBiasRows;
    const int64_t m1 = m0 + kBiasRows < rows ? m0 + kBiasRows : rows;
    float acc = 0.0f;
    for (int64_t m = m0; m < m1; ++m) acc += dy[m * n_total + n];
    partial[(int64_t)blockIdx.y * n_total + n] = acc;
}

// db[n] += sum_c partial[c, n], chunks in order.
__global__ void bias_final_kernel(const float *partial, int64_t chunks, int64_t n_total, float *db) {
    const int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= n_total) return;
    float acc = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) acc += partial[c * n_total + n];
    db[n] += acc;
}

// ---- attention ----

constexpr int kAttnThreads = 256;

// Block-wide reduction of v (max or sum) over kAttnThreads threads in a fixed
// tree order; every thread gets the result. red: kAttnThreads floats.
template <bool kMax>
__device__ float block_reduce(float v, float *red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int stride = kAttnThreads / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) {
            float o = red[threadIdx.x + stride];
            red[threadIdx.x] = kMax ? fmaxf(red[threadIdx.x], o) : red[threadIdx.x] + o;
        }
        __syncthreads();
    }
    float r = red[0];
    __syncthreads();  // red is reused by the caller
    return r;
}

struct AttnDims {
    int64_t B, L, H, D;
    float scale;
};

__device__ inline int64_t tok(const AttnDims &a, int64_t b, int64_t l, int64_t h) {
    return ((b * a.L + l) * a.H + h) * a.D;
}

// Columns [d0, d0 + slice_width(a, d0)) of a head: at most 256, one per thread.
__device__ inline int slice_width(const AttnDims &a, int d0) {
    return (int)a.D - d0 < kAttnThreads ? (int)a.D - d0 : kAttnThreads;
}

// out[d] = sum_t w[t] x[t, d0 + d] over t < L for d < W = slice_width(a, d0),
// rows of x at x + tok(t). Threads form G = 256 / W groups; group g sums
// t = g, g + G, ... and the partials are added in group order by threads
// d < W (result returned there).
__device__ float group_weighted_sum(const AttnDims &a, const float *w, const float *x, int64_t b, int64_t h, int d0,
                                    float *part) {
    const int D = slice_width(a, d0), G = kAttnThreads / D;
    const int g = threadIdx.x / D, d = threadIdx.x % D;
    if (g < G) {
        float acc = 0.0f;
        for (int64_t t = g; t < a.L; t += G) acc += w[t] * x[tok(a, b, t, h) + d0 + d];
        part[g * D + d] = acc;
    }
    __syncthreads();
    float r = 0.0f;
    if ((int)threadIdx.x < D)
        for (int gg = 0; gg < G; ++gg) r += part[gg * D + threadIdx.x];
    __syncthreads();
    return r;
}

// Shared layout of the attention kernels: w0 [L], w1 [L] (backward columns
// only), vec0 [D], vec1 [D], red [256], part [256].
__global__ void attn_fwd_kernel(AttnDims a, const float *q, const float *k, const float *v, float *out, float *lse) {
    D4J_DYNAMIC_SHARED(float, sh);
    float *srow = sh, *qs = sh + a.L, *red = qs + a.D, *part = red + kAttnThreads;
    const int64_t i = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
    for (int d = threadIdx.x; d < a.D; d += kAttnThreads) qs[d] = q[tok(a, b, i, h) + d];
    __syncthreads();
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < a.L; j += kAttnThreads) {
        const float *kj = k + tok(a, b, j, h);
        float s = 0.0f;
        for (int d = 0; d < a.D; ++d) s += qs[d] * kj[d];
        s *= a.scale;
        srow[j] = s;
        m = fmaxf(m, s);
    }
    m = block_reduce<true>(m, red);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < a.L; j += kAttnThreads) {
        float p = expf(srow[j] - m);
        srow[j] = p;
        sum += p;
    }
    sum = block_reduce<false>(sum, red);
    for (int d0 = 0; d0 < a.D; d0 += kAttnThreads) {
        float o = group_weighted_sum(a, srow, v, b, h, d0, part);
        if ((int)threadIdx.x < slice_width(a, d0)) out[tok(a, b, i, h) + d0 + threadIdx.x] = o / sum;
    }
    if (threadIdx.x == 0 && lse) lse[bh * a.L + i] = m + logf(sum);
}

// Row pass: Dsum[i] = dO_i . O_i, dS[i, :] = P (dP - Dsum), dq_i = scale dS k.
__global__ void attn_bwd_rows_kernel(AttnDims a, const float *q, const float *k, const float *v, const float *out,
                                     const float *lse, const float *dout, float *dsum, float *dq) {
    D4J_DYNAMIC_SHARED(float, sh);
    float *srow = sh, *qs = sh + a.L, *gs = qs + a.D, *red = gs + a.D, *part = red + kAttnThreads;
    const int64_t i = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
    for (int d = threadIdx.x; d < a.D; d += kAttnThreads) {
        qs[d] = q[tok(a, b, i, h) + d];
        gs[d] = dout[tok(a, b, i, h) + d];
    }
    if (threadIdx.x == 0) {
        // one thread, d in order: the same value every launch
        float di = 0.0f;
        for (int d = 0; d < a.D; ++d) di += dout[tok(a, b, i, h) + d] * out[tok(a, b, i, h) + d];
        red[0] = di;
        dsum[bh * a.L + i] = di;
    }
    __syncthreads();
    const float di = red[0], li = lse[bh * a.L + i];
    __syncthreads();
    for (int64_t j = threadIdx.x; j < a.L; j += kAttnThreads) {
        const float *kj = k + tok(a, b, j, h), *vj = v + tok(a, b, j, h);
        float s = 0.0f, dp = 0.0f;
        for (int d = 0; d < a.D; ++d) {
            s += qs[d] * kj[d];
            dp += gs[d] * vj[d];
        }
        srow[j] = expf(s * a.scale - li) * (dp - di);
    }
    __syncthreads();
    for (int d0 = 0; d0 < a.D; d0 += kAttnThreads) {
        float g = group_weighted_sum(a, srow, k, b, h, d0, part);
        if ((int)threadIdx.x < slice_width(a, d0)) dq[tok(a, b, i, h) + d0 + threadIdx.x] = a.scale * g;
    }
}

// Column pass for key token j: P[:, j], dS[:, j]; dv_j = P^T dO, dk_j = scale dS^T q.
__global__ void attn_bwd_cols_kernel(AttnDims a, const float *q, const float *k, const float *v, const float *lse,
                                     const float *dout, const float *dsum, float *dk, float *dv) {
    D4J_DYNAMIC_SHARED(float, sh);
    float *pcol = sh, *dscol = sh + a.L, *ks = dscol + a.L, *vs = ks + a.D, *red = vs + a.D,
          *part = red + kAttnThreads;
    const int64_t j = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
    for (int d = threadIdx.x; d < a.D; d += kAttnThreads) {
        ks[d] = k[tok(a, b, j, h) + d];
        vs[d] = v[tok(a, b, j, h) + d];
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < a.L; i += kAttnThreads) {
        const float *qi = q + tok(a, b, i, h), *gi = dout + tok(a, b, i, h);
        float s = 0.0f, dp = 0.0f;
        for (int d = 0; d < a.D; ++d) {
            s += qi[d] * ks[d];  // same product order as the row pass
            dp += gi[d] * vs[d];
        }
        const float p = expf(s * a.scale - lse[bh * a.L + i]);
        pcol[i] = p;
        dscol[i] = p * (dp - dsum[bh * a.L + i]);
    }
    __syncthreads();
    for (int d0 = 0; d0 < a.D; d0 += kAttnThreads) {
        float gv = group_weighted_sum(a, pcol, dout, b, h, d0, part);
        float gk = group_weighted_sum(a, dscol, q, b, h, d0, part);
        if ((int)threadIdx.x < slice_width(a, d0)) {
            dv[tok(a, b, j, h) + d0 + threadIdx.x] = gv;
            dk[tok(a, b, j, h) + d0 + threadIdx.x] = a.scale * gk;
        }
    }
}

constexpr int kMaxTokens = 4096;  // 2 x 4096 floats of scores + 2 KiB fit the default 48 KiB

#ifdef D4J_SIM_TEETH
// Test-only copies of the forward kernel (simulator test builds), launched with
// more than 48 KiB of dynamic shared memory: one never allowed it (the launch
// must be refused, as on a GPU), one allowed it with cudaFuncSetAttribute.
constexpr size_t kTeethSmem = 64 * 1024;
__global__ void attn_fwd_smem_not_allowed_kernel(AttnDims a, const float *q, const float *k, const float *v,
                                                 float *out, float *lse) {
    attn_fwd_kernel(a, q, k, v, out, lse);
}
__global__ void attn_fwd_smem_allowed_kernel(AttnDims a, const float *q, const float *k, const float *v, float *out,
                                             float *lse) {
    attn_fwd_kernel(a, q, k, v, out, lse);
}
#endif

// flash: the tensor-core variant, which keeps no row of scores (no token limit).
d4j_status check_attn(const char *what, int32_t batch, int32_t tokens, int32_t heads, int32_t head_dim, bool flash) {
    if (!flash && tokens > kMaxTokens) {
        g_host->set_error("%s: the CUDA backend's attention v1 keeps a row of scores in shared memory and takes at "
                          "most %d tokens, got %d (v2, at precision tf32 or bf16, takes more)",
                          what, kMaxTokens, tokens);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    if ((int64_t)batch * heads > 65535) {
        g_host->set_error("%s: batch * heads = %lld exceeds the CUDA grid limit 65535", what,
                          (long long)batch * heads);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    if (head_dim > flash::kMaxHeadDim) {
        g_host->set_error("%s: head_dim %d exceeds %d", what, head_dim, flash::kMaxHeadDim);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    return D4J_OK;
}

size_t attn_smem(int64_t score_rows, int64_t L, int64_t D) {
    return sizeof(float) * (size_t)(score_rows * L + 2 * D + 2 * kAttnThreads);
}

}  // namespace

d4j_status linear_forward(void *state, const float *x, const float *w, const float *b, int64_t rows, int32_t in,
                          int32_t out, float *y) {
    auto *s = static_cast<State *>(state);
    if (lin::tensor_core_selected(s)) return lin::tc_forward(s, matrix_precision(s), x, w, b, rows, in, out, y);
    return gemm(s, GemmArgs{rows, out, in, x, in, 1, w, 1, in, y, b, 0});
}

d4j_status linear_backward(void *state, const float *x, const float *w, const float *dy, int64_t rows, int32_t in,
                           int32_t out, float *dx, float *dw, float *db) {
    auto *s = static_cast<State *>(state);
    d4j_status st;
    // one reading of the selection per call (see VariantTable)
    if (lin::tensor_core_selected(s)) {
        const int precision = matrix_precision(s);
        if (dx && (st = lin::tc_dx(s, precision, dy, w, rows, in, out, dx)) != D4J_OK) return st;
        if (dw && (st = lin::tc_dw(s, precision, dy, x, rows, in, out, dw)) != D4J_OK) return st;
    } else {
        if (dx && (st = gemm(s, GemmArgs{rows, in, out, dy, out, 1, w, in, 1, dx, nullptr, 0})) != D4J_OK) return st;
        if (dw && (st = gemm(s, GemmArgs{out, in, rows, dy, 1, out, x, in, 1, dw, nullptr, 1})) != D4J_OK) return st;
    }
    if (db) {
        const int64_t chunks = (rows + kBiasRows - 1) / kBiasRows;
        if (chunks > 65535) {
            g_host->set_error("linear_backward: %lld rows need %lld bias chunks, above the CUDA grid limit 65535",
                              (long long)rows, (long long)chunks);
            return D4J_ERR_INVALID_ARGUMENT;
        }
        void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
        if ((st = ensure_scratch(s, sizeof(float) * (size_t)(chunks * out), &scratch)) != D4J_OK) return st;
        float *partial = static_cast<float *>(scratch);
        D4J_LAUNCH(bias_partial_kernel, dim3(blocks_for(out, 128), (unsigned)chunks), 128, 0, s->stream, dy, rows,
                   (int64_t)out, partial);
        if ((st = launched("bias_partial_kernel")) != D4J_OK) return st;
        D4J_LAUNCH(bias_final_kernel, blocks_for(out, 128), 128, 0, s->stream, partial, chunks, (int64_t)out, db);
        return launched("bias_final_kernel");
    }
    return D4J_OK;
}

d4j_status attention_forward(void *state, const float *q, const float *k, const float *v, int32_t batch,
                             int32_t tokens, int32_t heads, int32_t head_dim, float scale, float *out, float *lse) {
    auto *s = static_cast<State *>(state);
    const bool flash = s->variants.tensor_core("attention");
    d4j_status st = check_attn("attention_forward", batch, tokens, heads, head_dim, flash);
    if (st != D4J_OK) return st;
    if (flash)
        return flash::forward(s->stream, matrix_precision(s), flash::Dims{batch, tokens, heads, head_dim, scale}, q, k,
                              v, out, lse);
    const AttnDims a{batch, tokens, heads, head_dim, scale};
    const dim3 grid((unsigned)tokens, (unsigned)(batch * heads));
    const size_t smem = attn_smem(1, tokens, head_dim);
#ifdef D4J_SIM_TEETH
    switch (s->variants.index("attention")) {
        case 1:
            D4J_LAUNCH(attn_fwd_smem_not_allowed_kernel, grid, kAttnThreads, kTeethSmem, s->stream, a, q, k, v, out,
                       lse);
            return launched("attn_fwd_smem_not_allowed_kernel");
        case 2:
            D4J_ALLOW_DYNAMIC_SMEM(attn_fwd_smem_allowed_kernel, kTeethSmem);
            D4J_LAUNCH(attn_fwd_smem_allowed_kernel, grid, kAttnThreads, kTeethSmem, s->stream, a, q, k, v, out, lse);
            return launched("attn_fwd_smem_allowed_kernel");
        default:
            break;
    }
#endif
    D4J_ALLOW_DYNAMIC_SMEM(attn_fwd_kernel, smem);
    D4J_LAUNCH(attn_fwd_kernel, grid, kAttnThreads, smem, s->stream, a, q, k, v, out, lse);
    return launched("attn_fwd_kernel");
}

d4j_status attention_backward(void *state, const float *q, const float *k, const float *v, const float *out,
                              const float *lse, const float *dout, int32_t batch, int32_t tokens, int32_t heads,
                              int32_t head_dim, float scale, float *dq, float *dk, float *dv) {
    auto *s = static_cast<State *>(state);
    const bool flash = s->variants.tensor_core("attention");
    d4j_status st = check_attn("attention_backward", batch, tokens, heads, head_dim, flash);
    if (st != D4J_OK) return st;
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    if ((st = ensure_scratch(s, sizeof(float) * (size_t)batch * heads * tokens, &scratch)) != D4J_OK) return st;
    float *dsum = static_cast<float *>(scratch);
    if (flash)
        return flash::backward(s->stream, matrix_precision(s), flash::Dims{batch, tokens, heads, head_dim, scale}, q,
                               k, v, out, lse, dout, dsum, dq, dk, dv);
    const AttnDims a{batch, tokens, heads, head_dim, scale};
    const dim3 grid((unsigned)tokens, (unsigned)(batch * heads));
    const size_t rows_smem = attn_smem(1, tokens, head_dim), cols_smem = attn_smem(2, tokens, head_dim);
    D4J_ALLOW_DYNAMIC_SMEM(attn_bwd_rows_kernel, rows_smem);
    D4J_LAUNCH(attn_bwd_rows_kernel, grid, kAttnThreads, rows_smem, s->stream, a, q, k, v, out, lse, dout, dsum, dq);
    if ((st = launched("attn_bwd_rows_kernel")) != D4J_OK) return st;
    D4J_ALLOW_DYNAMIC_SMEM(attn_bwd_cols_kernel, cols_smem);
    D4J_LAUNCH(attn_bwd_cols_kernel, grid, kAttnThreads, cols_smem, s->stream, a, q, k, v, lse, dout, dsum, dk, dv);
    return launched("attn_bwd_cols_kernel");
}

}  // namespace d4j::cuda
