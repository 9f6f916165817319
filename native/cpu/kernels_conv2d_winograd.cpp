// conv2d forward by Winograd's minimal filtering F(m x m, 3 x 3), m = 2 or 4 (the choice of path and tile:
// kernels_conv2d.cpp): a 3 x 3, stride-1, "same" convolution computes each m x m block of outputs from the
// a x a input patch around it (a = m + 2) as
//     Y = A^T [ sum over ci of (G g G^T) .* (B^T d B) ] A
// so the 9 C_in C_out multiply-adds per output pixel of the direct method become a^2 / m^2 C_in C_out: 4 (F(2x2),
// 2.25x fewer) or 2.25 (F(4x4), 4x fewer), plus transforms that cost O(C_in + C_out) per pixel. The sum over ci is
// a^2 independent GEMMs, one per point p of the transformed tile: M_p[tile][co] = V_p[tile][:] . U_p[:][co], run
// by the micro-kernels of forward_tiled. Per chunk of tiles (V and M bounded to a few MiB), three parallel regions:
//   1. V = B^T d B for every (tile, ci): V[p][tile][ci];
//   2. the GEMMs into M[p][tile][co], with U = G g G^T packed per point into kNR-column panels, either transformed
//      once per call for all tasks or by each task for its own pair of output panels (see forward_winograd);
//   3. Y = A^T M A plus bias, written to the outputs that exist (odd sizes: the last tile row / column computes
//      outputs beyond the image, which are dropped).
//
// Bits: every transform is a fixed sequence of float operations vectorised across 16 channels; each GEMM element
// sums ci in order. So an output depends only on its own image's input patches and the weights: the same bits
// whatever the batch, the chunking, the sharing of U or the number of threads, and on every SIMD width (no
// contraction into FMA).
//
// Rounding: the transforms mix up to 4 (F(2x2)) or 16 (F(4x4)) inputs, 9 weights and the products' sums again
// before and after the C_in-term sum, with coefficients up to 8 and 1/6 (itself rounded) for F(4x4), so the
// error is bounded in terms of the transformed operands' magnitudes rather than sum |x| |w|: see
// WinogradConvTest. Measured on random data it stays within a few u of sum |x| |w| for F(2x2) and a few tens of
// u for F(4x4) (the direct method: about 1-3 u).
#include "conv2d_tiles.h"

