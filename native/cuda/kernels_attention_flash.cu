// Attention on tensor cores (variant v2 of the "attention" family), in the
// manner of FlashAttention-2, with the WMMA API: TF32 (m16n16k8) or BF16
// (m16n16k16) inputs, FP32 accumulation. q, k, v, dout are FP32 in memory and
// rounded to the input format when staged in shared memory; the probabilities
// P and the score gradients dS are rounded before their products. No L x L
// matrix reaches global memory. Tile machinery: attention_flash_tiles.h.
//
// Forward (flash_fwd_kernel), one block per tile of kBR query rows of one
// (batch, head): for each tile of kBT keys and values staged in shared memory,
//   S = Q K^T on tensor cores, stored to shared memory;
//   per row in FP32: scale, keys beyond L masked, running maximum m and sum l
//     (online softmax), P = exp(S - m) rounded to the input format, and the
//     factor exp(m_old - m) of the rows' accumulators;
//   O = O * factor + P V on tensor cores.
// Finally out = O / l and lse = m + log l, the lse the SIMT kernels write.
//
// Backward, P recomputed from q, k and lse (P = exp(scale q.k - lse)), two
// kernels, each output summed by one block in a fixed order (no atomics):
//   flash_dq_kernel, per query tile: Dsum = rowsum(dout * out) in FP32 (also
//     written for the second kernel), then over key tiles S = Q K^T,
//     dP = dO V^T, dS = P (dP - Dsum), dQ += dS K; dq = scale dQ.
//   flash_dkdv_kernel, per key tile: over query tiles S^T = K Q^T,
//     dP^T = V dO^T, P^T and dS^T as above, dV += P^T dO, dK += dS^T Q;
//     dk = scale dK.
//
// Geometries by padded head dimension Dp (whole 16-column fragments; a head
// dimension that is not a multiple of 16 is padded with zeros): larger heads
// take fewer rows per block and shorter tiles, so that a warp holds at most
// 8 accumulator fragments (64 registers) and a block's shared memory stays
// below the 163 KiB an sm_80 allows (the launch opts in above 48 KiB):
//   forward          Dp <= 64: 64 rows x 32 keys, 4 warps; <= 128: 64 x 32, 8 warps;
//                    <= 256: 32 x 32, 8 warps; <= 512: 32 x 16, 8 warps
//   dq, dk/dv        Dp <= 64: 64 x 32, 4 warps; <= 128: 64 x 16, 8 warps;
//                    <= 256: 32 x 16, 8 warps; <= 512: 16 x 16, 8 warps
// When a tile's score fragments are fewer than the warps, each is split into
// slices of the head dimension whose partial sums the row pass adds in order.
#include "attention_flash.h"
#include "attention_flash_tiles.h"

