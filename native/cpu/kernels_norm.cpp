// The norm family on the CPU: GroupNorm (optionally with the per-sample
// channel bias of the time embedding added first, and SiLU after), SiLU and
// the scaled residual add, forward and backward. Element math is
// native/common/norm_math.h, shared with CUDA, except the sigmoid of SiLU,
// which uses a vectorisable exp here (cpu_silu below).
//
// Layout NHWC: a "row" is the C channels of one pixel, contiguous. Work is cut
// into tasks of whole rows of one sample (rows_per_chunk depends only on C),
// and every loop over a row runs over channels, so the compiler vectorises it
// and per-channel accumulators live in small arrays. Per-(sample, group)
// results are merged from per-(task, channel) partials in a fixed order, so
// results do not depend on the thread count.
//
// Memory passes (E = N*H*W*C floats):
//   forward:  Welford pass reads x (E), normalise pass reads x, writes y (2E;
//             skipped with y == NULL, the statistics only)
//   backward: reduction pass reads dy and x (2E), dx pass reads them again and writes dx (3E)
// The second pass cannot start before the group reductions of the first are
// complete, and a group spans H*W rows: for UNet feature maps (64x64x128 =
// 2 MiB per sample) that is beyond L2, so each pass streams from memory.
// Storing xhat in the forward would cost one more write and read than
// recomputing it from the saved mean/rstd.
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/norm_math.h"
#include "cpu_kernels.h"
#include "exp_poly.h"
#include "rng_fill.h"  // D4J_CLONES

