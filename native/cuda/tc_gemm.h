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
// Shared-memory layout: each staged operand keeps the orientation it has in
// global memory (see Operand), so the staging stores are conflict-free, and
// the fragments are loaded row- or column-major to match. The row pitches
// are chosen for the fragment loads: with the documented mma layout a warp
// reads an 8 x 4 grid of words (row g, word t), conflict-free when 8
// consecutive rows start in 8 different 4-bank groups: rows along k of 20
// floats (tf32) or 24 halves (bf16), rows along m or n of 72 elements. Every
// fragment pointer is 32-byte aligned, as WMMA requires.
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
    static constexpr int kKPitch = kTcBK + 4;  // a row along k: 20 words
    __device__ static Stage convert(float v) { return wmma::__float_to_tf32(v); }
};
struct Bf16 {
    typedef __nv_bfloat16 Stage;
    typedef __nv_bfloat16 Frag;
    static constexpr int kStep = 16;
    static constexpr int kKPitch = kTcBK + 8;  // a row along k: 24 halves = 12 words
    __device__ static Stage convert(float v) { return __float2bfloat16(v); }
};
constexpr int kWidePitch = 64 + 8;  // a row along m or n: 72 elements (8 words apart mod 32 for floats)

// One staged operand (A: 64 x kTcBK, B: kTcBK x 64). Its shared-memory layout
// follows its layout in global memory, so the staging stores of consecutive
// threads (consecutive addresses in global memory) land in consecutive words:
//   contiguous along k: rows of k (k_major), read as row_major A / col_major B fragments;
//   contiguous along m or n: rows of m or n, read as col_major A / row_major B fragments.
template <class P, bool kKContiguous>
struct Operand {
    static constexpr int kPitch = kKContiguous ? P::kKPitch : kWidePitch;
    static constexpr size_t kBytes = (size_t)(kKContiguous ? 64 : kTcBK) * kPitch * sizeof(typename P::Stage);
    static_assert(kBytes % 32 == 0, "buffers keep 32-byte alignment");
    // the element (c, kk) of the tile: c along m (A) or n (B)
    __device__ static int offset(int c, int kk) { return kKContiguous ? c * kPitch + kk : kk * kPitch + c; }
};

template <class P, class Op>
struct Smem {
    typedef Operand<P, Op::kAK> A;
    typedef Operand<P, Op::kBKc> B;
    static constexpr size_t kStaging = 2 * (A::kBytes + B::kBytes);
    static constexpr size_t kC = (size_t)kTcBM * kCPitch * sizeof(float);
    static constexpr size_t kBytes = kStaging > kC ? kStaging : kC;
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
    typedef Smem<P, Op> L;
    for (int i = 0; i < kPerThread; ++i) {
        int kk, mm;
        coords<Op::kAK, kTcBM>(tid + i * kTcThreads, &kk, &mm);
        As[L::A::offset(mm, kk)] = P::convert(ra[i]);
    }
    for (int i = 0; i < kPerThread; ++i) {
        int kk, nn;
        coords<Op::kBKc, kTcBN>(tid + i * kTcThreads, &kk, &nn);
        Bs[L::B::offset(nn, kk)] = P::convert(rb[i]);
    }
}

// The C tile at (m0, n0) summed over k in [k_begin, k_end): store(m, n, value)
// is called once for each element inside M x N, by threads consecutive in n.
template <class P, class Op, class Store>
__device__ void tc_tile(const Op &op, int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end, const Store &store) {
    typedef typename P::Stage S;
    typedef Smem<P, Op> L;
    // fragment layouts of the staged tiles (see Operand)
    typedef typename std::conditional<Op::kAK, wmma::row_major, wmma::col_major>::type ALayout;
    typedef typename std::conditional<Op::kBKc, wmma::col_major, wmma::row_major>::type BLayout;
    __shared__ __align__(128) unsigned char smem[L::kBytes];
    S *As[2] = {reinterpret_cast<S *>(smem), reinterpret_cast<S *>(smem + L::A::kBytes + L::B::kBytes)};
    S *Bs[2] = {reinterpret_cast<S *>(smem + L::A::kBytes),
                reinterpret_cast<S *>(smem + 2 * L::A::kBytes + L::B::kBytes)};
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
            wmma::fragment<wmma::matrix_a, 16, 16, P::kStep, typename P::Frag, ALayout> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, P::kStep, typename P::Frag, BLayout> b[2];
            for (int i = 0; i < 2; ++i)
                wmma::load_matrix_sync(a[i], As[buf] + L::A::offset(wm * 32 + i * 16, kk), L::A::kPitch);
            for (int j = 0; j < 2; ++j)
                wmma::load_matrix_sync(b[j], Bs[buf] + L::B::offset(wn * 32 + j * 16, kk), L::B::kPitch);
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
