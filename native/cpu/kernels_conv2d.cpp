// The conv2d family on the CPU: forward, dX and dW of a k x k convolution
// (k = 1 or 3, stride 1 or 2, optional nearest-2x upsampled input), NHWC
// activations and HWIO weights, as implicit GEMMs.
//
// Forward and dX share one register-blocked micro-kernel: a tile of kMR
// output rows (pixels) x kNR output columns (channels), accumulated over
// "segments", each a (row pointers, weight slab) pair:
//   forward: rows are input pixels under one kernel tap (a C_in vector each),
//            the slab is weight[tap] in panels of kNR output channels (packed,
//            or read in place when C_out % kNR == 0 and the call is small);
//            with upsample2x (stride 1) the output is computed by phase (oh % 2,
//            ow % 2), each phase with at most 2 x 2 combined taps instead of 9
//            (dX and dW of those convs too: 16 combined segments instead of 36);
//   dX:      rows are dy pixels reached through one tap (a C_out vector each),
//            the slab is weight[tap] transposed and packed by kNR input channels;
//            with upsample2x the 4 upsampled children of a pixel add 4x the segments;
//            with stride 2 the input pixels are tiled by parity class, each
//            class with only the taps that reach it.
// A tap that falls into the zero padding points at a zero row, so the inner
// loops carry no branches. With few channels (conv_in forward, conv_out dX)
// the tile's rows of all taps are gathered into one segment of taps * C
// values. Where the single output channel would waste 15 of 16 columns
// (C_out = 1 forward, C_in = 1 dX) each pixel is one dot product instead.
//
// Where C_out (forward) or C_in (dX) has two or more panels, micro_kernel_2
// computes two panels per tile, so each broadcast row value feeds two vectors.
//
// dW is a reduction over all N * H_out * W_out pixels. Tasks are (taps, range of
// kRange pixels, group of input channels): without upsampling a task takes all
// the taps, so a chunk's dy rows and its (overlapping) x rows are reused from
// cache by every tap; with upsampling one tap. A task walks its range in chunks
// of kChunk pixels; without upsampling the kernels read the x rows of a chunk
// under a tap in place, run by run (consecutive pixels of one output row have
// evenly spaced x rows; rows in the padding are skipped), else it gathers them
// into a contiguous buffer once; a 12 x 32 (AVX-512 only), 6 x 32 or 6 x 16
// micro-kernel runs over the chunk for every output panel (in place, the last
// channel tile overlaps the one before instead of being copied); each chunk sum
// (float registers, pixel order) is added into
// the task's float64 partial, and the partials of the ranges are added in
// range order at the end: the result depends on the range and chunk boundaries
// only (fixed by the shape), never on the thread count, and the float64 carry
// keeps the error at about kChunk u instead of N H W u. With few input
// channels (conv_in) the rows are the (tap, ci) pairs of one gather; with
// C_out = 1 (conv_out) an axpy over C_in per tap.
//
// Every output element is produced by exactly one task with a fixed
// summation order, so results are bit-identical for any number of threads.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu_kernels.h"
#include "rng_fill.h"  // D4J_CLONES

namespace d4j::cpu {

namespace {

using Geom = d4j_backend_iface::conv2d_geom;

// 6 x 16 accumulators: 12 AVX2 or 6 AVX-512 registers, plus the broadcast
// and the weight vector(s), so the tile stays in registers on both paths.
constexpr int kMR = 6;
constexpr int kNR = 16;
constexpr int kTilesPerTask = 8;     // 48 output pixels per forward / dX task
constexpr int64_t kChunk = 256;      // pixels summed in float before the float64 carry (dW, dB)
constexpr int64_t kRange = 16 * kChunk;  // pixels per dW task: partials of ranges are added in float64
constexpr int64_t kMinDwTasks = 8;   // dW splits input channels when (tap, range) pairs are fewer

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One row of kNR floats as a GCC generic vector: 1 zmm, 2 ymm or 4 xmm
// registers depending on the clone. Written with vector types because GCC's
// auto-vectoriser spills a 6 x 16 array accumulator to the stack. Loads and
// stores go through memcpy (no alignment assumed); mul and add stay separate
// (-ffp-contract=off), so every SIMD path gives the same bits.
typedef float vrow __attribute__((vector_size(kNR * sizeof(float))));

#define D4J_LOAD_ROW(dst, src) std::memcpy(&(dst), (src), sizeof(vrow))

// out[r*kNR + j] = sum over segments s, k < kc of rows[s*kMR + r][k] * slabs[s][k*ld + j]
D4J_CLONES void micro_kernel(int segs, const float *const *rows, const float *const *slabs, int kc, int64_t ld,
                             float *out) {
    vrow c0 = {}, c1 = {}, c2 = {}, c3 = {}, c4 = {}, c5 = {};
    for (int s = 0; s < segs; ++s) {
        const float *const *rr = rows + (int64_t)s * kMR;
        const float *r0 = rr[0], *r1 = rr[1], *r2 = rr[2], *r3 = rr[3], *r4 = rr[4], *r5 = rr[5];
        const float *b = slabs[s];
        for (int k = 0; k < kc; ++k) {
            vrow bk;
            D4J_LOAD_ROW(bk, b + (int64_t)k * ld);
            c0 += r0[k] * bk;
            c1 += r1[k] * bk;
            c2 += r2[k] * bk;
            c3 += r3[k] * bk;
            c4 += r4[k] * bk;
            c5 += r5[k] * bk;
        }
    }
    std::memcpy(out + 0 * kNR, &c0, sizeof(vrow));
    std::memcpy(out + 1 * kNR, &c1, sizeof(vrow));
    std::memcpy(out + 2 * kNR, &c2, sizeof(vrow));
    std::memcpy(out + 3 * kNR, &c3, sizeof(vrow));
    std::memcpy(out + 4 * kNR, &c4, sizeof(vrow));
    std::memcpy(out + 5 * kNR, &c5, sizeof(vrow));
}

// Two panels at once: out[r*2kNR + j] for j < 2 kNR, the first kNR columns
// from slabs, the next from slabs2. Each broadcast row value feeds two vectors
// (12 accumulators: AVX-512 registers; the AVX2 clone spills some). Per
// element the same products are added in the same order as micro_kernel.
D4J_CLONES void micro_kernel_2(int segs, const float *const *rows, const float *const *slabs,
                               const float *const *slabs2, int kc, int64_t ld, float *out) {
    vrow a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {};
    vrow b0 = {}, b1 = {}, b2 = {}, b3 = {}, b4 = {}, b5 = {};
    for (int s = 0; s < segs; ++s) {
        const float *const *rr = rows + (int64_t)s * kMR;
        const float *r0 = rr[0], *r1 = rr[1], *r2 = rr[2], *r3 = rr[3], *r4 = rr[4], *r5 = rr[5];
        const float *p0 = slabs[s], *p1 = slabs2[s];
        for (int k = 0; k < kc; ++k) {
            vrow u, v;
            D4J_LOAD_ROW(u, p0 + (int64_t)k * ld);
            D4J_LOAD_ROW(v, p1 + (int64_t)k * ld);
            const float x0 = r0[k], x1 = r1[k], x2 = r2[k], x3 = r3[k], x4 = r4[k], x5 = r5[k];
            a0 += x0 * u;
            b0 += x0 * v;
            a1 += x1 * u;
            b1 += x1 * v;
            a2 += x2 * u;
            b2 += x2 * v;
            a3 += x3 * u;
            b3 += x3 * v;
            a4 += x4 * u;
            b4 += x4 * v;
            a5 += x5 * u;
            b5 += x5 * v;
        }
    }
    std::memcpy(out + 0 * kNR, &a0, sizeof(vrow));
    std::memcpy(out + 1 * kNR, &b0, sizeof(vrow));
    std::memcpy(out + 2 * kNR, &a1, sizeof(vrow));
    std::memcpy(out + 3 * kNR, &b1, sizeof(vrow));
    std::memcpy(out + 4 * kNR, &a2, sizeof(vrow));
    std::memcpy(out + 5 * kNR, &b2, sizeof(vrow));
    std::memcpy(out + 6 * kNR, &a3, sizeof(vrow));
    std::memcpy(out + 7 * kNR, &b3, sizeof(vrow));
    std::memcpy(out + 8 * kNR, &a4, sizeof(vrow));
    std::memcpy(out + 9 * kNR, &b4, sizeof(vrow));
    std::memcpy(out + 10 * kNR, &a5, sizeof(vrow));
    std::memcpy(out + 11 * kNR, &b5, sizeof(vrow));
}

// A run of n pixels of a dW chunk starting at chunk pixel q, whose x rows are x, x + lda, ...
struct Run {
    int64_t q, n;
    const float *x;
};

// dW micro-kernels over runs of pixels, both operands pixel-major: for each run u in order, q < n in order,
//   out[r*W + j] += (x_u + xoff)[q*lda + r] * dyb[(q_u + q)*ldb + j],  r < kMR, j < W,
// W = 2 kNR (two output panels: each broadcast x value feeds two vectors, so
// loads stay below the arithmetic) or kNR (the last odd panel).
D4J_CLONES void dw_kernel_2(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0, int64_t ldb,
                            float *out) {
    vrow a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5;
    D4J_LOAD_ROW(a0, out + 0 * kNR);
    D4J_LOAD_ROW(b0, out + 1 * kNR);
    D4J_LOAD_ROW(a1, out + 2 * kNR);
    D4J_LOAD_ROW(b1, out + 3 * kNR);
    D4J_LOAD_ROW(a2, out + 4 * kNR);
    D4J_LOAD_ROW(b2, out + 5 * kNR);
    D4J_LOAD_ROW(a3, out + 6 * kNR);
    D4J_LOAD_ROW(b3, out + 7 * kNR);
    D4J_LOAD_ROW(a4, out + 8 * kNR);
    D4J_LOAD_ROW(b4, out + 9 * kNR);
    D4J_LOAD_ROW(a5, out + 10 * kNR);
    D4J_LOAD_ROW(b5, out + 11 * kNR);
    for (int64_t u = 0; u < nruns; ++u) {
      const float *xa = runs[u].x + xoff, *dyb = dyb0 + runs[u].q * ldb;
      for (int64_t q = 0; q < runs[u].n; ++q) {
        const float *x = xa + q * lda;
        vrow d0, d1;
        D4J_LOAD_ROW(d0, dyb + q * ldb);
        D4J_LOAD_ROW(d1, dyb + q * ldb + kNR);
        const float x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], x4 = x[4], x5 = x[5];
        a0 += x0 * d0;
        b0 += x0 * d1;
        a1 += x1 * d0;
        b1 += x1 * d1;
        a2 += x2 * d0;
        b2 += x2 * d1;
        a3 += x3 * d0;
        b3 += x3 * d1;
        a4 += x4 * d0;
        b4 += x4 * d1;
        a5 += x5 * d0;
        b5 += x5 * d1;
      }
    }
    std::memcpy(out + 0 * kNR, &a0, sizeof(vrow));
    std::memcpy(out + 1 * kNR, &b0, sizeof(vrow));
    std::memcpy(out + 2 * kNR, &a1, sizeof(vrow));
    std::memcpy(out + 3 * kNR, &b1, sizeof(vrow));
    std::memcpy(out + 4 * kNR, &a2, sizeof(vrow));
    std::memcpy(out + 5 * kNR, &b2, sizeof(vrow));
    std::memcpy(out + 6 * kNR, &a3, sizeof(vrow));
    std::memcpy(out + 7 * kNR, &b3, sizeof(vrow));
    std::memcpy(out + 8 * kNR, &a4, sizeof(vrow));
    std::memcpy(out + 9 * kNR, &b4, sizeof(vrow));
    std::memcpy(out + 10 * kNR, &a5, sizeof(vrow));
    std::memcpy(out + 11 * kNR, &b5, sizeof(vrow));
}

// dw_kernel_2 on 2 kMR rows: out[r*2kNR + j] for r < 2 kMR, j < 2 kNR. 24 accumulators: AVX-512 registers
// (used only where the CPU has AVX-512: the AVX2 clone would spill). Each dy vector pair feeds twice the rows
// of dw_kernel_2, so a chunk's dy streams through the core half as often; per element the same products are
// added in the same (pixel) order, so the bits equal those of two dw_kernel_2 calls.
D4J_CLONES void dw_kernel_4(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0, int64_t ldb,
                            float *out) {
    vrow a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7, a8, b8, a9, b9, a10, b10, a11, b11;
    D4J_LOAD_ROW(a0, out + 0 * kNR);
    D4J_LOAD_ROW(b0, out + 1 * kNR);
    D4J_LOAD_ROW(a1, out + 2 * kNR);
    D4J_LOAD_ROW(b1, out + 3 * kNR);
    D4J_LOAD_ROW(a2, out + 4 * kNR);
    D4J_LOAD_ROW(b2, out + 5 * kNR);
    D4J_LOAD_ROW(a3, out + 6 * kNR);
    D4J_LOAD_ROW(b3, out + 7 * kNR);
    D4J_LOAD_ROW(a4, out + 8 * kNR);
    D4J_LOAD_ROW(b4, out + 9 * kNR);
    D4J_LOAD_ROW(a5, out + 10 * kNR);
    D4J_LOAD_ROW(b5, out + 11 * kNR);
    D4J_LOAD_ROW(a6, out + 12 * kNR);
    D4J_LOAD_ROW(b6, out + 13 * kNR);
    D4J_LOAD_ROW(a7, out + 14 * kNR);
    D4J_LOAD_ROW(b7, out + 15 * kNR);
    D4J_LOAD_ROW(a8, out + 16 * kNR);
    D4J_LOAD_ROW(b8, out + 17 * kNR);
    D4J_LOAD_ROW(a9, out + 18 * kNR);
    D4J_LOAD_ROW(b9, out + 19 * kNR);
    D4J_LOAD_ROW(a10, out + 20 * kNR);
    D4J_LOAD_ROW(b10, out + 21 * kNR);
    D4J_LOAD_ROW(a11, out + 22 * kNR);
    D4J_LOAD_ROW(b11, out + 23 * kNR);
    for (int64_t u = 0; u < nruns; ++u) {
      const float *xa = runs[u].x + xoff, *dyb = dyb0 + runs[u].q * ldb;
      for (int64_t q = 0; q < runs[u].n; ++q) {
        const float *x = xa + q * lda;
        vrow d0, d1;
        D4J_LOAD_ROW(d0, dyb + q * ldb);
        D4J_LOAD_ROW(d1, dyb + q * ldb + kNR);
        const float x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], x4 = x[4], x5 = x[5];
        const float x6 = x[6], x7 = x[7], x8 = x[8], x9 = x[9], x10 = x[10], x11 = x[11];
        a0 += x0 * d0;
        b0 += x0 * d1;
        a1 += x1 * d0;
        b1 += x1 * d1;
        a2 += x2 * d0;
        b2 += x2 * d1;
        a3 += x3 * d0;
        b3 += x3 * d1;
        a4 += x4 * d0;
        b4 += x4 * d1;
        a5 += x5 * d0;
        b5 += x5 * d1;
        a6 += x6 * d0;
        b6 += x6 * d1;
        a7 += x7 * d0;
        b7 += x7 * d1;
        a8 += x8 * d0;
        b8 += x8 * d1;
        a9 += x9 * d0;
        b9 += x9 * d1;
        a10 += x10 * d0;
        b10 += x10 * d1;
        a11 += x11 * d0;
        b11 += x11 * d1;
      }
    }
    std::memcpy(out + 0 * kNR, &a0, sizeof(vrow));
    std::memcpy(out + 1 * kNR, &b0, sizeof(vrow));
    std::memcpy(out + 2 * kNR, &a1, sizeof(vrow));
    std::memcpy(out + 3 * kNR, &b1, sizeof(vrow));
    std::memcpy(out + 4 * kNR, &a2, sizeof(vrow));
    std::memcpy(out + 5 * kNR, &b2, sizeof(vrow));
    std::memcpy(out + 6 * kNR, &a3, sizeof(vrow));
    std::memcpy(out + 7 * kNR, &b3, sizeof(vrow));
    std::memcpy(out + 8 * kNR, &a4, sizeof(vrow));
    std::memcpy(out + 9 * kNR, &b4, sizeof(vrow));
    std::memcpy(out + 10 * kNR, &a5, sizeof(vrow));
    std::memcpy(out + 11 * kNR, &b5, sizeof(vrow));
    std::memcpy(out + 12 * kNR, &a6, sizeof(vrow));
    std::memcpy(out + 13 * kNR, &b6, sizeof(vrow));
    std::memcpy(out + 14 * kNR, &a7, sizeof(vrow));
    std::memcpy(out + 15 * kNR, &b7, sizeof(vrow));
    std::memcpy(out + 16 * kNR, &a8, sizeof(vrow));
    std::memcpy(out + 17 * kNR, &b8, sizeof(vrow));
    std::memcpy(out + 18 * kNR, &a9, sizeof(vrow));
    std::memcpy(out + 19 * kNR, &b9, sizeof(vrow));
    std::memcpy(out + 20 * kNR, &a10, sizeof(vrow));
    std::memcpy(out + 21 * kNR, &b10, sizeof(vrow));
    std::memcpy(out + 22 * kNR, &a11, sizeof(vrow));
    std::memcpy(out + 23 * kNR, &b11, sizeof(vrow));
}