namespace d4j::cpu {

namespace {

// SiLU on the CPU with an exp that vectorises (libm's expf is a scalar call:
// it cost about a quarter of the GroupNorm + SiLU time). Cody-Waite reduction
// x = k ln2 + r, Cephes' degree-7 polynomial for e^r, 2^k applied as two
// normal powers of two 2^h 2^(k-h) so that results in the subnormal range
// underflow gradually as expf's do (as exp_vec in kernels_linear_attention.cpp
// otherwise); relative error about 2 ulp against <= 1 ulp for glibc's expf,
// inside the SiLU tolerances (12 u). Only called with x <= 0.
inline __attribute__((always_inline)) float exp_nonpositive(float x) {
    x = x < -104.0f ? -104.0f : x;  // e^-104 is below the smallest subnormal
    int32_t k;
    const float p = exp_poly(x, k);
    const int32_t h = k >> 1;  // k in [-150, 0]: h and k - h in [-75, 0], normal exponents
    const int32_t bits_a = (h + 127) << 23, bits_b = (k - h + 127) << 23;
    float two_a, two_b;
    std::memcpy(&two_a, &bits_a, 4);
    std::memcpy(&two_b, &bits_b, 4);
    return p * two_a * two_b;
}

// sigmoid(z) = 1 / (1 + e^-z) for z >= 0, e^z / (1 + e^z) below: the exp never overflows.
inline __attribute__((always_inline)) float cpu_sigmoid(float z) {
    const float e = exp_nonpositive(z < 0.0f ? z : -z);
    return (z < 0.0f ? e : 1.0f) / (1.0f + e);
}

inline __attribute__((always_inline)) float cpu_silu(float z) { return z * cpu_sigmoid(z); }

// d/dz [z sigmoid(z)] = s (1 + z (1 - s)), as d4j_silu_grad
inline __attribute__((always_inline)) float cpu_silu_grad(float z) {
    const float s = cpu_sigmoid(z);
    return s * (1.0f + z * (1.0f - s));
}

// Rows per task: about kGrain / 2 elements (8k: a 28x28x32 map at batch 1 is
// then 4 tasks, so both cores take part), at least one row.
int64_t rows_per_chunk(int32_t c) {
    int64_t r = kGrain / 2 / c;
    return r < 1 ? 1 : r;
}

// Per-channel mean and M2 (sum of squared deviations) over `rows` rows, in
// float64, as shifted sums: with K = the channel's value in the first row,
// s1 = sum (v - K), s2 = sum (v - K)^2, then mean = K + s1/n and
// M2 = s2 - s1^2/n. The shift keeps the cancellation in M2 small (K is one of
// the values, so |mean - K| is of the order of the spread); float64 sums of
// float32 inputs are exact to ~n 2^-53. Unlike a running Welford update
// (a division-free but dependent mean update per row) the sums are
// independent multiply-adds that vectorise. Chunks are merged with
// d4j_welford_merge.
D4J_CLONES void welford_rows(const float *x, const float *tb, int64_t rows, int32_t c, double *mean, double *m2) {
    thread_local std::vector<double> ws;
    if (ws.size() < (size_t)c * 3) ws.resize((size_t)c * 3);
    double *shift = ws.data(), *s1 = shift + c, *s2 = s1 + c;
    for (int32_t ch = 0; ch < c; ++ch) {
        shift[ch] = tb ? (double)(x[ch] + tb[ch]) : (double)x[ch];  // v = x + tb rounded as the normalise pass does
        s1[ch] = s2[ch] = 0.0;
    }
    for (int64_t r = 0; r < rows; ++r) {
        const float *row = x + r * c;
        if (tb) {
            for (int32_t ch = 0; ch < c; ++ch) {
                const double d = (double)(row[ch] + tb[ch]) - shift[ch];
                s1[ch] += d;
                s2[ch] += d * d;
            }
        } else {
            for (int32_t ch = 0; ch < c; ++ch) {
                const double d = (double)row[ch] - shift[ch];
                s1[ch] += d;
                s2[ch] += d * d;
            }
        }
    }
    const double n = (double)rows;
    for (int32_t ch = 0; ch < c; ++ch) {
        const double mu = s1[ch] / n;
        mean[ch] = shift[ch] + mu;
        const double v = s2[ch] - s1[ch] * mu;
        m2[ch] = v > 0.0 ? v : 0.0;
    }
}

// z (or silu(z)) for `rows` rows with per-channel mean/rstd.
D4J_CLONES void normalise_rows(const float *x, const float *tb, int64_t rows, int32_t c, const float *mc,
                               const float *rc, const float *gamma, const float *beta, int32_t silu, float *y) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *row = x + r * c;
        float *out = y + r * c;
        if (tb) {
            for (int32_t ch = 0; ch < c; ++ch)
                out[ch] = d4j_gn_z(d4j_gn_xhat(row[ch] + tb[ch], mc[ch], rc[ch]), gamma[ch], beta[ch]);
        } else {
            for (int32_t ch = 0; ch < c; ++ch)
                out[ch] = d4j_gn_z(d4j_gn_xhat(row[ch], mc[ch], rc[ch]), gamma[ch], beta[ch]);
        }
        if (silu)
            for (int32_t ch = 0; ch < c; ++ch) out[ch] = cpu_silu(out[ch]);
    }
}

// One row of the backward: xhat per channel into tmp_xhat and the gradient
// at the norm's output z (through the SiLU when fused) into tmp_dz. Always
// inlined, so each target clone of its callers compiles it for that target.
__attribute__((always_inline)) static inline void row_xhat_dz(const float *row, const float *g, const float *tb,
                                                              int32_t c, const float *mc, const float *rc,
                                                              const float *gamma, const float *beta, int32_t silu,
                                                              float *tmp_xhat, float *tmp_dz) {
    for (int32_t ch = 0; ch < c; ++ch) {
        float v = tb ? row[ch] + tb[ch] : row[ch];
        tmp_xhat[ch] = d4j_gn_xhat(v, mc[ch], rc[ch]);
    }
    if (silu) {
        for (int32_t ch = 0; ch < c; ++ch)
            tmp_dz[ch] = g[ch] * cpu_silu_grad(d4j_gn_z(tmp_xhat[ch], gamma[ch], beta[ch]));
    } else {
        for (int32_t ch = 0; ch < c; ++ch) tmp_dz[ch] = g[ch];
    }
}

