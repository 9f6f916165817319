// The variational-bound kernel family "vlb" on the CPU: per-sample
// sums of the KL / decoder terms of native/common/vlb_math.h, in float64.
//
// Work is split into tasks of kGrain elements of one sample (independent of
// the thread count); each task's float64 partial is summed in element order,
// and a sample's partials in chunk order, so the result is bit-identical for
// any number of threads.
#include <vector>

#include "../common/vlb_math.h"
#include "cpu_kernels.h"
#include "rng_fill.h"  // D4J_CLONES

namespace d4j::cpu {

namespace {

D4J_CLONES double vlb_range(const d4j_vlb_coef *c, int32_t clip, double r, const float *x0, const float *xt,
                            const float *out, int64_t count) {
    double acc = 0.0;
    for (int64_t i = 0; i < count; ++i) acc += d4j_vlb_elem(c, clip, r, x0[i], xt[i], out[i]);
    return acc;
}

}  // namespace

d4j_status vlb_terms(void *state, const d4j_vlb_coef *coef, int32_t batch, int64_t n, int32_t clip,
                     double clip_range, const float *x0, const float *x_t, const float *out, double *terms) {
    const int64_t chunks = (n + kGrain - 1) / kGrain;
    std::vector<double> partial((size_t)(batch * chunks));
    // The decoder's tanh/log cost ~50x a KL element: weigh the serial cutoff accordingly.
    run_tasks(pool_of(state), (int64_t)batch * chunks, (int64_t)batch * n * 8, [&](int64_t task) {
        int64_t b = task / chunks, c0 = (task % chunks) * kGrain;
        int64_t m = n - c0 < kGrain ? n - c0 : kGrain;
        int64_t base = b * n + c0;
        partial[(size_t)task] = vlb_range(&coef[b], clip, clip_range, x0 + base, x_t + base, out + base, m);
    });
    for (int32_t b = 0; b < batch; ++b) {
        double s = 0.0;
        for (int64_t c = 0; c < chunks; ++c) s += partial[(size_t)(b * chunks + c)];
        terms[b] = s;
    }
    return D4J_OK;
}

}  // namespace d4j::cpu
