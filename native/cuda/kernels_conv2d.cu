// The conv2d family on CUDA: forward, dX and dW as shared-memory tiled
// implicit GEMMs C[m][n] = sum_k A(m, k) B(k, n), where A and B are read
// straight from the NHWC / HWIO tensors through index maps (no im2col buffer):
//   forward: m = output pixel, k = (tap, ci), n = co;  A = padded/upsampled x, B = weight
//   dX:      m = stored input pixel, k = (child, tap, co), n = ci; A = dy reached
//            through that tap (zero where no output reads the position), B = weight^T
//   dW:      m = (tap, ci), k = output pixel, n = co;  A = x under the tap, B = dy
// One block computes a kBM x kBN tile of C with 256 threads, each a 4 x 4
// sub-tile, walking K in chunks of kBK staged in shared memory (two barriers
// per chunk). The staging loop puts consecutive threads on the index that is
// contiguous in memory (flags kAK / kBK_ below), so global loads coalesce.
//
// Determinism: every C element is summed by one thread in a fixed order. dW
// reduces over N * H_out * W_out pixels: the pixel range is cut into `splits`
// fixed slices, one block per (tile, slice) writes a partial tile, and a second
// kernel adds the slices in slice order into dweight. dbias likewise: partial
// sums per (channel group, slice), a fixed-order tree in shared memory, then
// a second pass. No float atomics anywhere.
#include "conv2d_ops.h"
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

namespace {

using namespace conv;

constexpr int kBM = 64, kBN = 64;
constexpr int kThreads = 256;  // 16 x 16, each 4 x 4 outputs
constexpr int kTM = 4, kTN = 4;

// Stages one kBK x kCols slice of an operand in shared memory: S[kk][c] =
// read(c0 + c, k0 + kk), 0 outside [0, limit) x [k0, k_end). kKFast: consecutive
// threads take consecutive k (the operand is contiguous along k), else along c,
// so the global reads coalesce either way.
template <bool kKFast, int kCols, int kPitch, class Read>
__device__ __forceinline__ void load_tile(float (&S)[kBK][kPitch], int tid, int64_t k0, int64_t k_end, int64_t c0,
                                          int64_t limit, const Read &read) {
    for (int e = tid; e < kCols * kBK; e += kThreads) {
        int kk, cc;
        if constexpr (kKFast) {
            kk = e % kBK;
            cc = e / kBK;
        } else {
            cc = e % kCols;
            kk = e / kCols;
        }
        const int64_t k = k0 + kk, c = c0 + cc;
        S[kk][cc] = (k < k_end && c < limit) ? read(c, k) : 0.0f;
    }
}

// acc[i][j] = C[m0 + ty + 16 i][n0 + tx + 16 j] summed over k in [k_begin, k_end).
template <class Op>
__device__ void gemm_tile(const Op &op, int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end,
                          float (&acc)[kTM][kTN]) {
    __shared__ float As[kBK][kBM + 1];
    __shared__ float Bs[kBK][kBN + 1];
    const int tid = (int)threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    for (int i = 0; i < kTM; ++i)
        for (int j = 0; j < kTN; ++j) acc[i][j] = 0.0f;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += kBK) {
        load_tile<Op::kAK, kBM>(As, tid, k0, k_end, m0, op.M, [&](int64_t m, int64_t k) { return op.a(m, k); });
        load_tile<Op::kBKc, kBN>(Bs, tid, k0, k_end, n0, op.N, [&](int64_t n, int64_t k) { return op.bv(k, n); });
        __syncthreads();
        for (int kk = 0; kk < kBK; ++kk) {
            float av[kTM], bw[kTN];
            for (int i = 0; i < kTM; ++i) av[i] = As[kk][ty + 16 * i];
            for (int j = 0; j < kTN; ++j) bw[j] = Bs[kk][tx + 16 * j];
            for (int i = 0; i < kTM; ++i)
                for (int j = 0; j < kTN; ++j) acc[i][j] += av[i] * bw[j];
        }
        __syncthreads();
    }
}

// Writes this thread's outputs of a gemm_tile, C[m][n] to dst[m * N + n] (plus
// bias[n] when bias is given), skipping those outside M x N.
__device__ __forceinline__ void store_tile(const float (&acc)[kTM][kTN], int64_t m0, int64_t n0, int64_t M, int64_t N,
                                           const float *bias, float *dst) {
    const int tx = (int)threadIdx.x % 16, ty = (int)threadIdx.x / 16;
    for (int i = 0; i < kTM; ++i) {
        const int64_t m = m0 + ty + 16 * i;
        if (m >= M) continue;
        for (int j = 0; j < kTN; ++j) {
            const int64_t n = n0 + tx + 16 * j;
            if (n < N) dst[m * N + n] = bias ? acc[i][j] + bias[n] : acc[i][j];
        }
    }
}

