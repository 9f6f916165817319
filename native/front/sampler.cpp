// The sampler family of d4j.h: dynamic thresholding (x0_threshold and the
// thresholded DDPM/DDIM steps) and the DPM-Solver++ step.
#include <cmath>

#include "front_internal.h"

using namespace d4j::front;

namespace {

// The threshold buffer: float32[batch] of this backend, not overlapping the output x_prev.
d4j_status check_threshold_buffer(const d4j_buffer *threshold, const d4j_backend *backend, int32_t batch,
                                  const d4j_buffer *x_prev, int64_t bytes) {
    D4J_TRY(check_buffer("threshold", threshold, backend, (int64_t)batch * 4));
    return check_no_overlap({"x_prev", x_prev, bytes}, {"threshold", threshold, (int64_t)batch * 4});
}

// Runs the sampler kernel on DDPM or DDIM step records, thresholded.
d4j_status thresholded_step(d4j_backend *backend, const std::vector<d4j_step_coef> &step, int64_t n,
                            const d4j_buffer *threshold, const d4j_buffer *x_t, const d4j_buffer *model_output,
                            d4j_buffer *x_prev) {
    std::vector<d4j_sampler_coef> coef(step.size());
    for (size_t b = 0; b < step.size(); ++b) coef[b] = widen(step[b]);
    return backend->iface->sampler_step(backend->state, coef.data(), (int32_t)step.size(), n, D4J_X0_THRESHOLD, 1.0f,
                                        (const float *)threshold->ptr, (const float *)x_t->ptr,
                                        (const float *)model_output->ptr, nullptr, nullptr, (float *)x_prev->ptr);
}

}  // namespace

extern "C" {

d4j_status d4j_x0_threshold(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                            const d4j_buffer *x_t, const d4j_buffer *model_output, const int32_t *timesteps,
                            int32_t batch, int64_t n, double ratio, float sample_max_value, d4j_buffer *threshold) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(check_schedule_batch(schedule, prediction, batch, n, &bytes));
    if (n > INT32_MAX)
        return fail(D4J_ERR_INVALID_ARGUMENT, "n_per_sample must be below 2^31 for the quantile, got %lld", (long long)n);
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("threshold", threshold, backend, (int64_t)batch * 4));
    D4J_TRY(check_outputs_disjoint({{"threshold", threshold, (int64_t)batch * 4}},
                                   {{"x_t", x_t, bytes}, {"model_output", model_output, bytes}}));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    if (!(std::isfinite(ratio) && ratio >= 0.0 && ratio <= 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "dynamic_thresholding_ratio must be in [0, 1], got %g", ratio);
    if (!(std::isfinite(sample_max_value) && sample_max_value > 0.0f))
        return fail(D4J_ERR_INVALID_ARGUMENT, "sample_max_value must be finite and > 0, got %g", (double)sample_max_value);
    const double pos = ratio * (double)(n - 1);
    int64_t k = (int64_t)std::floor(pos);
    if (k > n - 1) k = n - 1;
    const double frac = pos - (double)k;
    return guarded([&]() -> d4j_status {
        std::vector<d4j_sampler_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b) coef[b] = x0_coef(prediction, schedule->alphas_cumprod[timesteps[b]]);
        return backend->iface->x0_threshold(backend->state, coef.data(), batch, n, (const float *)x_t->ptr,
                                            (const float *)model_output->ptr, k, frac, sample_max_value,
                                            (float *)threshold->ptr);
    });
}

d4j_status d4j_ddpm_step_thresholded(d4j_backend *backend, const d4j_schedule *schedule,
                                     d4j_prediction_type prediction, d4j_variance_type variance,
                                     const d4j_buffer *threshold, const d4j_buffer *x_t,
                                     const d4j_buffer *model_output, const int32_t *timesteps,
                                     const int32_t *prev_timesteps, int32_t batch, int64_t n,
                                     const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, 0, 1.0f, x_t, model_output, timesteps, prev_timesteps, batch, n,
                       noise_seeds, noise_offsets, x_prev));
    D4J_TRY(check_variance(variance));
    D4J_TRY(check_threshold_buffer(threshold, backend, batch, x_prev, (int64_t)batch * n * 4));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> step(batch);
        for (int32_t b = 0; b < batch; ++b)
            step[b] = ddpm_coef(schedule->alphas_cumprod, prediction, variance, timesteps[b], prev_timesteps[b],
                                noise_seeds[b], noise_offsets[b]);
        return thresholded_step(backend, step, n, threshold, x_t, model_output, x_prev);
    });
}

