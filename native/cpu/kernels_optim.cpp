// The optimiser kernel family on the CPU: global gradient norm (float64 sum
// of squares), fused AdamW, EMA. Element math in native/common/optim_math.h,
// shared with CUDA.
//
// Memory passes (n = elements):
//   grad_sumsq: read grad                                  (4 bytes/element)
//   adamw:      read param, grad, m, v; write param, m, v  (28 bytes/element)
//   ema_update: read ema, param; write ema                 (12 bytes/element)
#include <vector>

#include "../common/optim_math.h"
#include "cpu_kernels.h"
#include "rng_fill.h"

namespace d4j::cpu {

namespace {

// Independent float64 accumulators per range: enough to fill two AVX-512
// registers, so the adds pipeline. Each accumulator sums a fixed residue class
// of indices in index order and they are combined in a fixed tree, so every
// SIMD path (and the scalar one) produces the same bits.
constexpr int kLanes = 16;

D4J_CLONES double sumsq_range(const float *__restrict g, int64_t n) {
    double acc[kLanes];
    for (int k = 0; k < kLanes; ++k) acc[k] = 0.0;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
            // a float squared is exact in float64 (48 significant bits)
            double x = (double)g[i + k];
            acc[k] += x * x;
        }
    }
    for (int k = 0; i < n; ++i, ++k) {
        double x = (double)g[i];
        acc[k] += x * x;
    }
    for (int w = kLanes / 2; w > 0; w /= 2)
        for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
    return acc[0];
}

D4J_CLONES void adamw_range(d4j_adamw_coef c, float *__restrict p, const float *__restrict g, float *__restrict m,
                            float *__restrict v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        float pi = p[i], mi = m[i], vi = v[i];
        d4j_adamw_elem(&c, &pi, g[i], &mi, &vi);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

D4J_CLONES void ema_range(float c, float *__restrict s, const float *__restrict p, int64_t n) {
    for (int64_t i = 0; i < n; ++i) s[i] = d4j_ema_elem(c, s[i], p[i]);
}

}  // namespace

d4j_status grad_sumsq(void *state, const float *grad, int64_t count, double *sumsq) {
    const int64_t chunks = (count + kGrain - 1) / kGrain;
    std::vector<double> partial((size_t)chunks);
    parallel_ranges(pool_of(state), count, kGrain, [&](int64_t b, int64_t e) {
        partial[(size_t)(b / kGrain)] = sumsq_range(grad + b, e - b);
    });
    double s = 0.0;  // chunk partials in chunk order: independent of the thread count
    for (double x : partial) s += x;
    *sumsq = s;
    return D4J_OK;
}

d4j_status adamw(void *state, const d4j_adamw_coef *coef, float *param, const float *grad, float *m, float *v,
                 int64_t count) {
    const d4j_adamw_coef c = *coef;
    parallel_ranges(pool_of(state), count, kGrain, [&](int64_t b, int64_t e) {
        adamw_range(c, param + b, grad + b, m + b, v + b, e - b);
    });
    return D4J_OK;
}

d4j_status ema_update(void *state, float *ema, const float *param, int64_t count, float one_minus_decay) {
    parallel_ranges(pool_of(state), count, kGrain, [&](int64_t b, int64_t e) {
        ema_range(one_minus_decay, ema + b, param + b, e - b);
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
