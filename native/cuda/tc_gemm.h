// The tensor-core tile engine shared by the matrix families' tensor-core
// variants (conv2d, linear): C[m][n] = sum_k A(m, k) B(k, n) over one 64 x 64
// tile of C with the WMMA API, TF32 (m16n16k8) or BF16 (m16n16k16) inputs and
// FP32 accumulation. An Op supplies the operands through index maps:
//   M, N: the extent of C;  a(m, k), bv(k, n): the operand values (FP32 in memory);
//   kAK / kBKc: whether A / B is contiguous along k (the staging loops put
//   consecutive threads on the contiguous index, so the global loads coalesce).
//
// A block of 128 threads (4 warps, 2 x 2) computes a 64 x 64 tile of C; each
// warp a 32 x 32 quarter as 2 x 2 accumulator fragments. K advances in chunks
// of kTcBK = 16 staged in shared memory, double-buffered: while the warps
// multiply chunk c out of one buffer, each thread holds chunk c + 1's
// elements in registers (their global loads in flight), converts them to the
// input format once (every staged element is read by two warps) and writes
// them into the other buffer; one barrier per chunk.
//
// The row pitches of the staged tiles are chosen for the fragment loads: with
// the documented mma layout a warp reads an 8 x 4 grid of words (row g, word
// t), conflict-free when 8 consecutive rows start in 8 different 4-bank groups.
// A: 20 floats (tf32) or 24 halves = 12 words (bf16); B: 72 floats / halves.
// Every fragment pointer is 32-byte aligned, as WMMA requires.
//
// The output tile goes through shared memory (reusing the staging buffers)
// so its global stores are bounds-checked and coalesced along n; M and N need
// not be multiples of 16. Determinism: each C element is one fixed sequence
// of mma_sync calls (no atomics); a split of K is the caller's, in fixed slices.
#ifndef D4J_CUDA_TC_GEMM_H
#define D4J_CUDA_TC_GEMM_H

#include <cuda_bf16.h>
#include <mma.h>

#include "cuda_common.h"