namespace d4j::cpu::conv {

namespace {

constexpr int64_t kChunkBytes = 4 << 20;    // V + M of one chunk of tiles
constexpr int64_t kTransformTiles = 16;     // tiles per task of the input / output transforms
constexpr int64_t kSharedUBytes = 2 << 20;
constexpr int kWeightPrefetch = 8;          // input channels ahead in the weight transform  // transformed weights up to this size are shared by all tasks

// The distance between the points' matrices in U, V and M: n floats rounded up to an odd number of 64-byte
// lines. A transform writes (or reads) all a * a points of a tile at once; at a power-of-two distance those
// streams would all fall into the same cache sets and evict each other.
inline int64_t spaced(int64_t n) {
    int64_t lines = ceil_div(n, 16);
    return (lines | 1) * 16;
}

// n <= kNR floats of src into v (the rest zero) / of v into dst.
D4J_CONV_INLINE void load_part(vrow &v, const float *src, int n) {
    if (n == kNR) {
        load_row(v, src);
    } else {
        float t[kNR] = {};
        std::memcpy(t, src, (size_t)n * sizeof(float));
        std::memcpy(&v, t, sizeof(vrow));
    }
}
D4J_CONV_INLINE void store_part(float *dst, const vrow &v, int n) {
    if (n == kNR) {
        store_row(dst, v);
    } else {
        float t[kNR];
        std::memcpy(t, &v, sizeof(vrow));
        std::memcpy(dst, t, (size_t)n * sizeof(float));
    }
}

// The one-dimensional transforms of F(m, 3), tile size a = m + 2; the two-dimensional ones apply them along
// columns, then rows. Each is a fixed sequence of float operations (multiplications by powers of two are exact).
//   F(2, 3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//            A^T = [1 1 1 0; 0 1 -1 -1]
//   F(4, 3): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//            G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
//            A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
struct F2 {
    static constexpr int m = 2, a = 4;
    static D4J_CONV_INLINE void in(const vrow (&d)[a], vrow (&v)[a]) {
        v[0] = d[0] - d[2];
        v[1] = d[1] + d[2];
        v[2] = d[2] - d[1];
        v[3] = d[1] - d[3];
    }
    static D4J_CONV_INLINE void wt(const vrow (&k)[3], vrow (&u)[a]) {
        const vrow half = vrow{} + (0.5f);
        u[0] = k[0];
        u[1] = ((k[0] + k[1]) + k[2]) * half;
        u[2] = ((k[0] - k[1]) + k[2]) * half;
        u[3] = k[2];
    }
    static D4J_CONV_INLINE void out(const vrow (&q)[a], vrow (&y)[m]) {
        y[0] = (q[0] + q[1]) + q[2];
        y[1] = (q[1] - q[2]) - q[3];
    }
};

struct F4 {
    static constexpr int m = 4, a = 6;
    static D4J_CONV_INLINE void in(const vrow (&d)[a], vrow (&v)[a]) {
        const vrow four = vrow{} + (4.0f), five = vrow{} + (5.0f), two = vrow{} + (2.0f);
        const vrow t0 = d[4] - d[2] * four, t1 = d[3] - d[1] * four;
        const vrow t2 = d[4] - d[2], t3 = (d[3] - d[1]) * two;
        v[0] = (d[0] * four - d[2] * five) + d[4];
        v[1] = t0 + t1;
        v[2] = t0 - t1;
        v[3] = t2 + t3;
        v[4] = t2 - t3;
        v[5] = (d[1] * four - d[3] * five) + d[5];
    }
    static D4J_CONV_INLINE void wt(const vrow (&k)[3], vrow (&u)[a]) {
        const vrow quarter = vrow{} + (0.25f), half = vrow{} + (0.5f), sixth = vrow{} + (1.0f / 6.0f);
        const vrow s = k[0] + k[2], q = k[0] * quarter + k[2];
        u[0] = k[0] * quarter;
        u[1] = (s + k[1]) * (-sixth);
        u[2] = (s - k[1]) * (-sixth);
        u[3] = (q + k[1] * half) * sixth;
        u[4] = (q - k[1] * half) * sixth;
        u[5] = k[2];
    }
    static D4J_CONV_INLINE void out(const vrow (&q)[a], vrow (&y)[m]) {
        const vrow two = vrow{} + (2.0f), four = vrow{} + (4.0f), eight = vrow{} + (8.0f);
        const vrow s12 = q[1] + q[2], d12 = q[1] - q[2], s34 = q[3] + q[4], d34 = q[3] - q[4];
        y[0] = (q[0] + s12) + s34;
        y[1] = d12 + d34 * two;
        y[2] = s12 + s34 * four;
        y[3] = (d12 + d34 * eight) + q[5];
    }
};

// U of output panel pn (columns pn * kNR ...) for input channels [ci_begin, ci_end), into slot `slot`:
// u[p][slot][ci][j], zero beyond C_out.
template <class F>
D4J_CONV_INLINE void weight_transform(const Geom &g, const float *weight, int pn, int slot, int ci_begin, int ci_end,
                                      int64_t point_stride, float *u) {
    constexpr int a = F::a;
    const int cols = std::min(kNR, g.c_out - pn * kNR);
    const int64_t tap_stride = (int64_t)g.c_in * g.c_out;
    for (int ci = ci_begin; ci < ci_end; ++ci) {
        const float *w0 = weight + (int64_t)ci * g.c_out + (int64_t)pn * kNR;
        // the weights are read once per call, a 64-byte line of each of 9 rows per channel, usually from memory:
        // request the lines of a channel kWeightPrefetch ahead (the hardware prefetchers follow this poorly)
        if (ci + kWeightPrefetch < ci_end)
            for (int t = 0; t < 9; ++t) __builtin_prefetch(w0 + kWeightPrefetch * (int64_t)g.c_out + t * tap_stride);
        vrow k[3][3];
        for (int t = 0; t < 9; ++t) load_part(k[t / 3][t % 3], w0 + t * tap_stride, cols);
        vrow gk[a][3];  // G k
        for (int c = 0; c < 3; ++c) {
            const vrow col[3] = {k[0][c], k[1][c], k[2][c]};
            vrow o[a];
            F::wt(col, o);
            for (int r = 0; r < a; ++r) gk[r][c] = o[r];
        }
        float *dst = u + ((int64_t)slot * g.c_in + ci) * kNR;
        for (int r = 0; r < a; ++r) {  // (G k) G^T
            const vrow row[3] = {gk[r][0], gk[r][1], gk[r][2]};
            vrow o[a];
            F::wt(row, o);
            for (int c = 0; c < a; ++c) store_row(dst + (r * a + c) * point_stride, o[c]);
        }
    }
}

// V for tiles [t_begin, t_end) of the chunk starting at tile t0: v[p][t - t0][ci].
template <class F>
D4J_CONV_INLINE void input_transform(const Geom &g, const float *x, int64_t th, int64_t tw, int64_t t0,
                                     int64_t t_begin, int64_t t_end, int64_t point_stride, float *v) {
    constexpr int a = F::a, m = F::m;
    for (int64_t t = t_begin; t < t_end; ++t) {
        const int64_t b = t / (th * tw), ti = t / tw % th, tj = t % tw;
        const float *rows[a][a];
        for (int r = 0; r < a; ++r)
            for (int c = 0; c < a; ++c) {
                const int64_t ih = m * ti - 1 + r, iw = m * tj - 1 + c;
                rows[r][c] = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w ? x + ((b * g.h + ih) * g.w + iw) * g.c_in
                                                                        : nullptr;
            }
        float *dst0 = v + (t - t0) * g.c_in;
        for (int c0 = 0; c0 < g.c_in; c0 += kNR) {
            const int n = std::min(kNR, g.c_in - c0);
            vrow e[a][a];  // B^T d
            for (int c = 0; c < a; ++c) {
                vrow col[a], o[a];
                for (int r = 0; r < a; ++r) {
                    if (rows[r][c]) load_part(col[r], rows[r][c] + c0, n);
                    else col[r] = vrow{};
                }
                F::in(col, o);
                for (int r = 0; r < a; ++r) e[r][c] = o[r];
            }
            for (int r = 0; r < a; ++r) {  // (B^T d) B
                vrow o[a];
                F::in(e[r], o);
                for (int c = 0; c < a; ++c) store_part(dst0 + (r * a + c) * point_stride + c0, o[c], n);
            }
        }
    }
}

// Y = A^T M A + bias for tiles [t_begin, t_end) of the chunk starting at tile t0, from m[p][t - t0][co].
template <class F>
D4J_CONV_INLINE void output_transform(const Geom &g, const float *mm, const float *bias, int64_t th, int64_t tw,
                                      int64_t t0, int64_t t_begin, int64_t t_end, int64_t point_stride, float *y) {
    constexpr int a = F::a, m = F::m;
    for (int64_t t = t_begin; t < t_end; ++t) {
        const int64_t b = t / (th * tw), ti = t / tw % th, tj = t % tw;
        const int rows_out = (int)std::min<int64_t>(m, g.h_out - m * ti);
        const int cols_out = (int)std::min<int64_t>(m, g.w_out - m * tj);
        float *out0 = y + ((b * g.h_out + m * ti) * g.w_out + m * tj) * g.c_out;
        const float *src0 = mm + (t - t0) * g.c_out;
        for (int c0 = 0; c0 < g.c_out; c0 += kNR) {
            const int n = std::min(kNR, g.c_out - c0);
            vrow s[m][a];  // A^T q
            for (int c = 0; c < a; ++c) {
                vrow col[a], o[m];
                for (int r = 0; r < a; ++r) load_part(col[r], src0 + (r * a + c) * point_stride + c0, n);
                F::out(col, o);
                for (int r = 0; r < m; ++r) s[r][c] = o[r];
            }
            vrow bv = vrow{};
            if (bias) load_part(bv, bias + c0, n);
            for (int r = 0; r < rows_out; ++r) {  // (A^T q) A, plus bias
                vrow o[m];
                F::out(s[r], o);
                for (int c = 0; c < cols_out; ++c)
                    store_part(out0 + ((int64_t)r * g.w_out + c) * g.c_out + c0, o[c] + bv, n);
            }
        }
    }
}

// One body per SIMD width (D4J_CLONES) for each transform and tile size.
D4J_CLONES void weight_transform_f2(const Geom &g, const float *w, int pn, int slot, int cb, int ce, int64_t ps,
                                    float *u) {
    weight_transform<F2>(g, w, pn, slot, cb, ce, ps, u);
}
D4J_CLONES void weight_transform_f4(const Geom &g, const float *w, int pn, int slot, int cb, int ce, int64_t ps,
                                    float *u) {
    weight_transform<F4>(g, w, pn, slot, cb, ce, ps, u);
}
D4J_CLONES void input_transform_f2(const Geom &g, const float *x, int64_t th, int64_t tw, int64_t t0, int64_t tb,
                                   int64_t te, int64_t ps, float *v) {
    input_transform<F2>(g, x, th, tw, t0, tb, te, ps, v);
}
D4J_CLONES void input_transform_f4(const Geom &g, const float *x, int64_t th, int64_t tw, int64_t t0, int64_t tb,
                                   int64_t te, int64_t ps, float *v) {
    input_transform<F4>(g, x, th, tw, t0, tb, te, ps, v);
}
D4J_CLONES void output_transform_f2(const Geom &g, const float *mm, const float *bias, int64_t th, int64_t tw,
                                    int64_t t0, int64_t tb, int64_t te, int64_t ps, float *y) {
    output_transform<F2>(g, mm, bias, th, tw, t0, tb, te, ps, y);
}
D4J_CLONES void output_transform_f4(const Geom &g, const float *mm, const float *bias, int64_t th, int64_t tw,
                                    int64_t t0, int64_t tb, int64_t te, int64_t ps, float *y) {
    output_transform<F4>(g, mm, bias, th, tw, t0, tb, te, ps, y);
}

// M_p rows [rt_begin * kMR, rt_end * kMR) (clipped to nt) for output panels [p_begin, p_end): V_p rows times the
// panels' slabs of U_p.
template <class SlabOf>
void point_gemm(const Geom &g, const float *vp, const float *zero, int64_t nt, int64_t rt_begin, int64_t rt_end,
                int p_begin, int p_end, const SlabOf &slab_of, float *mp) {
    const float *rows[kMR];
    int64_t dst_of[kMR];
    for (int64_t rt = rt_begin; rt < rt_end; ++rt) {
        for (int r = 0; r < kMR; ++r) {
            const int64_t row = rt * kMR + r;
            rows[r] = row < nt ? vp + row * g.c_in : zero;
            dst_of[r] = row < nt ? row * g.c_out : -1;
        }
        tile_panels(1, rows, g.c_in, kNR, p_begin, p_end, g.c_out, slab_of, dst_of, mp, nullptr);
    }
}

}  // namespace

bool winograd_applies(const Geom &g) {
    return g.k == 3 && g.stride == 1 && !g.upsample2x && g.pad_top == 1 && g.pad_left == 1 && g.h_out == g.h &&
           g.w_out == g.w;
}

int64_t winograd_prepared_floats(const Geom &g, int tile) {
    const int64_t a = tile + 2;
    return a * a * spaced(ceil_div(g.c_out, kNR) * g.c_in * kNR);
}

void winograd_prepare(ThreadPool &pool, const Geom &g, int tile, const float *weight, float *u) {
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t us_all = spaced((int64_t)panels * g.c_in * kNR);
    run_tasks(pool, panels, (int64_t)panels * g.c_in * kNR * 9, [&](int64_t pn) {
        if (tile == 4) weight_transform_f4(g, weight, (int)pn, (int)pn, 0, g.c_in, us_all, u);
        else weight_transform_f2(g, weight, (int)pn, (int)pn, 0, g.c_in, us_all, u);
    });
}

void forward_winograd(ThreadPool &pool, const Geom &g, int tile, const float *x, const float *weight,
                      const float *prepared, const float *bias, float *y) {
    const bool f4 = tile == 4;
    const int a = tile + 2, points = a * a;
    const int panels = (int)ceil_div(g.c_out, kNR), pairs = (panels + 1) / 2;
    const int64_t th = ceil_div(g.h_out, tile), tw = ceil_div(g.w_out, tile), tiles = (int64_t)g.n * th * tw;
    const int64_t per_tile = (int64_t)points * (g.c_in + g.c_out) * (int64_t)sizeof(float);
    const int64_t chunk = std::min(tiles, std::max<int64_t>(kMR * 4, kChunkBytes / per_tile / kMR * kMR));
    const int64_t vs = spaced(chunk * g.c_in), ms = spaced(chunk * g.c_out);
    const int64_t us = spaced(2 * (int64_t)g.c_in * kNR);  // one panel pair's U per point
    // U of all the weights, transformed once per call and shared by all tasks, while it is small or the tiles take
    // several chunks (each chunk reuses it). Else (batch 1: each weight serves few tiles) a U of 16/9 or 4x the
    // weights' size would make a round trip through memory: each task transforms the weights of its own panel
    // pair instead (see below). Either way the same values: the choice never changes a bit of the result.
    const int64_t us_all = spaced((int64_t)panels * g.c_in * kNR);
    // Prepared weights (an inference model's U, transformed once when its weights were loaded) are read as the
    // shared U.
    const bool shared_u =
        prepared != nullptr || points * us_all * (int64_t)sizeof(float) <= kSharedUBytes || chunk < tiles;
    const float *u_all = prepared;
    if (shared_u && u_all == nullptr) {
        thread_local std::vector<float> u_all_ws;
        if ((int64_t)u_all_ws.size() < points * us_all) u_all_ws.resize((size_t)(points * us_all));
        winograd_prepare(pool, g, tile, weight, u_all_ws.data());
        u_all = u_all_ws.data();
    }
    // V and M: buffers of the calling thread, reused across calls (no page faults per call)
    thread_local std::vector<float> v_ws, m_ws;
    if ((int64_t)v_ws.size() < points * vs) v_ws.resize((size_t)(points * vs));
    if ((int64_t)m_ws.size() < points * ms) m_ws.resize((size_t)(points * ms));
    float *v = v_ws.data(), *mm = m_ws.data();
    for (int64_t t0 = 0; t0 < tiles; t0 += chunk) {
        const int64_t nt = std::min(chunk, tiles - t0);
        const int64_t groups = ceil_div(nt, kTransformTiles);
        run_tasks(pool, groups, nt * points * g.c_in, [&](int64_t task) {
            const int64_t tb = t0 + task * kTransformTiles, te = std::min(t0 + nt, tb + kTransformTiles);
            if (f4) input_transform_f4(g, x, th, tw, t0, tb, te, vs, v);
            else input_transform_f2(g, x, th, tw, t0, tb, te, vs, v);
        });
        const int64_t row_tiles = ceil_div(nt, kMR);
        const float *zero = zero_row(g.c_in);
        if (shared_u) {
            // tasks: (point, group of row tiles, group of output panels), as forward_tiled
            const TilePlan plan(row_tiles * points, panels);
            const int64_t per_point = plan.tasks(row_tiles);
            run_tasks(pool, points * per_point, work_of(nt * points, g.c_in, g.c_out), [&](int64_t task) {
                const int p = (int)(task / per_point);
                const TilePlan::Span sp = plan.span(task % per_point, row_tiles);
                const float *pu = u_all + p * us_all;
                const auto slab_of = [&](int pn, int) { return pu + (int64_t)pn * g.c_in * kNR; };
                point_gemm(g, v + p * vs, zero, nt, sp.tile_begin, sp.tile_end, sp.p_begin, sp.p_end, slab_of,
                           mm + p * ms);
            });
        } else {
            // One task per pair of output panels: it transforms that pair's weights for every point into a buffer
            // of its own thread (a few hundred KiB, so it stays in the core's cache), then runs the points' GEMMs
            // over the chunk's tiles for that pair.
            run_tasks(pool, pairs, work_of(nt * points, g.c_in, g.c_out), [&](int64_t pair) {
                thread_local std::vector<float> u_ws;
                if ((int64_t)u_ws.size() < points * us) u_ws.resize((size_t)(points * us));
                float *u = u_ws.data();
                const int p_begin = (int)pair * 2, p_end = std::min(panels, p_begin + 2);
                for (int pn = p_begin; pn < p_end; ++pn) {
                    if (f4) weight_transform_f4(g, weight, pn, pn - p_begin, 0, g.c_in, us, u);
                    else weight_transform_f2(g, weight, pn, pn - p_begin, 0, g.c_in, us, u);
                }
                for (int p = 0; p < points; ++p) {
                    const float *pu = u + p * us;
                    const auto slab_of = [&](int pn, int) { return pu + (int64_t)(pn - p_begin) * g.c_in * kNR; };
                    point_gemm(g, v + p * vs, zero, nt, 0, row_tiles, p_begin, p_end, slab_of, mm + p * ms);
                }
            });
        }
        run_tasks(pool, groups, nt * points * g.c_out, [&](int64_t task) {
            const int64_t tb = t0 + task * kTransformTiles, te = std::min(t0 + nt, tb + kTransformTiles);
            if (f4) output_transform_f4(g, mm, bias, th, tw, t0, tb, te, ms, y);
            else output_transform_f2(g, mm, bias, th, tw, t0, tb, te, ms, y);
        });
    }
}

}  // namespace d4j::cpu::conv
