// The variational-bound family of d4j.h: the per-timestep terms and the prior term.
#include <cmath>

#include "front_internal.h"

using namespace d4j::front;

extern "C" {

d4j_status d4j_vlb_terms(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                         d4j_variance_type variance, int32_t clip_denoised, float clip_range, const d4j_buffer *x0,
                         const d4j_buffer *x_t, const d4j_buffer *model_output, const int32_t *timesteps,
                         int32_t batch, int64_t n, double *terms) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_vlb_terms"));
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    D4J_TRY(check_variance(variance));
    D4J_TRY(check_flag("clip_denoised", clip_denoised));
    if (clip_denoised && !(std::isfinite(clip_range) && clip_range > 0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "clip_range must be finite and > 0, got %g", (double)clip_range);
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    if (terms == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "terms is null");
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    if (T < 2)
        return fail(D4J_ERR_INVALID_ARGUMENT,
                    "the variational bound needs at least 2 timesteps (the decoder variance is the posterior "
                    "variance at t = 1), the schedule has %d", T);
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_vlb_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            coef[b] = vlb_coef(schedule->alphas_cumprod, prediction, variance, timesteps[b]);
        return backend->iface->vlb_terms(backend->state, coef.data(), batch, n, clip_denoised, (double)clip_range,
                                         (const float *)x0->ptr, (const float *)x_t->ptr,
                                         (const float *)model_output->ptr, terms);
    });
}

d4j_status d4j_vlb_prior(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *x0, int32_t batch,
                         int64_t n, double *terms) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_vlb_prior"));
    D4J_TRY(check_schedule(schedule));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    if (terms == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "terms is null");
    return guarded([&]() -> d4j_status {
        std::vector<d4j_vlb_coef> coef((size_t)batch, vlb_prior_coef(schedule->alphas_cumprod.back()));
        const float *p = (const float *)x0->ptr;
        return backend->iface->vlb_terms(backend->state, coef.data(), batch, n, 0, 1.0, p, p, p, terms);
    });
}

}  // extern "C"
