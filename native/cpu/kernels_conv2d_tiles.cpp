// The conv2d micro-kernels (declared and described in conv2d_tiles.h): each tile shape is one
// instance of a register-tile template, compiled once per SIMD width (D4J_CLONES); and the weight
// packing shared by forward and dX. Built with -falign-loops=32 (native/CMakeLists.txt): the speed of the
// inner loops must not depend on where unrelated code edits happen to place them.
#include "conv2d_tiles.h"

#include <type_traits>

namespace d4j::cpu::conv {

namespace {

constexpr int kPrefetchRows = 24;

// The forward / dX tile: kMR rows x P panels, rows[s*kMR + r][k] broadcast against row k of slab p of segment s.
template <int P>
D4J_CONV_INLINE void gemm_tile(int segs, const float *const *rows, const float *const *const (&slabs)[P], int kc,
                               int64_t ld, float *out) {
    AccTile<kMR, P> acc;
    acc.zero();
    for (int s = 0; s < segs; ++s) {
        const float *const *rr = rows + (int64_t)s * kMR;
        const float *r[kMR];
#pragma GCC unroll 6
        for (int i = 0; i < kMR; ++i) r[i] = rr[i];
        const float *b[P];
#pragma GCC unroll 2
        for (int p = 0; p < P; ++p) b[p] = slabs[p][s];
        // Slabs read in place from the weight tensor (ld > kNR): one 64-byte line per row, rows ld floats apart,
        // often the first touch of those lines since the weights were loaded (batch 1: each is read a few times
        // only). The hardware prefetchers follow such strides poorly, so the rows kPrefetchRows ahead are requested;
        // packed slabs (ld == kNR) are contiguous and need no help. The loop is compiled once for each case.
        const auto rows_of_slabs = [&](auto prefetch) {
            for (int k = 0; k < kc; ++k) {
                vrow v[P];
#pragma GCC unroll 2
                for (int p = 0; p < P; ++p) {
                    if constexpr (decltype(prefetch)::value) __builtin_prefetch(b[p] + (int64_t)(k + kPrefetchRows) * ld);
                    load_row(v[p], b[p] + (int64_t)k * ld);
                }
                acc.madd([&](int i) { return r[i][k]; }, v);
            }
        };
        if (ld == kNR) rows_of_slabs(std::false_type{});
        else rows_of_slabs(std::true_type{});
    }
    acc.store(out);
}

// The dW tile: R channel rows x P panels, added onto out (see dw_kernel_1 in conv2d_tiles.h).
template <int R, int P>
D4J_CONV_INLINE void dw_tile(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0,
                             int64_t ldb, float *out) {
    AccTile<R, P> acc;
    acc.load(out);
    for (int64_t u = 0; u < nruns; ++u) {
        const float *xa = runs[u].x + xoff, *dyb = dyb0 + runs[u].q * ldb;
        for (int64_t q = 0; q < runs[u].n; ++q) {
            const float *x = xa + q * lda;
            vrow d[P];
#pragma GCC unroll 2
            for (int p = 0; p < P; ++p) load_row(d[p], dyb + q * ldb + p * kNR);
            acc.madd([&](int i) { return x[i]; }, d);
        }
    }
    acc.store(out);
}

inline void accumulate_row(const float *r, const float *w, int full, int tail, vrow &a0, vrow &a1) {
    int c = 0;
    for (; c + 2 * kNR <= full; c += 2 * kNR) {
        vrow x0, w0, x1, w1;
        load_row(x0, r + c);
        load_row(w0, w + c);
        load_row(x1, r + c + kNR);
        load_row(w1, w + c + kNR);
        a0 += x0 * w0;
        a1 += x1 * w1;
    }
    if (c < full) {
        vrow x0, w0;
        load_row(x0, r + c);
        load_row(w0, w + c);
        a0 += x0 * w0;
    }
    if (tail) {
        vrow x1 = {}, w1 = {};
        std::memcpy(&x1, r + full, (size_t)tail * sizeof(float));
        std::memcpy(&w1, w + full, (size_t)tail * sizeof(float));
        a1 += x1 * w1;
    }
}

}  // namespace

D4J_CLONES void micro_kernel(int segs, const float *const *rows, const float *const *slabs, int kc, int64_t ld,
                             float *out) {
    const float *const *panels[1] = {slabs};
    gemm_tile<1>(segs, rows, panels, kc, ld, out);
}

D4J_CLONES void micro_kernel_2(int segs, const float *const *rows, const float *const *slabs,
                               const float *const *slabs2, int kc, int64_t ld, float *out) {
    const float *const *panels[2] = {slabs, slabs2};
    gemm_tile<2>(segs, rows, panels, kc, ld, out);
}

D4J_CLONES void dw_kernel_1(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0,
                            int64_t ldb, float *out) {
    dw_tile<kMR, 1>(runs, nruns, xoff, lda, dyb0, ldb, out);
}

D4J_CLONES void dw_kernel_2(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0,
                            int64_t ldb, float *out) {
    dw_tile<kMR, 2>(runs, nruns, xoff, lda, dyb0, ldb, out);
}

D4J_CLONES void dw_kernel_4(const Run *runs, int64_t nruns, int64_t xoff, int64_t lda, const float *dyb0,
                            int64_t ldb, float *out) {
    dw_tile<2 * kMR, 2>(runs, nruns, xoff, lda, dyb0, ldb, out);
}

// Element c of a row goes to lane c % kNR of one of four accumulators (by row parity and by kNR-block
// parity); the accumulators and then the lanes are added in a fixed order.
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

D4J_CLONES void axpy_rows(int64_t n, const float *const *rows, const float *d, int len, float *acc) {
    int c = 0;
    for (; c + 2 * kNR <= len; c += 2 * kNR) {
        vrow a0 = {}, a1 = {};
        for (int64_t i = 0; i < n; ++i) {
            vrow x0, x1;
            load_row(x0, rows[i] + c);
            load_row(x1, rows[i] + c + kNR);
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
            load_row(x0, rows[i] + c);
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

void pack_panels(const TapMatrix &w, int taps, float *packed) {
    const int panels = (int)ceil_div(w.N, kNR);
    const int64_t slab = (int64_t)w.K * kNR;
    for (int p = 0; p < panels; ++p) {
        const int cols = std::min(kNR, w.N - p * kNR);
        for (int t = 0; t < taps; ++t) {
            float *dst = packed + ((int64_t)p * taps + t) * slab;
            const float *src = w.weight + (int64_t)t * w.K * w.N + (int64_t)p * kNR * w.sn;
            // the source read in its memory order: by rows k (forward) or by columns j (dX, transposed)
            if (w.sn == 1) {
                for (int k = 0; k < w.K; ++k)
                    for (int j = 0; j < cols; ++j) dst[(int64_t)k * kNR + j] = src[k * w.sk + j];
            } else {
                for (int j = 0; j < cols; ++j)
                    for (int k = 0; k < w.K; ++k) dst[(int64_t)k * kNR + j] = src[j * w.sn + k * w.sk];
            }
            for (int k = 0; k < w.K; ++k)
                for (int j = cols; j < kNR; ++j) dst[(int64_t)k * kNR + j] = 0.0f;
        }
    }
}

void pack_phase_panels(ThreadPool &pool, const Geom &g, const TapMatrix &w, float *packed) {
    const int panels = (int)ceil_div(w.N, kNR);
    const int64_t slab = (int64_t)w.K * kNR, phase_size = (int64_t)panels * 4 * slab;
    run_tasks(pool, 4 * panels, 4 * panels * slab * g.k, [&](int64_t task) {
        const int q = (int)(task / panels), pn = (int)(task % panels);
        const UpPhase ph = up_phase(g, q);
        const int cols = std::min(kNR, w.N - pn * kNR);
        float *dst0 = packed + q * phase_size + (int64_t)pn * 4 * slab;
        for (int u = 0; u < ph.nh; ++u)
            for (int v = 0; v < ph.nw; ++v) {
                float *dst = dst0 + (int64_t)(u * ph.nw + v) * slab;
                for (int64_t e = 0; e < slab; ++e) dst[e] = 0.0f;
                for (int kh = 0; kh < g.k; ++kh) {
                    if (floor_half(ph.a - g.pad_top + kh) != ph.dh0 + u) continue;
                    for (int kw = 0; kw < g.k; ++kw) {
                        if (floor_half(ph.b - g.pad_left + kw) != ph.dw0 + v) continue;
                        const int t = kh * g.k + kw;
                        for (int k = 0; k < w.K; ++k)
                            for (int j = 0; j < cols; ++j) dst[(int64_t)k * kNR + j] += w.at(t, k, pn * kNR + j);
                    }
                }
            }
    });
}

}  // namespace d4j::cpu::conv