// Backward reduction: per channel, sum dz, sum dz*xhat, sum xhat (float64).
D4J_CLONES void backward_sums_rows(const float *dy, const float *x, const float *tb, int64_t rows, int32_t c,
                                   const float *mc, const float *rc, const float *gamma, const float *beta,
                                   int32_t silu, float *tmp_xhat, float *tmp_dz, double *sa, double *sb,
                                   double *sx) {
    for (int32_t ch = 0; ch < c; ++ch) sa[ch] = sb[ch] = sx[ch] = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
        const float *row = x + r * c;
        const float *g = dy + r * c;
        row_xhat_dz(row, g, tb, c, mc, rc, gamma, beta, silu, tmp_xhat, tmp_dz);
        for (int32_t ch = 0; ch < c; ++ch) {
            sa[ch] += (double)tmp_dz[ch];
            sb[ch] += (double)(tmp_dz[ch] * tmp_xhat[ch]);
            sx[ch] += (double)tmp_xhat[ch];
        }
    }
}

D4J_CLONES void backward_dx_rows(const float *dy, const float *x, const float *tb, int64_t rows, int32_t c,
                                 const float *mc, const float *rc, const float *gamma, const float *beta,
                                 int32_t silu, const float *m1, const float *m2, float *tmp_xhat, float *tmp_dz,
                                 float *dx) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *row = x + r * c;
        const float *g = dy + r * c;
        float *out = dx + r * c;
        row_xhat_dz(row, g, tb, c, mc, rc, gamma, beta, silu, tmp_xhat, tmp_dz);
        for (int32_t ch = 0; ch < c; ++ch)
            out[ch] = d4j_gn_dx(tmp_dz[ch], tmp_xhat[ch], gamma[ch], rc[ch], m1[ch], m2[ch]);
    }
}

// Per-thread scratch row `slot` (0-3) of c floats, reused across tasks and
// calls (a malloc per task cost more than the task at batch 1).
float *row_scratch(int32_t c, int slot) {
    thread_local std::vector<float> ws;
    if (ws.size() < (size_t)c * 4) ws.resize((size_t)c * 4);
    return ws.data() + (size_t)slot * c;
}

// Per-channel copies of the per-(sample, group) mean and rstd of sample b.
void channel_stats(const float *mean, const float *rstd, int32_t b, int32_t c, int32_t groups, float *mc, float *rc) {
    const int32_t cg = c / groups;
    for (int32_t ch = 0; ch < c; ++ch) {
        mc[ch] = mean[(int64_t)b * groups + ch / cg];
        rc[ch] = rstd[(int64_t)b * groups + ch / cg];
    }
}

}  // namespace

d4j_status group_norm_forward(void *state, const float *x, const float *tb, const float *gamma, const float *beta,
                              int32_t n, int64_t hw, int32_t c, int32_t groups, float eps, int32_t silu, float *y,
                              float *mean, float *rstd) {
    const int64_t rows = rows_per_chunk(c);
    const int64_t chunks = (hw + rows - 1) / rows;
    const int64_t tasks = (int64_t)n * chunks;
    const int64_t elements = (int64_t)n * hw * c;
    // Pass 1: per-(task, channel) Welford summaries.
    std::vector<double> pm((size_t)(tasks * c)), pm2((size_t)(tasks * c));
    run_tasks(pool_of(state), tasks, elements, [&](int64_t task) {
        int64_t b = task / chunks, r0 = (task % chunks) * rows;
        int64_t m = hw - r0 < rows ? hw - r0 : rows;
        welford_rows(x + (b * hw + r0) * c, tb ? tb + b * c : nullptr, m, c, &pm[(size_t)(task * c)],
                     &pm2[(size_t)(task * c)]);
    });
    // Merge per (sample, group): channels in order, each channel's chunks in order.
    const int32_t cg = c / groups;
    for (int32_t b = 0; b < n; ++b) {
        for (int32_t g = 0; g < groups; ++g) {
            d4j_welford acc = {0.0, 0.0, 0.0};
            for (int32_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
                for (int64_t k = 0; k < chunks; ++k) {
                    int64_t cnt = hw - k * rows < rows ? hw - k * rows : rows;
                    size_t i = (size_t)(((int64_t)b * chunks + k) * c + ch);
                    d4j_welford_merge(&acc, (double)cnt, pm[i], pm2[i]);
                }
            }
            double var = acc.m2 / acc.count;
            mean[(int64_t)b * groups + g] = (float)acc.mean;
            rstd[(int64_t)b * groups + g] = (float)(1.0 / std::sqrt(var + (double)eps));
        }
    }
    if (y == nullptr) return D4J_OK;  // the statistics only
    // Pass 2: normalise.
    const d4j_gn_input gn{tb, gamma, beta, mean, rstd, groups, silu};
    group_norm_apply(state, &gn, x, n, hw, c, y);
    return D4J_OK;
}