namespace d4j::cuda::tc {

namespace wmma = nvcuda::wmma;

constexpr int kTcBK = 16;  // the k chunk staged per step

constexpr int kTcBM = 64, kTcBN = 64, kTcThreads = 128;
constexpr int kPerThread = kTcBM * kTcBK / kTcThreads;  // staged elements of each operand per thread
constexpr int kCPitch = kTcBN + 4;                     // output tile row pitch (floats)

struct Tf32 {
    typedef float Stage;
    typedef wmma::precision::tf32 Frag;
    static constexpr int kStep = 8;
    static constexpr int kAPitch = kTcBK + 4, kBPitch = kTcBN + 8;
    __device__ static Stage convert(float v) { return wmma::__float_to_tf32(v); }
};
struct Bf16 {
    typedef __nv_bfloat16 Stage;
    typedef __nv_bfloat16 Frag;
    static constexpr int kStep = 16;
    static constexpr int kAPitch = kTcBK + 8, kBPitch = kTcBN + 8;
    __device__ static Stage convert(float v) { return __float2bfloat16(v); }
};

template <class P>
struct Smem {
    static constexpr size_t kA = (size_t)kTcBM * P::kAPitch * sizeof(typename P::Stage);
    static constexpr size_t kB = (size_t)kTcBK * P::kBPitch * sizeof(typename P::Stage);
    static constexpr size_t kStaging = 2 * (kA + kB);
    static constexpr size_t kC = (size_t)kTcBM * kCPitch * sizeof(float);
    static constexpr size_t kBytes = kStaging > kC ? kStaging : kC;
    static_assert(kA % 32 == 0 && kB % 32 == 0, "buffers keep 32-byte alignment");
};

// This thread's chunk elements of A (kBM x kTcBK) and B (kTcBK x kBN): element
// e = tid + i * kTcThreads, ordered along the operand's contiguous index.
template <bool kKFast, int kCols>
__device__ __forceinline__ void coords(int e, int *kk, int *cc) {
    if constexpr (kKFast) {
        *kk = e % kTcBK;
        *cc = e / kTcBK;
    } else {
        *cc = e % kCols;
        *kk = e / kCols;
    }
}

template <class Op>
__device__ __forceinline__ void fetch(const Op &op, int tid, int64_t m0, int64_t n0, int64_t k0, int64_t k_end,
                                      float (&ra)[kPerThread], float (&rb)[kPerThread]) {
    for (int i = 0; i < kPerThread; ++i) {
        int kk, mm;
        coords<Op::kAK, kTcBM>(tid + i * kTcThreads, &kk, &mm);
        const int64_t k = k0 + kk, m = m0 + mm;
        ra[i] = (k < k_end && m < op.M) ? op.a(m, k) : 0.0f;
    }
    for (int i = 0; i < kPerThread; ++i) {
        int kk, nn;
        coords<Op::kBKc, kTcBN>(tid + i * kTcThreads, &kk, &nn);
        const int64_t k = k0 + kk, n = n0 + nn;
        rb[i] = (k < k_end && n < op.N) ? op.bv(k, n) : 0.0f;
    }
}

template <class P, class Op>
__device__ __forceinline__ void stage(int tid, const float (&ra)[kPerThread], const float (&rb)[kPerThread],
                                      typename P::Stage *As, typename P::Stage *Bs) {
    for (int i = 0; i < kPerThread; ++i) {
        int kk, mm;
        coords<Op::kAK, kTcBM>(tid + i * kTcThreads, &kk, &mm);
        As[mm * P::kAPitch + kk] = P::convert(ra[i]);
    }
    for (int i = 0; i < kPerThread; ++i) {
        int kk, nn;
        coords<Op::kBKc, kTcBN>(tid + i * kTcThreads, &kk, &nn);
        Bs[kk * P::kBPitch + nn] = P::convert(rb[i]);
    }
}

// The C tile at (m0, n0) summed over k in [k_begin, k_end): store(m, n, value)
// is called once for each element inside M x N, by threads consecutive in n.
template <class P, class Op, class Store>
__device__ void tc_tile(const Op &op, int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end, const Store &store) {
    typedef typename P::Stage S;
    __shared__ __align__(128) unsigned char smem[Smem<P>::kBytes];
    S *As[2] = {reinterpret_cast<S *>(smem), reinterpret_cast<S *>(smem + Smem<P>::kA + Smem<P>::kB)};
    S *Bs[2] = {reinterpret_cast<S *>(smem + Smem<P>::kA),
                reinterpret_cast<S *>(smem + 2 * Smem<P>::kA + Smem<P>::kB)};
    const int tid = (int)threadIdx.x, warp = tid / 32, wm = warp / 2, wn = warp % 2;

    wmma::fragment<wmma::accumulator, 16, 16, P::kStep, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    float ra[kPerThread], rb[kPerThread];
    fetch(op, tid, m0, n0, k_begin, k_end, ra, rb);
    stage<P, Op>(tid, ra, rb, As[0], Bs[0]);
    __syncthreads();
    int buf = 0;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += kTcBK) {
        const bool more = k0 + kTcBK < k_end;
        if (more) fetch(op, tid, m0, n0, k0 + kTcBK, k_end, ra, rb);  // in flight during the products
        for (int kk = 0; kk < kTcBK; kk += P::kStep) {
            wmma::fragment<wmma::matrix_a, 16, 16, P::kStep, typename P::Frag, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, P::kStep, typename P::Frag, wmma::row_major> b[2];
            for (int i = 0; i < 2; ++i)
                wmma::load_matrix_sync(a[i], As[buf] + (wm * 32 + i * 16) * P::kAPitch + kk, P::kAPitch);
            for (int j = 0; j < 2; ++j)
                wmma::load_matrix_sync(b[j], Bs[buf] + kk * P::kBPitch + wn * 32 + j * 16, P::kBPitch);
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        if (more) stage<P, Op>(tid, ra, rb, As[buf ^ 1], Bs[buf ^ 1]);
        __syncthreads();  // the next chunk is staged, and every warp is done with this one
        buf ^= 1;
    }

    // the staging buffers are free (the loop ended at a barrier): the output tile goes there
    float *Cs = reinterpret_cast<float *>(smem);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * kCPitch + wn * 32 + j * 16, acc[i][j], kCPitch,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < kTcBM * kTcBN; e += kTcThreads) {
        const int mm = e / kTcBN, nn = e % kTcBN;
        const int64_t m = m0 + mm, n = n0 + nn;
        if (m < op.M && n < op.N) store(m, n, Cs[mm * kCPitch + nn]);
    }
}

}  // namespace d4j::cuda::tc
#endif
