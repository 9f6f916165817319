// The tensor-core tile engine shared by the matrix families' tensor-core
// variants (conv2d, linear): C[m][n] = sum_k A(m, k) B(k, n) over one 64 x 64
// tile of C with the WMMA API, TF32 (m16n16k8) or BF16 (m16n16k16) inputs and
// FP32 accumulation. An Op supplies the operands through index maps:
//   M, N: the extent of C;  a(m, k), bv(k, n): the operand values (FP32 in memory);
//   kAK / kBKc: whether A / B is contiguous along k (the staging loops put
//   consecutive threads on the contiguous index, so the global loads coalesce).
//
// A block of 4 or 8 warps computes a 64 x 64 or 128 x 128 tile of C
// (TileShape); each warp its part as accumulator fragments. K advances in chunks
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
// The output goes through shared memory (a 16 x 16 patch per warp in the
// staging buffers) so its global stores are bounds-checked and coalesced along
// n; M and N need not be multiples of 16. Determinism: each C element is one fixed sequence
// of mma_sync calls (no atomics); a split of K is the caller's, in fixed slices.
//
// The asynchronous path (tc_tile_async, TF32 only). The register staging
// above costs each thread kPerThreadA + kPerThreadB registers for the chunk
// in flight, which is what keeps Tile128 at 8 warps of 64 x 32. Ampere's
// cp.async copies global memory straight into shared memory, so with it the
// chunk in flight needs no registers and 4 warps of 64 x 64 fit (TileAsync128:
// a third fewer fragment loads per product than Tile128, the shared-memory
// reads being what bounds these kernels). Each thread queues copies of its
// elements of chunk c + kStages - 1 and commits them as one batch: 4-byte
// copies, one per element, with the register staging's element-to-thread map,
// or, where the launch's geometry allows (Tf32Async128Vec, see issue), 16-byte
// copies of 4 consecutive elements along the contiguous index, a quarter of
// the copy instructions. Either way consecutive threads sit on the operand's
// contiguous index, so the copies coalesce and the shared stores are
// conflict-free; padding and out-of-range elements are zero-filled, from a
// valid address. Before chunk c a thread waits for its own copies of it
// (__pipeline_wait_prior) and then at the barrier for everyone's. The copies
// land as FP32, so the fragments are rounded to TF32 after each
// load_matrix_sync (the documented element-wise pattern): BF16, which needs a
// conversion before the store, cannot stage this way. The Op supplies the
// element addresses: a_src(a_m(m), a_k(k)) and b_src(b_k(k), b_n(n)), nullptr
// for a zero (padding), and a_base() / b_base(), a valid address to zero-fill from.
#ifndef D4J_CUDA_TC_GEMM_H
#define D4J_CUDA_TC_GEMM_H

#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <mma.h>

#include <type_traits>
#include <utility>

#include "cuda_common.h"

