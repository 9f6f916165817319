// Shared by the conv2d family's files (kernels_conv2d*.cpp): the tile shapes, the register-blocked
// micro-kernels and the geometry helpers of every path. kernels_conv2d.cpp describes the algorithm and
// picks the path for a shape; kernels_conv2d_forward.cpp, _dx.cpp and _dw.cpp hold the paths;
// kernels_conv2d_tiles.cpp the micro-kernels (one target_clones body per tile shape).
#ifndef D4J_CPU_CONV2D_TILES_H
#define D4J_CPU_CONV2D_TILES_H

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_kernels.h"
#include "rng_fill.h"  // D4J_CLONES

namespace d4j::cpu::conv {

using Geom = d4j_backend_iface::conv2d_geom;

// 6 x 16 accumulators: 12 AVX2 or 6 AVX-512 registers, plus the broadcast
// and the weight vector(s), so the tile stays in registers on both paths.
constexpr int kMR = 6;
constexpr int kNR = 16;
constexpr int kTilesPerTask = 8;         // 48 output pixels per forward / dX task
constexpr int64_t kMinTasks = 16;        // forward / dX: below this many tile groups, smaller groups and one panel pair per task
constexpr int kGatherMax = 64;           // forward / dX / dW: K = taps * channels up to this is gathered into one segment
constexpr int kMaxSegs = 36;             // segments of a forward / dX tile: 4 upsampled children x 9 taps
constexpr int64_t kSinglePixels = 256;   // pixels per task of the one-channel dot-product paths
constexpr int64_t kChunk = 256;          // pixels summed in float before the float64 carry (dW, dB)
constexpr int64_t kRange = 16 * kChunk;  // pixels per dW task: partials of ranges are added in float64
constexpr int64_t kMinDwTasks = 8;       // dW splits input channels when (tap, range) pairs are fewer

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Work measure for run_tasks' serial threshold: multiply-adds / 16.
inline int64_t work_of(int64_t rows, int64_t k, int64_t cols) { return rows * k / 16 * cols; }

// One row of kNR floats as a GCC generic vector: 1 zmm, 2 ymm or 4 xmm
// registers depending on the clone. Written with vector types because GCC's
// auto-vectoriser spills a 6 x 16 array accumulator to the stack. Loads and
// stores go through memcpy (no alignment assumed); mul and add stay separate
// (-ffp-contract=off), so every SIMD path gives the same bits.
typedef float vrow __attribute__((vector_size(kNR * sizeof(float))));

#define D4J_CONV_INLINE inline __attribute__((always_inline))

// A vrow from / to memory through a local: a copy straight into an array element is typed as a 512-bit
// integer, which costs register copies. (A vrow is never passed or returned by value: its ABI differs
// between the clones.)
D4J_CONV_INLINE void load_row(vrow &dst, const float *src) {
    vrow v;
    std::memcpy(&v, src, sizeof(vrow));
    dst = v;
}
D4J_CONV_INLINE void store_row(float *dst, const vrow &src) {
    const vrow v = src;
    std::memcpy(dst, &v, sizeof(vrow));
}

// R rows x P panels of kNR-column accumulators, element (r, p) at [(r * P + p) * kNR] in memory. Indexed by
// compile-time constants only (every loop is unrolled), so once inlined each accumulator is a register
// variable. Each accumulator sums its products in call order, whatever R and P: a 12-row tile gives the
// bits of two 6-row tiles, a two-panel tile those of two one-panel tiles.
template <int R, int P>
struct AccTile {
    vrow c[R][P];

