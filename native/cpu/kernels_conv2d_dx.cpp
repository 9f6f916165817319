// conv2d input-gradient (dX) paths (the algorithm and the choice of path: kernels_conv2d.cpp).
#include "conv2d_tiles.h"

namespace d4j::cpu::conv {

// Upsample2x, stride 1, by the phases of forward_upsample: stored pixel (i, j) is read by output
// (2(i - dh0 - u) + a, 2(j - dw0 - v) + b) through combined tap (u, v) of phase (a, b): 16 segments per
// tile instead of 4 children x 9 taps.
void dx_upsample(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx) {
    const int panels = (int)ceil_div(g.c_in, kNR);
    const int64_t slab = (int64_t)g.c_out * kNR;
    UpPhase ph[4];
    for (int q = 0; q < 4; ++q) ph[q] = up_phase(g, q);
    // packed[phase][panel][u*nw + v][co][j]: the combined taps' weights, transposed
    thread_local std::vector<float> packed_ws;
    const int64_t phase_size = (int64_t)panels * 4 * slab;
    if ((int64_t)packed_ws.size() < 4 * phase_size) packed_ws.resize((size_t)(4 * phase_size));
    float *packed = packed_ws.data();
    pack_phase_panels(pool, g, TapMatrix{weight, g.c_out, g.c_in, 1, g.c_out}, packed);
    const float *zero = zero_row(g.c_out);
    const int64_t M = (int64_t)g.n * g.h * g.w;
    const int64_t tiles = ceil_div(M, kMR);
    const TilePlan plan(tiles, panels);
    int segs = 0;
    int seg_phase[16], seg_tap[16];
    for (int q = 0; q < 4; ++q)
        for (int t = 0; t < ph[q].taps(); ++t) {
            seg_phase[segs] = q;
            seg_tap[segs++] = t;
        }
    const auto slab_of = [&](int pn, int s) {
        return packed + seg_phase[s] * phase_size + ((int64_t)pn * 4 + seg_tap[s]) * slab;
    };
    run_tasks(pool, plan.tasks(tiles), work_of(M, (int64_t)segs * g.c_out, g.c_in), [&](int64_t task) {
        const float *rows[16 * kMR];
        int64_t dst_of[kMR];
        const TilePlan::Span sp = plan.span(task, tiles);
        walk_tiles(
            sp, g.h, g.w, M,
            [&](int r, const PixelCursor &o, int64_t m, bool inside) {
                dst_of[r] = inside ? m * g.c_in : -1;
                for (int s = 0; s < segs; ++s) {
                    const UpPhase &p = ph[seg_phase[s]];
                    const int u = seg_tap[s] / p.nw, v = seg_tap[s] % p.nw;
                    const int64_t oh = 2 * (o.i - p.dh0 - u) + p.a, ow = 2 * (o.j - p.dw0 - v) + p.b;
                    const bool ok = inside && oh >= 0 && oh < g.h_out && ow >= 0 && ow < g.w_out;
                    rows[s * kMR + r] = ok ? dy + ((o.b * g.h_out + oh) * g.w_out + ow) * g.c_out : zero;
                }
            },
            [&] { tile_panels(segs, rows, g.c_out, kNR, sp.p_begin, sp.p_end, g.c_in, slab_of, dst_of, dx, nullptr); });
    });
}

// C_in = 1: dx[m] = sum over (child, tap) reaching it of dy_row . weight[tap][0][:].
void dx_single(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx) {
    const int taps = g.k * g.k;
    const int children = g.upsample2x ? 4 : 1;
    const int64_t M = (int64_t)g.n * g.h * g.w;
    const auto gather = [&](const PixelCursor &o, const float **rows, const float **ws) {
        int n = 0;
        for (int c = 0; c < children; ++c)
            for (int t = 0; t < taps; ++t) {
                const int64_t ih = g.upsample2x ? 2 * o.i + c / 2 : o.i, iw = g.upsample2x ? 2 * o.j + c % 2 : o.j;
                const float *p = dy_row(g, dy, o.b, ih - t / g.k, iw - t % g.k);
                if (p) {
                    rows[n] = p;
                    ws[n] = weight + (int64_t)t * g.c_out;
                    ++n;
                }
            }
        return n;
    };
    dot_per_pixel(pool, M, g.h, g.w, work_of(M, (int64_t)taps * children * g.c_out, 1), g.c_out, gather,
                  [&](int64_t m, float v) { dx[m] = v; });
}

// dx[b, i, j, :] = sum over (child, tap) of dy[b, oh, ow, :] . weight[tap]^T
// where the conv-input position (2i + child/2, 2j + child%2) (or (i, j)) was
// read by output (oh, ow) through tap.
//
// With stride s > 1 (no upsampling) input pixel (ih, iw) is reached only by the taps with
// (ih + pad_top - kh) % s == 0 and (iw + pad_left - kw) % s == 0: the pixels are split into the s x s
// classes (ih % s, iw % s), and each class is tiled separately with its own taps (a 3x3 stride-2 conv: 1, 2,
// 2 or 4 of the 9). A skipped tap would only have added zero rows: a finite result keeps its bits.
void dx_tiled(ThreadPool &pool, const Geom &g, const float *weight, const float *dy, float *dx) {
    const int taps = g.k * g.k;
    const int children = g.upsample2x ? 4 : 1;
    const int panels = (int)ceil_div(g.c_in, kNR);
    const int64_t slab = (int64_t)g.c_out * kNR;
    // packed[p][tap][co][j] = weight[tap][p*kNR + j][co], zero beyond c_in
    thread_local std::vector<float> packed_ws;
    if ((int64_t)packed_ws.size() < panels * taps * slab) packed_ws.resize((size_t)(panels * taps * slab));
    float *packed = packed_ws.data();
    pack_panels(TapMatrix{weight, g.c_out, g.c_in, 1, g.c_out}, taps, packed);
    const float *zero = zero_row(g.c_out);
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
    const TilePlan plan(all_tiles, panels);
    int64_t tasks = 0;
    for (Class &c : cls) {
        c.task0 = tasks;
        tasks += plan.tasks(c.tiles);
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
        const float *rows[kMaxSegs * kMR];
        int seg_tap[kMaxSegs];
        int64_t dst_of[kMR];
        float ga[kMR * kGatherMax];
        size_t ci = 0;
        while (ci + 1 < cls.size() && task >= cls[ci + 1].task0) ++ci;
        const Class &c = cls[ci];
        const TilePlan::Span sp = plan.span(task - c.task0, c.tiles);
        const auto slab_of = [&](int p, int s) { return packed + ((int64_t)p * taps + seg_tap[s]) * slab; };
        for (int s = 0; s < children * c.ntaps; ++s) seg_tap[s] = c.tap[s % c.ntaps];
        // Segments are (child, tap) pairs in a fixed order; a pair no row of the
        // tile reaches is still kept (with zero rows) so the order never depends on the tile.
        const auto row = [&](int r, const PixelCursor &o, int64_t, bool inside) {
            const int64_t ih = o.i * es + c.ph, iw = o.j * es + c.pw;
            dst_of[r] = inside ? ((o.b * g.h + ih) * g.w + iw) * g.c_in : -1;
            // every tap of the class reaches an output (ih + pad - kh is a multiple of es for the class's taps)
            const int64_t hn = ih + g.pad_top, wn = iw + g.pad_left;
            if (inside && !g.upsample2x && c.ntaps > 0 && hn - c.khmax >= 0 && wn - c.kwmax >= 0 &&
                hn - c.khmin < (int64_t)g.h_out * es && wn - c.kwmin < (int64_t)g.w_out * es) {
                const float *base = dy + ((o.b * g.h_out + (hn - c.khmax) / es) * g.w_out + (wn - c.kwmax) / es) * g.c_out;
                for (int u = 0; u < c.ntaps; ++u) rows[u * kMR + r] = base + c.off[u];
                return;
            }
            int s = 0;
            for (int ch = 0; ch < children; ++ch) {
                const int64_t uh = g.upsample2x ? 2 * ih + ch / 2 : ih, uw = g.upsample2x ? 2 * iw + ch % 2 : iw;
                for (int u = 0; u < c.ntaps; ++u, ++s) {
                    const float *p = inside ? dy_row(g, dy, o.b, uh - tap_h[c.tap[u]], uw - tap_w[c.tap[u]]) : nullptr;
                    rows[s * kMR + r] = p ? p : zero;
                }
            }
        };
        walk_tiles(sp, c.hc, c.wc, c.m, row, [&] {
            if (gather) {
                gather_segments(rows, taps, g.c_out, ga);
                tile_panels(1, rows, K, kNR, sp.p_begin, sp.p_end, g.c_in, slab_of, dst_of, dx, nullptr);
            } else {
                tile_panels(children * c.ntaps, rows, g.c_out, kNR, sp.p_begin, sp.p_end, g.c_in, slab_of, dst_of, dx,
                            nullptr);
            }
        });
    });
}

}  // namespace d4j::cpu::conv