namespace d4j::cuda::tc {

namespace wmma = nvcuda::wmma;

constexpr int kTcBK = 16;  // the k chunk staged per step

// A block's tile of C and its warps: BM x BN computed by WarpsM x WarpsN warps,
// each a (BM / WarpsM) x (BN / WarpsN) block of 16 x 16 accumulator fragments.
// Larger warp tiles load fewer fragments per product (the shared-memory
// traffic per FLOP falls with the warp tile's size), larger block tiles read
// each global element fewer times.
template <int kBM_, int kBN_, int kWarpsM_, int kWarpsN_>
struct TileShape {
    static constexpr int kBM = kBM_, kBN = kBN_, kWarpsM = kWarpsM_, kWarpsN = kWarpsN_;
    static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
    static constexpr int kFM = kBM / kWarpsM / 16, kFN = kBN / kWarpsN / 16;  // fragments per warp
    static constexpr int kPerThreadA = kBM * kTcBK / kThreads, kPerThreadB = kBN * kTcBK / kThreads;
    static_assert(kBM % (16 * kWarpsM) == 0 && kBN % (16 * kWarpsN) == 0, "whole fragments per warp");
    static_assert((kBM * kTcBK) % kThreads == 0 && (kBN * kTcBK) % kThreads == 0, "whole staging rounds");
};
// 64 x 64 with 4 warps of 32 x 32: many blocks for small problems.
typedef TileShape<64, 64, 2, 2> Tile64;
// 128 x 128 with 8 warps of 64 x 32: half the global reads of Tile64 per FLOP and
// a third fewer fragment loads. (4 warps of 64 x 64 would load fewer still, but
// their 128 accumulators per thread leave too few registers: ptxas spills.)
typedef TileShape<128, 128, 2, 4> Tile128;
// 128 x 128 with 4 warps of 64 x 64, for the asynchronous path only (no staging registers).
typedef TileShape<128, 128, 2, 2> TileAsync128;

// The default tile's block size and extent.
constexpr int kTcThreads = Tile64::kThreads;
constexpr int kTcBM = Tile64::kBM, kTcBN = Tile64::kBN;

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

// A precision with a tile shape, as one template argument of a kernel (so its
// name reads conv_tc_fwd_kernel<Tf32x128> in launches and reports).
struct Tf32x64 : Tf32 { typedef Tile64 Tile; };
struct Tf32x128 : Tf32 { typedef Tile128 Tile; };
struct Bf16x64 : Bf16 { typedef Tile64 Tile; };
struct Bf16x128 : Bf16 { typedef Tile128 Tile; };
// TF32 staged by cp.async (tc_tile_async) on TileAsync128.
struct Tf32Async128 : Tf32 {
    typedef TileAsync128 Tile;
    static constexpr bool kAsync = true;
};
// The same with 16-byte copies of 4 consecutive floats (see issue), for launches
// whose operands allow them.
struct Tf32Async128Vec : Tf32Async128 {
    static constexpr int kWidth = 4;
};

// The tile for a problem of M x N (x splits) outputs: Tile128 when it still gives
// three quarters of a large GPU's SMs a block (99 of H100's 132), else Tile64
// for more blocks. Tile128 computes about 1.5x as fast per block-FLOP (fewer
// global reads and fragment loads per FLOP, selftest --profile), which
// outweighs a quarter of the SMs idle, not more (a DDIM step at batch 1 has 8
// such tiles per convolution).
inline bool wide_tiles(int64_t M, int64_t N, int64_t splits) {
    return ((M + 127) / 128) * ((N + 127) / 128) * splits >= 99;
}

// One staged operand (A: kRows x kTcBK, B: kTcBK x kRows). Its shared-memory layout
// follows its layout in global memory, so the staging stores of consecutive
// threads (consecutive addresses in global memory) land in consecutive words:
//   contiguous along k: rows of k (k_major), read as row_major A / col_major B fragments;
//   contiguous along m or n: rows of m or n (kRows + 8 elements: 8 words apart
//   mod 32 for floats), read as col_major A / row_major B fragments.
template <class P, bool kKContiguous, int kRows>
struct Operand {
    static constexpr int kPitch = kKContiguous ? P::kKPitch : kRows + 8;
    static constexpr size_t kBytes = (size_t)(kKContiguous ? kRows : kTcBK) * kPitch * sizeof(typename P::Stage);
    static_assert(kBytes % 32 == 0, "buffers keep 32-byte alignment");
    // the element (c, kk) of the tile: c along m (A) or n (B)
    __device__ static int offset(int c, int kk) { return kKContiguous ? c * kPitch + kk : kk * kPitch + c; }
};

template <class P, class T, class Op, int kStages = 2>
struct Smem {
    typedef Operand<P, Op::kAK, T::kBM> A;
    typedef Operand<P, Op::kBKc, T::kBN> B;
    static constexpr size_t kBytes = kStages * (A::kBytes + B::kBytes);
    static constexpr int kCPitch = 16 + 4;  // a warp's 16 x 16 output fragment on its way out
    static_assert(kBytes >= (size_t)(T::kThreads / 32) * 16 * kCPitch * sizeof(float), "room for the epilogue");
};

// Element e's coordinates in a kTcBK x kCols chunk, ordered along the operand's contiguous index.
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

// Whether an Op reads its operands in split form (a(a_m(m), a_k(k)), b(b_k(k), b_n(n)), see conv2d_ops.h).
template <class Op, class = void>
struct split_of : std::false_type {};
template <class Op>
struct split_of<Op, std::void_t<decltype(Op::kSplit)>> : std::integral_constant<bool, Op::kSplit> {};

// An Op whose column decomposition takes the tile's first row as well (a_k(k, m_first)):
// constants of the tile's rows that a thread then loads once per chunk (FwdGnOp).
template <class Op, class = void>
struct hinted_a_k : std::false_type {};
template <class Op>
struct hinted_a_k<Op, std::void_t<decltype(std::declval<const Op &>().a_k(int64_t(), int64_t()))>>
    : std::true_type {};
template <class Op>
__device__ __forceinline__ auto a_k_of(const Op &op, int64_t k, int64_t m_first) {
    if constexpr (hinted_a_k<Op>::value) {
        return op.a_k(k, m_first);
    } else {
        return op.a_k(k);
    }
}

// This thread's elements of the chunk at k0: element e = tid + i * kThreads of
// each operand. Along the operand's contiguous index the thread's coordinate
// is the same for all its elements (kThreads is a multiple of kTcBK and of the
// tile's width), so a split Op decomposes that index once per chunk.
template <class T, class Op>
__device__ __forceinline__ void fetch(const Op &op, int tid, int64_t m0, int64_t n0, int64_t k0, int64_t k_end,
                                      float (&ra)[T::kPerThreadA], float (&rb)[T::kPerThreadB]) {
    static_assert(T::kThreads % kTcBK == 0 && T::kThreads % T::kBM == 0 && T::kThreads % T::kBN == 0,
                  "a thread keeps its coordinate along the contiguous index");
    if constexpr (split_of<Op>::value) {
        if constexpr (Op::kAK) {  // the thread's k is fixed, its rows vary
            const int64_t k = k0 + tid % kTcBK;
            const auto kc = a_k_of(op, k < k_end ? k : k0, m0);
D4J_UNROLL
            for (int i = 0; i < T::kPerThreadA; ++i) {
                const int64_t m = m0 + (tid + i * T::kThreads) / kTcBK;
                ra[i] = (k < k_end && m < op.M) ? op.a(op.a_m(m), kc) : 0.0f;
            }
        } else {  // the thread's row is fixed, its k vary
            const int64_t m = m0 + tid % T::kBM;
            const auto mc = op.a_m(m < op.M ? m : m0);
D4J_UNROLL
            for (int i = 0; i < T::kPerThreadA; ++i) {
                const int64_t k = k0 + (tid + i * T::kThreads) / T::kBM;
                ra[i] = (k < k_end && m < op.M) ? op.a(mc, op.a_k(k)) : 0.0f;
            }
        }
        if constexpr (Op::kBKc) {  // the thread's k is fixed, its columns vary
            const int64_t k = k0 + tid % kTcBK;
            const auto kc = op.b_k(k < k_end ? k : k0);
D4J_UNROLL
            for (int i = 0; i < T::kPerThreadB; ++i) {
                const int64_t n = n0 + (tid + i * T::kThreads) / kTcBK;
                rb[i] = (k < k_end && n < op.N) ? op.b(kc, op.b_n(n)) : 0.0f;
            }
        } else {  // the thread's column is fixed, its k vary
            const int64_t n = n0 + tid % T::kBN;
            const auto nc = op.b_n(n < op.N ? n : n0);
D4J_UNROLL
            for (int i = 0; i < T::kPerThreadB; ++i) {
                const int64_t k = k0 + (tid + i * T::kThreads) / T::kBN;
                rb[i] = (k < k_end && n < op.N) ? op.b(op.b_k(k), nc) : 0.0f;
            }
        }
    } else {
D4J_UNROLL
        for (int i = 0; i < T::kPerThreadA; ++i) {
            int kk, mm;
            coords<Op::kAK, T::kBM>(tid + i * T::kThreads, &kk, &mm);
            const int64_t k = k0 + kk, m = m0 + mm;
            ra[i] = (k < k_end && m < op.M) ? op.a(m, k) : 0.0f;
        }
D4J_UNROLL
        for (int i = 0; i < T::kPerThreadB; ++i) {
            int kk, nn;
            coords<Op::kBKc, T::kBN>(tid + i * T::kThreads, &kk, &nn);
            const int64_t k = k0 + kk, n = n0 + nn;
            rb[i] = (k < k_end && n < op.N) ? op.bv(k, n) : 0.0f;
        }
    }
}

template <class P, class T, class Op>
__device__ __forceinline__ void stage(int tid, const float (&ra)[T::kPerThreadA], const float (&rb)[T::kPerThreadB],
                                      typename P::Stage *As, typename P::Stage *Bs) {
    typedef Smem<P, T, Op> L;
D4J_UNROLL
    for (int i = 0; i < T::kPerThreadA; ++i) {
        int kk, mm;
        coords<Op::kAK, T::kBM>(tid + i * T::kThreads, &kk, &mm);
        As[L::A::offset(mm, kk)] = P::convert(ra[i]);
    }
D4J_UNROLL
    for (int i = 0; i < T::kPerThreadB; ++i) {
        int kk, nn;
        coords<Op::kBKc, T::kBN>(tid + i * T::kThreads, &kk, &nn);
        Bs[L::B::offset(nn, kk)] = P::convert(rb[i]);
    }
}

// The end of an asynchronous tile: tc_tile's epilogue (each warp passes its
// fragments out through its own 16 x 16 patch of the free staging buffers).
template <class T, class L, class Op, class Acc, class Store>
__device__ __forceinline__ void write_out(const Op &op, Acc (&acc)[T::kFM][T::kFN], float *smem, int64_t m0,
                                          int64_t n0, int row0, int col0, const Store &store) {
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    float *patch = smem + warp * 16 * L::kCPitch;
D4J_UNROLL
    for (int i = 0; i < T::kFM; ++i)
D4J_UNROLL
        for (int j = 0; j < T::kFN; ++j) {
            wmma::store_matrix_sync(patch, acc[i][j], L::kCPitch, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                const int r = e / 16, c = e % 16;
                const int64_t m = m0 + row0 + i * 16 + r, n = n0 + col0 + j * 16 + c;
                if (m < op.M && n < op.N) store(m, n, patch[r * L::kCPitch + c]);
            }
            __syncwarp();
        }
}

// The C tile at (m0, n0) summed over k in [k_begin, k_end): store(m, n, value)
// is called once for each element inside M x N, by lanes consecutive in n.
// T: the tile shape (Tile64 unless given).
template <class P, class T = Tile64, class Op, class Store>
__device__ void tc_tile(const Op &op, int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end, const Store &store) {
    typedef typename P::Stage S;
    typedef Smem<P, T, Op> L;
    // fragment layouts of the staged tiles (see Operand)
    typedef typename std::conditional<Op::kAK, wmma::row_major, wmma::col_major>::type ALayout;
    typedef typename std::conditional<Op::kBKc, wmma::col_major, wmma::row_major>::type BLayout;
    __shared__ __align__(128) unsigned char smem[L::kBytes];
    // buffer b: A at b * kBuffer, B after it (pointer arithmetic, not an array of pointers, which a
    // dynamic index would put in local memory)
    constexpr size_t kBuffer = L::A::kBytes + L::B::kBytes;
    auto a_buf = [&](int b) { return reinterpret_cast<S *>(smem + b * kBuffer); };
    auto b_buf = [&](int b) { return reinterpret_cast<S *>(smem + b * kBuffer + L::A::kBytes); };
    const int tid = (int)threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int wm = warp / T::kWarpsN, wn = warp % T::kWarpsN;
    const int row0 = wm * T::kFM * 16, col0 = wn * T::kFN * 16;  // the warp's corner in the tile

    wmma::fragment<wmma::accumulator, 16, 16, P::kStep, float> acc[T::kFM][T::kFN];
D4J_UNROLL
    for (int i = 0; i < T::kFM; ++i)
D4J_UNROLL
        for (int j = 0; j < T::kFN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    float ra[T::kPerThreadA], rb[T::kPerThreadB];
    fetch<T>(op, tid, m0, n0, k_begin, k_end, ra, rb);
    stage<P, T, Op>(tid, ra, rb, a_buf(0), b_buf(0));
    __syncthreads();
    int buf = 0;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += kTcBK) {
        const bool more = k0 + kTcBK < k_end;
        if (more) fetch<T>(op, tid, m0, n0, k0 + kTcBK, k_end, ra, rb);  // in flight during the products
D4J_UNROLL
        for (int kk = 0; kk < kTcBK; kk += P::kStep) {
            // every A fragment of the warp, then one B fragment at a time (fewer live registers)
            wmma::fragment<wmma::matrix_a, 16, 16, P::kStep, typename P::Frag, ALayout> a[T::kFM];
D4J_UNROLL
            for (int i = 0; i < T::kFM; ++i)
                wmma::load_matrix_sync(a[i], a_buf(buf) + L::A::offset(row0 + i * 16, kk), L::A::kPitch);
D4J_UNROLL
            for (int j = 0; j < T::kFN; ++j) {
                wmma::fragment<wmma::matrix_b, 16, 16, P::kStep, typename P::Frag, BLayout> b;
                wmma::load_matrix_sync(b, b_buf(buf) + L::B::offset(col0 + j * 16, kk), L::B::kPitch);
D4J_UNROLL
                for (int i = 0; i < T::kFM; ++i) wmma::mma_sync(acc[i][j], a[i], b, acc[i][j]);
            }
        }
        if (more) stage<P, T, Op>(tid, ra, rb, a_buf(buf ^ 1), b_buf(buf ^ 1));
        __syncthreads();  // the next chunk is staged, and every warp is done with this one
        buf ^= 1;
    }

    // The staging buffers are free (the loop ended at a barrier). Each warp
    // passes its fragments out through its own 16 x 16 patch of them, so the
    // global stores are bounds-checked and 16 lanes write 16 consecutive n.
    // (write_out's loop, written out here: called from this tile it made ptxas
    // spill linear_tc_fwd_kernel<Bf16> at sm_90, which the build refuses.)
    float *patch = reinterpret_cast<float *>(smem) + warp * 16 * L::kCPitch;
D4J_UNROLL
    for (int i = 0; i < T::kFM; ++i)
D4J_UNROLL
        for (int j = 0; j < T::kFN; ++j) {
            wmma::store_matrix_sync(patch, acc[i][j], L::kCPitch, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                const int r = e / 16, c = e % 16;
                const int64_t m = m0 + row0 + i * 16 + r, n = n0 + col0 + j * 16 + c;
                if (m < op.M && n < op.N) store(m, n, patch[r * L::kCPitch + c]);
            }
            __syncwarp();
        }
}

// ---- the asynchronous path (TF32) -----------------------------------------------

// Shared-memory buffers of the asynchronous path: two, so the copies of chunk
// c + 1 fly while the warps multiply chunk c, within the 48 KiB of static
// shared memory (three would need the dynamic opt-in: 57 KiB for the forward).
constexpr int kAsyncStages = 2;

// One copy of kWidth consecutive floats (4 or 16 bytes) into shared memory: those at
// src, or zeros (src null) zero-filled from `base`, a valid global address
// aligned as the copy.
template <int kWidth>
__device__ __forceinline__ void copy_elements(float *dst, const float *src, const float *base) {
    constexpr size_t kSize = kWidth * sizeof(float);
    __pipeline_memcpy_async(dst, src ? src : base, kSize, src ? 0 : kSize);
}

// Queues this thread's copies of the chunk at k0 into As / Bs: the same
// elements, in the same places, as fetch and stage (a thread keeps its
// coordinate along the operand's contiguous index, so it decomposes it once).
// kWidth: the floats per copy, 1, or 4 where the caller guarantees that every
// group of 4 consecutive elements along an operand's contiguous index that
// starts at a multiple of 4 is 4 consecutive floats in memory, 16-byte aligned,
// and wholly inside or wholly outside the operand's range and its padding (the
// conv2d Ops with c_in and c_out multiples of 4, see kernels_conv2d_tc.cu).
// A thread then takes 4 consecutive elements per copy.
template <class T, int kWidth, class Op>
__device__ __forceinline__ void issue(const Op &op, int tid, int64_t m0, int64_t n0, int64_t k0, int64_t k_end,
                                      float *As, float *Bs) {
    typedef Smem<Tf32, T, Op, kAsyncStages> L;
    static_assert(kWidth == 1 || kWidth == 4, "4- or 16-byte copies");
    constexpr int kGroupsK = kTcBK / kWidth, kGroupsM = T::kBM / kWidth, kGroupsN = T::kBN / kWidth;
    constexpr int kCopiesA = T::kPerThreadA / kWidth, kCopiesB = T::kPerThreadB / kWidth;
    static_assert(T::kThreads % kGroupsK == 0 && T::kThreads % kGroupsM == 0 && T::kThreads % kGroupsN == 0,
                  "a thread keeps its coordinate along the contiguous index");
    static_assert(kCopiesA * kWidth == T::kPerThreadA && kCopiesB * kWidth == T::kPerThreadB, "whole copies");
    // a group of 4 starting at a multiple of 4 starts 16 bytes into a row: the pitches keep that aligned
    static_assert(kWidth == 1 || (L::A::kPitch % 4 == 0 && L::B::kPitch % 4 == 0), "16-byte aligned destinations");
    if constexpr (Op::kAK) {
        const int kk = (tid % kGroupsK) * kWidth;
        const int64_t k = k0 + kk;
        const auto kc = op.a_k(k < k_end ? k : k0);
D4J_NO_UNROLL
        for (int i = 0; i < kCopiesA; ++i) {
            const int mm = (tid + i * T::kThreads) / kGroupsK;
            const int64_t m = m0 + mm;
            copy_elements<kWidth>(As + L::A::offset(mm, kk),
                                  (k < k_end && m < op.M) ? op.a_src(op.a_m(m), kc) : nullptr, op.a_base());
        }
    } else {
        const int mm = (tid % kGroupsM) * kWidth;
        const int64_t m = m0 + mm;
        const auto mc = op.a_m(m < op.M ? m : m0);
D4J_NO_UNROLL
        for (int i = 0; i < kCopiesA; ++i) {
            const int kk = (tid + i * T::kThreads) / kGroupsM;
            const int64_t k = k0 + kk;
            copy_elements<kWidth>(As + L::A::offset(mm, kk),
                                  (k < k_end && m < op.M) ? op.a_src(mc, op.a_k(k)) : nullptr, op.a_base());
        }
    }
    if constexpr (Op::kBKc) {
        const int kk = (tid % kGroupsK) * kWidth;
        const int64_t k = k0 + kk;
        const auto kc = op.b_k(k < k_end ? k : k0);
D4J_NO_UNROLL
        for (int i = 0; i < kCopiesB; ++i) {
            const int nn = (tid + i * T::kThreads) / kGroupsK;
            const int64_t n = n0 + nn;
            copy_elements<kWidth>(Bs + L::B::offset(nn, kk),
                                  (k < k_end && n < op.N) ? op.b_src(kc, op.b_n(n)) : nullptr, op.b_base());
        }
    } else {
        const int nn = (tid % kGroupsN) * kWidth;
        const int64_t n = n0 + nn;
        const auto nc = op.b_n(n < op.N ? n : n0);
D4J_NO_UNROLL
        for (int i = 0; i < kCopiesB; ++i) {
            const int kk = (tid + i * T::kThreads) / kGroupsN;
            const int64_t k = k0 + kk;
            copy_elements<kWidth>(Bs + L::B::offset(nn, kk),
                                  (k < k_end && n < op.N) ? op.b_src(op.b_k(k), nc) : nullptr, op.b_base());
        }
    }
}

// tc_tile with TF32 inputs staged by cp.async (see the top of this file); the
// same contract. T: TileAsync128 (or any shape whose accumulators fit without
// the staging registers). kWidth: the floats per copy (see issue).
template <class T, int kWidth, class Op, class Store>
__device__ void tc_tile_async(const Op &op, int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end,
                              const Store &store) {
    typedef Tf32 P;
    typedef Smem<P, T, Op, kAsyncStages> L;
    typedef typename std::conditional<Op::kAK, wmma::row_major, wmma::col_major>::type ALayout;
    typedef typename std::conditional<Op::kBKc, wmma::col_major, wmma::row_major>::type BLayout;
    __shared__ __align__(128) unsigned char smem[L::kBytes];
    constexpr size_t kBuffer = L::A::kBytes + L::B::kBytes;
    auto a_buf = [&](int b) { return reinterpret_cast<float *>(smem + b * kBuffer); };
    auto b_buf = [&](int b) { return reinterpret_cast<float *>(smem + b * kBuffer + L::A::kBytes); };
    const int tid = (int)threadIdx.x, warp = tid / 32;
    const int wm = warp / T::kWarpsN, wn = warp % T::kWarpsN;
    const int row0 = wm * T::kFM * 16, col0 = wn * T::kFN * 16;

    wmma::fragment<wmma::accumulator, 16, 16, P::kStep, float> acc[T::kFM][T::kFN];
D4J_UNROLL
    for (int i = 0; i < T::kFM; ++i)
D4J_UNROLL
        for (int j = 0; j < T::kFN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    const int64_t chunks = (k_end - k_begin + kTcBK - 1) / kTcBK;
    // the first kAsyncStages - 1 chunks, one batch each (an empty batch past the end keeps the count)
    for (int s = 0; s < kAsyncStages - 1; ++s) {
        if (s < chunks) issue<T, kWidth>(op, tid, m0, n0, k_begin + s * kTcBK, k_end, a_buf(s), b_buf(s));
        __pipeline_commit();
    }
    int buf = 0;
    for (int64_t c = 0; c < chunks; ++c) {
        __pipeline_wait_prior(kAsyncStages - 2);  // this thread's copies of chunk c have landed
        __syncthreads();  // everyone's have, and every warp is done with the buffer chunk c - 1 used
        const int64_t next = c + kAsyncStages - 1;
        const int next_buf = (buf + kAsyncStages - 1) % kAsyncStages;
        if (next < chunks) issue<T, kWidth>(op, tid, m0, n0, k_begin + next * kTcBK, k_end, a_buf(next_buf), b_buf(next_buf));
        __pipeline_commit();
D4J_UNROLL
        for (int kk = 0; kk < kTcBK; kk += P::kStep) {
            wmma::fragment<wmma::matrix_a, 16, 16, P::kStep, P::Frag, ALayout> a[T::kFM];
D4J_UNROLL
            for (int i = 0; i < T::kFM; ++i) {
                wmma::load_matrix_sync(a[i], a_buf(buf) + L::A::offset(row0 + i * 16, kk), L::A::kPitch);
D4J_UNROLL
                for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
            }
D4J_UNROLL
            for (int j = 0; j < T::kFN; ++j) {
                wmma::fragment<wmma::matrix_b, 16, 16, P::kStep, P::Frag, BLayout> b;
                wmma::load_matrix_sync(b, b_buf(buf) + L::B::offset(col0 + j * 16, kk), L::B::kPitch);
D4J_UNROLL
                for (int t = 0; t < b.num_elements; ++t) b.x[t] = wmma::__float_to_tf32(b.x[t]);
D4J_UNROLL
                for (int i = 0; i < T::kFM; ++i) wmma::mma_sync(acc[i][j], a[i], b, acc[i][j]);
            }
        }
        buf = (buf + 1) % kAsyncStages;
    }
    __pipeline_wait_prior(0);  // nothing is in flight (the batches past the end are empty)
    __syncthreads();           // every warp is done with the last chunk before the epilogue reuses the buffers
    write_out<T, L>(op, acc, reinterpret_cast<float *>(smem), m0, n0, row0, col0, store);
}

// Whether a precision-and-tile type stages by cp.async (it declares kAsync).
template <class C, class = void>
struct async_of : std::false_type {};
template <class C>
struct async_of<C, std::void_t<decltype(C::kAsync)>> : std::integral_constant<bool, C::kAsync> {};
// The floats per asynchronous copy of a precision-and-tile type (kWidth if it declares one, else 1).
template <class C, class = void>
struct width_of : std::integral_constant<int, 1> {};
template <class C>
struct width_of<C, std::void_t<decltype(C::kWidth)>> : std::integral_constant<int, C::kWidth> {};

// The tile engine for a precision-and-tile type C (Tf32x64, ..., Tf32Async128, Tf32Async128Vec).
template <class C, class Op, class Store>
__device__ __forceinline__ void tc_run(const Op &op, int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end,
                                       const Store &store) {
    if constexpr (async_of<C>::value) {
        tc_tile_async<typename C::Tile, width_of<C>::value>(op, m0, n0, k_begin, k_end, store);
    } else {
        tc_tile<C, typename C::Tile>(op, m0, n0, k_begin, k_end, store);
    }
}

}  // namespace d4j::cuda::tc
#endif