D4J_CLONES void dw_kernel_1(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0, int64_t ldb,
                            float *out) {
    vrow c0, c1, c2, c3, c4, c5;
    D4J_LOAD_ROW(c0, out + 0 * kNR);
    D4J_LOAD_ROW(c1, out + 1 * kNR);
    D4J_LOAD_ROW(c2, out + 2 * kNR);
    D4J_LOAD_ROW(c3, out + 3 * kNR);
    D4J_LOAD_ROW(c4, out + 4 * kNR);
    D4J_LOAD_ROW(c5, out + 5 * kNR);
    for (int64_t u = 0; u < nruns; ++u) {
        const float *xa = runs[u].x + xoff, *dyb = dyb0 + runs[u].q * ldb;
        for (int64_t q = 0; q < runs[u].n; ++q) {
            const float *x = xa + q * lda;
            vrow d;
            D4J_LOAD_ROW(d, dyb + q * ldb);
            c0 += x[0] * d;
            c1 += x[1] * d;
            c2 += x[2] * d;
            c3 += x[3] * d;
            c4 += x[4] * d;
            c5 += x[5] * d;
        }
    }
    std::memcpy(out + 0 * kNR, &c0, sizeof(vrow));
    std::memcpy(out + 1 * kNR, &c1, sizeof(vrow));
    std::memcpy(out + 2 * kNR, &c2, sizeof(vrow));
    std::memcpy(out + 3 * kNR, &c3, sizeof(vrow));
    std::memcpy(out + 4 * kNR, &c4, sizeof(vrow));
    std::memcpy(out + 5 * kNR, &c5, sizeof(vrow));
}

// Pointer to the stored x row read by conv-input position (ih, iw) of sample b, or nullptr in the padding.
inline const float *x_row(const Geom &g, const float *x, int64_t b, int64_t ih, int64_t iw) {
    if (ih < 0 || ih >= g.h_in || iw < 0 || iw >= g.w_in) return nullptr;
    if (g.upsample2x) {
        ih >>= 1;
        iw >>= 1;
    }
    return x + ((b * g.h + ih) * g.w + iw) * g.c_in;
}

// Work measure for run_tasks' serial threshold: multiply-adds / 16.
inline int64_t work_of(int64_t rows, int64_t k, int64_t cols) { return rows * k / 16 * cols; }

constexpr int64_t kMinTasks = 16;       // forward / dX: below this many tile groups, smaller groups and one panel pair per task
constexpr int kGatherMax = 64;          // forward / dX / dW: K = taps * channels up to this is gathered into one segment
constexpr int64_t kSinglePixels = 256;  // pixels per task of the one-channel dot-product paths
constexpr int64_t kPhaseMin = 512;      // upsample2x dX by output phase (combined taps) from this many output pixels
constexpr int64_t kPhaseMinDw = 2048;   // the same for dW (its per-phase setup costs more at batch 1)
constexpr int64_t kPackMin = 1024;      // forward packs the weight from this many output pixels (contiguous slabs)

// Task plan of a tiled forward / dX pass over `tiles` tiles of kMR pixels and `ppairs` pairs of output
// panels: kTilesPerTask tiles per task, fewer (and one panel pair per task) when the shape is small, so
// both threads get work at batch 1. Depends on the shape only.
struct TilePlan {
    int64_t tpt, pgroups;
    TilePlan(int64_t tiles, int ppairs) {
        tpt = std::clamp<int64_t>(tiles / kMinTasks, 1, kTilesPerTask);
        pgroups = ceil_div(tiles, tpt) < kMinTasks ? ppairs : 1;
    }
    int64_t groups(int64_t tiles) const { return ceil_div(tiles, tpt); }
};

inline void accumulate_row(const float *r, const float *w, int full, int tail, vrow &a0, vrow &a1) {
    int c = 0;
    for (; c + 2 * kNR <= full; c += 2 * kNR) {
        vrow x0, w0, x1, w1;
        D4J_LOAD_ROW(x0, r + c);
        D4J_LOAD_ROW(w0, w + c);
        D4J_LOAD_ROW(x1, r + c + kNR);
        D4J_LOAD_ROW(w1, w + c + kNR);
        a0 += x0 * w0;
        a1 += x1 * w1;
    }
    if (c < full) {
        vrow x0, w0;
        D4J_LOAD_ROW(x0, r + c);
        D4J_LOAD_ROW(w0, w + c);
        a0 += x0 * w0;
    }
    if (tail) {
        vrow x1 = {}, w1 = {};
        std::memcpy(&x1, r + full, (size_t)tail * sizeof(float));
        std::memcpy(&w1, w + full, (size_t)tail * sizeof(float));
        a1 += x1 * w1;
    }
}

