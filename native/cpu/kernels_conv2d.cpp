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
// Where C_out (forward) or C_in (dX) has two or more panels, micro_kernel_2
// computes two panels per tile, so each broadcast row value feeds two vectors.
//
// dW is a reduction over all N * H_out * W_out pixels. Tasks are (tap, range of
// kRange pixels, group of input channels). A task gathers the x rows of a
// chunk of kChunk pixels under its tap into a contiguous buffer once, then runs
// a 6 x 32 (or 6 x 16) micro-kernel over the chunk for every output panel; each
// chunk sum (float registers) is added into the task's float64 partial, and
// the partials of the ranges are added in range order at the end: the result
// depends on the range and chunk boundaries only (fixed by the shape), never
// on the thread count, and the float64 carry keeps the error at about kChunk u
// instead of N H W u.
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

// Two panels at once: out[r*2kNR + j] for j < 2 kNR, the first kNR columns
// from slabs, the next from slabs2. Each broadcast row value feeds two vectors
// (12 accumulators: AVX-512 registers; the AVX2 clone spills some). Per
// element the same products are added in the same order as micro_kernel.
D4J_CLONES void micro_kernel_2(int segs, const float *const *rows, const float *const *slabs,
                               const float *const *slabs2, int kc, float *out) {
    vrow a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {};
    vrow b0 = {}, b1 = {}, b2 = {}, b3 = {}, b4 = {}, b5 = {};
    for (int s = 0; s < segs; ++s) {
        const float *const *rr = rows + (int64_t)s * kMR;
        const float *r0 = rr[0], *r1 = rr[1], *r2 = rr[2], *r3 = rr[3], *r4 = rr[4], *r5 = rr[5];
        const float *p0 = slabs[s], *p1 = slabs2[s];
        for (int k = 0; k < kc; ++k) {
            vrow u, v;
            D4J_LOAD_ROW(u, p0 + (int64_t)k * kNR);
            D4J_LOAD_ROW(v, p1 + (int64_t)k * kNR);
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

// dW micro-kernels over one chunk of pixels, both operands pixel-major:
//   out[r*W + j] = sum over q < count of xa[q*lda + r] * dyb[q*ldb + j],  r < kMR, j < W,
// W = 2 kNR (two output panels: each broadcast x value feeds two vectors, so
// loads stay below the arithmetic) or kNR (the last odd panel).
D4J_CLONES void dw_kernel_2(int64_t count, const float *xa, int64_t lda, const float *dyb, int64_t ldb, float *out) {
    vrow a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {};
    vrow b0 = {}, b1 = {}, b2 = {}, b3 = {}, b4 = {}, b5 = {};
    for (int64_t q = 0; q < count; ++q) {
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

D4J_CLONES void dw_kernel_1(int64_t count, const float *xa, int64_t lda, const float *dyb, int64_t ldb, float *out) {
    vrow c0 = {}, c1 = {}, c2 = {}, c3 = {}, c4 = {}, c5 = {};
    for (int64_t q = 0; q < count; ++q) {
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
    // (per-thread buffers reused across calls: no allocation and page faults per call at batch 1)
    // (references: the lambdas below run on worker threads and must see this thread's buffers)
    thread_local std::vector<float> packed_ws, zero_ws;
    std::vector<float> &packed = packed_ws, &zero = zero_ws;
    packed.assign((size_t)panels * taps * slab, 0.0f);
    for (int p = 0; p < panels; ++p)
        for (int t = 0; t < taps; ++t)
            for (int ci = 0; ci < g.c_in; ++ci) {
                const float *src = weight + ((int64_t)t * g.c_in + ci) * g.c_out + (int64_t)p * kNR;
                float *dst = packed.data() + ((int64_t)p * taps + t) * slab + (int64_t)ci * kNR;
                const int cols = std::min(kNR, g.c_out - p * kNR);
                for (int j = 0; j < cols; ++j) dst[j] = src[j];
            }
    zero.assign((size_t)g.c_in, 0.0f);
    const int64_t tiles = ceil_div(M, kMR);
    const int64_t tasks = ceil_div(tiles, kTilesPerTask);
    run_tasks(pool_of(state), tasks, work_of(M, (int64_t)taps * g.c_in, g.c_out), [&](int64_t task) {
        const float *rows[9 * kMR];
        const float *slabs[9];
        const float *slabs2[9];
        float acc[kMR * 2 * kNR];
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
            for (int p = 0; p < panels; p += 2) {
                const int w = p + 1 < panels ? 2 * kNR : kNR;
                for (int t = 0; t < taps; ++t) slabs[t] = packed.data() + ((int64_t)p * taps + t) * slab;
                if (w == 2 * kNR) {
                    for (int t = 0; t < taps; ++t) slabs2[t] = packed.data() + ((int64_t)(p + 1) * taps + t) * slab;
                    micro_kernel_2(taps, rows, slabs, slabs2, g.c_in, acc);
                } else {
                    micro_kernel(taps, rows, slabs, g.c_in, acc);
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
    // (references: the lambdas below run on worker threads and must see this thread's buffers)
    thread_local std::vector<float> packed_ws, zero_ws;
    std::vector<float> &packed = packed_ws, &zero = zero_ws;
    packed.assign((size_t)panels * taps * slab, 0.0f);
    for (int p = 0; p < panels; ++p)
        for (int t = 0; t < taps; ++t) {
            const int cols = std::min(kNR, g.c_in - p * kNR);
            float *dst = packed.data() + ((int64_t)p * taps + t) * slab;
            for (int j = 0; j < cols; ++j) {
                const float *src = weight + ((int64_t)t * g.c_in + p * kNR + j) * g.c_out;
                for (int co = 0; co < g.c_out; ++co) dst[(int64_t)co * kNR + j] = src[co];
            }
        }
    zero.assign((size_t)g.c_out, 0.0f);
    const int64_t tiles = ceil_div(M, kMR);
    const int64_t tasks = ceil_div(tiles, kTilesPerTask);
    run_tasks(pool, tasks, work_of(M, (int64_t)segs_max * g.c_out, g.c_in), [&](int64_t task) {
        const float *rows[36 * kMR];
        const float *slabs[36];
        const float *slabs2[36];
        int seg_tap[36];
        float acc[kMR * 2 * kNR];
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
            for (int p = 0; p < panels; p += 2) {
                const int w = p + 1 < panels ? 2 * kNR : kNR;
                for (int s = 0; s < segs; ++s) slabs[s] = packed.data() + ((int64_t)p * taps + seg_tap[s]) * slab;
                if (w == 2 * kNR) {
                    for (int s = 0; s < segs; ++s)
                        slabs2[s] = packed.data() + ((int64_t)(p + 1) * taps + seg_tap[s]) * slab;
                    micro_kernel_2(segs, rows, slabs, slabs2, g.c_out, acc);
                } else {
                    micro_kernel(segs, rows, slabs, g.c_out, acc);
                }
                const int cols = std::min(w, g.c_in - p * kNR);
                for (int r = 0; r < kMR && m0 + r < M; ++r) {
                    float *dst = dx + (m0 + r) * g.c_in + (int64_t)p * kNR;
                    const float *a = acc + r * w;
                    for (int j = 0; j < cols; ++j) dst[j] = a[j];
                }
            }
        }
    });
}

// dweight[tap][ci][co] += sum over pixels q of u(q, tap)[ci] * dy[q][co]
//
// Tasks are (tap, pixel range of kRange, channel group). A task walks its
// range in chunks of kChunk pixels: it gathers the chunk's x rows under its tap
// (its channel group only) into a contiguous pixel-major buffer, once for all
// output panels, and runs the micro-kernels over it; chunk sums (float) go into
// the task's float64 partial. The partials of the ranges are then added in
// range order. Range and chunk boundaries depend on the shape only.
void conv2d_dw(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    const int64_t HWo = (int64_t)g.h_out * g.w_out;
    const int64_t P = (int64_t)g.n * HWo;
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t ranges = ceil_div(P, kRange);
    const int64_t ci_tiles = ceil_div(g.c_in, kMR);
    // few (tap, range) pairs: split the input channels too, so both threads get work
    const int64_t cgroups = std::min<int64_t>(ci_tiles, ceil_div(kMinDwTasks, taps * ranges));
    const int64_t tiles_per_group = ceil_div(ci_tiles, cgroups);
    const int64_t tasks = (int64_t)taps * ranges * cgroups;
    const int64_t wsize = (int64_t)g.c_in * g.c_out;
    thread_local std::vector<double> partial_ws;
    if ((int64_t)partial_ws.size() < taps * ranges * wsize) partial_ws.resize((size_t)(taps * ranges * wsize));
    double *partial = partial_ws.data();  // [tap][range][ci][co]
    const bool direct_dy = g.c_out % kNR == 0;
    const int64_t ldc = (int64_t)panels * kNR;
    run_tasks(pool, tasks, work_of(P, (int64_t)taps * g.c_in, g.c_out), [&](int64_t task) {
        const int64_t cg = task % cgroups;
        const int64_t rg = (task / cgroups) % ranges;
        const int t = (int)(task / cgroups / ranges);
        const int kh = t / g.k, kw = t % g.k;
        const int64_t c0 = cg * tiles_per_group * kMR;
        const int64_t c1 = std::min<int64_t>(g.c_in, c0 + tiles_per_group * kMR);
        if (c0 >= c1) return;
        const int64_t width = c1 - c0, lda = ceil_div(width, kMR) * kMR;
        thread_local std::vector<float> xa_ws, dyc_ws;
        if ((int64_t)xa_ws.size() < kChunk * lda) xa_ws.resize((size_t)(kChunk * lda));
        float *xa = xa_ws.data();
        float *dyc = nullptr;
        if (!direct_dy) {
            if ((int64_t)dyc_ws.size() < kChunk * ldc) dyc_ws.resize((size_t)(kChunk * ldc));
            dyc = dyc_ws.data();
        }
        double *part = partial + ((int64_t)t * ranges + rg) * wsize;
        for (int64_t ci = c0; ci < c1; ++ci)
            for (int co = 0; co < g.c_out; ++co) part[ci * g.c_out + co] = 0.0;
        float acc[kMR * 2 * kNR];
        const int64_t q_end = std::min(P, (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            int64_t b = q0 / HWo, rem = q0 % HWo;
            int64_t oh = rem / g.w_out, ow = rem % g.w_out;
            for (int64_t q = 0; q < count; ++q) {
                const float *row = x_row(g, x, b, oh * g.stride - g.pad_top + kh, ow * g.stride - g.pad_left + kw);
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
            for (int64_t r0 = 0; r0 < width; r0 += kMR) {
                const int rows = (int)std::min<int64_t>(kMR, width - r0);
                for (int p = 0; p < panels; p += 2) {
                    const int w = p + 1 < panels ? 2 * kNR : kNR;
                    if (w == 2 * kNR) dw_kernel_2(count, xa + r0, lda, dyb + (int64_t)p * kNR, ldb, acc);
                    else dw_kernel_1(count, xa + r0, lda, dyb + (int64_t)p * kNR, ldb, acc);
                    const int cols = std::min(w, g.c_out - p * kNR);
                    for (int r = 0; r < rows; ++r) {
                        double *dst = part + (c0 + r0 + r) * g.c_out + (int64_t)p * kNR;
                        const float *src = acc + r * w;
                        for (int j = 0; j < cols; ++j) dst[j] += (double)src[j];
                    }
                }
            }
        }
    });
    // dweight[t] += sum over ranges, in range order
    for (int t = 0; t < taps; ++t) {
        float *dst = dweight + (int64_t)t * wsize;
        const double *src = partial + (int64_t)t * ranges * wsize;
        for (int64_t e = 0; e < wsize; ++e) {
            double total = src[e];
            for (int64_t rg = 1; rg < ranges; ++rg) total += src[rg * wsize + e];
            dst[e] = (float)((double)dst[e] + total);
        }
    }
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
