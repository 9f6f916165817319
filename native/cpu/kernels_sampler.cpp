// The sampler kernel families on the CPU:
//   sampler_step:  the generalised reverse step of common/sampler_math.h
//                  (DDPM, DDIM, DPM-Solver++ 2M; clip or dynamic threshold),
//                  one pass: read x, o (and m1), write x' (and x0).
//   x0_threshold:  dynamic thresholding's per-sample quantile of |x0|, an
//                  exact order statistic (nth_element on a per-task copy).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/sampler_math.h"
#include "cpu_kernels.h"
#include "rng_fill.h"

namespace d4j::cpu {

namespace {

constexpr int64_t kTile = 1024;  // noise floats generated at once (4 KiB, in L1)

D4J_CLONES void sampler_range(const d4j_sampler_coef *c, int32_t mode, float r, float s, const float *x,
                              const float *out, const float *m1, float *x0_out, float *x_prev, int64_t first,
                              int64_t count) {
    float z[kTile];
    const d4j_step_coef *st = &c->step;
    for (int64_t i0 = 0; i0 < count; i0 += kTile) {
        int64_t m = count - i0 < kTile ? count - i0 : kTile;
        if (st->sigma != 0.0f) {
            fill_normals(st->seed, st->offset, (uint64_t)(first + i0), z, m);
        } else {
            for (int64_t i = 0; i < m; ++i) z[i] = 0.0f;
        }
        for (int64_t i = 0; i < m; ++i) {
            const int64_t e = i0 + i;
            const float xv = x[e], ov = out[e];
            const float mv = m1 ? m1[e] : 0.0f;  // read before x0_out (which may be m1) is written
            const float x0 = d4j_x0_process(d4j_x0_raw(st, xv, ov), mode, r, s);
            if (x0_out) x0_out[e] = x0;
            x_prev[e] = d4j_sampler_update(c, xv, ov, x0, mv, z[i]);
        }
    }
}

}  // namespace

d4j_status sampler_step(void *state, const d4j_sampler_coef *coef, int32_t batch, int64_t n, int32_t x0_mode,
                        float clip_range, const float *threshold, const float *x, const float *out, const float *m1,
                        float *x0_out, float *x_prev) {
    const int64_t chunks = (n + kGrain - 1) / kGrain;
    run_tasks(pool_of(state), (int64_t)batch * chunks, (int64_t)batch * n, [&](int64_t task) {
        int64_t b = task / chunks, c0 = (task % chunks) * kGrain;
        int64_t m = n - c0 < kGrain ? n - c0 : kGrain;
        int64_t base = b * n + c0;
        float s = x0_mode == D4J_X0_THRESHOLD ? threshold[b] : 1.0f;
        sampler_range(&coef[b], x0_mode, clip_range, s, x + base, out + base, m1 ? m1 + base : nullptr,
                      x0_out ? x0_out + base : nullptr, x_prev + base, c0, m);
    });
    return D4J_OK;
}

d4j_status x0_threshold(void *state, const d4j_sampler_coef *coef, int32_t batch, int64_t n, const float *x,
                        const float *out, int64_t k, double frac, float max_value, float *threshold) {
    // One task per sample; the order statistics are values, so the result does
    // not depend on the thread count or on nth_element's internal order.
    run_tasks(pool_of(state), batch, (int64_t)batch * n, [&](int64_t b) {
        // Ranked as the bit patterns of |x0| (monotone for non-negative floats, NaN above
        // infinity): a total order, the same one the CUDA radix select uses.
        std::vector<uint32_t> v((size_t)n);
        const d4j_step_coef *c = &coef[b].step;
        const float *xs = x + b * n, *os = out + b * n;
        for (int64_t i = 0; i < n; ++i) {
            float a = std::fabs(d4j_x0_raw(c, xs[i], os[i]));
            std::memcpy(&v[(size_t)i], &a, 4);
        }
        std::nth_element(v.begin(), v.begin() + k, v.end());
        uint32_t lo_bits = v[(size_t)k], hi_bits = lo_bits;
        if (k + 1 < n) hi_bits = *std::min_element(v.begin() + k + 1, v.end());
        float lo, hi;
        std::memcpy(&lo, &lo_bits, 4);
        std::memcpy(&hi, &hi_bits, 4);
        threshold[b] = d4j_threshold_from_order_stats(lo, hi, frac, max_value);
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