// sum over i < n of dot(rows[i], ws[i]) over len floats: element c of a row goes to lane c % kNR of one of
// four accumulators (by row parity and by kNR-block parity); the accumulators and then the lanes are added
// in a fixed order. Used where one side of the GEMM has a single channel (C_out = 1 forward, C_in = 1 dX).
D4J_CLONES float dot_rows(int n, const float *const *rows, const float *const *ws, int len) {
    vrow a0 = {}, a1 = {}, b0 = {}, b1 = {};
    const int full = len / kNR * kNR, tail = len - full;
    int i = 0;
    for (; i + 1 < n; i += 2) {
        accumulate_row(rows[i], ws[i], full, tail, a0, a1);
        accumulate_row(rows[i + 1], ws[i + 1], full, tail, b0, b1);
    }
    if (i < n) accumulate_row(rows[i], ws[i], full, tail, a0, a1);
    const vrow acc = (a0 + a1) + (b0 + b1);
    float l[kNR];
    std::memcpy(l, &acc, sizeof(l));
    for (int h = kNR / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; ++j) l[j] += l[j + h];
    return l[0];
}

// acc[c] = sum over i < n (in order) of rows[i][c] * d[i], c < len; 2 x kNR columns at a time in registers.
D4J_CLONES void axpy_rows(int64_t n, const float *const *rows, const float *d, int len, float *acc) {
    int c = 0;
    for (; c + 2 * kNR <= len; c += 2 * kNR) {
        vrow a0 = {}, a1 = {};
        for (int64_t i = 0; i < n; ++i) {
            vrow x0, x1;
            D4J_LOAD_ROW(x0, rows[i] + c);
            D4J_LOAD_ROW(x1, rows[i] + c + kNR);
            a0 += x0 * d[i];
            a1 += x1 * d[i];
        }
        std::memcpy(acc + c, &a0, sizeof(vrow));
        std::memcpy(acc + c + kNR, &a1, sizeof(vrow));
    }
    for (; c + kNR <= len; c += kNR) {
        vrow a0 = {};
        for (int64_t i = 0; i < n; ++i) {
            vrow x0;
            D4J_LOAD_ROW(x0, rows[i] + c);
            a0 += x0 * d[i];
        }
        std::memcpy(acc + c, &a0, sizeof(vrow));
    }
    for (; c < len; ++c) {
        float a = 0.0f;
        for (int64_t i = 0; i < n; ++i) a += rows[i][c] * d[i];
        acc[c] = a;
    }
}

// Pointer to the dy row of the output that read conv-input position (ih, iw) (upsampled coordinates) of
// sample b through tap (kh, kw), given as (ih - kh, iw - kw); nullptr when no output did.
inline const float *dy_row(const Geom &g, const float *dy, int64_t b, int64_t ihk, int64_t iwk) {
    int64_t oh = ihk + g.pad_top, ow = iwk + g.pad_left;
    if (oh < 0 || ow < 0) return nullptr;
    if (g.stride == 2) {
        if ((oh | ow) & 1) return nullptr;
        oh >>= 1;
        ow >>= 1;
    } else if (g.stride != 1) {
        if (oh % g.stride != 0 || ow % g.stride != 0) return nullptr;
        oh /= g.stride;
        ow /= g.stride;
    }
    if (oh >= g.h_out || ow >= g.w_out) return nullptr;
    return dy + ((b * g.h_out + oh) * g.w_out + ow) * g.c_out;
}

// C_out = 1: y[m] = bias + sum over taps inside the image of x_row . weight[tap][:, 0], one dot product per pixel
// (instead of a 16-wide panel with 15 zero columns).
void forward_single(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *bias,
                    float *y) {
    const int taps = g.k * g.k;
    const int64_t HWo = (int64_t)g.h_out * g.w_out, M = (int64_t)g.n * HWo;
    run_tasks(pool, ceil_div(M, kSinglePixels), work_of(M, (int64_t)taps * g.c_in, 1), [&](int64_t task) {
        const float *rows[9], *ws[9];
        int64_t m = task * kSinglePixels;
        const int64_t m_end = std::min(M, m + kSinglePixels);
        int64_t b = m / HWo, rem = m % HWo, oh = rem / g.w_out, ow = rem % g.w_out;
        for (; m < m_end; ++m) {
            int n = 0;
            for (int t = 0; t < taps; ++t) {
                const float *p = x_row(g, x, b, oh * g.stride - g.pad_top + t / g.k, ow * g.stride - g.pad_left + t % g.k);
                if (p) {
                    rows[n] = p;
                    ws[n] = weight + (int64_t)t * g.c_in;
                    ++n;
                }
            }
            const float v = dot_rows(n, rows, ws, g.c_in);
            y[m] = bias ? v + bias[0] : v;
            if (++ow == g.w_out) {
                ow = 0;
                if (++oh == g.h_out) {
                    oh = 0;
                    ++b;
                }
            }
        }
    });
}

// Nearest-2x upsampling then a stride-1 conv, by output phase: output row oh = 2i + a reads stored row
// i + floor((a - pad_top + kh) / 2), so for each of the 4 phases (a, b) the k x k taps fall into at most
// 2 x 2 groups (k = 3) reading the same stored pixel; their weights are summed (in kh, kw order) into one
// combined tap. 4 instead of 9 taps per output: 2.25x fewer multiply-adds. (Rounding: one float sum of
// at most 4 weights per combined tap, inside the kernel's error bound; no effect on determinism.)
void forward_upsample(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *bias,
                      float *y) {
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t slab = (int64_t)g.c_in * kNR;
    auto floor_half = [](int v) { return v >= 0 ? v / 2 : -((1 - v) / 2); };
    struct Phase {
        int a, b, dh0, dw0, nh, nw;  // combined taps: stored offsets (dh0 + u, dw0 + v), u < nh, v < nw
        int64_t ho, wo, m, tiles, task0;
    };
    Phase ph[4];
    int64_t all_tiles = 0;
    for (int q = 0; q < 4; ++q) {
        Phase &p = ph[q];
        p.a = q / 2;
        p.b = q % 2;
        p.dh0 = floor_half(p.a - g.pad_top);
        p.nh = floor_half(p.a - g.pad_top + g.k - 1) - p.dh0 + 1;
        p.dw0 = floor_half(p.b - g.pad_left);
        p.nw = floor_half(p.b - g.pad_left + g.k - 1) - p.dw0 + 1;
        p.ho = g.h_out > p.a ? ceil_div(g.h_out - p.a, 2) : 0;
        p.wo = g.w_out > p.b ? ceil_div(g.w_out - p.b, 2) : 0;
        p.m = (int64_t)g.n * p.ho * p.wo;
        p.tiles = ceil_div(p.m, kMR);
        all_tiles += p.tiles;
    }
    // packed[phase][panel][u*nw + v][ci][j] = sum of weight[kh][kw][ci][panel*kNR + j] over the taps of the group
    thread_local std::vector<float> packed_ws, zero_ws;
    const int64_t phase_size = (int64_t)panels * 4 * slab;  // at most 2 x 2 combined taps (k <= 3)
    if ((int64_t)packed_ws.size() < 4 * phase_size) packed_ws.resize((size_t)(4 * phase_size));
    float *packed = packed_ws.data();
    run_tasks(pool, 4 * panels, 4 * panels * slab * g.k, [&](int64_t task) {
        const Phase &p = ph[task / panels];
        const int pn = (int)(task % panels);
        const int cols = std::min(kNR, g.c_out - pn * kNR);
        float *dst0 = packed + (task / panels) * phase_size + (int64_t)pn * 4 * slab;
        for (int u = 0; u < p.nh; ++u)
            for (int v = 0; v < p.nw; ++v) {
                float *dst = dst0 + (int64_t)(u * p.nw + v) * slab;
                for (int64_t e = 0; e < slab; ++e) dst[e] = 0.0f;
                for (int kh = 0; kh < g.k; ++kh) {
                    if (floor_half(p.a - g.pad_top + kh) != p.dh0 + u) continue;
                    for (int kw = 0; kw < g.k; ++kw) {
                        if (floor_half(p.b - g.pad_left + kw) != p.dw0 + v) continue;
                        for (int ci = 0; ci < g.c_in; ++ci) {
                            const float *src = weight + (((int64_t)kh * g.k + kw) * g.c_in + ci) * g.c_out + pn * kNR;
                            for (int j = 0; j < cols; ++j) dst[ci * kNR + j] += src[j];
                        }
                    }
                }
            }
    });
    if ((int64_t)zero_ws.size() < g.c_in) zero_ws.assign((size_t)g.c_in, 0.0f);  // never written: stays zero
    const float *zero = zero_ws.data();
    const TilePlan plan(all_tiles, (panels + 1) / 2);
    int64_t tasks = 0;
    for (Phase &p : ph) {
        p.task0 = tasks;
        tasks += plan.groups(p.tiles) * plan.pgroups;
    }
    run_tasks(pool, tasks, work_of(all_tiles * kMR, 4 * g.c_in, g.c_out), [&](int64_t task) {
        const float *rows[4 * kMR];
        const float *slabs[4], *slabs2[4];
        int64_t dst_of[kMR];
        float acc[kMR * 2 * kNR];
        int q = 0;
        while (q + 1 < 4 && task >= ph[q + 1].task0) ++q;
        const Phase &p = ph[q];
        const int taps = p.nh * p.nw;
        const int64_t local = task - p.task0;
        const int64_t tg = local / plan.pgroups, pg = local % plan.pgroups;
        const int p_begin = plan.pgroups == 1 ? 0 : 2 * (int)pg;
        const int p_end = plan.pgroups == 1 ? panels : std::min(panels, p_begin + 2);
        const int64_t t_end = std::min(p.tiles, (tg + 1) * plan.tpt);
        const int64_t HWp = p.ho * p.wo;
        int64_t b = 0, i = 0, j = 0;
        if (HWp > 0) {
            const int64_t m = tg * plan.tpt * kMR;
            b = m / HWp;
            i = m % HWp / p.wo;
            j = m % HWp % p.wo;
        }
        for (int64_t tile = tg * plan.tpt; tile < t_end; ++tile) {
            const int64_t m0 = tile * kMR;
            for (int r = 0; r < kMR; ++r) {
                const bool inside = m0 + r < p.m;
                dst_of[r] = inside ? ((b * g.h_out + 2 * i + p.a) * g.w_out + 2 * j + p.b) * g.c_out : -1;
                for (int u = 0; u < p.nh; ++u)
                    for (int v = 0; v < p.nw; ++v) {
                        const int64_t sh = i + p.dh0 + u, sw = j + p.dw0 + v;
                        const bool ok = inside && sh >= 0 && sh < g.h && sw >= 0 && sw < g.w;
                        rows[(u * p.nw + v) * kMR + r] = ok ? x + ((b * g.h + sh) * g.w + sw) * g.c_in : zero;
                    }
                if (++j == p.wo) {
                    j = 0;
                    if (++i == p.ho) {
                        i = 0;
                        ++b;
                    }
                }
            }
            const float *base = packed + q * phase_size;
            for (int pn = p_begin; pn < p_end; pn += 2) {
                const int w = pn + 1 < p_end ? 2 * kNR : kNR;
                for (int t = 0; t < taps; ++t) slabs[t] = base + ((int64_t)pn * 4 + t) * slab;
                if (w == 2 * kNR) {
                    for (int t = 0; t < taps; ++t) slabs2[t] = base + ((int64_t)(pn + 1) * 4 + t) * slab;
                    micro_kernel_2(taps, rows, slabs, slabs2, g.c_in, kNR, acc);
                } else {
                    micro_kernel(taps, rows, slabs, g.c_in, kNR, acc);
                }
                const int cols = std::min(w, g.c_out - pn * kNR);
                for (int r = 0; r < kMR && dst_of[r] >= 0; ++r) {
                    float *dst = y + dst_of[r] + (int64_t)pn * kNR;
                    const float *a = acc + r * w;
                    for (int e = 0; e < cols; ++e) dst[e] = bias ? a[e] + bias[pn * kNR + e] : a[e];
                }
            }
        }
    });
}

}  // namespace

