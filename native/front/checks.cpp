// Argument checks shared by the kernel families: byte counts, batch shapes,
// timesteps, enum and flag values, and the one rule for overlapping buffers.
#include <cmath>

#include "front_internal.h"

namespace d4j::front {

d4j_status checked_bytes(const char *what, int64_t count, int64_t elem_size, int64_t *bytes) {
    if (count < 0) return fail(D4J_ERR_INVALID_ARGUMENT, "%s must be >= 0, got %lld", what, (long long)count);
    if (count > INT64_MAX / elem_size)
        return fail(D4J_ERR_INVALID_ARGUMENT, "%s = %lld overflows a 64-bit byte count", what, (long long)count);
    *bytes = count * elem_size;
    return D4J_OK;
}

d4j_status check_batch(int32_t batch, int64_t n, int64_t *tensor_bytes) {
    if (batch <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %d", batch);
    if (n <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "n_per_sample must be >= 1, got %lld", (long long)n);
    if (n > INT64_MAX / 4 / batch)
        return fail(D4J_ERR_INVALID_ARGUMENT, "batch %d x n_per_sample %lld overflows", batch, (long long)n);
    *tensor_bytes = (int64_t)batch * n * 4;
    return D4J_OK;
}

d4j_status check_timesteps(const char *what, const int32_t *t, int32_t batch, int32_t T, bool allow_minus_one) {
    if (t == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "%s is null", what);
    for (int32_t b = 0; b < batch; ++b) {
        int32_t v = t[b];
        if (v >= T || v < (allow_minus_one ? -1 : 0))
            return fail(D4J_ERR_INVALID_ARGUMENT, "%s[%d] = %d is outside [%d, %d)", what, b, v,
                        allow_minus_one ? -1 : 0, T);
    }
    return D4J_OK;
}

d4j_status check_prediction(int32_t p) {
    if (p < D4J_PREDICTION_EPSILON || p > D4J_PREDICTION_V)
        return fail(D4J_ERR_INVALID_ARGUMENT, "prediction type %d is not epsilon(0), sample(1) or v_prediction(2)", p);
    return D4J_OK;
}

d4j_status check_variance(int32_t v) {
    if (v != D4J_VARIANCE_FIXED_SMALL && v != D4J_VARIANCE_FIXED_LARGE)
        return fail(D4J_ERR_INVALID_ARGUMENT, "variance type %d is not fixed_small(0) or fixed_large(1)", v);
    return D4J_OK;
}

d4j_status check_flag(const char *what, int32_t v) {
    if (v != 0 && v != 1) return fail(D4J_ERR_INVALID_ARGUMENT, "%s must be 0 or 1, got %d", what, v);
    return D4J_OK;
}

d4j_status check_clip(int32_t clip, float range) {
    D4J_TRY(check_flag("clip_sample", clip));
    if (clip && !(std::isfinite(range) && range > 0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "clip_sample_range must be finite and > 0, got %g", (double)range);
    return D4J_OK;
}

d4j_status check_schedule_batch(const d4j_schedule *schedule, int32_t prediction, int32_t batch, int64_t n,
                                int64_t *tensor_bytes) {
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    return check_batch(batch, n, tensor_bytes);
}

d4j_status check_noise(const uint64_t *seeds, const uint64_t *offsets) {
    if (seeds == nullptr || offsets == nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "noise_seeds and noise_offsets must not be null");
    return D4J_OK;
}

d4j_status check_ddim_scalars(float eta, int32_t use_clipped_model_output, double final_alpha_cumprod) {
    if (!(std::isfinite(eta) && eta >= 0.0f))
        return fail(D4J_ERR_INVALID_ARGUMENT, "eta must be finite and >= 0, got %g", (double)eta);
    D4J_TRY(check_flag("use_clipped_model_output", use_clipped_model_output));
    if (!(std::isfinite(final_alpha_cumprod) && final_alpha_cumprod > 0.0 && final_alpha_cumprod <= 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "final_alpha_cumprod must be in (0, 1], got %g", final_alpha_cumprod);
    return D4J_OK;
}

d4j_status check_step(d4j_backend *backend, const d4j_schedule *schedule, int32_t prediction, int32_t clip,
                      float clip_range, const d4j_buffer *x_t, const d4j_buffer *model_output,
                      const int32_t *timesteps, const int32_t *prev, int32_t batch, int64_t n, const uint64_t *seeds,
                      const uint64_t *offsets, const d4j_buffer *x_prev) {
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    D4J_TRY(check_clip(clip, clip_range));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("x_prev", x_prev, backend, bytes));
    // The step entry points document only this identity rule (x_prev may be x_t).
    if (x_prev == model_output) return fail(D4J_ERR_INVALID_ARGUMENT, "x_prev must not alias model_output");
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    D4J_TRY(check_timesteps("prev_timesteps", prev, batch, T, true));
    for (int32_t b = 0; b < batch; ++b)
        if (prev[b] >= timesteps[b])
            return fail(D4J_ERR_INVALID_ARGUMENT, "prev_timesteps[%d] = %d must be below timesteps[%d] = %d", b,
                        prev[b], b, timesteps[b]);
    return check_noise(seeds, offsets);
}

d4j_status check_no_overlap(Span out, Span other, InPlace in_place) {
    if (out.buf == nullptr || other.buf == nullptr) return D4J_OK;
    const uintptr_t po = (uintptr_t)out.buf->ptr, pa = (uintptr_t)other.buf->ptr;
    if (in_place == InPlace::allowed && po == pa && out.bytes == other.bytes) return D4J_OK;
    if (po < pa + (uintptr_t)other.bytes && pa < po + (uintptr_t)out.bytes)
        return fail(D4J_ERR_INVALID_ARGUMENT, "%s overlaps %s%s", out.name, other.name,
                    in_place == InPlace::allowed ? " (in place it must be exactly the same memory)" : "");
    return D4J_OK;
}

d4j_status check_outputs_disjoint(std::initializer_list<Span> outputs, std::initializer_list<Span> inputs) {
    for (auto o = outputs.begin(); o != outputs.end(); ++o) {
        for (const Span &in : inputs) D4J_TRY(check_no_overlap(*o, in));
        for (auto later = o + 1; later != outputs.end(); ++later) D4J_TRY(check_no_overlap(*o, *later));
    }
    return D4J_OK;
}

}  // namespace d4j::front
