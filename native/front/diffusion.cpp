// The diffusion kernels of d4j.h: RNG, fill, forward noising, the training
// loss, the DDPM and DDIM reverse steps and the timestep embedding.
#include <cmath>

#include "front_internal.h"

using namespace d4j::front;

D4J_ENTRY_FORWARDS_TO(d4j_rng_normal, rng_normal);

namespace {

// The RNG entry points: count 4-byte values into out, then kernel(out pointer).
template <class Kernel>
d4j_status rng_call(d4j_backend *backend, d4j_buffer *out, int64_t count, Kernel kernel) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("out", out, backend, bytes));
    if (count == 0) return D4J_OK;
    return guarded([&] { return kernel(out->ptr); });
}

}  // namespace

extern "C" {

d4j_status d4j_rng_uint32(d4j_backend *backend, uint64_t seed, uint64_t offset, d4j_buffer *out, int64_t count) {
    return rng_call(backend, out, count, [&](void *p) {
        return backend->iface->rng_uint32(backend->state, seed, offset, (uint32_t *)p, count);
    });
}

d4j_status d4j_rng_normal(d4j_backend *backend, uint64_t seed, uint64_t offset, d4j_buffer *out, int64_t count) {
    return rng_call(backend, out, count, [&](void *p) {
        return backend->iface->rng_normal(backend->state, seed, offset, (float *)p, count);
    });
}

d4j_status d4j_buffer_fill_f32(d4j_buffer *buffer, float value) {
    D4J_TRY(check_buffer("buffer", buffer, nullptr, 4));
    d4j_backend *b = buffer->backend;
    D4J_USE_BACKEND(b);
    if (buffer->bytes % 4 != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "buffer of %lld bytes is not a whole number of floats", (long long)buffer->bytes);
    return guarded([&] { return b->iface->fill_f32(b->state, (float *)buffer->ptr, buffer->bytes / 4, value); });
}

d4j_status d4j_add_noise(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *x0,
                         const int32_t *timesteps, int32_t batch, int64_t n, uint64_t seed, uint64_t offset,
                         d4j_buffer *x_t, d4j_buffer *eps) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_schedule(schedule));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("eps", eps, backend, bytes));
    if (x_t == eps) return fail(D4J_ERR_INVALID_ARGUMENT, "x_t and eps must be different buffers");
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_noise_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b) coef[b] = noise_coef(schedule->alphas_cumprod[timesteps[b]]);
        return backend->iface->add_noise(backend->state, coef.data(), batch, n, (const float *)x0->ptr, seed, offset,
                                         (float *)x_t->ptr, (float *)eps->ptr);
    });
}

d4j_status d4j_diffusion_loss(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                              const d4j_buffer *model_output, const d4j_buffer *x0, const d4j_buffer *eps,
                              const int32_t *timesteps, const float *loss_weights, int32_t batch, int64_t n,
                              d4j_buffer *loss, d4j_buffer *grad) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(check_schedule_batch(schedule, prediction, batch, n, &bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    D4J_TRY(check_buffer("eps", eps, backend, bytes));
    D4J_TRY(check_buffer("loss", loss, backend, (int64_t)batch * 4));
    if (grad != nullptr) D4J_TRY(check_buffer("grad", grad, backend, bytes));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    if (loss_weights != nullptr) {
        for (int32_t t = 0; t < T; ++t)
            if (!std::isfinite(loss_weights[t]) || loss_weights[t] < 0)
                return fail(D4J_ERR_INVALID_ARGUMENT, "loss_weights[%d] = %g must be finite and >= 0", t,
                            (double)loss_weights[t]);
    }
    return guarded([&]() -> d4j_status {
        std::vector<d4j_loss_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b) {
            double w = loss_weights ? (double)loss_weights[timesteps[b]] : 1.0;
            coef[b] = loss_coef(prediction, schedule->alphas_cumprod[timesteps[b]], w, batch, n);
        }
        return backend->iface->diffusion_loss(backend->state, coef.data(), batch, n, (const float *)model_output->ptr,
                                              (const float *)x0->ptr, (const float *)eps->ptr, (float *)loss->ptr,
                                              grad ? (float *)grad->ptr : nullptr);
    });
}