d4j_status conv2d_forward(void *state, const Geom *gp, const float *x, const float *weight, const float *bias,
                          float *y) {
    const Geom g = *gp;
    ThreadPool &pool = pool_of(state);
    if (g.c_out == 1) {
        forward_single(pool, g, x, weight, bias, y);
        return D4J_OK;
    }
    // Always by phase, whatever the batch: the combined taps round differently from the 9-tap path, and
    // a forward must give an image the same bits whatever batch it is computed in (samplers, the server).
    if (g.upsample2x && g.stride == 1 && g.k <= 3) {
        forward_upsample(pool, g, x, weight, bias, y);
        return D4J_OK;
    }
    const int taps = g.k * g.k;
    const int64_t M = (int64_t)g.n * g.h_out * g.w_out;
    const int panels = (int)ceil_div(g.c_out, kNR);
    // The B operand: slab (panel p, tap t) at bbase + p * pstride + t * tstride, its kNR-wide rows ld apart.
    // When c_out is a multiple of kNR and the call is small (packing is serial work of the calling thread
    // while the worker waits; at batch 1 it costs as much as the GEMM) that is the weight itself, rows c_out
    // apart; else packed[p][tap][ci][j] = weight[tap][ci][p*kNR + j], zero beyond c_out (contiguous slabs: 5%
    // faster at batch 64), in a per-thread buffer reused across calls (no allocation and page faults per call).
    thread_local std::vector<float> packed_ws, zero_ws;
    const float *bbase = weight;
    int64_t pstride = kNR, tstride = (int64_t)g.c_in * g.c_out, ld = g.c_out;
    if (g.c_out % kNR != 0 || M >= kPackMin) {
        const int64_t slab = (int64_t)g.c_in * kNR;
        if ((int64_t)packed_ws.size() < panels * taps * slab) packed_ws.resize((size_t)(panels * taps * slab));
        float *packed = packed_ws.data();
        for (int p = 0; p < panels; ++p) {
            const int cols = std::min(kNR, g.c_out - p * kNR);
            for (int t = 0; t < taps; ++t)
                for (int ci = 0; ci < g.c_in; ++ci) {
                    const float *src = weight + ((int64_t)t * g.c_in + ci) * g.c_out + (int64_t)p * kNR;
                    float *dst = packed + ((int64_t)p * taps + t) * slab + (int64_t)ci * kNR;
                    for (int j = 0; j < cols; ++j) dst[j] = src[j];
                    for (int j = cols; j < kNR; ++j) dst[j] = 0.0f;
                }
        }
        bbase = packed;
        pstride = taps * slab;
        tstride = slab;
        ld = kNR;
    }
    if ((int64_t)zero_ws.size() < g.c_in) zero_ws.assign((size_t)g.c_in, 0.0f);  // never written: stays zero
    const float *zero = zero_ws.data();
    // Small C_in (conv_in): the tile's rows under all taps are gathered into one contiguous kMR x K block
    // and the micro-kernel runs one segment of K = taps * C_in (the slabs of one panel are contiguous over
    // taps); per element the same products are added in the same order as with one segment per tap.
    const int K = taps * g.c_in;
    const bool gather = taps > 1 && K <= kGatherMax;
    const int64_t tiles = ceil_div(M, kMR);
    const TilePlan plan(tiles, (panels + 1) / 2);
    int tap_h[9], tap_w[9];
    int64_t tap_off[9];
    for (int t = 0; t < taps; ++t) {
        tap_h[t] = t / g.k;
        tap_w[t] = t % g.k;
        tap_off[t] = ((int64_t)tap_h[t] * g.w + tap_w[t]) * g.c_in;
    }
    run_tasks(pool, plan.groups(tiles) * plan.pgroups, work_of(M, K, g.c_out), [&](int64_t task) {
        const float *rows[9 * kMR];
        const float *slabs[9];
        const float *slabs2[9];
        float acc[kMR * 2 * kNR];
        float ga[kMR * kGatherMax];
        const int64_t tg = task / plan.pgroups, pg = task % plan.pgroups;
        const int p_begin = plan.pgroups == 1 ? 0 : 2 * (int)pg;
        const int p_end = plan.pgroups == 1 ? panels : std::min(panels, p_begin + 2);
        const int64_t t_end = std::min(tiles, (tg + 1) * plan.tpt);
        // position of the task's first pixel, then advanced row by row (no divisions per row)
        int64_t b = 0, oh = 0, ow = 0;
        {
            const int64_t m = tg * plan.tpt * kMR, HWo = (int64_t)g.h_out * g.w_out;
            b = m / HWo;
            oh = m % HWo / g.w_out;
            ow = m % HWo % g.w_out;
        }
        for (int64_t tile = tg * plan.tpt; tile < t_end; ++tile) {
            const int64_t m0 = tile * kMR;
            for (int r = 0; r < kMR; ++r) {
                const bool inside = m0 + r < M;
                const int64_t ih0 = oh * g.stride - g.pad_top, iw0 = ow * g.stride - g.pad_left;
                if (inside && !g.upsample2x && ih0 >= 0 && iw0 >= 0 && ih0 + g.k <= g.h && iw0 + g.k <= g.w) {
                    // the whole window inside the image: fixed offsets from its corner
                    const float *base = x + ((b * g.h + ih0) * g.w + iw0) * g.c_in;
                    for (int t = 0; t < taps; ++t) rows[t * kMR + r] = base + tap_off[t];
                } else {
                    for (int t = 0; t < taps; ++t) {
                        const float *p = inside ? x_row(g, x, b, ih0 + tap_h[t], iw0 + tap_w[t]) : nullptr;
                        rows[t * kMR + r] = p ? p : zero;
                    }
                }
                if (++ow == g.w_out) {
                    ow = 0;
                    if (++oh == g.h_out) {
                        oh = 0;
                        ++b;
                    }
                }
            }
            int segs = taps, kc = g.c_in;
            if (gather) {
                for (int r = 0; r < kMR; ++r)
                    for (int t = 0; t < taps; ++t) {
                        const float *src = rows[t * kMR + r];
                        float *dst = ga + r * K + t * g.c_in;
                        for (int c = 0; c < g.c_in; ++c) dst[c] = src[c];
                    }
                for (int r = 0; r < kMR; ++r) rows[r] = ga + r * K;
                segs = 1;
                kc = K;
            }
            for (int p = p_begin; p < p_end; p += 2) {
                const int w = p + 1 < p_end ? 2 * kNR : kNR;
                for (int t = 0; t < segs; ++t) slabs[t] = bbase + p * pstride + t * tstride;
                if (w == 2 * kNR) {
                    for (int t = 0; t < segs; ++t) slabs2[t] = bbase + (p + 1) * pstride + t * tstride;
                    micro_kernel_2(segs, rows, slabs, slabs2, kc, ld, acc);
                } else {
                    micro_kernel(segs, rows, slabs, kc, ld, acc);
                }
                const int cols = std::min(w, g.c_out - p * kNR);
                for (int r = 0; r < kMR && m0 + r < M; ++r) {
                    float *dst = y + (m0 + r) * g.c_out + (int64_t)p * kNR;
                    const float *a = acc + r * w;
                    for (int j = 0; j < cols; ++j) dst[j] = bias ? a[j] + bias[p * kNR + j] : a[j];
                }
            }
        }
    });
    return D4J_OK;
}

