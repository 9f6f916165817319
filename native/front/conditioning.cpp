// The conditioning families of d4j.h: class embedding, classifier-free
// guidance, and the renoising that image-to-image and inpainting do between
// scheduler steps.
#include <cmath>

#include "../common/conditioning_math.h"
#include "front_internal.h"

using namespace d4j::front;

namespace {

constexpr int32_t kMaxClassDim = 1 << 20;

// batch, num_classes, dim in range; labels on the host, each in [0, num_classes).
d4j_status check_class_args(const int32_t *labels, int32_t batch, int32_t num_classes, int32_t dim,
                            int64_t *table_bytes, int64_t *rows_bytes) {
    if (batch <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %d", batch);
    if (num_classes <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "num_classes must be >= 1, got %d", num_classes);
    if (dim <= 0 || dim > kMaxClassDim)
        return fail(D4J_ERR_INVALID_ARGUMENT, "dim must be in [1, %d], got %d", kMaxClassDim, dim);
    if (labels == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "labels is null");
    for (int32_t b = 0; b < batch; ++b)
        if (labels[b] < 0 || labels[b] >= num_classes)
            return fail(D4J_ERR_INVALID_ARGUMENT, "labels[%d] = %d is outside [0, %d) (num_classes)", b, labels[b],
                        num_classes);
    *table_bytes = (int64_t)num_classes * dim * 4;  // < 2^31 * 2^20 * 4: no overflow
    *rows_bytes = (int64_t)batch * dim * 4;
    return D4J_OK;
}

// ab at timestep t, 1 for t = -1 (the clean image).
double ab_at(const d4j_schedule *schedule, int32_t t) { return t < 0 ? 1.0 : schedule->alphas_cumprod[t]; }

// x = sqrt(ratio) * src + sqrt(1 - ratio) * z, the coefficients rounded once from float64.
d4j_renoise_coef renoise_coef(double ratio, uint64_t seed, uint64_t offset) {
    d4j_renoise_coef c{};
    c.a = (float)std::sqrt(ratio);
    c.s = (float)std::sqrt(1.0 - ratio);
    c.seed = seed;
    c.offset = offset;
    return c;
}

}  // namespace

extern "C" {

d4j_status d4j_class_embedding_forward(d4j_backend *backend, const d4j_buffer *table, const int32_t *labels,
                                       int32_t batch, int32_t num_classes, int32_t dim, d4j_buffer *emb) {
    D4J_USE_BACKEND(backend);
    int64_t tb = 0, rb = 0;
    D4J_TRY(check_class_args(labels, batch, num_classes, dim, &tb, &rb));
    D4J_TRY(check_buffer("table", table, backend, tb));
    D4J_TRY(check_buffer("emb", emb, backend, rb));
    D4J_TRY(check_no_overlap({"emb", emb, rb}, {"table", table, tb}));
    return guarded([&] {
        return backend->iface->class_embedding_forward(backend->state, (const float *)table->ptr, labels, batch, dim,
                                                       (float *)emb->ptr);
    });
}

d4j_status d4j_class_embedding_backward(d4j_backend *backend, const d4j_buffer *d_emb, const int32_t *labels,
                                        int32_t batch, int32_t num_classes, int32_t dim, d4j_buffer *d_table) {
    D4J_USE_BACKEND(backend);
    int64_t tb = 0, rb = 0;
    D4J_TRY(check_class_args(labels, batch, num_classes, dim, &tb, &rb));
    D4J_TRY(check_buffer("d_emb", d_emb, backend, rb));
    D4J_TRY(check_buffer("d_table", d_table, backend, tb));
    D4J_TRY(check_no_overlap({"d_table", d_table, tb}, {"d_emb", d_emb, rb}));
    return guarded([&] {
        return backend->iface->class_embedding_backward(backend->state, (const float *)d_emb->ptr, labels, batch, dim,
                                                        (float *)d_table->ptr);
    });
}

d4j_status d4j_classifier_free_guidance(d4j_backend *backend, const d4j_buffer *cond, const d4j_buffer *uncond,
                                        int64_t count, float guidance_scale, d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    if (count <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "count must be >= 1, got %lld", (long long)count);
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    if (!(std::isfinite(guidance_scale) && guidance_scale >= 0.0f))
        return fail(D4J_ERR_INVALID_ARGUMENT, "guidance_scale must be finite and >= 0, got %g", (double)guidance_scale);
    D4J_TRY(check_buffer("cond", cond, backend, bytes));
    D4J_TRY(check_buffer("uncond", uncond, backend, bytes));
    D4J_TRY(check_buffer("out", out, backend, bytes));
    D4J_TRY(check_no_overlap({"out", out, bytes}, {"cond", cond, bytes}, InPlace::allowed));
    D4J_TRY(check_no_overlap({"out", out, bytes}, {"uncond", uncond, bytes}, InPlace::allowed));
    return guarded([&] {
        return backend->iface->guidance(backend->state, (const float *)cond->ptr, (const float *)uncond->ptr, count,
                                        guidance_scale, (float *)out->ptr);
    });
}

d4j_status d4j_noise_to_timestep(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *src,
                                 const int32_t *from_timesteps, const int32_t *to_timesteps, int32_t batch,
                                 int64_t n, const uint64_t *noise_seeds, const uint64_t *noise_offsets,
                                 d4j_buffer *x) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_schedule(schedule));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("src", src, backend, bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    D4J_TRY(check_no_overlap({"x", x, bytes}, {"src", src, bytes}, InPlace::allowed));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("from_timesteps", from_timesteps, batch, T, true));
    D4J_TRY(check_timesteps("to_timesteps", to_timesteps, batch, T, false));
    for (int32_t b = 0; b < batch; ++b)
        if (to_timesteps[b] <= from_timesteps[b])
            return fail(D4J_ERR_INVALID_ARGUMENT, "to_timesteps[%d] = %d must be above from_timesteps[%d] = %d", b,
                        to_timesteps[b], b, from_timesteps[b]);
    D4J_TRY(check_noise(noise_seeds, noise_offsets));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_renoise_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            coef[b] = renoise_coef(ab_at(schedule, to_timesteps[b]) / ab_at(schedule, from_timesteps[b]),
                                   noise_seeds[b], noise_offsets[b]);
        return backend->iface->renoise(backend->state, coef.data(), batch, n, (const float *)src->ptr, nullptr,
                                       (float *)x->ptr);
    });
}

d4j_status d4j_inpaint_merge(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *known,
                             const d4j_buffer *mask, const int32_t *timesteps, int32_t batch, int64_t n,
                             const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_schedule(schedule));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("known", known, backend, bytes));
    D4J_TRY(check_buffer("mask", mask, backend, bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    D4J_TRY(check_outputs_disjoint({{"x", x, bytes}}, {{"known", known, bytes}, {"mask", mask, bytes}}));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, true));
    D4J_TRY(check_noise(noise_seeds, noise_offsets));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_renoise_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            coef[b] = renoise_coef(ab_at(schedule, timesteps[b]), noise_seeds[b], noise_offsets[b]);
        return backend->iface->renoise(backend->state, coef.data(), batch, n, (const float *)known->ptr,
                                       (const float *)mask->ptr, (float *)x->ptr);
    });
}

}  // extern "C"