void group_norm_apply(void *state, const d4j_gn_input *gn, const float *x, int32_t n, int64_t hw, int32_t c,
                      float *y) {
    const int64_t rows = rows_per_chunk(c);
    const int64_t chunks = (hw + rows - 1) / rows;
    run_tasks(pool_of(state), (int64_t)n * chunks, (int64_t)n * hw * c, [&](int64_t task) {
        int64_t b = task / chunks, r0 = (task % chunks) * rows;
        int64_t m = hw - r0 < rows ? hw - r0 : rows;
        float *mc = row_scratch(c, 0), *rc = row_scratch(c, 1);
        channel_stats(gn->mean, gn->rstd, (int32_t)b, c, gn->groups, mc, rc);
        normalise_rows(x + (b * hw + r0) * c, gn->tb ? gn->tb + b * c : nullptr, m, c, mc, rc, gn->gamma, gn->beta,
                       gn->silu, y + (b * hw + r0) * c);
    });
}

d4j_status group_norm_backward(void *state, const float *dy, const float *x, const float *tb, const float *gamma,
                               const float *beta, const float *mean, const float *rstd, int32_t n, int64_t hw,
                               int32_t c, int32_t groups, int32_t silu, float *dx, float *dtb, float *dgamma,
                               float *dbeta) {
    const int64_t rows = rows_per_chunk(c);
    const int64_t chunks = (hw + rows - 1) / rows;
    const int64_t tasks = (int64_t)n * chunks;
    const int64_t elements = (int64_t)n * hw * c;
    // Pass 1: per-(task, channel) sums of dz, dz*xhat, xhat.
    std::vector<double> part((size_t)(tasks * 3 * c));
    run_tasks(pool_of(state), tasks, elements, [&](int64_t task) {
        int64_t b = task / chunks, r0 = (task % chunks) * rows;
        int64_t m = hw - r0 < rows ? hw - r0 : rows;
        float *mc = row_scratch(c, 0), *rc = row_scratch(c, 1), *t1 = row_scratch(c, 2), *t2 = row_scratch(c, 3);
        channel_stats(mean, rstd, (int32_t)b, c, groups, mc, rc);
        double *p = &part[(size_t)(task * 3 * c)];
        int64_t off = (b * hw + r0) * c;
        backward_sums_rows(dy + off, x + off, tb ? tb + b * c : nullptr, m, c, mc, rc, gamma, beta, silu, t1, t2, p,
                           p + c, p + 2 * c);
    });
    // Per (sample, channel) sums, chunks in order.
    std::vector<double> sa((size_t)n * c, 0.0), sb((size_t)n * c, 0.0), sx((size_t)n * c, 0.0);
    for (int32_t b = 0; b < n; ++b)
        for (int64_t k = 0; k < chunks; ++k) {
            const double *p = &part[(size_t)(((int64_t)b * chunks + k) * 3 * c)];
            for (int32_t ch = 0; ch < c; ++ch) {
                size_t i = (size_t)b * c + ch;
                sa[i] += p[ch];
                sb[i] += p[c + ch];
                sx[i] += p[2 * c + ch];
            }
        }
    // Parameter gradients: samples in order, one rounding onto the accumulated value.
    for (int32_t ch = 0; ch < c; ++ch) {
        double a = 0.0, bsum = 0.0;
        for (int32_t b = 0; b < n; ++b) {
            a += sa[(size_t)b * c + ch];
            bsum += sb[(size_t)b * c + ch];
        }
        if (dbeta) dbeta[ch] = (float)((double)dbeta[ch] + a);
        if (dgamma) dgamma[ch] = (float)((double)dgamma[ch] + bsum);
    }
    if (dx == nullptr && dtb == nullptr) return D4J_OK;
    // Per (sample, group): m1 = mean(gamma dz), m2 = mean(gamma dz xhat), spread to channels.
    const int32_t cg = c / groups;
    const double count = (double)cg * (double)hw;
    std::vector<float> m1((size_t)n * c), m2((size_t)n * c);
    for (int32_t b = 0; b < n; ++b) {
        for (int32_t g = 0; g < groups; ++g) {
            double s1 = 0.0, s2 = 0.0;
            for (int32_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
                s1 += (double)gamma[ch] * sa[(size_t)b * c + ch];
                s2 += (double)gamma[ch] * sb[(size_t)b * c + ch];
            }
            double mm1 = s1 / count, mm2 = s2 / count;
            double r = (double)rstd[(int64_t)b * groups + g];
            for (int32_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
                size_t i = (size_t)b * c + ch;
                m1[i] = (float)mm1;
                m2[i] = (float)mm2;
                // dtb = sum_hw dx = rstd (gamma sum dz - hw m1 - m2 sum xhat), closed form in float64
                if (dtb) dtb[i] = (float)(r * ((double)gamma[ch] * sa[i] - (double)hw * mm1 - mm2 * sx[i]));
            }
        }
    }
    if (dx == nullptr) return D4J_OK;
    // Pass 2: dx.
    run_tasks(pool_of(state), tasks, elements, [&](int64_t task) {
        int64_t b = task / chunks, r0 = (task % chunks) * rows;
        int64_t m = hw - r0 < rows ? hw - r0 : rows;
        float *mc = row_scratch(c, 0), *rc = row_scratch(c, 1), *t1 = row_scratch(c, 2), *t2 = row_scratch(c, 3);
        channel_stats(mean, rstd, (int32_t)b, c, groups, mc, rc);
        int64_t off = (b * hw + r0) * c;
        backward_dx_rows(dy + off, x + off, tb ? tb + b * c : nullptr, m, c, mc, rc, gamma, beta, silu,
                         &m1[(size_t)b * c], &m2[(size_t)b * c], t1, t2, dx + off);
    });
    return D4J_OK;
}