namespace {

// dX of a nearest-2x upsample conv (stride 1) by the phases of forward_upsample: stored pixel (i, j) is read
// by output (2(i - dh0 - u) + a, 2(j - dw0 - v) + b) through combined tap (u, v) of phase (a, b): 16
// segments per tile instead of 4 children x 9 taps.
void dx_upsample(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx) {
    const int panels = (int)ceil_div(g.c_in, kNR);
    const int64_t slab = (int64_t)g.c_out * kNR;
    auto floor_half = [](int v) { return v >= 0 ? v / 2 : -((1 - v) / 2); };
    int dh0[4], dw0[4], nh[4], nw[4];
    for (int q = 0; q < 4; ++q) {
        const int a = q / 2, b = q % 2;
        dh0[q] = floor_half(a - g.pad_top);
        nh[q] = floor_half(a - g.pad_top + g.k - 1) - dh0[q] + 1;
        dw0[q] = floor_half(b - g.pad_left);
        nw[q] = floor_half(b - g.pad_left + g.k - 1) - dw0[q] + 1;
    }
    // packed[phase][panel][u*nw + v][co][j] = sum over the group's taps of weight[kh][kw][panel*kNR + j][co]
    thread_local std::vector<float> packed_ws, zero_ws;
    const int64_t phase_size = (int64_t)panels * 4 * slab;
    if ((int64_t)packed_ws.size() < 4 * phase_size) packed_ws.resize((size_t)(4 * phase_size));
    float *packed = packed_ws.data();
    run_tasks(pool, 4 * panels, 4 * panels * slab * g.k, [&](int64_t task) {
        const int q = (int)(task / panels), pn = (int)(task % panels);
        const int a = q / 2, b = q % 2;
        const int cols = std::min(kNR, g.c_in - pn * kNR);
        float *dst0 = packed + q * phase_size + (int64_t)pn * 4 * slab;
        for (int u = 0; u < nh[q]; ++u)
            for (int v = 0; v < nw[q]; ++v) {
                float *dst = dst0 + (int64_t)(u * nw[q] + v) * slab;
                for (int64_t e = 0; e < slab; ++e) dst[e] = 0.0f;
                for (int kh = 0; kh < g.k; ++kh) {
                    if (floor_half(a - g.pad_top + kh) != dh0[q] + u) continue;
                    for (int kw = 0; kw < g.k; ++kw) {
                        if (floor_half(b - g.pad_left + kw) != dw0[q] + v) continue;
                        for (int j = 0; j < cols; ++j) {
                            const float *src = weight + (((int64_t)kh * g.k + kw) * g.c_in + pn * kNR + j) * g.c_out;
                            for (int co = 0; co < g.c_out; ++co) dst[(int64_t)co * kNR + j] += src[co];
                        }
                    }
                }
            }
    });
    if ((int64_t)zero_ws.size() < g.c_out) zero_ws.assign((size_t)g.c_out, 0.0f);  // never written: stays zero
    const float *zero = zero_ws.data();
    const int64_t HW = (int64_t)g.h * g.w, M = (int64_t)g.n * HW;
    const int64_t tiles = ceil_div(M, kMR);
    const TilePlan plan(tiles, (panels + 1) / 2);
    int segs = 0;
    int seg_phase[16], seg_tap[16];
    for (int q = 0; q < 4; ++q)
        for (int t = 0; t < nh[q] * nw[q]; ++t) {
            seg_phase[segs] = q;
            seg_tap[segs++] = t;
        }
    run_tasks(pool, plan.groups(tiles) * plan.pgroups, work_of(M, (int64_t)segs * g.c_out, g.c_in), [&](int64_t task) {
        const float *rows[16 * kMR];
        const float *slabs[16], *slabs2[16];
        float acc[kMR * 2 * kNR];
        const int64_t tg = task / plan.pgroups, pg = task % plan.pgroups;
        const int p_begin = plan.pgroups == 1 ? 0 : 2 * (int)pg;
        const int p_end = plan.pgroups == 1 ? panels : std::min(panels, p_begin + 2);
        const int64_t t_end = std::min(tiles, (tg + 1) * plan.tpt);
        const int64_t m_first = tg * plan.tpt * kMR;
        int64_t b = m_first / HW, i = m_first % HW / g.w, j = m_first % HW % g.w;
        for (int64_t tile = tg * plan.tpt; tile < t_end; ++tile) {
            const int64_t m0 = tile * kMR;
            for (int r = 0; r < kMR; ++r) {
                const bool inside = m0 + r < M;
                for (int s = 0; s < segs; ++s) {
                    const int q = seg_phase[s], u = seg_tap[s] / nw[q], v = seg_tap[s] % nw[q];
                    const int64_t oh = 2 * (i - dh0[q] - u) + q / 2, ow = 2 * (j - dw0[q] - v) + q % 2;
                    const bool ok = inside && oh >= 0 && oh < g.h_out && ow >= 0 && ow < g.w_out;
                    rows[s * kMR + r] = ok ? dy + ((b * g.h_out + oh) * g.w_out + ow) * g.c_out : zero;
                }
                if (++j == g.w) {
                    j = 0;
                    if (++i == g.h) {
                        i = 0;
                        ++b;
                    }
                }
            }
            for (int pn = p_begin; pn < p_end; pn += 2) {
                const int w = pn + 1 < p_end ? 2 * kNR : kNR;
                for (int s = 0; s < segs; ++s)
                    slabs[s] = packed + seg_phase[s] * phase_size + ((int64_t)pn * 4 + seg_tap[s]) * slab;
                if (w == 2 * kNR) {
                    for (int s = 0; s < segs; ++s)
                        slabs2[s] = packed + seg_phase[s] * phase_size + ((int64_t)(pn + 1) * 4 + seg_tap[s]) * slab;
                    micro_kernel_2(segs, rows, slabs, slabs2, g.c_out, kNR, acc);
                } else {
                    micro_kernel(segs, rows, slabs, g.c_out, kNR, acc);
                }
                const int cols = std::min(w, g.c_in - pn * kNR);
                for (int r = 0; r < kMR && m0 + r < M; ++r) {
                    float *dst = dx + (m0 + r) * g.c_in + (int64_t)pn * kNR;
                    const float *a = acc + r * w;
                    for (int e = 0; e < cols; ++e) dst[e] = a[e];
                }
            }
        }
    });
}

// C_in = 1: dx[m] = sum over (child, tap) reaching it of dy_row . weight[tap][0][:], one dot product per pixel.
void dx_single(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx) {
    const int taps = g.k * g.k;
    const int children = g.upsample2x ? 4 : 1;
    const int64_t HW = (int64_t)g.h * g.w, M = (int64_t)g.n * HW;
    run_tasks(pool, ceil_div(M, kSinglePixels), work_of(M, (int64_t)taps * children * g.c_out, 1), [&](int64_t task) {
        const float *rows[36], *ws[36];
        int64_t m = task * kSinglePixels;
        const int64_t m_end = std::min(M, m + kSinglePixels);
        int64_t b = m / HW, rem = m % HW, i = rem / g.w, j = rem % g.w;
        for (; m < m_end; ++m) {
            int n = 0;
            for (int c = 0; c < children; ++c)
                for (int t = 0; t < taps; ++t) {
                    const int64_t ih = g.upsample2x ? 2 * i + c / 2 : i, iw = g.upsample2x ? 2 * j + c % 2 : j;
                    const float *p = dy_row(g, dy, b, ih - t / g.k, iw - t % g.k);
                    if (p) {
                        rows[n] = p;
                        ws[n] = weight + (int64_t)t * g.c_out;
                        ++n;
                    }
                }
            dx[m] = dot_rows(n, rows, ws, g.c_out);
            if (++j == g.w) {
                j = 0;
                if (++i == g.h) {
                    i = 0;
                    ++b;
                }
            }
        }
    });
}

// dx[b, i, j, :] = sum over (child, tap) of dy[b, oh, ow, :] . weight[tap]^T
// where the conv-input position (2i + child/2, 2j + child%2) (or (i, j)) was
// read by output (oh, ow) through tap.
//
// With stride s > 1 (no upsampling) input pixel (ih, iw) is reached only by the taps with
// (ih + pad_top - kh) % s == 0 and (iw + pad_left - kw) % s == 0: the pixels are split into the s x s
// classes (ih % s, iw % s), and each class is tiled separately with its own taps (a 3x3 stride-2 conv: 1, 2,
// 2 or 4 of the 9). A skipped tap would only have added zero rows: a finite result keeps its bits.
void conv2d_dx(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx) {
    if (g.c_in == 1) {
        dx_single(pool, g, weight, dy, dx);
        return;
    }
    if (g.upsample2x && g.stride == 1 && g.k <= 3 && (int64_t)g.n * g.h * g.w * 4 >= kPhaseMin) {
        dx_upsample(pool, g, weight, dy, dx);
        return;
    }
    const int taps = g.k * g.k;
    const int children = g.upsample2x ? 4 : 1;
    const int panels = (int)ceil_div(g.c_in, kNR);
    const int64_t slab = (int64_t)g.c_out * kNR;
    // packed[p][tap][co][j] = weight[tap][p*kNR + j][co], zero beyond c_in
    thread_local std::vector<float> packed_ws, zero_ws;
    if ((int64_t)packed_ws.size() < panels * taps * slab) packed_ws.resize((size_t)(panels * taps * slab));
    float *packed = packed_ws.data();
    for (int p = 0; p < panels; ++p)
        for (int t = 0; t < taps; ++t) {
            const int cols = std::min(kNR, g.c_in - p * kNR);
            float *dst = packed + ((int64_t)p * taps + t) * slab;
            for (int j = 0; j < cols; ++j) {
                const float *src = weight + ((int64_t)t * g.c_in + p * kNR + j) * g.c_out;
                for (int co = 0; co < g.c_out; ++co) dst[(int64_t)co * kNR + j] = src[co];
            }
            for (int co = 0; co < g.c_out; ++co)
                for (int j = cols; j < kNR; ++j) dst[(int64_t)co * kNR + j] = 0.0f;
        }
    if ((int64_t)zero_ws.size() < g.c_out) zero_ws.assign((size_t)g.c_out, 0.0f);  // never written: stays zero
    const float *zero = zero_ws.data();
    // pixel classes (one, with all taps, unless strided)
    const int es = g.stride > 1 && !g.upsample2x ? g.stride : 1;
    struct Class {
        int ph, pw, ntaps;
        int tap[9];
        int64_t hc, wc, m, tiles, task0;
        int khmin, khmax, kwmin, kwmax;  // extent of the class's taps
        int64_t off[9];                  // dy offset of tap u from the output read through (khmax, kwmax)
    };
    std::vector<Class> cls;
    int64_t all_tiles = 0;
    for (int ph = 0; ph < es; ++ph)
        for (int pw = 0; pw < es; ++pw) {
            Class c{};
            c.ph = ph;
            c.pw = pw;
            for (int t = 0; t < taps; ++t) {
                const int kh = t / g.k, kw = t % g.k;
                if (es == 1 || (((ph + g.pad_top - kh) % es + es) % es == 0 && ((pw + g.pad_left - kw) % es + es) % es == 0))
                    c.tap[c.ntaps++] = t;
            }
            c.khmin = c.kwmin = g.k;
            c.khmax = c.kwmax = -1;
            for (int u = 0; u < c.ntaps; ++u) {
                c.khmin = std::min(c.khmin, c.tap[u] / g.k);
                c.khmax = std::max(c.khmax, c.tap[u] / g.k);
                c.kwmin = std::min(c.kwmin, c.tap[u] % g.k);
                c.kwmax = std::max(c.kwmax, c.tap[u] % g.k);
            }
            for (int u = 0; u < c.ntaps; ++u)
                c.off[u] = ((int64_t)(c.khmax - c.tap[u] / g.k) / es * g.w_out + (c.kwmax - c.tap[u] % g.k) / es) * g.c_out;
            c.hc = g.h > ph ? ceil_div(g.h - ph, es) : 0;
            c.wc = g.w > pw ? ceil_div(g.w - pw, es) : 0;
            c.m = (int64_t)g.n * c.hc * c.wc;
            c.tiles = ceil_div(c.m, kMR);
            all_tiles += c.tiles;
            cls.push_back(c);
        }
    const TilePlan plan(all_tiles, (panels + 1) / 2);
    int64_t tasks = 0;
    for (Class &c : cls) {
        c.task0 = tasks;
        tasks += plan.groups(c.tiles) * plan.pgroups;
    }
    int tap_h[9], tap_w[9];
    for (int t = 0; t < taps; ++t) {
        tap_h[t] = t / g.k;
        tap_w[t] = t % g.k;
    }
    // Small C_out without upsampling or classes (conv_out): one gathered segment of K = taps * C_out, as in forward.
    const int K = taps * g.c_out;
    const bool gather = es == 1 && !g.upsample2x && taps > 1 && K <= kGatherMax;
    int64_t work = 0;
    for (const Class &c : cls) work += work_of(c.m, (int64_t)c.ntaps * children * g.c_out, g.c_in);
    run_tasks(pool, tasks, work, [&](int64_t task) {
        const float *rows[36 * kMR];
        const float *slabs[36];
        const float *slabs2[36];
        int seg_tap[36];
        int64_t dst_of[kMR];
        float acc[kMR * 2 * kNR];
        float ga[kMR * kGatherMax];
        size_t ci = 0;
        while (ci + 1 < cls.size() && task >= cls[ci + 1].task0) ++ci;
        const Class &c = cls[ci];
        const int64_t local = task - c.task0;
        const int64_t tg = local / plan.pgroups, pg = local % plan.pgroups;
        const int p_begin = plan.pgroups == 1 ? 0 : 2 * (int)pg;
        const int p_end = plan.pgroups == 1 ? panels : std::min(panels, p_begin + 2);
        const int64_t t_end = std::min(c.tiles, (tg + 1) * plan.tpt);
        const int64_t HWc = c.hc * c.wc;
        // class position (b, i, j) of the task's first pixel, then advanced row by row
        int64_t b = 0, i = 0, j = 0;
        if (HWc > 0) {
            const int64_t m = tg * plan.tpt * kMR;
            b = m / HWc;
            i = m % HWc / c.wc;
            j = m % HWc % c.wc;
        }
        for (int64_t tile = tg * plan.tpt; tile < t_end; ++tile) {
            const int64_t m0 = tile * kMR;
            // Segments are (child, tap) pairs in a fixed order; a pair no row of the
            // tile reaches is still kept (with zero rows) so the order never depends on the tile.
            for (int r = 0; r < kMR; ++r) {
                const bool inside = m0 + r < c.m;
                const int64_t ih = i * es + c.ph, iw = j * es + c.pw;
                dst_of[r] = inside ? ((b * g.h + ih) * g.w + iw) * g.c_in : -1;
                int s = 0;
                // every tap of the class reaches an output (ih + pad - kh is a multiple of es for the class's taps)
                const int64_t hn = ih + g.pad_top, wn = iw + g.pad_left;
                const bool fast = inside && !g.upsample2x && c.ntaps > 0 && hn - c.khmax >= 0 && wn - c.kwmax >= 0 &&
                                  hn - c.khmin < (int64_t)g.h_out * es && wn - c.kwmin < (int64_t)g.w_out * es;
                if (fast) {
                    const float *base = dy + ((b * g.h_out + (hn - c.khmax) / es) * g.w_out + (wn - c.kwmax) / es) * g.c_out;
                    for (int u = 0; u < c.ntaps; ++u) rows[u * kMR + r] = base + c.off[u];
                }
                for (int ch = 0; ch < children && !fast; ++ch) {
                    const int64_t uh = g.upsample2x ? 2 * ih + ch / 2 : ih, uw = g.upsample2x ? 2 * iw + ch % 2 : iw;
                    for (int u = 0; u < c.ntaps; ++u, ++s) {
                        const float *p = inside ? dy_row(g, dy, b, uh - tap_h[c.tap[u]], uw - tap_w[c.tap[u]]) : nullptr;
                        rows[s * kMR + r] = p ? p : zero;
                    }
                }
                if (++j == c.wc) {
                    j = 0;
                    if (++i == c.hc) {
                        i = 0;
                        ++b;
                    }
                }
            }
            int segs = children * c.ntaps, kc = g.c_out;
            for (int s = 0; s < segs; ++s) seg_tap[s] = c.tap[s % c.ntaps];
            if (gather) {
                for (int r = 0; r < kMR; ++r)
                    for (int t = 0; t < taps; ++t) {
                        const float *src = rows[t * kMR + r];
                        float *dst = ga + r * K + t * g.c_out;
                        for (int e = 0; e < g.c_out; ++e) dst[e] = src[e];
                    }
                for (int r = 0; r < kMR; ++r) rows[r] = ga + r * K;
                segs = 1;
                kc = K;
            }
            for (int p = p_begin; p < p_end; p += 2) {
                const int w = p + 1 < p_end ? 2 * kNR : kNR;
                for (int s = 0; s < segs; ++s) slabs[s] = packed + ((int64_t)p * taps + seg_tap[s]) * slab;
                if (w == 2 * kNR) {
                    for (int s = 0; s < segs; ++s) slabs2[s] = packed + ((int64_t)(p + 1) * taps + seg_tap[s]) * slab;
                    micro_kernel_2(segs, rows, slabs, slabs2, kc, kNR, acc);
                } else {
                    micro_kernel(segs, rows, slabs, kc, kNR, acc);
                }
                const int cols = std::min(w, g.c_in - p * kNR);
                for (int r = 0; r < kMR && dst_of[r] >= 0; ++r) {
                    float *dst = dx + dst_of[r] + (int64_t)p * kNR;
                    const float *a = acc + r * w;
                    for (int e = 0; e < cols; ++e) dst[e] = a[e];
                }
            }
        }
    });
}

// dweight[blk*bsize + e] += sum over r < ranges, in order, of partial[(blk*ranges + r)*bsize + e] (float64),
// in parallel over the elements (each element's sum has the same order whatever the thread count).
void add_partials(ThreadPool &pool, float *dweight, const double *partial, int64_t blocks, int64_t ranges,
                  int64_t bsize) {
    // small sums (batch 1, one range) stay on the calling thread: a parallel region costs more
    const int64_t grain = blocks * bsize * ranges < (1 << 18) ? blocks * bsize : 4096;
    parallel_ranges(pool, blocks * bsize, std::max<int64_t>(grain, 1), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end;) {
            const int64_t blk = i / bsize, e0 = i % bsize, e1 = std::min(bsize, e0 + (end - i));
            const double *src = partial + blk * ranges * bsize;
            float *dst = dweight + blk * bsize;
            for (int64_t e = e0; e < e1; ++e) {
                double total = src[e];
                for (int64_t rg = 1; rg < ranges; ++rg) total += src[rg * bsize + e];
                dst[e] = (float)((double)dst[e] + total);
            }
            i += e1 - e0;
        }
    });
}