namespace d4j::cuda::flash {

namespace {

using tc::Bf16;
using tc::Tf32;

// ---- forward ----

template <class K>
struct FwdLayout {
    size_t q, k, v, s, p, am, bytes;
    __host__ __device__ explicit FwdLayout(int Dp) {
        const size_t row = (size_t)K::pitch(Dp, false) * sizeof(typename K::S);
        Bump b;
        q = b.take(K::kBR * row);
        k = b.take(K::kBT * row);
        v = b.take(K::kBT * (size_t)K::pitch(Dp, true) * sizeof(typename K::S));
        s = b.take((size_t)K::kSplit1 * K::kBR * K::kSP * sizeof(float));
        p = b.take((size_t)K::kBR * K::kPP * sizeof(typename K::S));
        am = b.take((size_t)K::kWR * 16 * kAmPitch * sizeof(float));
        const size_t tile = (size_t)K::kBR * (Dp + 4) * sizeof(float);  // the output tile, at 0 after the loop
        bytes = (b.at > tile ? b.at : tile) + kSmemAlign;
    }
};

template <class K>
__global__ void __launch_bounds__(K::kThreads)
    flash_fwd_kernel(Dims a, int Dp, const float *q, const float *k, const float *v, float *out, float *lse) {
    typedef typename K::S S;
    constexpr int kSplit = K::kSplit1;
    const FwdLayout<K> lay(Dp);
    unsigned char *sm = flash_smem();
    S *Qs = reinterpret_cast<S *>(sm + lay.q), *Ks = reinterpret_cast<S *>(sm + lay.k);
    S *Vs = reinterpret_cast<S *>(sm + lay.v), *Ps = reinterpret_cast<S *>(sm + lay.p);
    float *Ss = reinterpret_cast<float *>(sm + lay.s), *Am = reinterpret_cast<float *>(sm + lay.am);

    const int tid = (int)threadIdx.x, wr = tid / 32 / K::kWD;
    const int L = (int)a.L, D = (int)a.D, ld = K::pitch(Dp, false), ldv = K::pitch(Dp, true);
    const int64_t bh = blockIdx.y, stride = a.H * a.D;
    const int64_t head = ((bh / a.H) * a.L * a.H + bh % a.H) * a.D;  // token 0 of head (b, h)
    const int i0 = (int)blockIdx.x * K::kBR, rows = imin(K::kBR, L - i0);
    stage<K>(Qs, ld, q + head + i0 * stride, stride, K::kBR, rows, D, Dp);

    typename K::Acc o[K::kOF];
    zero<K>(o);
    // the row pass: row r of the block, columns sub, sub + kTPR, ...
    const int r = tid / K::kTPR, sub = tid % K::kTPR;
    float *factor_row = Am + r * kAmPitch;  // row r % 16 of row group r / 16's matrix
    const float *factors = Am + wr * 16 * kAmPitch;
    float m_run = -INFINITY, l_run = 0.0f;
    for (int j0 = 0; j0 < L; j0 += K::kBT) {
        const int keys = imin(K::kBT, L - j0);
        __syncthreads();  // the previous tile's products are done with Ks, Vs, Ps and Am (and Qs is staged)
        stage<K>(Ks, ld, k + head + j0 * stride, stride, K::kBT, keys, D, Dp);
        stage<K>(Vs, ldv, v + head + j0 * stride, stride, K::kBT, keys, D, Dp);
        __syncthreads();
        const S *qa[1] = {Qs}, *kb[1] = {Ks};
        float *const so[1] = {Ss};
        products<K, 1>(qa, kb, ld, so, Dp);
        __syncthreads();

        float x[K::kBT / K::kTPR];  // this thread's scaled scores (columns sub + kTPR i), -inf beyond L
        float mx = -INFINITY;
        D4J_FLASH_UNROLL
        for (int i = 0; i < K::kBT / K::kTPR; ++i) {
            const int c = sub + K::kTPR * i;
            x[i] = c < keys ? score<K, kSplit>(Ss, r, c) * a.scale : -INFINITY;
            mx = fmaxf(mx, x[i]);
        }
        mx = row_reduce<K::kTPR, true>(mx);
        const float m_new = fmaxf(m_run, mx);  // finite: every tile has a key
        const float alpha = expf(m_run - m_new);  // 0 on the first tile
        float sum = 0.0f;
        D4J_FLASH_UNROLL
        for (int i = 0; i < K::kBT / K::kTPR; ++i) {
            const float p = expf(x[i] - m_new);  // 0 beyond L
            Ps[r * K::kPP + sub + K::kTPR * i] = K::P::convert(p);
            sum += p;  // l sums the unrounded P: lse stays log sum exp(s), which the backward relies on
        }
        sum = row_reduce<K::kTPR, false>(sum);
        l_run = l_run * alpha + sum;
        m_run = m_new;
        for (int c = sub; c < 16; c += K::kTPR) factor_row[c] = alpha;
        __syncthreads();

        scale_rows<K>(o, factors, Dp);
        accumulate<K>(o, Ps + wr * 16 * K::kPP, K::kPP, Vs, ldv, Dp);
    }
    __syncthreads();  // every warp is done with Am
    for (int c = sub; c < 16; c += K::kTPR) factor_row[c] = 1.0f / l_run;
    if (sub == 0 && lse != nullptr && r < rows) lse[bh * a.L + i0 + r] = m_run + logf(l_run);
    __syncthreads();
    scale_rows<K>(o, factors, Dp);
    __syncthreads();  // Am is read before the output tile (at offset 0) covers it
    write_rows<K>(o, reinterpret_cast<float *>(sm), Dp, out + head + i0 * stride, stride, rows, D);
}

// ---- backward ----

// Dsum of the block's rows (warp per row, lanes along d, a fixed butterfly),
// into dsum_s[r] and the global dsum; the rows' lse into lse_s (0 beyond L).
template <class K>
__device__ __forceinline__ void row_stats(const Dims &a, int64_t head, int64_t bh, int i0, int rows,
                                          const float *out, const float *dout, const float *lse, float *dsum,
                                          float *dsum_s, float *lse_s) {
    const int lane = (int)threadIdx.x % 32, D = (int)a.D;
    const int64_t stride = a.H * a.D;
    for (int r = (int)threadIdx.x / 32; r < K::kBR; r += K::kWarps) {
        float acc = 0.0f;
        if (r < rows) {
            const int64_t row = head + (int64_t)(i0 + r) * stride;
            for (int d = lane; d < D; d += 32) acc += dout[row + d] * out[row + d];
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) {
            dsum_s[r] = acc;
            lse_s[r] = r < rows ? lse[bh * a.L + i0 + r] : 0.0f;
            if (r < rows) dsum[bh * a.L + i0 + r] = acc;
        }
    }
}

// Shared memory of both backward kernels: rows (kBR, resident) and cols (kBT,
// one tile per step) of two staged operands each, the two FP32 products, the
// two staged row-pass results (the dQ kernel uses one), and per-row lse and
// Dsum (of the query rows: kBR for dQ, kBT for dK/dV).
template <class K>
struct BwdLayout {
    size_t r0, r1, c0, c1, s, dp, p, ds, lse, dsum, bytes;
    __host__ __device__ explicit BwdLayout(int Dp) {
        const size_t row = (size_t)K::pitch(Dp, false) * sizeof(typename K::S);
        const size_t prod = (size_t)K::kSplit2 * K::kBR * K::kSP * sizeof(float);
        const size_t staged = (size_t)K::kBR * K::kPP * sizeof(typename K::S);
        const size_t stats = (size_t)(K::kBR > K::kBT ? K::kBR : K::kBT) * sizeof(float);
        Bump b;
        r0 = b.take(K::kBR * row);
        r1 = b.take(K::kBR * row);
        c0 = b.take(K::kBT * row);
        c1 = b.take(K::kBT * row);
        s = b.take(prod);
        dp = b.take(prod);
        p = b.take(staged);
        ds = b.take(staged);
        lse = b.take(stats);
        dsum = b.take(stats);
        const size_t tile = (size_t)K::kBR * (Dp + 4) * sizeof(float);
        bytes = (b.at > tile ? b.at : tile) + kSmemAlign;
    }
};

template <class K>
__global__ void __launch_bounds__(K::kThreads)
    flash_dq_kernel(Dims a, int Dp, const float *q, const float *k, const float *v, const float *out,
                    const float *lse, const float *dout, float *dsum, float *dq) {
    typedef typename K::S S;
    constexpr int kSplit = K::kSplit2;
    const BwdLayout<K> lay(Dp);
    unsigned char *sm = flash_smem();
    S *Qs = reinterpret_cast<S *>(sm + lay.r0), *Gs = reinterpret_cast<S *>(sm + lay.r1);
    S *Ks = reinterpret_cast<S *>(sm + lay.c0), *Vs = reinterpret_cast<S *>(sm + lay.c1);
    S *dSs = reinterpret_cast<S *>(sm + lay.ds);
    float *Ss = reinterpret_cast<float *>(sm + lay.s), *dPs = reinterpret_cast<float *>(sm + lay.dp);
    float *lse_s = reinterpret_cast<float *>(sm + lay.lse), *dsum_s = reinterpret_cast<float *>(sm + lay.dsum);

    const int tid = (int)threadIdx.x, wr = tid / 32 / K::kWD;
    const int L = (int)a.L, D = (int)a.D, ld = K::pitch(Dp, false);
    const int64_t bh = blockIdx.y, stride = a.H * a.D;
    const int64_t head = ((bh / a.H) * a.L * a.H + bh % a.H) * a.D;
    const int i0 = (int)blockIdx.x * K::kBR, rows = imin(K::kBR, L - i0);
    stage<K>(Qs, ld, q + head + i0 * stride, stride, K::kBR, rows, D, Dp);
    stage<K>(Gs, ld, dout + head + i0 * stride, stride, K::kBR, rows, D, Dp);
    row_stats<K>(a, head, bh, i0, rows, out, dout, lse, dsum, dsum_s, lse_s);
    __syncthreads();
    const int r = tid / K::kTPR, sub = tid % K::kTPR;
    const float lse_r = lse_s[r], dsum_r = dsum_s[r];
    const bool row_valid = r < rows;

    typename K::Acc g[K::kOF];
    zero<K>(g);
    for (int j0 = 0; j0 < L; j0 += K::kBT) {
        const int keys = imin(K::kBT, L - j0);
        __syncthreads();  // the previous tile's products are done with Ks, Vs and dSs
        stage<K>(Ks, ld, k + head + j0 * stride, stride, K::kBT, keys, D, Dp);
        stage<K>(Vs, ld, v + head + j0 * stride, stride, K::kBT, keys, D, Dp);
        __syncthreads();
        const S *pa[2] = {Qs, Gs}, *pb[2] = {Ks, Vs};
        float *const po[2] = {Ss, dPs};
        products<K, 2>(pa, pb, ld, po, Dp);
        __syncthreads();
        for (int c = sub; c < K::kBT; c += K::kTPR) {
            float ds = 0.0f;
            if (row_valid && c < keys) {
                const float p = expf(score<K, kSplit>(Ss, r, c) * a.scale - lse_r);
                ds = p * (score<K, kSplit>(dPs, r, c) - dsum_r);
            }
            dSs[r * K::kPP + c] = K::P::convert(ds);
        }
        __syncthreads();
        accumulate<K>(g, dSs + wr * 16 * K::kPP, K::kPP, Ks, ld, Dp);
    }
    scale_all<K>(g, a.scale);
    __syncthreads();  // the output tile covers the staging buffers
    write_rows<K>(g, reinterpret_cast<float *>(sm), Dp, dq + head + i0 * stride, stride, rows, D);
}

template <class K>
__global__ void __launch_bounds__(K::kThreads)
    flash_dkdv_kernel(Dims a, int Dp, const float *q, const float *k, const float *v, const float *lse,
                      const float *dout, const float *dsum, float *dk, float *dv) {
    typedef typename K::S S;
    constexpr int kSplit = K::kSplit2;
    const BwdLayout<K> lay(Dp);
    unsigned char *sm = flash_smem();
    S *Ks = reinterpret_cast<S *>(sm + lay.r0), *Vs = reinterpret_cast<S *>(sm + lay.r1);
    S *Qs = reinterpret_cast<S *>(sm + lay.c0), *Gs = reinterpret_cast<S *>(sm + lay.c1);
    S *Pt = reinterpret_cast<S *>(sm + lay.p), *dSt = reinterpret_cast<S *>(sm + lay.ds);
    float *St = reinterpret_cast<float *>(sm + lay.s), *dPt = reinterpret_cast<float *>(sm + lay.dp);
    float *lse_s = reinterpret_cast<float *>(sm + lay.lse), *dsum_s = reinterpret_cast<float *>(sm + lay.dsum);

    const int tid = (int)threadIdx.x, wr = tid / 32 / K::kWD;
    const int L = (int)a.L, D = (int)a.D, ld = K::pitch(Dp, false);
    const int64_t bh = blockIdx.y, stride = a.H * a.D;
    const int64_t head = ((bh / a.H) * a.L * a.H + bh % a.H) * a.D;
    const int j0 = (int)blockIdx.x * K::kBR, keys = imin(K::kBR, L - j0);
    stage<K>(Ks, ld, k + head + j0 * stride, stride, K::kBR, keys, D, Dp);
    stage<K>(Vs, ld, v + head + j0 * stride, stride, K::kBR, keys, D, Dp);
    // the row pass: key row r, query columns sub, sub + kTPR, ...
    const int r = tid / K::kTPR, sub = tid % K::kTPR;
    const bool key_valid = r < keys;

    typename K::Acc gk[K::kOF], gv[K::kOF];
    zero<K>(gk);
    zero<K>(gv);
    for (int i0 = 0; i0 < L; i0 += K::kBT) {
        const int queries = imin(K::kBT, L - i0);
        __syncthreads();  // the previous tile's products are done with Qs, Gs, Pt, dSt and the stats
        stage<K>(Qs, ld, q + head + i0 * stride, stride, K::kBT, queries, D, Dp);
        stage<K>(Gs, ld, dout + head + i0 * stride, stride, K::kBT, queries, D, Dp);
        for (int c = tid; c < K::kBT; c += K::kThreads) {
            lse_s[c] = c < queries ? lse[bh * a.L + i0 + c] : 0.0f;
            dsum_s[c] = c < queries ? dsum[bh * a.L + i0 + c] : 0.0f;
        }
        __syncthreads();
        const S *pa[2] = {Ks, Vs}, *pb[2] = {Qs, Gs};
        float *const po[2] = {St, dPt};
        products<K, 2>(pa, pb, ld, po, Dp);
        __syncthreads();
        for (int c = sub; c < K::kBT; c += K::kTPR) {
            float p = 0.0f, ds = 0.0f;
            if (key_valid && c < queries) {
                p = expf(score<K, kSplit>(St, r, c) * a.scale - lse_s[c]);
                ds = p * (score<K, kSplit>(dPt, r, c) - dsum_s[c]);
            }
            Pt[r * K::kPP + c] = K::P::convert(p);
            dSt[r * K::kPP + c] = K::P::convert(ds);
        }
        __syncthreads();
        accumulate<K>(gv, Pt + wr * 16 * K::kPP, K::kPP, Gs, ld, Dp);
        accumulate<K>(gk, dSt + wr * 16 * K::kPP, K::kPP, Qs, ld, Dp);
    }
    scale_all<K>(gk, a.scale);
    __syncthreads();
    write_rows<K>(gv, reinterpret_cast<float *>(sm), Dp, dv + head + j0 * stride, stride, keys, D);
    __syncthreads();
    write_rows<K>(gk, reinterpret_cast<float *>(sm), Dp, dk + head + j0 * stride, stride, keys, D);
}

// ---- launchers ----

template <class K>
dim3 grid_of(const Dims &a) {
    // L <= 2^20 and B*H <= 65535 (the launcher's caller checks)
    return dim3((unsigned)((a.L + K::kBR - 1) / K::kBR), (unsigned)(a.B * a.H));
}

// The instantiations, by precision and largest padded head dimension. Each
// has a name of its own because a launch spells the kernel's name
// (flash_fwd_kernel<FwdTf32D256>) for the simulator's launch checks, the
// profile and the ptxas report.
struct FwdTf32D64 : Kern<Tf32, Cfg<4, 1, 32, 64>> {};
struct FwdTf32D128 : Kern<Tf32, Cfg<4, 2, 32, 128>> {};
struct FwdTf32D256 : Kern<Tf32, Cfg<2, 4, 32, 256>> {};
struct FwdTf32D512 : Kern<Tf32, Cfg<2, 4, 16, 512>> {};
struct FwdBf16D64 : Kern<Bf16, Cfg<4, 1, 32, 64>> {};
struct FwdBf16D128 : Kern<Bf16, Cfg<4, 2, 32, 128>> {};
struct FwdBf16D256 : Kern<Bf16, Cfg<2, 4, 32, 256>> {};
struct FwdBf16D512 : Kern<Bf16, Cfg<2, 4, 16, 512>> {};
struct BwdTf32D64 : Kern<Tf32, Cfg<4, 1, 32, 64>> {};
struct BwdTf32D128 : Kern<Tf32, Cfg<4, 2, 16, 128>> {};
struct BwdTf32D256 : Kern<Tf32, Cfg<2, 4, 16, 256>> {};
struct BwdTf32D512 : Kern<Tf32, Cfg<1, 8, 16, 512>> {};
struct BwdBf16D64 : Kern<Bf16, Cfg<4, 1, 32, 64>> {};
struct BwdBf16D128 : Kern<Bf16, Cfg<4, 2, 16, 128>> {};
struct BwdBf16D256 : Kern<Bf16, Cfg<2, 4, 16, 256>> {};
struct BwdBf16D512 : Kern<Bf16, Cfg<1, 8, 16, 512>> {};

// A macro, not a template, so that the launch spells the instantiation's name.
#define D4J_FLASH_FORWARD(K)                                                                                   \
    do {                                                                                                       \
        const size_t smem_ = FwdLayout<K>(Dp).bytes;                                                           \
        D4J_ALLOW_DYNAMIC_SMEM(flash_fwd_kernel<K>, smem_);                                                    \
        D4J_LAUNCH(flash_fwd_kernel<K>, grid_of<K>(a), K::kThreads, smem_, stream, a, Dp, q, k, v, out, lse); \
        return launched("flash_fwd_kernel<" #K ">");                                                           \
    } while (0)

#define D4J_FLASH_BACKWARD(K)                                                                                  \
    do {                                                                                                       \
        const size_t smem_ = BwdLayout<K>(Dp).bytes;                                                           \
        D4J_ALLOW_DYNAMIC_SMEM(flash_dq_kernel<K>, smem_);                                                     \
        D4J_LAUNCH(flash_dq_kernel<K>, grid_of<K>(a), K::kThreads, smem_, stream, a, Dp, q, k, v, out, lse, dout, \
                   dsum, dq);                                                                                  \
        const d4j_status st_ = launched("flash_dq_kernel<" #K ">");                                            \
        if (st_ != D4J_OK) return st_;                                                                         \
        D4J_ALLOW_DYNAMIC_SMEM(flash_dkdv_kernel<K>, smem_);                                                   \
        D4J_LAUNCH(flash_dkdv_kernel<K>, grid_of<K>(a), K::kThreads, smem_, stream, a, Dp, q, k, v, lse, dout,  \
                   dsum, dk, dv);                                                                              \
        return launched("flash_dkdv_kernel<" #K ">");                                                          \
    } while (0)

int padded(int64_t D) { return (int)(D + 15) / 16 * 16; }

}  // namespace

d4j_status forward(cudaStream_t stream, int precision, const Dims &a, const float *q, const float *k, const float *v,
                   float *out, float *lse) {
    const int Dp = padded(a.D);
    if (precision == D4J_PRECISION_BF16) {
        if (Dp <= 64) D4J_FLASH_FORWARD(FwdBf16D64);
        if (Dp <= 128) D4J_FLASH_FORWARD(FwdBf16D128);
        if (Dp <= 256) D4J_FLASH_FORWARD(FwdBf16D256);
        D4J_FLASH_FORWARD(FwdBf16D512);
    }
    if (Dp <= 64) D4J_FLASH_FORWARD(FwdTf32D64);
    if (Dp <= 128) D4J_FLASH_FORWARD(FwdTf32D128);
    if (Dp <= 256) D4J_FLASH_FORWARD(FwdTf32D256);
    D4J_FLASH_FORWARD(FwdTf32D512);
}

d4j_status backward(cudaStream_t stream, int precision, const Dims &a, const float *q, const float *k,
                    const float *v, const float *out, const float *lse, const float *dout, float *dsum, float *dq,
                    float *dk, float *dv) {
    const int Dp = padded(a.D);
    if (precision == D4J_PRECISION_BF16) {
        if (Dp <= 64) D4J_FLASH_BACKWARD(BwdBf16D64);
        if (Dp <= 128) D4J_FLASH_BACKWARD(BwdBf16D128);
        if (Dp <= 256) D4J_FLASH_BACKWARD(BwdBf16D256);
        D4J_FLASH_BACKWARD(BwdBf16D512);
    }
    if (Dp <= 64) D4J_FLASH_BACKWARD(BwdTf32D64);
    if (Dp <= 128) D4J_FLASH_BACKWARD(BwdTf32D128);
    if (Dp <= 256) D4J_FLASH_BACKWARD(BwdTf32D256);
    D4J_FLASH_BACKWARD(BwdTf32D512);
}

}  // namespace d4j::cuda::flash
