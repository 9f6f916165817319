// conv2d weight- and bias-gradient (dW, dB) paths (the algorithm and the choice of path: kernels_conv2d.cpp).
#include "conv2d_tiles.h"
#include "cpu_teeth.h"

namespace d4j::cpu::conv {

namespace {

// dweight[blk*bsize + e] += sum over r < ranges, in order, of partial[(blk*ranges + r)*bsize + e] (float64),
// in parallel over the elements (each element's sum has the same order whatever the thread count).
void add_partials(ThreadPool &pool, float *dweight, const double *partial, int64_t blocks, int64_t ranges,
                  int64_t bsize) {
    // small sums (batch 1, one range) stay on the calling thread: a parallel region costs more
    const int64_t grain = blocks * bsize * ranges < (1 << 18) ? blocks * bsize : 4096;
    const int64_t tooth = D4J_TOOTH("dw_accumulate");
    parallel_ranges(pool, blocks * bsize, std::max<int64_t>(grain, 1), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end;) {
            const int64_t blk = i / bsize, e0 = i % bsize, e1 = std::min(bsize, e0 + (end - i));
            const double *src = partial + blk * ranges * bsize;
            float *dst = dweight + blk * bsize;
            for (int64_t e = e0; e < e1; ++e) {
                double total = src[e];
                for (int64_t rg = 1; rg < ranges; ++rg) total += src[rg * bsize + e];
                dst[e + tooth] = (float)((double)dst[e + tooth] + total);
            }
            i += e1 - e0;
        }
    });
}

// dst[q*ld + e] = row(q)[e] for q < count, e < c, zero up to ld: a chunk's dy rows padded to whole panels.
template <class RowOf>
void copy_padded(int64_t count, int c, int64_t ld, const RowOf &row_of, float *dst) {
    for (int64_t q = 0; q < count; ++q) {
        float *d = dst + q * ld;
        std::memcpy(d, row_of(q), (size_t)c * sizeof(float));
        for (int64_t e = c; e < ld; ++e) d[e] = 0.0f;
    }
}

// The dy operand of a chunk of pixels [q0, q0 + count): dy itself when C_out is a multiple of kNR, else the
// rows copied into dyc, padded to ldc. Returns the base; *ldb is its row stride.
const float *chunk_dy(const Geom &g, const float *dy, int64_t q0, int64_t count, int64_t ldc, float *dyc,
                      int64_t *ldb) {
    if (g.c_out % kNR == 0) {
        *ldb = g.c_out;
        return dy + q0 * g.c_out;
    }
    copy_padded(count, g.c_out, ldc, [&](int64_t q) { return dy + (q0 + q) * g.c_out; }, dyc);
    *ldb = ldc;
    return dyc;
}

// A per-thread scratch buffer of at least n elements, one per call site (T, Tag).
template <class T, int Tag>
T *scratch(int64_t n) {
    thread_local std::vector<T> ws;
    if ((int64_t)ws.size() < n) ws.resize((size_t)n);
    return ws.data();
}

// Zeroes channels [c0, c1) of a float64 partial of C_in x C_out.
void zero_partial(double *part, int64_t c0, int64_t c1, int c_out) {
    for (int64_t ci = c0; ci < c1; ++ci)
        for (int co = 0; co < c_out; ++co) part[ci * c_out + co] = 0.0;
}

// A group of fewer than kMR channels [c0 + full, c0 + width) of every run's x rows (ldx apart) gathered into
// xa, kMR floats per pixel, zero padded, zero rows where no run covers the pixel.
void gather_narrow(const Run *runs, int64_t nruns, int64_t count, int64_t ldx, int64_t col0, int64_t cols,
                   float *xa) {
    for (int64_t q = 0; q < count; ++q)
        for (int c = 0; c < kMR; ++c) xa[q * kMR + c] = 0.0f;
    for (int64_t u = 0; u < nruns; ++u)
        for (int64_t i = 0; i < runs[u].n; ++i) {
            const float *src = runs[u].x + i * ldx + col0;
            float *dst = xa + (runs[u].q + i) * kMR;
            for (int64_t c = 0; c < cols; ++c) dst[c] = src[c];
        }
}

}  // namespace

