// The conv2d family on the CPU: forward, dX and dW of a k x k convolution
// (k = 1 or 3, stride 1 or 2, optional nearest-2x upsampled input), NHWC
// activations and HWIO weights, as implicit GEMMs.
//
// Forward and dX share one register-blocked micro-kernel: a tile of kMR
// output rows (pixels) x kNR output columns (channels), accumulated over
// "segments", each a (row pointers, weight slab) pair:
//   forward: rows are input pixels under one kernel tap (a C_in vector each),
//            the slab is weight[tap] packed in panels of kNR output channels;
//   dX:      rows are dy pixels reached through one tap (a C_out vector each),
//            the slab is weight[tap] transposed and packed by kNR input channels;
//            with upsample2x the 4 upsampled children of a pixel add 4x the segments.
// A tap that falls into the zero padding points at a zero row, so the inner
// loops carry no branches. Weights are packed (zero-padded to kNR columns)
// once per call: it costs K * C_out, nothing next to the GEMM.
//
// dW is a reduction over all N * H_out * W_out pixels. Each task owns a
// block of dW (one tap, a group of input channels, one output panel), walks
// the pixels in fixed chunks of kChunk, sums each chunk in float registers and
// adds the chunk sums into float64 accumulators: the result depends on the
// chunk boundaries only, never on the thread count, and the float64 carry
// keeps the error at about kChunk u instead of N H W u.
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
constexpr int kDwGroup = 4;          // micro-tiles of kMR input channels per dW task

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One row of kNR floats as a GCC generic vector: 1 zmm, 2 ymm or 4 xmm
// registers depending on the clone. Written with vector types because GCC's
// auto-vectoriser spills a 6 x 16 array accumulator to the stack. Loads and
// stores go through memcpy (no alignment assumed); mul and add stay separate
// (-ffp-contract=off), so every SIMD path gives the same bits.
typedef float vrow __attribute__((vector_size(kNR * sizeof(float))));

#define D4J_LOAD_ROW(dst, src) std::memcpy(&(dst), (src), sizeof(vrow))