namespace {

D4J_CLONES void silu_range(const float *x, float *y, int64_t count) {
    for (int64_t i = 0; i < count; ++i) y[i] = cpu_silu(x[i]);
}

D4J_CLONES void silu_grad_range(const float *dy, const float *x, float *dx, int64_t count) {
    for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * cpu_silu_grad(x[i]);
}

D4J_CLONES void residual_range(const float *a, const float *b, float s, float *out, int64_t count) {
    for (int64_t i = 0; i < count; ++i) out[i] = (a[i] + b[i]) * s;
}

D4J_CLONES void scale_range(const float *g, float s, float *da, float *db, int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
        float v = g[i] * s;  // read once: da or db may be g itself
        if (da) da[i] = v;
        if (db) db[i] = v;
    }
}

}  // namespace

d4j_status silu_forward(void *state, const float *x, int64_t count, float *y) {
    parallel_ranges(pool_of(state), count, kGrain, [&](int64_t b, int64_t e) { silu_range(x + b, y + b, e - b); });
    return D4J_OK;
}

d4j_status silu_backward(void *state, const float *dy, const float *x, int64_t count, float *dx) {
    parallel_ranges(pool_of(state), count, kGrain,
                    [&](int64_t b, int64_t e) { silu_grad_range(dy + b, x + b, dx + b, e - b); });
    return D4J_OK;
}

d4j_status residual_add(void *state, const float *a, const float *b, int64_t count, float inv_scale, float *out) {
    parallel_ranges(pool_of(state), count, kGrain,
                    [&](int64_t s, int64_t e) { residual_range(a + s, b + s, inv_scale, out + s, e - s); });
    return D4J_OK;
}

d4j_status residual_add_backward(void *state, const float *dout, int64_t count, float inv_scale, float *da,
                                 float *db) {
    parallel_ranges(pool_of(state), count, kGrain, [&](int64_t s, int64_t e) {
        scale_range(dout + s, inv_scale, da ? da + s : nullptr, db ? db + s : nullptr, e - s);
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