// C_out = 1: dweight[tap][ci][0] += sum over pixels q of x(q, tap)[ci] * dy[q], over the rows inside the image
// only. Tasks are pixel ranges (a range's x rows stay in cache for all taps); per tap a chunk's sum in float
// (axpy over C_in, pixel order), float64 across chunks, the ranges added in order at the end.
void dw_single(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    const int64_t P = (int64_t)g.n * g.h_out * g.w_out;
    const int64_t ranges = ceil_div(P, kRange);
    const int64_t wsize = (int64_t)taps * g.c_in;
    double *partial = scratch<double, 0>(ranges * wsize);  // [range][tap][ci]
    run_tasks(pool, ranges, work_of(P, wsize, 1), [&](int64_t rg) {
        float *acc = scratch<float, 1>(g.c_in), *d = scratch<float, 2>(kChunk);
        const float **rows = scratch<const float *, 3>(kChunk);
        double *part = partial + rg * wsize;
        for (int64_t e = 0; e < wsize; ++e) part[e] = 0.0;
        const int64_t q_end = std::min(P, (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            for (int t = 0; t < taps; ++t) {
                const int kh = t / g.k, kw = t % g.k;
                PixelCursor o(g.h_out, g.w_out, q0);
                int64_t n = 0;
                for (int64_t q = 0; q < count; ++q, o.advance()) {
                    const float *row =
                        x_row(g, x, o.b, o.i * g.stride - g.pad_top + kh, o.j * g.stride - g.pad_left + kw);
                    if (row) {
                        rows[n] = row;
                        d[n] = dy[q0 + q];
                        ++n;
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
// boundaries (and so the summation order of every element) are those of dw_tiled.
void dw_gather(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    const int K = taps * g.c_in;
    const int64_t lda = ceil_div(K, kMR) * kMR;
    const int64_t P = (int64_t)g.n * g.h_out * g.w_out;
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t ranges = ceil_div(P, kRange);
    const int64_t wsize = (int64_t)K * g.c_out;
    double *partial = scratch<double, 4>(ranges * wsize);  // [range][tap][ci][co]
    const int64_t ldc = (int64_t)panels * kNR;
    run_tasks(pool, ranges, work_of(P, K, g.c_out), [&](int64_t rg) {
        float *xa = scratch<float, 5>(kChunk * lda);
        float *dyc = g.c_out % kNR == 0 ? nullptr : scratch<float, 6>(kChunk * ldc);
        double *part = partial + rg * wsize;
        for (int64_t e = 0; e < wsize; ++e) part[e] = 0.0;
        float acc[kMR * 2 * kNR];
        const int64_t q_end = std::min(P, (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            PixelCursor o(g.h_out, g.w_out, q0);
            for (int64_t q = 0; q < count; ++q, o.advance()) {
                float *dst = xa + q * lda;
                for (int t = 0; t < taps; ++t) {
                    const float *row =
                        x_row(g, x, o.b, o.i * g.stride - g.pad_top + t / g.k, o.j * g.stride - g.pad_left + t % g.k);
                    if (row) std::memcpy(dst + t * g.c_in, row, (size_t)g.c_in * sizeof(float));
                    else std::memset(dst + t * g.c_in, 0, (size_t)g.c_in * sizeof(float));
                }
                for (int64_t k = K; k < lda; ++k) dst[k] = 0.0f;
            }
            int64_t ldb;
            const float *dyb = chunk_dy(g, dy, q0, count, ldc, dyc, &ldb);
            const Run all{0, count, xa};
            for (int r0 = 0; r0 < K; r0 += kMR) {
                const int rows = std::min(kMR, K - r0);
                for (int p = 0; p < panels; p += 2) {
                    const int w = p + 1 < panels ? 2 * kNR : kNR;
                    dw_panels(&all, 1, r0, lda, dyb + (int64_t)p * kNR, ldb, w, acc);
                    add_tile(part, g.c_out, p, w, r0, r0 + rows, r0, acc);
                }
            }
        }
    });
    add_partials(pool, dweight, partial, 1, ranges, wsize);
}

// Upsample2x, stride 1, by the phases of forward_upsample: for each phase (a, b) and combined tap (u, v),
// dWc = sum over the phase's outputs (2i + a, 2j + b) of x[i + dh0 + u][j + dw0 + v] . dy (4 x 4 pixel-tap
// products per 4 outputs instead of 9 x 4); dweight[kh][kw] then adds the dWc of the combined taps containing
// (kh, kw), phases in order. Tasks are (phase, range of the phase's pixels, channel group); a task copies the
// dy rows of a chunk once for its 4 combined taps and reads x in place, run by run; float chunk sums, float64
// partials, fixed order: independent of the thread count.
void dw_upsample(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    UpPhase ph[4];
    int64_t P[4], ranges[4];
    int64_t max_ranges = 0;
    for (int q = 0; q < 4; ++q) {
        ph[q] = up_phase(g, q);
        P[q] = (int64_t)g.n * ph[q].ho * ph[q].wo;
        ranges[q] = ceil_div(P[q], kRange);
        max_ranges = std::max(max_ranges, ranges[q]);
    }
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t ci_tiles = ceil_div(g.c_in, kMR);
    const int64_t cgroups = std::min<int64_t>(ci_tiles, ceil_div(kMinDwTasks, 4 * max_ranges));
    const int64_t tiles_per_group = ceil_div(ci_tiles, cgroups);
    const int64_t wsize = (int64_t)g.c_in * g.c_out;
    double *partial = scratch<double, 7>(4 * 4 * max_ranges * wsize);  // [phase][combined tap][range][ci][co]
    const int64_t ldc = (int64_t)panels * kNR;
    run_tasks(pool, 4 * max_ranges * cgroups, work_of(4 * P[0], 4 * (int64_t)g.c_in, g.c_out), [&](int64_t task) {
        const int64_t cg = task % cgroups;
        const int64_t rg = (task / cgroups) % max_ranges;
        const int q = (int)(task / cgroups / max_ranges);
        if (rg >= ranges[q]) return;
        const int64_t c0 = cg * tiles_per_group * kMR;
        const int64_t c1 = std::min<int64_t>(g.c_in, c0 + tiles_per_group * kMR);
        if (c0 >= c1) return;
        const UpPhase &p = ph[q];
        const int64_t width = c1 - c0, full = width / kMR * kMR;
        float *xa = scratch<float, 8>(kChunk * kMR), *dyc = scratch<float, 9>(kChunk * ldc);
        const int taps = p.taps();
        const auto part_of = [&](int t) { return partial + (((int64_t)q * 4 + t) * max_ranges + rg) * wsize; };
        for (int t = 0; t < taps; ++t) zero_partial(part_of(t), c0, c1, g.c_out);
        float acc[kMR * 2 * kNR];
        Run runs[kChunk];
        const int64_t q_end = std::min(P[q], (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            // dy rows of the chunk's outputs (2i + a, 2j + b), zero padded to whole panels
            {
                PixelCursor o(p.ho, p.wo, q0);
                copy_padded(count, g.c_out, ldc, [&](int64_t) {
                    const float *src = dy + ((o.b * g.h_out + 2 * o.i + p.a) * g.w_out + 2 * o.j + p.b) * g.c_out;
                    o.advance();
                    return src;
                }, dyc);
            }
            for (int t = 0; t < taps; ++t) {
                const int u = t / p.nw, v = t % p.nw;
                const int64_t dh = p.dh0 + u, dw = p.dw0 + v;
                // x runs: one per output row segment, the columns whose stored pixel lies inside the image
                const int64_t jlo = std::max<int64_t>(0, -dw), jhi = std::min<int64_t>(p.wo, g.w - dw);
                int64_t nruns = 0;
                PixelCursor o(p.ho, p.wo, q0);
                for (int64_t e = 0; e < count;) {
                    const int64_t seg = std::min(count - e, p.wo - o.j);
                    const int64_t si = o.i + dh, lo = std::max(o.j, jlo), hi = std::min(o.j + seg, jhi);
                    if (si >= 0 && si < g.h && lo < hi)
                        runs[nruns++] = Run{e + (lo - o.j), hi - lo, x + ((o.b * g.h + si) * g.w + lo + dw) * g.c_in};
                    e += seg;
                    o.advance(seg);
                }
                if (full < width) gather_narrow(runs, nruns, count, g.c_in, c0 + full, width - full, xa);
                double *part = part_of(t);
                for (int64_t r0 = 0; r0 < width; r0 += kMR) {
                    const int rows = (int)std::min<int64_t>(kMR, width - r0);
                    for (int pn = 0; pn < panels; pn += 2) {
                        const int w = pn + 1 < panels ? 2 * kNR : kNR;
                        const float *dyb = dyc + (int64_t)pn * kNR;
                        const Run all{0, count, xa};
                        if (r0 < full) dw_panels(runs, nruns, c0 + r0, g.c_in, dyb, ldc, w, acc);
                        else dw_panels(&all, 1, 0, kMR, dyb, ldc, w, acc);
                        add_tile(part, g.c_out, pn, w, c0 + r0, c0 + r0 + rows, c0 + r0, acc);
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
                const int u = floor_half(ph[q].a - g.pad_top + kh) - ph[q].dh0;
                const int v = floor_half(ph[q].b - g.pad_left + kw) - ph[q].dw0;
                const double *src = partial + (((int64_t)q * 4 + u * ph[q].nw + v) * max_ranges) * wsize + e;
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
void dw_tiled(ThreadPool &pool, const Geom &g, const float *x, const float *dy, float *dweight) {
    const int taps = g.k * g.k;
    const int64_t P = (int64_t)g.n * g.h_out * g.w_out;
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t ranges = ceil_div(P, kRange);
    const int64_t ci_tiles = ceil_div(g.c_in, kMR);
    // Without upsampling a task takes all the taps of its (range, channel group): per chunk the dy rows are read
    // once from memory and then from cache for every tap, and the x rows of the taps overlap (shifted by a pixel
    // or a row); the gain is in benchmarks/results/cpu-profile.md. The upsampled (gathered) path keeps one tap
    // per task.
    const bool direct_x = !g.upsample2x;
    const int tpg = direct_x ? taps : 1;  // taps per task
    const int tgroups = (int)ceil_div(taps, tpg);
    // few (tap group, range) pairs: split the input channels too, so both threads get work
    const int64_t cgroups = std::min<int64_t>(ci_tiles, ceil_div(kMinDwTasks, tgroups * ranges));
    const int64_t tiles_per_group = ceil_div(ci_tiles, cgroups);
    const int64_t tasks = (int64_t)tgroups * ranges * cgroups;
    const int64_t wsize = (int64_t)g.c_in * g.c_out;
    double *partial = scratch<double, 10>(taps * ranges * wsize);  // [tap][range][ci][co]
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
        float *xa = scratch<float, 11>(direct_x ? kChunk * kMR : kChunk * lda);
        float *dyc = g.c_out % kNR == 0 ? nullptr : scratch<float, 12>(kChunk * ldc);
        const auto part_of = [&](int t) { return partial + ((int64_t)t * ranges + rg) * wsize; };
        for (int t = t_begin; t < t_end; ++t) zero_partial(part_of(t), c0, c1, g.c_out);
        float acc[2 * kMR * 2 * kNR];
        Run runs[kChunk];
        const int64_t ldx = (int64_t)g.stride * g.c_in;
        // in place (direct_x) when the group has at least kMR channels: the tiles cover [0, width), the last one
        // ending at width and overlapping the one before (its rows already stored are computed again, not stored:
        // no read passes a row's end and no copy is made); else the group is gathered (zero padded to kMR)
        const int64_t full = direct_x ? (width >= kMR ? width : 0) : lda;
        const bool in_place = direct_x && full == width;
        const int64_t q_end = std::min(P, (rg + 1) * kRange);
        for (int64_t q0 = rg * kRange; q0 < q_end; q0 += kChunk) {
            const int64_t count = std::min(kChunk, q_end - q0);
            int64_t ldb;
            const float *dyb = chunk_dy(g, dy, q0, count, ldc, dyc, &ldb);
            for (int t = t_begin; t < t_end; ++t) {
                const int kh = t / g.k, kw = t % g.k;
                double *part = part_of(t);
                PixelCursor o(g.h_out, g.w_out, q0);
                int64_t nruns = 0;
                if (direct_x) {
                    // output columns whose tap column kw lands inside the image: [ow_lo, ow_hi)
                    const int64_t ow_lo = std::min<int64_t>(g.w_out, ceil_div(std::max(0, g.pad_left - kw), g.stride));
                    const int64_t ow_hi =
                        std::min<int64_t>(g.w_out, ceil_div(std::max(0, g.w + g.pad_left - kw), g.stride));
                    // one run per output row segment of the chunk: the pixels whose tap lands inside the image
                    for (int64_t q = 0; q < count;) {
                        const int64_t seg = std::min(count - q, (int64_t)g.w_out - o.j);
                        const int64_t ih = o.i * g.stride - g.pad_top + kh;
                        const int64_t lo = std::max(o.j, ow_lo), hi = std::min(o.j + seg, ow_hi);
                        if (ih >= 0 && ih < g.h && lo < hi) {
                            const float *row = x + ((o.b * g.h + ih) * g.w + lo * g.stride - g.pad_left + kw) * g.c_in;
                            const int64_t rq = q + (lo - o.j);
                            Run *last = nruns ? &runs[nruns - 1] : nullptr;
                            if (last && last->q + last->n == rq && last->x + last->n * ldx == row) last->n += hi - lo;
                            else runs[nruns++] = Run{rq, hi - lo, row};
                        }
                        q += seg;
                        o.advance(seg);
                    }
                    // a group of fewer than kMR channels: gathered, zero rows outside the image
                    if (full < width) gather_narrow(runs, nruns, count, ldx, c0 + full, width - full, xa);
                } else {
                    for (int64_t q = 0; q < count; ++q, o.advance()) {
                        const float *row =
                            x_row(g, x, o.b, o.i * g.stride - g.pad_top + kh, o.j * g.stride - g.pad_left + kw);
                        float *dst = xa + q * lda;
                        if (row) std::memcpy(dst, row + c0, (size_t)width * sizeof(float));
                        else std::memset(dst, 0, (size_t)width * sizeof(float));
                        for (int64_t c = width; c < lda; ++c) dst[c] = 0.0f;
                    }
                }
                for (int64_t r0 = 0; r0 < width;) {
                    // tile: channels [s0, s0 + h) computed, [r0, end) stored; 12 rows at once where the CPU has
                    // the registers for it. Every element keeps its summation order whatever the tile.
                    int64_t s0 = r0;
                    int h = kMR;
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
                        const float *dyp = dyb + (int64_t)p * kNR;
                        // (in place, zero rows (taps in the padding) are skipped: they add nothing to a finite sum)
                        if (in_place && h == 2 * kMR && w == 2 * kNR) {
                            std::fill(acc, acc + h * w, 0.0f);
                            dw_kernel_4(runs, nruns, c0 + s0, ldx, dyp, ldb, acc);
                        } else if (in_place && h == 2 * kMR) {
                            dw_panels(runs, nruns, c0 + s0, ldx, dyp, ldb, w, acc);
                            dw_panels(runs, nruns, c0 + s0 + kMR, ldx, dyp, ldb, w, acc + kMR * w);
                        } else if (in_place) {
                            dw_panels(runs, nruns, c0 + s0, ldx, dyp, ldb, w, acc);
                        } else {
                            const Run all{0, count, direct_x ? xa : xa + r0};
                            dw_panels(&all, 1, 0, direct_x ? kMR : lda, dyp, ldb, w, acc);
                        }
                        add_tile(part + c0 * g.c_out, g.c_out, p, w, r0, end, s0, acc);
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
D4J_CLONES void db_sum(const Geom &g, const float *dy, float *dbias) {
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

}  // namespace d4j::cpu::conv