// out[r*kNR + j] = sum over segments s, k < kc of rows[s*kMR + r][k] * slabs[s][k*kNR + j]
D4J_CLONES void micro_kernel(int segs, const float *const *rows, const float *const *slabs, int kc, float *out) {
    vrow c0 = {}, c1 = {}, c2 = {}, c3 = {}, c4 = {}, c5 = {};
    for (int s = 0; s < segs; ++s) {
        const float *const *rr = rows + (int64_t)s * kMR;
        const float *r0 = rr[0], *r1 = rr[1], *r2 = rr[2], *r3 = rr[3], *r4 = rr[4], *r5 = rr[5];
        const float *b = slabs[s];
        for (int k = 0; k < kc; ++k) {
            vrow bk;
            D4J_LOAD_ROW(bk, b + (int64_t)k * kNR);
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

// out[r*kNR + j] = sum over q < count of xr[q][ci[r]] * dyp[q*kNR + j]   (one dW micro-tile over a pixel chunk)
D4J_CLONES void dw_micro_kernel(int64_t count, const float *const *xr, const int *ci, const float *dyp, float *out) {
    vrow c0 = {}, c1 = {}, c2 = {}, c3 = {}, c4 = {}, c5 = {};
    const int i0 = ci[0], i1 = ci[1], i2 = ci[2], i3 = ci[3], i4 = ci[4], i5 = ci[5];
    for (int64_t q = 0; q < count; ++q) {
        const float *x = xr[q];
        vrow d;
        D4J_LOAD_ROW(d, dyp + q * kNR);
        c0 += x[i0] * d;
        c1 += x[i1] * d;
        c2 += x[i2] * d;
        c3 += x[i3] * d;
        c4 += x[i4] * d;
        c5 += x[i5] * d;
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

}  // namespace

d4j_status conv2d_forward(void *state, const Geom *gp, const float *x, const float *weight, const float *bias,
                          float *y) {
    const Geom g = *gp;
    const int taps = g.k * g.k;
    const int64_t M = (int64_t)g.n * g.h_out * g.w_out;
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t slab = (int64_t)g.c_in * kNR;
    // packed[p][tap][ci][j] = weight[tap][ci][p*kNR + j], zero beyond c_out
    std::vector<float> packed((size_t)panels * taps * slab, 0.0f);
    for (int p = 0; p < panels; ++p)
        for (int t = 0; t < taps; ++t)
            for (int ci = 0; ci < g.c_in; ++ci) {
                const float *src = weight + ((int64_t)t * g.c_in + ci) * g.c_out + (int64_t)p * kNR;
                float *dst = packed.data() + ((int64_t)p * taps + t) * slab + (int64_t)ci * kNR;
                const int cols = std::min(kNR, g.c_out - p * kNR);
                for (int j = 0; j < cols; ++j) dst[j] = src[j];
            }
    std::vector<float> zero((size_t)g.c_in, 0.0f);
    const int64_t tiles = ceil_div(M, kMR);
    const int64_t tasks = ceil_div(tiles, kTilesPerTask);
    run_tasks(pool_of(state), tasks, work_of(M, (int64_t)taps * g.c_in, g.c_out), [&](int64_t task) {
        const float *rows[9 * kMR];
        const float *slabs[9];
        float acc[kMR * kNR];
        const int64_t t_end = std::min(tiles, (task + 1) * kTilesPerTask);
        for (int64_t tile = task * kTilesPerTask; tile < t_end; ++tile) {
            const int64_t m0 = tile * kMR;
            for (int r = 0; r < kMR; ++r) {
                const int64_t m = m0 + r;
                const int64_t b = m / ((int64_t)g.h_out * g.w_out), rem = m % ((int64_t)g.h_out * g.w_out);
                const int64_t oh = rem / g.w_out, ow = rem % g.w_out;
                for (int t = 0; t < taps; ++t) {
                    const float *p = nullptr;
                    if (m < M) p = x_row(g, x, b, oh * g.stride - g.pad_top + t / g.k, ow * g.stride - g.pad_left + t % g.k);
                    rows[t * kMR + r] = p ? p : zero.data();
                }
            }
            for (int p = 0; p < panels; ++p) {
                for (int t = 0; t < taps; ++t) slabs[t] = packed.data() + ((int64_t)p * taps + t) * slab;
                micro_kernel(taps, rows, slabs, g.c_in, acc);
                const int cols = std::min(kNR, g.c_out - p * kNR);
                for (int r = 0; r < kMR && m0 + r < M; ++r) {
                    float *dst = y + (m0 + r) * g.c_out + (int64_t)p * kNR;
                    for (int j = 0; j < cols; ++j) dst[j] = bias ? acc[r * kNR + j] + bias[p * kNR + j] : acc[r * kNR + j];
                }
            }
        }
    });
    return D4J_OK;
}

namespace {

// dx[b, i, j, :] = sum over (child, tap) of dy[b, oh, ow, :] . weight[tap]^T
// where the conv-input position (2i + child/2, 2j + child%2) (or (i, j)) was
// read by output (oh, ow) through tap.
void conv2d_dx(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx) {
    const int taps = g.k * g.k;
    const int children = g.upsample2x ? 4 : 1;
    const int segs_max = taps * children;
    const int64_t M = (int64_t)g.n * g.h * g.w;
    const int panels = (int)ceil_div(g.c_in, kNR);
    const int64_t slab = (int64_t)g.c_out * kNR;
    // packed[p][tap][co][j] = weight[tap][p*kNR + j][co], zero beyond c_in
    std::vector<float> packed((size_t)panels * taps * slab, 0.0f);
    for (int p = 0; p < panels; ++p)
        for (int t = 0; t < taps; ++t) {
            const int cols = std::min(kNR, g.c_in - p * kNR);
            float *dst = packed.data() + ((int64_t)p * taps + t) * slab;
            for (int j = 0; j < cols; ++j) {
                const float *src = weight + ((int64_t)t * g.c_in + p * kNR + j) * g.c_out;
                for (int co = 0; co < g.c_out; ++co) dst[(int64_t)co * kNR + j] = src[co];
            }
        }
    std::vector<float> zero((size_t)g.c_out, 0.0f);
    const int64_t tiles = ceil_div(M, kMR);
    const int64_t tasks = ceil_div(tiles, kTilesPerTask);
    run_tasks(pool, tasks, work_of(M, (int64_t)segs_max * g.c_out, g.c_in), [&](int64_t task) {
        const float *rows[36 * kMR];
        const float *slabs[36];
        int seg_tap[36];
        float acc[kMR * kNR];
        const int64_t t_end = std::min(tiles, (task + 1) * kTilesPerTask);
        for (int64_t tile = task * kTilesPerTask; tile < t_end; ++tile) {
            const int64_t m0 = tile * kMR;
            // Segments are (child, tap) pairs in a fixed order; a pair no row of the
            // tile reaches is still kept (with zero rows) so the order never depends on the tile.
            int segs = 0;
            for (int c = 0; c < children; ++c)
                for (int t = 0; t < taps; ++t) {
                    seg_tap[segs] = t;
                    for (int r = 0; r < kMR; ++r) {
                        const int64_t m = m0 + r;
                        const float *p = nullptr;
                        if (m < M) {
                            const int64_t b = m / ((int64_t)g.h * g.w), rem = m % ((int64_t)g.h * g.w);
                            int64_t ih = rem / g.w, iw = rem % g.w;
                            if (g.upsample2x) {
                                ih = 2 * ih + c / 2;
                                iw = 2 * iw + c % 2;
                            }
                            const int64_t hn = ih + g.pad_top - t / g.k, wn = iw + g.pad_left - t % g.k;
                            if (hn >= 0 && wn >= 0 && hn % g.stride == 0 && wn % g.stride == 0) {
                                const int64_t oh = hn / g.stride, ow = wn / g.stride;
                                if (oh < g.h_out && ow < g.w_out) p = dy + ((b * g.h_out + oh) * g.w_out + ow) * g.c_out;
                            }
                        }
                        rows[segs * kMR + r] = p ? p : zero.data();
                    }
                    ++segs;
                }
            for (int p = 0; p < panels; ++p) {
                for (int s = 0; s < segs; ++s) slabs[s] = packed.data() + ((int64_t)p * taps + seg_tap[s]) * slab;
                micro_kernel(segs, rows, slabs, g.c_out, acc);
                const int cols = std::min(kNR, g.c_in - p * kNR);
                for (int r = 0; r < kMR && m0 + r < M; ++r) {
                    float *dst = dx + (m0 + r) * g.c_in + (int64_t)p * kNR;
                    for (int j = 0; j < cols; ++j) dst[j] = acc[r * kNR + j];
                }
            }
        }
    });
}

// dweight[tap][ci][co] += sum over pixels q of u(q, tap)[ci] * dy[q][co]
void conv2d_dw(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    const int64_t P = (int64_t)g.n * g.h_out * g.w_out;
    const int panels = (int)ceil_div(g.c_out, kNR);
    // dyp[p][q][j] = dy[q][p*kNR + j], zero beyond c_out: aligned full-width rows for the micro-kernel
    std::vector<float> dyp((size_t)panels * P * kNR, 0.0f);
    run_tasks(pool, panels, P * kNR * panels, [&](int64_t p) {
        const int cols = std::min(kNR, g.c_out - (int)p * kNR);
        float *dst = dyp.data() + p * P * kNR;
        for (int64_t q = 0; q < P; ++q)
            for (int j = 0; j < cols; ++j) dst[q * kNR + j] = dy[q * g.c_out + p * kNR + j];
    });
    std::vector<float> zero((size_t)g.c_in, 0.0f);
    const int64_t ci_tiles = ceil_div(g.c_in, kMR);
    const int64_t groups = ceil_div(ci_tiles, kDwGroup);
    const int64_t tasks = (int64_t)taps * groups * panels;
    run_tasks(pool, tasks, work_of(P, (int64_t)taps * g.c_in, g.c_out), [&](int64_t task) {
        const int p = (int)(task % panels);
        const int64_t grp = (task / panels) % groups;
        const int t = (int)(task / panels / groups);
        const int kh = t / g.k, kw = t % g.k;
        double total[kDwGroup * kMR * kNR];
        for (double &v : total) v = 0.0;
        const float *xr[kChunk];
        float acc[kMR * kNR];
        const int64_t tile0 = grp * kDwGroup, tile1 = std::min(ci_tiles, tile0 + kDwGroup);
        for (int64_t q0 = 0; q0 < P; q0 += kChunk) {
            const int64_t count = std::min(kChunk, P - q0);
            for (int64_t q = 0; q < count; ++q) {
                const int64_t m = q0 + q;
                const int64_t b = m / ((int64_t)g.h_out * g.w_out), rem = m % ((int64_t)g.h_out * g.w_out);
                const int64_t oh = rem / g.w_out, ow = rem % g.w_out;
                const float *row = x_row(g, x, b, oh * g.stride - g.pad_top + kh, ow * g.stride - g.pad_left + kw);
                xr[q] = row ? row : zero.data();
            }
            const float *d = dyp.data() + ((int64_t)p * P + q0) * kNR;
            for (int64_t tile = tile0; tile < tile1; ++tile) {
                int ci[kMR];
                // channels past c_in re-read the last one: computed, never stored
                for (int r = 0; r < kMR; ++r) ci[r] = (int)std::min<int64_t>(tile * kMR + r, g.c_in - 1);
                dw_micro_kernel(count, xr, ci, d, acc);
                double *tot = total + (tile - tile0) * kMR * kNR;
                for (int e = 0; e < kMR * kNR; ++e) tot[e] += (double)acc[e];
            }
        }
        const int cols = std::min(kNR, g.c_out - p * kNR);
        for (int64_t tile = tile0; tile < tile1; ++tile)
            for (int r = 0; r < kMR && tile * kMR + r < g.c_in; ++r) {
                float *dst = dweight + ((int64_t)t * g.c_in + tile * kMR + r) * g.c_out + (int64_t)p * kNR;
                const double *tot = total + ((tile - tile0) * kMR + r) * kNR;
                for (int j = 0; j < cols; ++j) dst[j] = (float)((double)dst[j] + tot[j]);
            }
    });
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
