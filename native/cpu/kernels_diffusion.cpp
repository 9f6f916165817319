// The fused diffusion kernel family on the CPU: forward noising, training
// loss + gradient, and the reverse step (DDPM and DDIM share it). The
// per-element math is native/common/diffusion_math.h, shared with CUDA.
//
// Memory passes (n = elements of the batch):
//   add_noise:      read x0, write eps and x_t               (3 n floats)
//   diffusion_loss: read output, x0, eps, write grad         (4 n floats)
//   reverse_step:   read x_t and output, write x_prev        (3 n floats)
// Noise is generated into a small stack tile and consumed while hot in L1.
#include <vector>

#include "cpu_kernels.h"
#include "rng_fill.h"

namespace d4j::cpu {

namespace {

constexpr int64_t kTile = 1024;  // floats of noise generated at once (4 KiB, stays in L1)

D4J_CLONES void noise_range(d4j_noise_coef c, const float *x0, float *x_t, float *eps, uint64_t seed, uint64_t offset,
                            uint64_t first, int64_t count) {
    for (int64_t i0 = 0; i0 < count; i0 += kTile) {
        int64_t m = count - i0 < kTile ? count - i0 : kTile;
        fill_normals(seed, offset, first + (uint64_t)i0, eps + i0, m);
        for (int64_t i = i0; i < i0 + m; ++i) x_t[i] = d4j_noise_elem(c, x0[i], eps[i]);
    }
}

D4J_CLONES double loss_range(d4j_loss_coef c, const float *out, const float *x0, const float *eps, float *grad,
                             int64_t count) {
    // float64 accumulation: the sum of up to ~1e6 squares stays exact to float32.
    double acc = 0.0;
    for (int64_t i = 0; i < count; ++i) {
        float d = d4j_loss_diff(c, out[i], x0[i], eps[i]);
        acc += (double)(d * d);
        if (grad) grad[i] = c.g * d;
    }
    return acc;
}

D4J_CLONES void step_range(const d4j_step_coef *c, int32_t clip, float r, const float *x, const float *out,
                           float *x_prev, int64_t first, int64_t count) {
    float z[kTile];
    for (int64_t i0 = 0; i0 < count; i0 += kTile) {
        int64_t m = count - i0 < kTile ? count - i0 : kTile;
        if (c->sigma != 0.0f) {
            fill_normals(c->seed, c->offset, (uint64_t)(first + i0), z, m);
        } else {
            for (int64_t i = 0; i < m; ++i) z[i] = 0.0f;
        }
        for (int64_t i = 0; i < m; ++i) x_prev[i0 + i] = d4j_step_elem(c, clip, r, x[i0 + i], out[i0 + i], z[i]);
    }
}

}  // namespace

d4j_status add_noise(void *state, const d4j_noise_coef *coef, int32_t batch, int64_t n, const float *x0,
                     uint64_t seed, uint64_t offset, float *x_t, float *eps) {
    const int64_t chunks = (n + kGrain - 1) / kGrain;
    run_tasks(pool_of(state), (int64_t)batch * chunks, (int64_t)batch * n, [&](int64_t task) {
        int64_t b = task / chunks, c0 = (task % chunks) * kGrain;
        int64_t m = n - c0 < kGrain ? n - c0 : kGrain;
        int64_t base = b * n + c0;
        noise_range(coef[b], x0 + base, x_t + base, eps + base, seed, offset, (uint64_t)base, m);
    });
    return D4J_OK;
}

d4j_status diffusion_loss(void *state, const d4j_loss_coef *coef, int32_t batch, int64_t n, const float *out,
                          const float *x0, const float *eps, float *loss, float *grad) {
    const int64_t chunks = (n + kGrain - 1) / kGrain;
    std::vector<double> partial((size_t)(batch * chunks));
    run_tasks(pool_of(state), (int64_t)batch * chunks, (int64_t)batch * n, [&](int64_t task) {
        int64_t b = task / chunks, c0 = (task % chunks) * kGrain;
        int64_t m = n - c0 < kGrain ? n - c0 : kGrain;
        int64_t base = b * n + c0;
        partial[(size_t)task] = loss_range(coef[b], out + base, x0 + base, eps + base, grad ? grad + base : nullptr, m);
    });
    for (int32_t b = 0; b < batch; ++b) {
        double s = 0.0;  // partials summed in chunk order: independent of thread count
        for (int64_t c = 0; c < chunks; ++c) s += partial[(size_t)(b * chunks + c)];
        loss[b] = (float)(s * (double)coef[b].lw);
    }
    return D4J_OK;
}

d4j_status reverse_step(void *state, const d4j_step_coef *coef, int32_t batch, int64_t n, int32_t clip,
                        float clip_range, const float *x, const float *out, float *x_prev) {
    const int64_t chunks = (n + kGrain - 1) / kGrain;
    run_tasks(pool_of(state), (int64_t)batch * chunks, (int64_t)batch * n, [&](int64_t task) {
        int64_t b = task / chunks, c0 = (task % chunks) * kGrain;
        int64_t m = n - c0 < kGrain ? n - c0 : kGrain;
        int64_t base = b * n + c0;
        step_range(&coef[b], clip, clip_range, x + base, out + base, x_prev + base, c0, m);
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