__global__ void conv_fwd_kernel(FwdOp op, const float *bias, float *y) {
    float acc[kTM][kTN];
    const int64_t m0 = (int64_t)blockIdx.x * kBM, n0 = (int64_t)blockIdx.y * kBN;
    gemm_tile(op, m0, n0, 0, op.K, acc);
    store_tile(acc, m0, n0, op.M, op.N, bias, y);
}

__global__ void conv_fwd_gn_kernel(FwdGnOp op, const float *bias, float *y) {
    float acc[kTM][kTN];
    const int64_t m0 = (int64_t)blockIdx.x * kBM, n0 = (int64_t)blockIdx.y * kBN;
    gemm_tile(op, m0, n0, 0, op.K, acc);
    store_tile(acc, m0, n0, op.M, op.N, bias, y);
}

__global__ void conv_dx_kernel(DxOp op, float *dx) {
    float acc[kTM][kTN];
    const int64_t m0 = (int64_t)blockIdx.x * kBM, n0 = (int64_t)blockIdx.y * kBN;
    gemm_tile(op, m0, n0, 0, op.K, acc);
    store_tile(acc, m0, n0, op.M, op.N, nullptr, dx);
}

// partial[split][m][n] over pixels [split * per_split, min(K, (split + 1) * per_split)).
__global__ void conv_dw_partial_kernel(DwOp op, int64_t per_split, float *partial) {
    float acc[kTM][kTN];
    const int64_t m0 = (int64_t)blockIdx.x * kBM, n0 = (int64_t)blockIdx.y * kBN;
    const int64_t k_begin = (int64_t)blockIdx.z * per_split;
    const int64_t k_end = k_begin + per_split < op.K ? k_begin + per_split : op.K;
    gemm_tile(op, m0, n0, k_begin, k_end, acc);
    float *out = partial + (int64_t)blockIdx.z * op.M * op.N;
    store_tile(acc, m0, n0, op.M, op.N, nullptr, out);
}

// dst[i] += sum over s < splits of partial[s][i], in s order.
__global__ void conv_sum_splits_kernel(const float *partial, int64_t count, int splits, float *dst) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float s = 0.0f;
    for (int k = 0; k < splits; ++k) s += partial[(int64_t)k * count + i];
    dst[i] += s;
}

// dbias partials: block (32 channels, 8 rows) over one pixel slice; partial[split][co].
__global__ void __launch_bounds__(256) conv_db_partial_kernel(const float *dy, int64_t P, int32_t c_out,
                                                              int64_t per_split, float *partial) {
    __shared__ float sums[8][33];
    const int tx = (int)threadIdx.x % 32, ty = (int)threadIdx.x / 32;
    const int64_t co = (int64_t)blockIdx.x * 32 + tx;
    const int64_t q0 = (int64_t)blockIdx.y * per_split;
    const int64_t q1 = q0 + per_split < P ? q0 + per_split : P;
    float s = 0.0f;
    if (co < c_out)
        for (int64_t q = q0 + ty; q < q1; q += 8) s += dy[q * c_out + co];
    sums[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && co < c_out) {
        float t = 0.0f;
        for (int r = 0; r < 8; ++r) t += sums[r][tx];
        partial[(int64_t)blockIdx.y * c_out + co] = t;
    }
}

}  // namespace

d4j_status conv2d_forward(void *state, const Geom *gp, const float *x, const float *weight, const float *bias,
                          float *y) {
    auto *s = static_cast<State *>(state);
    FwdOp op{*gp, x, weight, (int64_t)gp->n * gp->h_out * gp->w_out, gp->c_out, (int64_t)gp->k * gp->k * gp->c_in};
    // the front bounds every tensor below 2^31 elements and c_out <= 2^20: grid.x < 2^26, grid.y < 2^15
    if (s->variants.tensor_core("conv2d")) {
        return tc_forward(s->stream, matrix_precision(s), tc_tile_of(s->variants.selected("conv2d")), op, bias, y);
    }
    const dim3 grid((unsigned)((op.M + kBM - 1) / kBM), (unsigned)((op.N + kBN - 1) / kBN));
    D4J_LAUNCH(conv_fwd_kernel, grid, kThreads, 0, s->stream, op, bias, y);
    return launched("conv_fwd_kernel");
}

