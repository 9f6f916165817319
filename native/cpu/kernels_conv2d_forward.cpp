// conv2d forward paths (the algorithm and the choice of path: kernels_conv2d.cpp).
#include "conv2d_tiles.h"
#include "cpu_teeth.h"

namespace d4j::cpu::conv {

constexpr int64_t kPackMin = 1024;  // forward_tiled packs the weight from this many output pixels

// C_out = 1: y[m] = bias + sum over taps inside the image of x_row . weight[tap][:, 0].
void forward_single(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *bias,
                    float *y) {
    const int taps = g.k * g.k;
    const int64_t M = (int64_t)g.n * g.h_out * g.w_out;
    const auto gather = [&](const PixelCursor &o, const float **rows, const float **ws) {
        int n = 0;
        for (int t = 0; t < taps; ++t) {
            const float *p = x_row(g, x, o.b, o.i * g.stride - g.pad_top + t / g.k, o.j * g.stride - g.pad_left + t % g.k);
            if (p) {
                rows[n] = p;
                ws[n] = weight + (int64_t)t * g.c_in;
                ++n;
            }
        }
        return n;
    };
    dot_per_pixel(pool, M, g.h_out, g.w_out, work_of(M, (int64_t)taps * g.c_in, 1), g.c_in, gather,
                  [&](int64_t m, float v) { y[m] = bias ? v + bias[0] : v; });
}

// Upsample2x, stride 1, by output phase (conv2d_tiles.h, UpPhase): 4 instead of 9 taps per output, 2.25x
// fewer multiply-adds. Tasks are tile groups of one phase.
int64_t upsample_prepared_floats(const Geom &g) { return 4 * ceil_div(g.c_out, kNR) * 4 * (int64_t)g.c_in * kNR; }

void forward_upsample(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *prepared,
                      const float *bias, float *y) {
    const int panels = (int)ceil_div(g.c_out, kNR);
    const int64_t slab = (int64_t)g.c_in * kNR;
    UpPhase ph[4];
    int64_t m_of[4], tiles_of[4], task0[4];
    int64_t all_tiles = 0;
    for (int q = 0; q < 4; ++q) {
        ph[q] = up_phase(g, q);
        m_of[q] = (int64_t)g.n * ph[q].ho * ph[q].wo;
        tiles_of[q] = ceil_div(m_of[q], kMR);
        all_tiles += tiles_of[q];
    }
    // packed[phase][panel][u*nw + v][ci][j]: the combined taps' weights
    const int64_t phase_size = (int64_t)panels * 4 * slab;
    const float *packed = prepared;
    if (packed == nullptr) {
        thread_local std::vector<float> packed_ws;
        if ((int64_t)packed_ws.size() < 4 * phase_size) packed_ws.resize((size_t)(4 * phase_size));
        pack_phase_panels(pool, g, TapMatrix{weight, g.c_in, g.c_out, g.c_out, 1}, packed_ws.data());
        packed = packed_ws.data();
    }
    const float *zero = zero_row(g.c_in);
    const TilePlan plan(all_tiles, panels);
    int64_t tasks = 0;
    for (int q = 0; q < 4; ++q) {
        task0[q] = tasks;
        tasks += plan.tasks(tiles_of[q]);
    }
    run_tasks(pool, tasks, work_of(all_tiles * kMR, 4 * g.c_in, g.c_out), [&](int64_t task) {
        const float *rows[4 * kMR];
        int64_t dst_of[kMR];
        int q = 0;
        while (q + 1 < 4 && task >= task0[q + 1]) ++q;
        const UpPhase &p = ph[q];
        const TilePlan::Span sp = plan.span(task - task0[q], tiles_of[q]);
        const float *base = packed + q * phase_size;
        const auto slab_of = [&](int pn, int t) { return base + ((int64_t)pn * 4 + t) * slab; };
        walk_tiles(
            sp, p.ho, p.wo, m_of[q],
            [&](int r, const PixelCursor &o, int64_t, bool inside) {
                dst_of[r] = inside ? ((o.b * g.h_out + 2 * o.i + p.a) * g.w_out + 2 * o.j + p.b) * g.c_out : -1;
                for (int u = 0; u < p.nh; ++u)
                    for (int v = 0; v < p.nw; ++v) {
                        const int64_t sh = o.i + p.dh0 + u, sw = o.j + p.dw0 + v;
                        const bool ok = inside && sh >= 0 && sh < g.h && sw >= 0 && sw < g.w;
                        rows[(u * p.nw + v) * kMR + r] = ok ? x + ((o.b * g.h + sh) * g.w + sw) * g.c_in : zero;
                    }
            },
            [&] { tile_panels(p.taps(), rows, g.c_in, kNR, sp.p_begin, sp.p_end, g.c_out, slab_of, dst_of, y, bias); });
    });
}

// Tiles of kMR output pixels, one segment per tap (or one gathered segment when taps * C_in is small).
void forward_tiled(ThreadPool &pool, const Geom &g, const float *x, const float *weight, const float *bias,
                   float *y) {
    const int taps = g.k * g.k;
    const int64_t M = (int64_t)g.n * g.h_out * g.w_out;
    const int panels = (int)ceil_div(g.c_out, kNR);
    // The B operand: slab (panel p, tap t) at bbase + p * pstride + t * tstride, its kNR-wide rows ld apart.
    // When c_out is a multiple of kNR and the call is small (packing is serial work of the calling thread
    // while the worker waits; at batch 1 it costs as much as the GEMM) that is the weight itself, rows c_out
    // apart; else packed[p][tap][ci][j] = weight[tap][ci][p*kNR + j], zero beyond c_out (contiguous slabs
    // are faster at large batches, see benchmarks/results/cpu-profile.md), in a per-thread buffer reused
    // across calls (no allocation and page faults per call).
    thread_local std::vector<float> packed_ws;
    const float *bbase = weight;
    int64_t pstride = kNR, tstride = (int64_t)g.c_in * g.c_out, ld = g.c_out;
    if (g.c_out % kNR != 0 || M >= kPackMin) {
        const int64_t slab = (int64_t)g.c_in * kNR;
        if ((int64_t)packed_ws.size() < panels * taps * slab) packed_ws.resize((size_t)(panels * taps * slab));
        pack_panels(TapMatrix{weight, g.c_in, g.c_out, g.c_out, 1}, taps, packed_ws.data());
        bbase = packed_ws.data();
        pstride = taps * slab;
        tstride = slab;
        ld = kNR;
    }
    const float *zero = zero_row(g.c_in);
    const int K = taps * g.c_in;
    const bool gather = taps > 1 && K <= kGatherMax;
    const int64_t tiles = ceil_div(M, kMR);
    const TilePlan plan(tiles, panels);
    int tap_h[9], tap_w[9];
    int64_t tap_off[9];
    for (int t = 0; t < taps; ++t) {
        tap_h[t] = t / g.k;
        tap_w[t] = t % g.k;
        tap_off[t] = ((int64_t)tap_h[t] * g.w + tap_w[t]) * g.c_in;
    }
    const auto slab_of = [&](int p, int t) { return bbase + p * pstride + t * tstride; };
    const int tooth = taps == 9 ? D4J_TOOTH("conv_gather") : 0;
    run_tasks(pool, plan.tasks(tiles), work_of(M, K, g.c_out), [&](int64_t task) {
        const float *rows[9 * kMR];
        int64_t dst_of[kMR];
        float ga[kMR * kGatherMax];
        const TilePlan::Span sp = plan.span(task, tiles);
        const auto row = [&](int r, const PixelCursor &o, int64_t m, bool inside) {
            dst_of[r] = inside ? m * g.c_out : -1;
            const int64_t ih0 = o.i * g.stride - g.pad_top, iw0 = o.j * g.stride - g.pad_left;
            if (inside && !g.upsample2x && ih0 >= 0 && iw0 >= 0 && ih0 + g.k <= g.h && iw0 + g.k <= g.w) {
                // the whole window inside the image: fixed offsets from its corner
                const float *base = x + ((o.b * g.h + ih0) * g.w + iw0) * g.c_in;
                for (int t = 0; t < taps + (r == kMR - 1 ? tooth : 0); ++t) rows[t * kMR + r] = base + tap_off[t];
            } else {
                for (int t = 0; t < taps; ++t) {
                    const float *p = inside ? x_row(g, x, o.b, ih0 + tap_h[t], iw0 + tap_w[t]) : nullptr;
                    rows[t * kMR + r] = p ? p : zero;
                }
            }
        };
        walk_tiles(sp, g.h_out, g.w_out, M, row, [&] {
            if (gather) {
                gather_segments(rows, taps, g.c_in, ga);
                tile_panels(1, rows, K, ld, sp.p_begin, sp.p_end, g.c_out, slab_of, dst_of, y, bias);
            } else {
                tile_panels(taps, rows, g.c_in, ld, sp.p_begin, sp.p_end, g.c_out, slab_of, dst_of, y, bias);
            }
        });
    });
}

}  // namespace d4j::cpu::conv