    D4J_CONV_INLINE void zero() {
#pragma GCC unroll 24
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
            for (int p = 0; p < P; ++p) c[r][p] = vrow{};
    }
    D4J_CONV_INLINE void load(const float *src) {
#pragma GCC unroll 24
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
            for (int p = 0; p < P; ++p) load_row(c[r][p], src + (r * P + p) * kNR);
    }
    D4J_CONV_INLINE void store(float *dst) const {
#pragma GCC unroll 24
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
            for (int p = 0; p < P; ++p) store_row(dst + (r * P + p) * kNR, c[r][p]);
    }
    // c[r][p] += x(r) * b[p]. With one panel each row value is used once and is broadcast straight from
    // memory (holding all R values first costs the AVX2 clone spills); with two panels each value feeds two
    // vectors and is loaded once, up front.
    template <class X>
    D4J_CONV_INLINE void madd(const X &x, const vrow (&b)[P]) {
        if constexpr (P == 1) {
#pragma GCC unroll 24
            for (int r = 0; r < R; ++r) c[r][0] += x(r) * b[0];
        } else {
            float xv[R];
#pragma GCC unroll 24
            for (int r = 0; r < R; ++r) xv[r] = x(r);
#pragma GCC unroll 24
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
                for (int p = 0; p < P; ++p) c[r][p] += xv[r] * b[p];
        }
    }
};

// ---- forward / dX micro-kernels (kernels_conv2d_tiles.cpp) ----
// Defined with D4J_CLONES (one body per SIMD width, picked when the library loads) and declared plain
// here: a target_clones declaration would make each caller's file emit a resolver of its own, which the
// linker may keep in place of the defining file's one.

// out[r*kNR + j] = sum over segments s, k < kc of rows[s*kMR + r][k] * slabs[s][k*ld + j]
void micro_kernel(int segs, const float *const *rows, const float *const *slabs, int kc, int64_t ld,
                  float *out);
// Two panels at once: out[r*2kNR + j] for j < 2 kNR, the first kNR columns from slabs, the next from slabs2.
// Each broadcast row value feeds two vectors (12 accumulators: AVX-512 registers; the AVX2 clone spills
// some). Per element the same products are added in the same order as micro_kernel.
void micro_kernel_2(int segs, const float *const *rows, const float *const *slabs, const float *const *slabs2,
                    int kc, int64_t ld, float *out);

// sum over i < n of dot(rows[i], ws[i]) over len floats, in a fixed order. Used where one side of the GEMM
// has a single channel (C_out = 1 forward, C_in = 1 dX).
float dot_rows(int n, const float *const *rows, const float *const *ws, int len);

// acc[c] = sum over i < n (in order) of rows[i][c] * d[i], c < len; 2 x kNR columns at a time in registers.
void axpy_rows(int64_t n, const float *const *rows, const float *d, int len, float *acc);

// ---- dW micro-kernels (kernels_conv2d_tiles.cpp) ----

// A run of n pixels of a dW chunk starting at chunk pixel q, whose x rows are x, x + lda, ...
struct Run {
    int64_t q, n;
    const float *x;
};

// Over runs of pixels, both operands pixel-major: for each run u in order, q < n in order,
//   out[r*W + j] += (x_u + xoff)[q*lda + r] * dyb[(q_u + q)*ldb + j],  r < rows, j < W,
// dw_kernel_1: 6 rows, W = kNR (the last odd panel); dw_kernel_2: 6 rows, W = 2 kNR (two output panels:
// each broadcast x value feeds two vectors, so loads stay below the arithmetic); dw_kernel_4: 12 rows,
// W = 2 kNR, 24 accumulators, only where the CPU has AVX-512 (the AVX2 clone would spill): each dy vector
// pair feeds twice the rows, so a chunk's dy streams through the core half as often, with the bits of two
// dw_kernel_2 calls.
void dw_kernel_1(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0, int64_t ldb,
                 float *out);
void dw_kernel_2(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0, int64_t ldb,
                 float *out);
void dw_kernel_4(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0, int64_t ldb,
                 float *out);

// dw_kernel_2 or dw_kernel_1 by the tile width w (2 kNR or kNR), onto a zeroed 6 x w tile.
inline void dw_panels(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb, int64_t ldb,
                      int w, float *acc) {
    std::fill(acc, acc + kMR * w, 0.0f);
    if (w == 2 * kNR) dw_kernel_2(runs, nruns, xoff, lda, dyb, ldb, acc);
    else dw_kernel_1(runs, nruns, xoff, lda, dyb, ldb, acc);
}

// part[ch*c_out + p*kNR + j] += acc[(ch - s0)*w + j] (float64 carry of a dW tile) for channels
// ch in [ch_begin, ch_end), j < the panels' columns inside c_out.
inline void add_tile(double *part, int c_out, int p, int w, int64_t ch_begin, int64_t ch_end, int64_t s0,
                     const float *acc) {
    const int cols = std::min(w, c_out - p * kNR);
    for (int64_t ch = ch_begin; ch < ch_end; ++ch) {
        double *dst = part + ch * c_out + (int64_t)p * kNR;
        const float *src = acc + (ch - s0) * w;
        for (int j = 0; j < cols; ++j) dst[j] += (double)src[j];
    }
}

// ---- geometry ----

// Position (b, i, j) of pixel m of an n x h x w grid, advanced without divisions.
struct PixelCursor {
    int64_t h, w, b = 0, i = 0, j = 0;
    PixelCursor(int64_t h_, int64_t w_, int64_t m) : h(h_), w(w_) {
        const int64_t hw = h * w;
        if (hw > 0) {
            b = m / hw;
            i = m % hw / w;
            j = m % hw % w;
        }
    }
    // the next n pixels, n <= w - j (the rest of the current row at most)
    void advance(int64_t n = 1) {
        j += n;
        if (j == w) {
            j = 0;
            if (++i == h) {
                i = 0;
                ++b;
            }
        }
    }
};

// Pointer to the stored x row read by conv-input position (ih, iw) of sample b, or nullptr in the padding.
inline const float *x_row(const Geom &g, const float *x, int64_t b, int64_t ih, int64_t iw) {
    if (ih < 0 || ih >= g.h_in || iw < 0 || iw >= g.w_in) return nullptr;
    if (g.upsample2x) {
        ih >>= 1;
        iw >>= 1;
    }
    return x + ((b * g.h + ih) * g.w + iw) * g.c_in;
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

// A per-thread row of n zeros, never written: the row of a tap that falls into the padding.
inline const float *zero_row(int64_t n) {
    thread_local std::vector<float> zero_ws;
    if ((int64_t)zero_ws.size() < n) zero_ws.assign((size_t)n, 0.0f);
    return zero_ws.data();
}

// Nearest-2x upsampling then a stride-1 conv (k <= 3), by output phase q = (a, b) = (oh % 2, ow % 2): output
// row oh = 2i + a reads stored row i + floor_half(a - pad_top + kh), so the k x k taps of a phase fall into at
// most 2 x 2 groups reading the same stored pixel, whose weights are summed (in kh, kw order) into one
// combined tap (u, v) at stored offset (dh0 + u, dw0 + v). (Rounding: one float sum of at most 4 weights per
// combined tap, inside the kernel's error bound; no effect on determinism.)
inline int floor_half(int v) { return v >= 0 ? v / 2 : -((1 - v) / 2); }

struct UpPhase {
    int a, b, dh0, dw0, nh, nw;  // combined taps: nh x nw
    int64_t ho, wo;              // outputs of the phase per sample: ho x wo
    int taps() const { return nh * nw; }
};

inline UpPhase up_phase(const Geom &g, int q) {
    UpPhase p;
    p.a = q / 2;
    p.b = q % 2;
    p.dh0 = floor_half(p.a - g.pad_top);
    p.nh = floor_half(p.a - g.pad_top + g.k - 1) - p.dh0 + 1;
    p.dw0 = floor_half(p.b - g.pad_left);
    p.nw = floor_half(p.b - g.pad_left + g.k - 1) - p.dw0 + 1;
    p.ho = g.h_out > p.a ? ceil_div(g.h_out - p.a, 2) : 0;
    p.wo = g.w_out > p.b ? ceil_div(g.w_out - p.b, 2) : 0;
    return p;
}

// ---- weight packing (forward: K = C_in, N = C_out; dX: the transpose, K = C_out, N = C_in) ----

// Element (k, n) of tap t's K x N matrix: weight[t * K * N + k * sk + n * sn].
struct TapMatrix {
    const float *weight;
    int K, N;
    int64_t sk, sn;
    float at(int t, int k, int n) const { return weight[(int64_t)t * K * N + k * sk + n * sn]; }
};

// packed[p][t][k][j] = w(t, k, p*kNR + j), zero beyond N: one contiguous slab of K x kNR per (panel, tap).
void pack_panels(const TapMatrix &w, int taps, float *packed);

// packed[q][p][u*nw + v][k][j] = sum over the taps (kh, kw) of combined tap (u, v) of phase q (in kh, kw
// order) of w(tap, k, p*kNR + j); each phase's slot holds 4 taps. Parallel over (phase, panel).
void pack_phase_panels(ThreadPool &pool, const Geom &g, const TapMatrix &w, float *packed);

// ---- forward / dX tile passes ----

// Task plan of a tiled forward / dX pass over `tiles` tiles of kMR pixels and `panels` output panels:
// kTilesPerTask tiles per task, fewer (and one panel pair per task) when the shape is small, so both
// threads get work at batch 1. Depends on the shape only.
struct TilePlan {
    int64_t tpt, pgroups;
    int panels;
    TilePlan(int64_t tiles, int panels_) : panels(panels_) {
        tpt = std::clamp<int64_t>(tiles / kMinTasks, 1, kTilesPerTask);
        pgroups = ceil_div(tiles, tpt) < kMinTasks ? (panels + 1) / 2 : 1;
    }
    int64_t tasks(int64_t tiles) const { return ceil_div(tiles, tpt) * pgroups; }

    // Task `local` of a region of `tiles` tiles: tiles [tile_begin, tile_end), panels [p_begin, p_end).
    struct Span {
        int64_t tile_begin, tile_end;
        int p_begin, p_end;
    };
    // Tasks run panel group by panel group (the pool deals each thread a contiguous block of tasks): a thread's
    // consecutive tasks read the same weight slabs, from its cache after the first (at small shapes, where the
    // weights are most of the bytes read, each thread streams about half of them instead of all).
    Span span(int64_t local, int64_t tiles) const {
        const int64_t tgroups = ceil_div(tiles, tpt);
        const int64_t pg = local / tgroups, tg = local % tgroups;
        Span s;
        s.tile_begin = tg * tpt;
        s.tile_end = std::min(tiles, (tg + 1) * tpt);
        s.p_begin = pgroups == 1 ? 0 : 2 * (int)pg;
        s.p_end = pgroups == 1 ? panels : std::min(panels, s.p_begin + 2);
        return s;
    }
};

// Small K (conv_in forward, conv_out dX): the tile's rows under all `segs` segments are copied into one
// contiguous kMR x (segs * c) block ga and rows[r] points at its row r; the micro-kernel then runs one
// segment of K = segs * c (the slabs of one panel are contiguous over taps): per element the same
// products in the same order as one segment per tap.
inline void gather_segments(const float **rows, int segs, int c, float *ga) {
    const int K = segs * c;
    for (int r = 0; r < kMR; ++r)
        for (int t = 0; t < segs; ++t) {
            const float *src = rows[t * kMR + r];
            float *dst = ga + r * K + t * c;
            for (int e = 0; e < c; ++e) dst[e] = src[e];
        }
    for (int r = 0; r < kMR; ++r) rows[r] = ga + r * K;
}

// The tiles of one task of a tiled pass over a region of m pixels laid out n x h x w: for each tile,
// row_fn(r, cursor, pixel, inside) sets row r (the region's pixel `pixel`, padding unless inside), then
// tile_fn() runs the micro-kernels over the tile.
template <class RowFn, class TileFn>
D4J_CONV_INLINE void walk_tiles(const TilePlan::Span &sp, int64_t h, int64_t w, int64_t m, const RowFn &row_fn,
                                const TileFn &tile_fn) {
    PixelCursor o(h, w, sp.tile_begin * kMR);
    for (int64_t tile = sp.tile_begin; tile < sp.tile_end; ++tile) {
        for (int r = 0; r < kMR; ++r, o.advance()) row_fn(r, o, tile * kMR + r, tile * kMR + r < m);
        tile_fn();
    }
}

// One tile of kMR rows against output panels [p_begin, p_end) of n columns in all, two panels per
// micro-kernel call (a lone last one alone): slab_of(p, s) is segment s's slab of panel p, its rows ld
// apart. Row r's results go to out + dst_of[r] + p*kNR (rows with dst_of[r] < 0 are padding), plus bias.
template <class SlabOf>
D4J_CONV_INLINE void tile_panels(int segs, const float *const *rows, int kc, int64_t ld, int p_begin, int p_end,
                                 int n, const SlabOf &slab_of, const int64_t *dst_of, float *out, const float *bias) {
    const float *slabs[kMaxSegs], *slabs2[kMaxSegs];
    float acc[kMR * 2 * kNR];
    for (int p = p_begin; p < p_end; p += 2) {
        const int w = p + 1 < p_end ? 2 * kNR : kNR;
        for (int s = 0; s < segs; ++s) slabs[s] = slab_of(p, s);
        if (w == 2 * kNR) {
            for (int s = 0; s < segs; ++s) slabs2[s] = slab_of(p + 1, s);
            micro_kernel_2(segs, rows, slabs, slabs2, kc, ld, acc);
        } else {
            micro_kernel(segs, rows, slabs, kc, ld, acc);
        }
        const int cols = std::min(w, n - p * kNR);
        for (int r = 0; r < kMR && dst_of[r] >= 0; ++r) {
            float *dst = out + dst_of[r] + (int64_t)p * kNR;
            const float *a = acc + r * w;
            for (int e = 0; e < cols; ++e) dst[e] = bias ? a[e] + bias[p * kNR + e] : a[e];
        }
    }
}

// One dot product per pixel, where one side of the GEMM has a single channel (instead of a kNR-wide panel
// with kNR - 1 zero columns): for each of the m pixels of an n x h x w grid, gather(cursor, rows, ws) lists
// the (row, weight) pairs reaching it (returns their count, at most kMaxSegs) and store(pixel, value) writes
// the sum of their dot products over len floats. Tasks of kSinglePixels pixels.
template <class Gather, class Store>
void dot_per_pixel(ThreadPool &pool, int64_t m, int64_t h, int64_t w, int64_t work, int len, const Gather &gather,
                   const Store &store) {
    run_tasks(pool, ceil_div(m, kSinglePixels), work, [&](int64_t task) {
        const float *rows[kMaxSegs], *ws[kMaxSegs];
        int64_t q = task * kSinglePixels;
        const int64_t q_end = std::min(m, q + kSinglePixels);
        for (PixelCursor o(h, w, q); q < q_end; ++q, o.advance()) store(q, dot_rows(gather(o, rows, ws), rows, ws, len));
    });
}

// ---- the paths (chosen by conv2d_forward / conv2d_backward in kernels_conv2d.cpp) ----

void forward_single(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *bias,
                    float *y);
// prepared: NULL, or upsample_prepared_floats(g) floats from pack_phase_panels (the combined taps packed once).
void forward_upsample(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *prepared,
                      const float *bias, float *y);
int64_t upsample_prepared_floats(const Geom &g);
void forward_tiled(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *bias,
                   float *y);
// A 3 x 3, stride-1, "same" convolution without upsampling, by Winograd F(tile x tile, 3 x 3), tile 2 or 4
// (kernels_conv2d_winograd.cpp).
bool winograd_applies(const Geom &g);
// prepared: NULL, or winograd_prepared_floats(g, tile) floats from winograd_prepare (U of every point and panel,
// transformed once).
void forward_winograd(ThreadPool &pool, const Geom &g, int tile, const float *x, const float *weight,
                      const float *prepared, const float *bias, float *y);
int64_t winograd_prepared_floats(const Geom &g, int tile);
void winograd_prepare(ThreadPool &pool, const Geom &g, int tile, const float *weight, float *u);

void dx_single(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx);
void dx_upsample(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx);
void dx_tiled(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx);

void dw_single(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight);
void dw_gather(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight);
void dw_upsample(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight);
void dw_tiled(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight);
void db_sum(const Geom &g, const float *dy, float *dbias);

}  // namespace d4j::cpu::conv

#endif
