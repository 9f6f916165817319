// The tile machinery of the tensor-core attention kernels
// (kernels_attention_flash.cu): kernel geometries, staging of token rows in
// shared memory, the score products split over warps, the accumulating
// products and the per-row scaling of accumulator fragments.
//
// A block has kWR x kWD warps. It owns kBR = 16 kWR rows (query rows in the
// forward and dQ kernels, key rows in the dK/dV kernel) and loops over tiles
// of kBT rows of the other side. Accumulators are [kBR][Dp] (Dp: the head
// dimension padded to a multiple of 16 with zeros): warp (wr, wd) holds rows
// wr*16.. as the column fragments c = wd, wd + kWD, ... < Dp / 16, at most kOF
// of them. The row passes (softmax, dS) give each row kTPR = 2 kWD
// consecutive threads of one warp, which combine their columns with shuffles.
//
// Fragment layouts are never assumed (a GPU leaves them unspecified; the
// simulator scrambles them per launch): a product's fragments go to shared
// memory with store_matrix_sync for anything done per row, and a per-row
// factor reaches an accumulator as a fragment of the same type loaded from a
// 16 x 16 matrix whose rows hold the factor (element-wise products of two
// fragments of one type are valid whatever the layout).
//
// Shared-memory pitches are chosen for the accesses that dominate (bank
// conflicts are counted by the profiling simulator): staged rows are 16 bytes
// longer than Dp elements, so the 8 rows a fragment load touches at once start
// in different 4-bank groups (as in tc_gemm.h), except V's at TF32 (pitch());
// score rows suit the row passes (score_pitch()). Where one staged tile is
// read both as a column-major and as a row-major B operand (K in the dQ
// kernel, Q and dout in the dK/dV kernel) one of the two has 2-way conflicts.
// Every fragment pointer is 32-byte aligned, as WMMA requires.
#ifndef D4J_CUDA_ATTENTION_FLASH_TILES_H
#define D4J_CUDA_ATTENTION_FLASH_TILES_H

#include <cuda_bf16.h>
#include <mma.h>

#include "cuda_common.h"
#include "tc_gemm.h"

// Loops over a warp's accumulator fragments are unrolled so the fragments stay
// in registers (g++, building the simulator, has no such pragma).
#ifdef D4J_CUDA_SIM
#define D4J_FLASH_UNROLL
#else
#define D4J_FLASH_UNROLL _Pragma("unroll")
#endif

namespace d4j::cuda::flash {

namespace wmma = nvcuda::wmma;

template <int WR, int WD, int BT, int DMax>
struct Cfg {
    static constexpr int kWR = WR, kWD = WD, kBT = BT, kDMax = DMax;
    static constexpr int kWarps = WR * WD, kThreads = 32 * kWarps;
    static constexpr int kBR = 16 * WR;
    static constexpr int kTPR = kThreads / kBR;  // threads per row in the row passes
    static constexpr int kOF = DMax / 16 / WD;   // accumulator column fragments per warp, at most
    static_assert(kTPR <= 32 && (kTPR & (kTPR - 1)) == 0, "a row's threads are a power of two within one warp");
    static_assert(BT % 16 == 0 && DMax % (16 * WD) == 0, "whole fragments");
};

// The pitch (floats) of the FP32 score tiles: the row passes read words
// r * pitch + sub + kTPR * i, conflict-free when the pitch is kTPR (at least 4,
// a multiple of 16 bytes for WMMA) times an odd number.
__host__ __device__ constexpr int score_pitch(int BT, int TPR) {
    const int t = TPR < 4 ? 4 : TPR;
    int p = BT;
    while (p % t != 0 || (p / t) % 2 == 0) p += 4;
    return p;
}

constexpr int kAmPitch = 24;  // the 16 x 16 row-factor matrices (floats; 96 bytes, a multiple of 16)
constexpr size_t kSmemAlign = 128;

__host__ __device__ constexpr size_t align_up(size_t x) { return (x + kSmemAlign - 1) & ~(kSmemAlign - 1); }

// A kernel's types: P (tc::Tf32 or tc::Bf16) and a Cfg.
template <class P_, class C>
struct Kern : C {
    typedef P_ P;
    typedef typename P_::Stage S;
    static constexpr int kPad = 16 / (int)sizeof(S);  // staged rows: Dp + kPad elements
    static constexpr int kSP = score_pitch(C::kBT, C::kTPR);  // FP32 score rows
    static constexpr int kPP = C::kBT + kPad;                 // staged probability rows

    // The pitch (elements) of a staged [row][Dp] tile: Dp + kPad, 4 times an
    // odd number of words. A TF32 tile read only as a row-major B operand
    // (rows along k: V in P V) takes Dp + 8 instead, 8 times an odd number of
    // words, which that load needs (it reads words t * pitch + g, t < 4, g < 8).
    __host__ __device__ static int pitch(int Dp, bool row_major_b) {
        return row_major_b && sizeof(S) == 4 ? Dp + 8 : Dp + kPad;
    }