// C_out = 1: dweight[tap][ci][0] += sum over pixels q of x(q, tap)[ci] * dy[q], over the rows inside the image
// only. Tasks are pixel ranges (a range's x rows stay in cache for all taps); per tap a chunk's sum in float
// (axpy over C_in, pixel order), float64 across chunks, the ranges added in order at the end.
void dw_single(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    const int64_t HWo = (int64_t)g.h_out * g.w_out, P = (int64_t)g.n * HWo;
    const int64_t ranges = ceil_div(P, kRange);
    const int64_t wsize = (int64_t)taps * g.c_in;
    thread_local std::vector<double> partial_ws;
    if ((int64_t)partial_ws.size() < ranges * wsize) partial_ws.resize((size_t)(ranges * wsize));
    double *partial = partial_ws.data();  // [range][tap][ci]
    run_tasks(pool, ranges, work_of(P, wsize, 1), [&](int64_t rg) {
        thread_local std::vector<float> acc_ws, d_ws;
        thread_local std::vector<const float *> rows_ws;
        if ((int64_t)acc_ws.size() < g.c_in) acc_ws.resize((size_t)g.c_in);
        if ((int64_t)d_ws.size() < kChunk) d_ws.resize((size_t)kChunk), rows_ws.resize((size_t)kChunk);
        float *acc = acc_ws.data(), *d = d_ws.data();
        const float **rows = rows_ws.data();
        double *part = partial + rg * wsize;
        for (int64_t e = 0; e < wsize; ++e) part[e] = 0.0;
        const int64_t q_end = std::min(P, (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            for (int t = 0; t < taps; ++t) {
                const int kh = t / g.k, kw = t % g.k;
                int64_t b = q0 / HWo, rem = q0 % HWo;
                int64_t oh = rem / g.w_out, ow = rem % g.w_out;
                int64_t n = 0;
                for (int64_t q = 0; q < count; ++q) {
                    const float *row = x_row(g, x, b, oh * g.stride - g.pad_top + kh, ow * g.stride - g.pad_left + kw);
                    if (row) {
                        rows[n] = row;
                        d[n] = dy[q0 + q];
                        ++n;
                    }
                    if (++ow == g.w_out) {
                        ow = 0;
                        if (++oh == g.h_out) {
                            oh = 0;
                            ++b;
                        }
                    }
                }
                axpy_rows(n, rows, d, g.c_in, acc);
                double *dst = part + (int64_t)t * g.c_in;
                for (int ci = 0; ci < g.c_in; ++ci) dst[ci] += (double)acc[ci];
            }
        }
    });
    add_partials(pool, dweight, partial, 1, ranges, wsize);
}

// Small taps * C_in (conv_in): the rows of the GEMM are the K = taps * C_in (tap, ci) pairs, so one gathered
// chunk (the x values of all taps per pixel) serves the whole weight; tasks are pixel ranges; chunk and range
// boundaries (and so the summation order of every element) are those of conv2d_dw's general path.
void dw_gather(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    const int K = taps * g.c_in;
    const int64_t lda = ceil_div(K, kMR) * kMR;
    const int64_t HWo = (int64_t)g.h_out * g.w_out, P = (int64_t)g.n * HWo;
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t ranges = ceil_div(P, kRange);
    const int64_t wsize = (int64_t)K * g.c_out;
    thread_local std::vector<double> partial_ws;
    if ((int64_t)partial_ws.size() < ranges * wsize) partial_ws.resize((size_t)(ranges * wsize));
    double *partial = partial_ws.data();  // [range][tap][ci][co]
    const bool direct_dy = g.c_out % kNR == 0;
    const int64_t ldc = (int64_t)panels * kNR;
    run_tasks(pool, ranges, work_of(P, K, g.c_out), [&](int64_t rg) {
        thread_local std::vector<float> xa_ws, dyc_ws;
        if ((int64_t)xa_ws.size() < kChunk * lda) xa_ws.resize((size_t)(kChunk * lda));
        float *xa = xa_ws.data();
        float *dyc = nullptr;
        if (!direct_dy) {
            if ((int64_t)dyc_ws.size() < kChunk * ldc) dyc_ws.resize((size_t)(kChunk * ldc));
            dyc = dyc_ws.data();
        }
        double *part = partial + rg * wsize;
        for (int64_t e = 0; e < wsize; ++e) part[e] = 0.0;
        float acc[kMR * 2 * kNR];
        const int64_t q_end = std::min(P, (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            int64_t b = q0 / HWo, rem = q0 % HWo;
            int64_t oh = rem / g.w_out, ow = rem % g.w_out;
            for (int64_t q = 0; q < count; ++q) {
                float *dst = xa + q * lda;
                for (int t = 0; t < taps; ++t) {
                    const float *row =
                        x_row(g, x, b, oh * g.stride - g.pad_top + t / g.k, ow * g.stride - g.pad_left + t % g.k);
                    if (row) std::memcpy(dst + t * g.c_in, row, (size_t)g.c_in * sizeof(float));
                    else std::memset(dst + t * g.c_in, 0, (size_t)g.c_in * sizeof(float));
                }
                for (int64_t k = K; k < lda; ++k) dst[k] = 0.0f;
                if (++ow == g.w_out) {
                    ow = 0;
                    if (++oh == g.h_out) {
                        oh = 0;
                        ++b;
                    }
                }
            }
            const float *dyb = dy + q0 * g.c_out;
            int64_t ldb = g.c_out;
            if (!direct_dy) {
                for (int64_t q = 0; q < count; ++q) {
                    float *dst = dyc + q * ldc;
                    std::memcpy(dst, dy + (q0 + q) * g.c_out, (size_t)g.c_out * sizeof(float));
                    for (int64_t j = g.c_out; j < ldc; ++j) dst[j] = 0.0f;
                }
                dyb = dyc;
                ldb = ldc;
            }
            for (int r0 = 0; r0 < K; r0 += kMR) {
                const int rows = std::min(kMR, K - r0);
                for (int p = 0; p < panels; p += 2) {
                    const int w = p + 1 < panels ? 2 * kNR : kNR;
                    std::fill(acc, acc + kMR * w, 0.0f);
                    const Run all{0, count, xa};
                    if (w == 2 * kNR) dw_kernel_2(&all, 1, r0, lda, dyb + (int64_t)p * kNR, ldb, acc);
                    else dw_kernel_1(&all, 1, r0, lda, dyb + (int64_t)p * kNR, ldb, acc);
                    const int cols = std::min(w, g.c_out - p * kNR);
                    for (int r = 0; r < rows; ++r) {
                        double *dst = part + (int64_t)(r0 + r) * g.c_out + (int64_t)p * kNR;
                        const float *src = acc + r * w;
                        for (int j = 0; j < cols; ++j) dst[j] += (double)src[j];
                    }
                }
            }
        }
    });
    add_partials(pool, dweight, partial, 1, ranges, wsize);
}

// dW of a nearest-2x upsample conv (stride 1) by the phases of forward_upsample: for each phase (a, b) and
// combined tap (u, v), dWc = sum over the phase's outputs (2i + a, 2j + b) of x[i + dh0 + u][j + dw0 + v] .
// dy (4 x 4 pixel-tap products per 4 outputs instead of 9 x 4); dweight[kh][kw] then adds the dWc of the
// combined taps containing (kh, kw), phases in order. Tasks are (phase, range of the phase's pixels, channel
// group); a task copies the dy rows of a chunk once for its 4 combined taps and reads x in place, run by
// run; float chunk sums, float64 partials, fixed order: independent of the thread count.
void dw_upsample(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    auto floor_half = [](int v) { return v >= 0 ? v / 2 : -((1 - v) / 2); };
    int dh0[4], dw0[4], nh[4], nw[4];
    int64_t ho[4], wo[4], P[4], ranges[4];
    int64_t max_ranges = 0;
    for (int q = 0; q < 4; ++q) {
        const int a = q / 2, b = q % 2;
        dh0[q] = floor_half(a - g.pad_top);
        nh[q] = floor_half(a - g.pad_top + g.k - 1) - dh0[q] + 1;
        dw0[q] = floor_half(b - g.pad_left);
        nw[q] = floor_half(b - g.pad_left + g.k - 1) - dw0[q] + 1;
        ho[q] = g.h_out > a ? ceil_div(g.h_out - a, 2) : 0;
        wo[q] = g.w_out > b ? ceil_div(g.w_out - b, 2) : 0;
        P[q] = (int64_t)g.n * ho[q] * wo[q];
        ranges[q] = ceil_div(P[q], kRange);
        max_ranges = std::max(max_ranges, ranges[q]);
    }
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t ci_tiles = ceil_div(g.c_in, kMR);
    const int64_t cgroups = std::min<int64_t>(ci_tiles, ceil_div(kMinDwTasks, 4 * max_ranges));
    const int64_t tiles_per_group = ceil_div(ci_tiles, cgroups);
    const int64_t wsize = (int64_t)g.c_in * g.c_out;
    thread_local std::vector<double> partial_ws;
    const int64_t psize = 4 * 4 * max_ranges * wsize;  // [phase][combined tap][range][ci][co]
    if ((int64_t)partial_ws.size() < psize) partial_ws.resize((size_t)psize);
    double *partial = partial_ws.data();
    const int64_t ldc = (int64_t)panels * kNR;
    run_tasks(pool, 4 * max_ranges * cgroups, work_of(4 * P[0], 4 * (int64_t)g.c_in, g.c_out), [&](int64_t task) {
        const int64_t cg = task % cgroups;
        const int64_t rg = (task / cgroups) % max_ranges;
        const int q = (int)(task / cgroups / max_ranges);
        if (rg >= ranges[q]) return;
        const int64_t c0 = cg * tiles_per_group * kMR;
        const int64_t c1 = std::min<int64_t>(g.c_in, c0 + tiles_per_group * kMR);
        if (c0 >= c1) return;
        const int64_t width = c1 - c0, full = width / kMR * kMR;
        thread_local std::vector<float> xa_ws, dyc_ws;
        if ((int64_t)xa_ws.size() < kChunk * kMR) xa_ws.resize((size_t)(kChunk * kMR));
        if ((int64_t)dyc_ws.size() < kChunk * ldc) dyc_ws.resize((size_t)(kChunk * ldc));
        float *xa = xa_ws.data(), *dyc = dyc_ws.data();
        const int taps = nh[q] * nw[q];
        for (int t = 0; t < taps; ++t) {
            double *part = partial + (((int64_t)q * 4 + t) * max_ranges + rg) * wsize;
            for (int64_t ci = c0; ci < c1; ++ci)
                for (int co = 0; co < g.c_out; ++co) part[ci * g.c_out + co] = 0.0;
        }
        float acc[kMR * 2 * kNR];
        Run runs[kChunk];
        const int64_t HWq = ho[q] * wo[q];
        const int64_t q_end = std::min(P[q], (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            // dy rows of the chunk's outputs (2i + a, 2j + b), zero padded to whole panels
            {
                int64_t b = q0 / HWq, i = q0 % HWq / wo[q], j = q0 % HWq % wo[q];
                for (int64_t p = 0; p < count; ++p) {
                    const float *src = dy + ((b * g.h_out + 2 * i + q / 2) * g.w_out + 2 * j + q % 2) * g.c_out;
                    float *dst = dyc + p * ldc;
                    std::memcpy(dst, src, (size_t)g.c_out * sizeof(float));
                    for (int64_t e = g.c_out; e < ldc; ++e) dst[e] = 0.0f;
                    if (++j == wo[q]) {
                        j = 0;
                        if (++i == ho[q]) {
                            i = 0;
                            ++b;
                        }
                    }
                }
            }
            for (int t = 0; t < taps; ++t) {
                const int u = t / nw[q], v = t % nw[q];
                const int64_t dh = dh0[q] + u, dw = dw0[q] + v;
                // x runs: one per output row segment, the columns whose stored pixel lies inside the image
                const int64_t jlo = std::max<int64_t>(0, -dw), jhi = std::min<int64_t>(wo[q], g.w - dw);
                int64_t nruns = 0;
                int64_t b = q0 / HWq, i = q0 % HWq / wo[q], j = q0 % HWq % wo[q];
                for (int64_t p = 0; p < count;) {
                    const int64_t seg = std::min(count - p, wo[q] - j);
                    const int64_t si = i + dh, lo = std::max(j, jlo), hi = std::min(j + seg, jhi);
                    if (si >= 0 && si < g.h && lo < hi)
                        runs[nruns++] = Run{p + (lo - j), hi - lo, x + ((b * g.h + si) * g.w + lo + dw) * g.c_in};
                    p += seg;
                    j += seg;
                    if (j == wo[q]) {
                        j = 0;
                        if (++i == ho[q]) {
                            i = 0;
                            ++b;
                        }
                    }
                }
                if (full < width) {
                    for (int64_t p = 0; p < count; ++p)
                        for (int c = 0; c < kMR; ++c) xa[p * kMR + c] = 0.0f;
                    for (int64_t r = 0; r < nruns; ++r)
                        for (int64_t e = 0; e < runs[r].n; ++e) {
                            const float *src = runs[r].x + e * g.c_in + c0 + full;
                            float *dst = xa + (runs[r].q + e) * kMR;
                            for (int64_t c = 0; c < width - full; ++c) dst[c] = src[c];
                        }
                }
                double *part = partial + (((int64_t)q * 4 + t) * max_ranges + rg) * wsize;
                for (int64_t r0 = 0; r0 < width; r0 += kMR) {
                    const int rows = (int)std::min<int64_t>(kMR, width - r0);
                    for (int p = 0; p < panels; p += 2) {
                        const int w = p + 1 < panels ? 2 * kNR : kNR;
                        std::fill(acc, acc + kMR * w, 0.0f);
                        const float *dyb = dyc + (int64_t)p * kNR;
                        if (r0 < full) {
                            if (w == 2 * kNR) dw_kernel_2(runs, nruns, c0 + r0, g.c_in, dyb, ldc, acc);
                            else dw_kernel_1(runs, nruns, c0 + r0, g.c_in, dyb, ldc, acc);
                        } else {
                            const Run all{0, count, xa};
                            if (w == 2 * kNR) dw_kernel_2(&all, 1, 0, kMR, dyb, ldc, acc);
                            else dw_kernel_1(&all, 1, 0, kMR, dyb, ldc, acc);
                        }
                        const int cols = std::min(w, g.c_out - p * kNR);
                        for (int r = 0; r < rows; ++r) {
                            double *dst = part + (c0 + r0 + r) * g.c_out + (int64_t)p * kNR;
                            const float *src = acc + r * w;
                            for (int jj = 0; jj < cols; ++jj) dst[jj] += (double)src[jj];
                        }
                    }
                }
            }
        }
    });
    // dweight[kh][kw] += sum over phases (in order) of the combined tap holding (kh, kw), each over its ranges
    parallel_ranges(pool, (int64_t)g.k * g.k * wsize, 4096, [&](int64_t begin, int64_t end) {
        for (int64_t idx = begin; idx < end; ++idx) {
            const int kh = (int)(idx / wsize) / g.k, kw = (int)(idx / wsize) % g.k;
            const int64_t e = idx % wsize;
            double total = 0.0;
            for (int q = 0; q < 4; ++q) {
                const int u = floor_half(q / 2 - g.pad_top + kh) - dh0[q], v = floor_half(q % 2 - g.pad_left + kw) - dw0[q];
                const double *src = partial + (((int64_t)q * 4 + u * nw[q] + v) * max_ranges) * wsize + e;
                for (int64_t rg = 0; rg < ranges[q]; ++rg) total += src[rg * wsize];
            }
            dweight[idx] = (float)((double)dweight[idx] + total);
        }
    });
}

// dweight[tap][ci][co] += sum over pixels q of u(q, tap)[ci] * dy[q][co]
//
// Tasks are (taps, pixel range of kRange, channel group): all taps without
// upsampling, else one. A task walks its range in chunks of kChunk pixels and,
// per chunk, its taps in order: it finds the chunk's x rows under the tap (runs
// read in place; gathered with upsampling, its channel group only, once for all
// output panels) and runs the micro-kernels over them; chunk sums (float) go
// into the tap's float64 partial of the range. The partials of the ranges are
// then added in range order. Range and chunk boundaries depend on the shape
// only; which taps or channels share a task, and the tile height (6 or 12),
// never change an element's summation order.
void conv2d_dw(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    if (g.c_out == 1) {
        dw_single(pool, g, x, dy, dweight);
        return;
    }
    if (taps > 1 && taps * g.c_in <= kGatherMax) {
        dw_gather(pool, g, x, dy, dweight);
        return;
    }
    if (g.upsample2x && g.stride == 1 && g.k <= 3 && (int64_t)g.n * g.h_out * g.w_out >= kPhaseMinDw) {
        dw_upsample(pool, g, x, dy, dweight);
        return;
    }
    const int64_t HWo = (int64_t)g.h_out * g.w_out;
    const int64_t P = (int64_t)g.n * HWo;
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t ranges = ceil_div(P, kRange);
    const int64_t ci_tiles = ceil_div(g.c_in, kMR);
    // Without upsampling a task takes all the taps of its (range, channel group): per chunk the dy rows are read
    // once from memory and then from cache for every tap, and the x rows of the taps overlap (shifted by a pixel
    // or a row). b64 @28 C_out = 32: -18 to -29% dW time against one tap per task. The upsampled (gathered)
    // path keeps one tap per task.
    const bool direct_x = !g.upsample2x;
    const int tpg = direct_x ? taps : 1;  // taps per task
    const int tgroups = (int)ceil_div(taps, tpg);
    // few (tap group, range) pairs: split the input channels too, so both threads get work
    const int64_t cgroups = std::min<int64_t>(ci_tiles, ceil_div(kMinDwTasks, tgroups * ranges));
    const int64_t tiles_per_group = ceil_div(ci_tiles, cgroups);
    const int64_t tasks = (int64_t)tgroups * ranges * cgroups;
    const int64_t wsize = (int64_t)g.c_in * g.c_out;
    thread_local std::vector<double> partial_ws;
    if ((int64_t)partial_ws.size() < taps * ranges * wsize) partial_ws.resize((size_t)(taps * ranges * wsize));
    double *partial = partial_ws.data();  // [tap][range][ci][co]
    const bool direct_dy = g.c_out % kNR == 0;
    // without upsampling (direct_x) the x rows of consecutive pixels of one output row are evenly spaced
    // (stride * C_in): the kernels read them in place, run by run, instead of from a gathered copy
    const int64_t ldc = (int64_t)panels * kNR;
    // 12 x 32 tiles (dw_kernel_4) need the 32 AVX-512 registers; the bits are those of 6 x 32 tiles
    static const bool wide = __builtin_cpu_supports("avx512f");
    run_tasks(pool, tasks, work_of(P, (int64_t)taps * g.c_in, g.c_out), [&](int64_t task) {
        const int64_t cg = task % cgroups;
        const int64_t rg = (task / cgroups) % ranges;
        const int t_begin = (int)(task / cgroups / ranges) * tpg, t_end = std::min(taps, t_begin + tpg);
        const int64_t c0 = cg * tiles_per_group * kMR;
        int64_t c1 = std::min<int64_t>(g.c_in, c0 + tiles_per_group * kMR);
        if (c0 >= c1) return;
        if (direct_x) {
            // in place, a last group of fewer than kMR channels joins the one before (whose last tile then
            // overlaps instead of a gathered copy); the channels a task owns never change an element's sum
            if (cg > 0 && g.c_in - c0 < kMR) return;
            if (g.c_in - c1 < kMR) c1 = g.c_in;
        }
        const int64_t width = c1 - c0, lda = ceil_div(width, kMR) * kMR;
        thread_local std::vector<float> xa_ws, dyc_ws;
        const int64_t xa_size = direct_x ? kChunk * kMR : kChunk * lda;
        if ((int64_t)xa_ws.size() < xa_size) xa_ws.resize((size_t)xa_size);
        float *xa = xa_ws.data();
        float *dyc = nullptr;
        if (!direct_dy) {
            if ((int64_t)dyc_ws.size() < kChunk * ldc) dyc_ws.resize((size_t)(kChunk * ldc));
            dyc = dyc_ws.data();
        }
        for (int t = t_begin; t < t_end; ++t) {
            double *part = partial + ((int64_t)t * ranges + rg) * wsize;
            for (int64_t ci = c0; ci < c1; ++ci)
                for (int co = 0; co < g.c_out; ++co) part[ci * g.c_out + co] = 0.0;
        }
        float acc[2 * kMR * 2 * kNR];
        Run runs[kChunk];
        const int64_t ldx = (int64_t)g.stride * g.c_in;
        // in place (direct_x) when the group has at least kMR channels: the tiles cover [0, width), the last one
        // ending at width and overlapping the one before (its rows already stored are computed again, not stored:
        // no read passes a row's end and no copy is made); else the group is gathered (zero padded to kMR)
        const int64_t full = direct_x ? (width >= kMR ? width : 0) : lda;
        const int64_t q_end = std::min(P, (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            const float *dyb = dy + q0 * g.c_out;
            int64_t ldb = g.c_out;
            if (!direct_dy) {
                for (int64_t q = 0; q < count; ++q) {
                    float *dst = dyc + q * ldc;
                    std::memcpy(dst, dy + (q0 + q) * g.c_out, (size_t)g.c_out * sizeof(float));
                    for (int64_t j = g.c_out; j < ldc; ++j) dst[j] = 0.0f;
                }
                dyb = dyc;
                ldb = ldc;
            }
            for (int t = t_begin; t < t_end; ++t) {
                const int kh = t / g.k, kw = t % g.k;
                double *part = partial + ((int64_t)t * ranges + rg) * wsize;
                // output columns whose tap column kw lands inside the image: [ow_lo, ow_hi) (no upsampling)
                const int64_t ow_lo = std::min<int64_t>(g.w_out, ceil_div(std::max(0, g.pad_left - kw), g.stride));
                const int64_t ow_hi =
                    std::min<int64_t>(g.w_out, ceil_div(std::max(0, g.w + g.pad_left - kw), g.stride));
                int64_t b = q0 / HWo, rem = q0 % HWo;
                int64_t oh = rem / g.w_out, ow = rem % g.w_out;
                int64_t nruns = 0;
                if (direct_x) {
                    // one run per output row segment of the chunk: the pixels whose tap lands inside the image
                    for (int64_t q = 0; q < count;) {
                        const int64_t seg = std::min(count - q, (int64_t)g.w_out - ow);
                        const int64_t ih = oh * g.stride - g.pad_top + kh;
                        const int64_t lo = std::max(ow, ow_lo), hi = std::min(ow + seg, ow_hi);
                        if (ih >= 0 && ih < g.h && lo < hi) {
                            const float *row = x + ((b * g.h + ih) * g.w + lo * g.stride - g.pad_left + kw) * g.c_in;
                            const int64_t rq = q + (lo - ow);
                            Run *last = nruns ? &runs[nruns - 1] : nullptr;
                            if (last && last->q + last->n == rq && last->x + last->n * ldx == row) last->n += hi - lo;
                            else runs[nruns++] = Run{rq, hi - lo, row};
                        }
                        q += seg;
                        ow += seg;
                        if (ow == g.w_out) {
                            ow = 0;
                            if (++oh == g.h_out) {
                                oh = 0;
                                ++b;
                            }
                        }
                    }
                } else {
                    for (int64_t q = 0; q < count; ++q) {
                        const float *row =
                            x_row(g, x, b, oh * g.stride - g.pad_top + kh, ow * g.stride - g.pad_left + kw);
                        float *dst = xa + q * lda;
                        if (row) std::memcpy(dst, row + c0, (size_t)width * sizeof(float));
                        else std::memset(dst, 0, (size_t)width * sizeof(float));
                        for (int64_t c = width; c < lda; ++c) dst[c] = 0.0f;
                        if (++ow == g.w_out) {
                            ow = 0;
                            if (++oh == g.h_out) {
                                oh = 0;
                                ++b;
                            }
                        }
                    }
                }
                if (direct_x && full < width) {
                    // a group of fewer than kMR channels: its columns of every row, zero padded to kMR, zero rows
                    // outside the image
                    for (int64_t q = 0; q < count; ++q)
                        for (int c = 0; c < kMR; ++c) xa[q * kMR + c] = 0.0f;
                    for (int64_t u = 0; u < nruns; ++u)
                        for (int64_t i = 0; i < runs[u].n; ++i) {
                            const float *src = runs[u].x + i * ldx + c0 + full;
                            float *dst = xa + (runs[u].q + i) * kMR;
                            for (int64_t c = 0; c < width - full; ++c) dst[c] = src[c];
                        }
                }
                for (int64_t r0 = 0; r0 < width;) {
                    // tile: channels [s, s + h) computed, [r0, end) stored; 12 rows at once where the CPU has
                    // the registers for it. Every element keeps its summation order whatever the tile.
                    int64_t s0 = r0;
                    int h = kMR;
                    const bool in_place = direct_x && full == width;
                    if (in_place) {
                        const int64_t rem = width - r0;
                        if (wide && (rem >= 2 * kMR || (rem > kMR && width >= 2 * kMR))) {
                            h = 2 * kMR;
                            s0 = std::min(r0, width - 2 * kMR);
                        } else {
                            s0 = std::min(r0, width - kMR);
                        }
                    }
                    const int64_t end = std::min(width, s0 + h);
                    for (int p = 0; p < panels; p += 2) {
                        const int w = p + 1 < panels ? 2 * kNR : kNR;
                        std::fill(acc, acc + h * w, 0.0f);
                        const float *dyp = dyb + (int64_t)p * kNR;
                        // (in place, zero rows (taps in the padding) are skipped: they add nothing to a finite sum)
                        if (in_place && h == 2 * kMR) {
                            if (w == 2 * kNR) {
                                dw_kernel_4(runs, nruns, c0 + s0, ldx, dyp, ldb, acc);
                            } else {
                                dw_kernel_1(runs, nruns, c0 + s0, ldx, dyp, ldb, acc);
                                dw_kernel_1(runs, nruns, c0 + s0 + kMR, ldx, dyp, ldb, acc + kMR * w);
                            }
                        } else if (in_place) {
                            if (w == 2 * kNR) dw_kernel_2(runs, nruns, c0 + s0, ldx, dyp, ldb, acc);
                            else dw_kernel_1(runs, nruns, c0 + s0, ldx, dyp, ldb, acc);
                        } else {
                            const Run all{0, count, direct_x ? xa : xa + r0};
                            const int64_t ld = direct_x ? kMR : lda;
                            if (w == 2 * kNR) dw_kernel_2(&all, 1, 0, ld, dyp, ldb, acc);
                            else dw_kernel_1(&all, 1, 0, ld, dyp, ldb, acc);
                        }
                        const int cols = std::min(w, g.c_out - p * kNR);
                        for (int64_t ch = r0; ch < end; ++ch) {
                            double *dst = part + (c0 + ch) * g.c_out + (int64_t)p * kNR;
                            const float *src = acc + (ch - s0) * w;
                            for (int j = 0; j < cols; ++j) dst[j] += (double)src[j];
                        }
                    }
                    r0 = end;
                }
            }
        }
    });
    // dweight[t] += sum over ranges, in range order
    add_partials(pool, dweight, partial, taps, ranges, wsize);
}

// dbias[co] += sum over pixels of dy[q][co]: float sums per chunk of kChunk pixels, float64 across chunks.
D4J_CLONES void conv2d_db(const Geom &g, const float *dy, float *dbias) {
    const int64_t P = (int64_t)g.n * g.h_out * g.w_out;
    std::vector<double> total((size_t)g.c_out, 0.0);
    std::vector<float> part((size_t)g.c_out);
    for (int64_t q0 = 0; q0 < P; q0 += kChunk) {
        const int64_t q1 = std::min(P, q0 + kChunk);
        std::fill(part.begin(), part.end(), 0.0f);
        for (int64_t q = q0; q < q1; ++q) {
            const float *row = dy + q * g.c_out;
            for (int co = 0; co < g.c_out; ++co) part[co] += row[co];
        }
        for (int co = 0; co < g.c_out; ++co) total[co] += (double)part[co];
    }
    for (int co = 0; co < g.c_out; ++co) dbias[co] = (float)((double)dbias[co] + total[co]);
}

}  // namespace

d4j_status conv2d_backward(void *state, const Geom *gp, const float *x, const float *weight, const float *dy,
                           float *dx, float *dweight, float *dbias) {
    const Geom g = *gp;
    if (dx) conv2d_dx(pool_of(state), g, weight, dy, dx);
    if (dweight) conv2d_dw(pool_of(state), g, x, dy, dweight);
    if (dbias) conv2d_db(g, dy, dbias);
    return D4J_OK;
}

}  // namespace d4j::cpu