d4j_status d4j_ddpm_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                         d4j_variance_type variance, int32_t clip_sample, float clip_sample_range,
                         const d4j_buffer *x_t, const d4j_buffer *model_output, const int32_t *timesteps,
                         const int32_t *prev_timesteps, int32_t batch, int64_t n, const uint64_t *noise_seeds,
                         const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, clip_sample, clip_sample_range, x_t, model_output, timesteps,
                       prev_timesteps, batch, n, noise_seeds, noise_offsets, x_prev));
    D4J_TRY(check_variance(variance));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            coef[b] = ddpm_coef(schedule->alphas_cumprod, prediction, variance, timesteps[b], prev_timesteps[b],
                                noise_seeds[b], noise_offsets[b]);
        return backend->iface->reverse_step(backend->state, coef.data(), batch, n, clip_sample, clip_sample_range,
                                            (const float *)x_t->ptr, (const float *)model_output->ptr,
                                            (float *)x_prev->ptr);
    });
}

d4j_status d4j_ddim_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction, float eta,
                         int32_t clip_sample, float clip_sample_range, int32_t use_clipped_model_output,
                         double final_alpha_cumprod, const d4j_buffer *x_t, const d4j_buffer *model_output,
                         const int32_t *timesteps, const int32_t *prev_timesteps, int32_t batch, int64_t n,
                         const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, clip_sample, clip_sample_range, x_t, model_output, timesteps,
                       prev_timesteps, batch, n, noise_seeds, noise_offsets, x_prev));
    D4J_TRY(check_ddim_scalars(eta, use_clipped_model_output, final_alpha_cumprod));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            coef[b] = ddim_coef(schedule->alphas_cumprod, prediction, eta, use_clipped_model_output,
                                final_alpha_cumprod, timesteps[b], prev_timesteps[b], noise_seeds[b], noise_offsets[b]);
        return backend->iface->reverse_step(backend->state, coef.data(), batch, n, clip_sample, clip_sample_range,
                                            (const float *)x_t->ptr, (const float *)model_output->ptr,
                                            (float *)x_prev->ptr);
    });
}

d4j_status d4j_timestep_embedding(d4j_backend *backend, const float *timesteps, int32_t batch, int32_t dim,
                                  int32_t flip_sin_to_cos, float downscale_freq_shift, float scale, float max_period,
                                  d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    if (batch <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %d", batch);
    if (dim < 2 || dim > (1 << 20)) return fail(D4J_ERR_INVALID_ARGUMENT, "embedding dim must be in [2, 2^20], got %d", dim);
    if (timesteps == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "timesteps is null");
    D4J_TRY(check_flag("flip_sin_to_cos", flip_sin_to_cos));
    const int32_t half = dim / 2;
    if (!std::isfinite(downscale_freq_shift) || (double)half - downscale_freq_shift <= 0.0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "downscale_freq_shift %g must be finite and below dim/2 = %d",
                    (double)downscale_freq_shift, half);
    if (!(std::isfinite(scale))) return fail(D4J_ERR_INVALID_ARGUMENT, "scale must be finite, got %g", (double)scale);
    if (!(std::isfinite(max_period) && max_period > 0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "max_period must be finite and > 0, got %g", (double)max_period);
    for (int32_t b = 0; b < batch; ++b)
        if (!std::isfinite(timesteps[b]))
            return fail(D4J_ERR_INVALID_ARGUMENT, "timesteps[%d] is not finite", b);
    int64_t bytes = (int64_t)batch * dim * 4;
    D4J_TRY(check_buffer("out", out, backend, bytes));
    return guarded([&]() -> d4j_status {
        std::vector<double> freqs(half);
        const double lnp = std::log((double)max_period);
        for (int32_t j = 0; j < half; ++j)
            freqs[j] = (double)scale * std::exp(-lnp * j / ((double)half - (double)downscale_freq_shift));
        return backend->iface->timestep_embedding(backend->state, timesteps, batch, dim, freqs.data(), half,
                                                  flip_sin_to_cos, (float *)out->ptr);
    });
}

}  // extern "C"