d4j_status group_norm_conv2d_forward(void *state, const Geom *gp, const d4j_gn_input *gn, const float *x,
                                     const float *weight, const float *bias, float *y) {
    auto *s = static_cast<State *>(state);
    FwdGnOp op{*gp, x, weight, (int64_t)gp->n * gp->h_out * gp->w_out, gp->c_out, (int64_t)gp->k * gp->k * gp->c_in,
               *gn};
    if (s->variants.tensor_core("conv2d")) {
        return tc_forward_gn(s->stream, matrix_precision(s), tc_tile_of(s->variants.selected("conv2d")), op, bias, y);
    }
    const dim3 grid((unsigned)((op.M + kBM - 1) / kBM), (unsigned)((op.N + kBN - 1) / kBN));
    D4J_LAUNCH(conv_fwd_gn_kernel, grid, kThreads, 0, s->stream, op, bias, y);
    return launched("conv_fwd_gn_kernel");
}

d4j_status conv2d_backward(void *state, const Geom *gp, const float *x, const float *weight, const float *dy,
                           float *dx, float *dweight, float *dbias) {
    auto *s = static_cast<State *>(state);
    const Geom g = *gp;
    // one reading of the selection per call (see VariantTable)
    const bool tensor_core = s->variants.tensor_core("conv2d");
    const int precision = matrix_precision(s);
    const int tile = tensor_core ? tc_tile_of(s->variants.selected("conv2d")) : 0;
    const int taps = g.k * g.k;
    const int64_t P = (int64_t)g.n * g.h_out * g.w_out;
    if (dx) {
        DxOp op{g, dy, weight, (int64_t)g.n * g.h * g.w, g.c_in, (int64_t)(g.upsample2x ? 4 : 1) * taps * g.c_out};
        d4j_status st;
        if (tensor_core) {
            st = tc_dx(s->stream, precision, tile, op, dx);
        } else {
            const dim3 grid((unsigned)((op.M + kBM - 1) / kBM), (unsigned)((op.N + kBN - 1) / kBN));
            D4J_LAUNCH(conv_dx_kernel, grid, kThreads, 0, s->stream, op, dx);
            st = launched("conv_dx_kernel");
        }
        if (st != D4J_OK) return st;
    }
    if (!dweight && !dbias) return D4J_OK;
    // Pixel slices: about 512 pixels each, at most 64, and the dW partials kept
    // below 16M floats (64 MiB of scratch).
    const int64_t wcount = (int64_t)taps * g.c_in * g.c_out;
    int64_t splits = (P + 511) / 512;
    if (splits > 64) splits = 64;
    const int64_t budget = ((int64_t)1 << 24) / wcount;
    if (dweight && splits > budget) splits = budget;
    if (splits < 1) splits = 1;
    const int64_t per_split_raw = (P + splits - 1) / splits;
    const int64_t per_split = (per_split_raw + kBK - 1) / kBK * kBK;  // whole K chunks per slice
    splits = (P + per_split - 1) / per_split;
    const size_t w_part = dweight ? (size_t)(splits * wcount) * sizeof(float) : 0;
    const size_t w_aligned = (w_part + 255) & ~(size_t)255;
    const size_t b_part = dbias ? (size_t)(splits * g.c_out) * sizeof(float) : 0;
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    d4j_status st = ensure_scratch(s, w_aligned + b_part, &scratch);
    if (st != D4J_OK) return st;
    float *wpart = static_cast<float *>(scratch);
    float *bpart = reinterpret_cast<float *>(static_cast<char *>(scratch) + w_aligned);
    if (dweight) {
        DwOp op{g, x, dy, (int64_t)taps * g.c_in, g.c_out, P};
        if (tensor_core) {
            st = tc_dw_partial(s->stream, precision, tile, op, per_split, splits, wpart);
        } else {
            const dim3 grid((unsigned)((op.M + kBM - 1) / kBM), (unsigned)((op.N + kBN - 1) / kBN), (unsigned)splits);
            D4J_LAUNCH(conv_dw_partial_kernel, grid, kThreads, 0, s->stream, op, per_split, wpart);
            st = launched("conv_dw_partial_kernel");
        }
        if (st != D4J_OK) return st;
        D4J_LAUNCH(conv_sum_splits_kernel, blocks_for(wcount, 256), 256, 0, s->stream, wpart, wcount, (int)splits,
                   dweight);
        st = launched("conv_sum_splits_kernel(dweight)");
        if (st != D4J_OK) return st;
    }
    if (dbias) {
        const dim3 grid((unsigned)((g.c_out + 31) / 32), (unsigned)splits);
        D4J_LAUNCH(conv_db_partial_kernel, grid, 256, 0, s->stream, dy, P, g.c_out, per_split, bpart);
        st = launched("conv_db_partial_kernel");
        if (st != D4J_OK) return st;
        D4J_LAUNCH(conv_sum_splits_kernel, blocks_for(g.c_out, 256), 256, 0, s->stream, bpart, (int64_t)g.c_out,
                   (int)splits, dbias);
        st = launched("conv_sum_splits_kernel(dbias)");
        if (st != D4J_OK) return st;
    }
    return D4J_OK;
}

}  // namespace d4j::cuda