    static constexpr int kNF = C::kWR * (C::kBT / 16);  // fragments of one kBR x kBT product
    typedef wmma::fragment<wmma::accumulator, 16, 16, P_::kStep, float> Acc;
    typedef wmma::fragment<wmma::matrix_a, 16, 16, P_::kStep, typename P_::Frag, wmma::row_major> A;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, P_::kStep, typename P_::Frag, wmma::row_major> Br;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, P_::kStep, typename P_::Frag, wmma::col_major> Bc;
    // Into how many slices of the head dimension each fragment of one (kSplit1)
    // or two (kSplit2) score-like products is split so that every warp has the
    // same share.
    static constexpr int kSplit1 = kNF >= C::kWarps ? 1 : C::kWarps / kNF;
    static constexpr int kSplit2 = 2 * kNF >= C::kWarps ? 1 : C::kWarps / (2 * kNF);
};

// The dynamic shared memory of a block, aligned to kSmemAlign (a launch asks
// for kSmemAlign bytes more than its layout).
__device__ __forceinline__ unsigned char *flash_smem() {
    D4J_DYNAMIC_SHARED(unsigned char, flash_smem_raw);
    return reinterpret_cast<unsigned char *>((reinterpret_cast<uintptr_t>(flash_smem_raw) + kSmemAlign - 1) &
                                             ~(uintptr_t)(kSmemAlign - 1));
}

// Successive kSmemAlign-aligned regions of a layout.
struct Bump {
    size_t at = 0;
    __host__ __device__ size_t take(size_t bytes) {
        const size_t o = at;
        at = align_up(at + bytes);
        return o;
    }
};

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// Rows [0, rows) of a staged tile: dst[r * ld + c] = src[r * stride + c]
// rounded to the input format for r < valid and c < D, zero for the other
// c < Dp. Consecutive threads take consecutive elements (coalesced); the
// element index advances without a division per element.
template <class K>
__device__ __forceinline__ void stage(typename K::S *dst, int ld, const float *src, int64_t stride, int rows,
                                      int valid, int D, int Dp) {
    const int tid = (int)threadIdx.x;
    int r = tid / Dp, c = tid - r * Dp;
    const int dr = K::kThreads / Dp, dc = K::kThreads - dr * Dp;
    for (int e = tid; e < rows * Dp; e += K::kThreads) {
        const float x = r < valid && c < D ? src[r * stride + c] : 0.0f;
        dst[r * ld + c] = K::P::convert(x);
        r += dr;
        c += dc;
        if (c >= Dp) {
            c -= Dp;
            ++r;
        }
    }
}

// This warp's share of kProducts products C = A B^T, A: kBR staged rows, B:
// kBT staged rows (pitch ld, Dp columns). Each fragment may be split into
// kSplit1 / kSplit2 slices of the head dimension: out[p] holds [slice][kBR][kSP] FP32
// partial sums, added in slice order by score().
template <class K, int kProducts>
__device__ __forceinline__ void products(const typename K::S *const (&a)[kProducts],
                                         const typename K::S *const (&b)[kProducts], int ld,
                                         float *const (&out)[kProducts], int Dp) {
    constexpr int kSplit = kProducts == 1 ? K::kSplit1 : K::kSplit2, kCols = K::kBT / 16;
    constexpr int kItems = kProducts * K::kNF * kSplit;
    static_assert(kProducts == 1 || kProducts == 2, "one or two products");
    static_assert(kItems % K::kWarps == 0, "every warp has the same number of fragments");
    const int warp = (int)threadIdx.x / 32, chunks = Dp / 16;
    for (int it = warp; it < kItems; it += K::kWarps) {
        const int slice = it % kSplit, f = (it / kSplit) % K::kNF, p = it / (kSplit * K::kNF);
        const int fr = f / kCols, fc = f % kCols;
        const int d0 = slice * chunks / kSplit * 16, d1 = (slice + 1) * chunks / kSplit * 16;
        // (p == 0 ? x[0] : x[kProducts - 1]) rather than x[p]: an array indexed at run time would live in local memory
        const typename K::S *ap = (p == 0 ? a[0] : a[kProducts - 1]) + fr * 16 * ld;
        const typename K::S *bp = (p == 0 ? b[0] : b[kProducts - 1]) + fc * 16 * ld;
        float *cp = p == 0 ? out[0] : out[kProducts - 1];
        typename K::Acc acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int d = d0; d < d1; d += K::P::kStep) {
            typename K::A fa;
            typename K::Bc fb;
            wmma::load_matrix_sync(fa, ap + d, ld);
            wmma::load_matrix_sync(fb, bp + d, ld);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(cp + (slice * K::kBR + fr * 16) * K::kSP + fc * 16, acc, K::kSP,
                                wmma::mem_row_major);
    }
}

// Element (r, c) of a product written by products(): its slices in order.
template <class K, int kSplit>
__device__ __forceinline__ float score(const float *s, int r, int c) {
    float x = s[r * K::kSP + c];
    for (int i = 1; i < kSplit; ++i) x += s[(i * K::kBR + r) * K::kSP + c];
    return x;
}

// A value combined over the kTPR threads of a row (butterfly: every one of
// them ends with the same bits).
template <int kTPR, bool kMax>
__device__ __forceinline__ float row_reduce(float v) {
    for (int o = 1; o < kTPR; o <<= 1) {
        const float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = kMax ? fmaxf(v, w) : v + w;
    }
    return v;
}

// acc[f] += A B for this warp's column fragments: A its 16 rows of a staged
// [row][kBT] tile (a: the first of them, pitch lda), B a staged [kBT][Dp]
// tile (pitch ldb).
template <class K>
__device__ __forceinline__ void accumulate(typename K::Acc (&acc)[K::kOF], const typename K::S *a, int lda,
                                           const typename K::S *b, int ldb, int Dp) {
    const int wd = ((int)threadIdx.x / 32) % K::kWD, nc = Dp / 16;
    for (int kk = 0; kk < K::kBT; kk += K::P::kStep) {
        typename K::A fa;
        wmma::load_matrix_sync(fa, a + kk, lda);
        D4J_FLASH_UNROLL
        for (int f = 0; f < K::kOF; ++f) {
            const int c = wd + f * K::kWD;
            if (c < nc) {
                typename K::Br fb;
                wmma::load_matrix_sync(fb, b + kk * ldb + c * 16, ldb);
                wmma::mma_sync(acc[f], fa, fb, acc[f]);
            }
        }
    }
}

// acc[f] *= m element-wise, m a 16 x 16 matrix (pitch kAmPitch) whose row i
// holds the factor of the warp's row i.
template <class K>
__device__ __forceinline__ void scale_rows(typename K::Acc (&acc)[K::kOF], const float *m, int Dp) {
    typename K::Acc factor;
    wmma::load_matrix_sync(factor, m, kAmPitch, wmma::mem_row_major);
    const int wd = ((int)threadIdx.x / 32) % K::kWD, nc = Dp / 16;
    D4J_FLASH_UNROLL
    for (int f = 0; f < K::kOF; ++f) {
        if (wd + f * K::kWD < nc) {
            for (int i = 0; i < factor.num_elements; ++i) acc[f].x[i] *= factor.x[i];
        }
    }
}

template <class K>
__device__ __forceinline__ void scale_all(typename K::Acc (&acc)[K::kOF], float s) {
    D4J_FLASH_UNROLL
    for (int f = 0; f < K::kOF; ++f)
        for (int i = 0; i < acc[f].num_elements; ++i) acc[f].x[i] *= s;
}

template <class K>
__device__ __forceinline__ void zero(typename K::Acc (&acc)[K::kOF]) {
    D4J_FLASH_UNROLL
    for (int f = 0; f < K::kOF; ++f) wmma::fill_fragment(acc[f], 0.0f);
}

// Writes the block's [kBR][Dp] accumulators to global rows [0, valid) x
// columns [0, D) (row r at dst + r * stride) through the FP32 tile at `tile`
// (pitch Dp + 4), so the stores are coalesced and bounds-checked. Every
// thread calls it; the caller has made the tile's memory free (a barrier).
template <class K>
__device__ __forceinline__ void write_rows(const typename K::Acc (&acc)[K::kOF], float *tile, int Dp, float *dst,
                                           int64_t stride, int valid, int D) {
    const int tid = (int)threadIdx.x, warp = tid / 32, wr = warp / K::kWD, wd = warp % K::kWD;
    const int ld = Dp + 4, nc = Dp / 16;
    D4J_FLASH_UNROLL
    for (int f = 0; f < K::kOF; ++f) {
        const int c = wd + f * K::kWD;
        if (c < nc) wmma::store_matrix_sync(tile + wr * 16 * ld + c * 16, acc[f], ld, wmma::mem_row_major);
    }
    __syncthreads();
    int r = tid / D, c = tid - r * D;
    const int dr = K::kThreads / D, dc = K::kThreads - dr * D;
    for (int e = tid; e < valid * D; e += K::kThreads) {
        dst[r * stride + c] = tile[r * ld + c];
        r += dr;
        c += dc;
        if (c >= D) {
            c -= D;
            ++r;
        }
    }
}

}  // namespace d4j::cuda::flash
#endif