d4j_status d4j_ddim_step_thresholded(d4j_backend *backend, const d4j_schedule *schedule,
                                     d4j_prediction_type prediction, float eta, int32_t use_clipped_model_output,
                                     double final_alpha_cumprod, const d4j_buffer *threshold, const d4j_buffer *x_t,
                                     const d4j_buffer *model_output, const int32_t *timesteps,
                                     const int32_t *prev_timesteps, int32_t batch, int64_t n,
                                     const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, 0, 1.0f, x_t, model_output, timesteps, prev_timesteps, batch, n,
                       noise_seeds, noise_offsets, x_prev));
    D4J_TRY(check_ddim_scalars(eta, use_clipped_model_output, final_alpha_cumprod));
    D4J_TRY(check_threshold_buffer(threshold, backend, batch, x_prev, (int64_t)batch * n * 4));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> step(batch);
        for (int32_t b = 0; b < batch; ++b)
            step[b] = ddim_coef(schedule->alphas_cumprod, prediction, eta, use_clipped_model_output,
                                final_alpha_cumprod, timesteps[b], prev_timesteps[b], noise_seeds[b], noise_offsets[b]);
        return thresholded_step(backend, step, n, threshold, x_t, model_output, x_prev);
    });
}

d4j_status d4j_dpmsolver_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                              const d4j_buffer *threshold, const d4j_buffer *x_t, const d4j_buffer *model_output,
                              const d4j_buffer *prev_x0, const int32_t *timesteps, const int32_t *prev_timesteps,
                              const int32_t *last_timesteps, int32_t batch, int64_t n, d4j_buffer *x0_out,
                              d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(check_schedule_batch(schedule, prediction, batch, n, &bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("x_prev", x_prev, backend, bytes));
    if (prev_x0 != nullptr) D4J_TRY(check_buffer("prev_x0", prev_x0, backend, bytes));
    if (x0_out != nullptr) D4J_TRY(check_buffer("x0_out", x0_out, backend, bytes));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    D4J_TRY(check_timesteps("prev_timesteps", prev_timesteps, batch, T, true));
    D4J_TRY(check_timesteps("last_timesteps", last_timesteps, batch, T, true));
    bool second = false;
    for (int32_t b = 0; b < batch; ++b) {
        if (prev_timesteps[b] >= timesteps[b])
            return fail(D4J_ERR_INVALID_ARGUMENT, "prev_timesteps[%d] = %d must be below timesteps[%d] = %d", b,
                        prev_timesteps[b], b, timesteps[b]);
        if (last_timesteps[b] >= 0) {
            if (last_timesteps[b] <= timesteps[b])
                return fail(D4J_ERR_INVALID_ARGUMENT, "last_timesteps[%d] = %d must be above timesteps[%d] = %d (or -1)",
                            b, last_timesteps[b], b, timesteps[b]);
            if (prev_timesteps[b] < 0)
                return fail(D4J_ERR_INVALID_ARGUMENT,
                            "sample %d: a second-order step to the final sigma 0 (prev_timesteps = -1) is undefined; "
                            "pass last_timesteps = -1 (diffusers' lower_order_final)", b);
            second = true;
        }
    }
    if (second && prev_x0 == nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "prev_x0 is null but a second-order step needs it");
    // x_prev: x_t itself or disjoint from it; disjoint from model_output, prev_x0, x0_out.
    // x0_out: prev_x0 itself or disjoint from it; disjoint from x_t, model_output.
    const Span xp{"x_prev", x_prev, bytes}, x0o{"x0_out", x0_out, bytes}, xt{"x_t", x_t, bytes},
        mo{"model_output", model_output, bytes}, px0{"prev_x0", prev_x0, bytes};
    D4J_TRY(check_no_overlap(xp, xt, InPlace::allowed));
    D4J_TRY(check_no_overlap(xp, mo));
    D4J_TRY(check_no_overlap(xp, px0));
    D4J_TRY(check_no_overlap(xp, x0o));
    D4J_TRY(check_no_overlap(x0o, px0, InPlace::allowed));
    D4J_TRY(check_no_overlap(x0o, xt));
    D4J_TRY(check_no_overlap(x0o, mo));
    if (threshold != nullptr) {
        D4J_TRY(check_threshold_buffer(threshold, backend, batch, x_prev, bytes));
        D4J_TRY(check_no_overlap(x0o, {"threshold", threshold, (int64_t)batch * 4}));
    }
    return guarded([&]() -> d4j_status {
        std::vector<d4j_sampler_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            coef[b] = dpmsolver_coef(schedule->alphas_cumprod, prediction, timesteps[b], prev_timesteps[b],
                                     last_timesteps[b]);
        return backend->iface->sampler_step(backend->state, coef.data(), batch, n,
                                            threshold ? D4J_X0_THRESHOLD : D4J_X0_NONE, 1.0f,
                                            threshold ? (const float *)threshold->ptr : nullptr,
                                            (const float *)x_t->ptr, (const float *)model_output->ptr,
                                            second ? (const float *)prev_x0->ptr : nullptr,
                                            x0_out ? (float *)x0_out->ptr : nullptr, (float *)x_prev->ptr);
    });
}

}  // extern "C"
