// The conditioning kernel families on the CPU: class embedding (forward and
// its deterministic scatter-add backward), classifier-free guidance and
// renoising (image-to-image start, RePaint's jump back and its merge of the
// known region). Element math from native/common/conditioning_math.h, shared
// with CUDA. All are memory-bound single passes.
#include "../common/conditioning_math.h"
#include "cpu_kernels.h"
#include "rng_fill.h"

namespace d4j::cpu {

namespace {

constexpr int64_t kTile = 1024;  // floats of noise generated at once (stays in L1)

D4J_CLONES void guidance_range(const float *cond, const float *uncond, float scale, float *out, int64_t count) {
    for (int64_t i = 0; i < count; ++i) out[i] = d4j_guidance_elem(cond[i], uncond[i], scale);
}

// Elements first .. first+count-1 of one sample (noise index = element index in the sample).
D4J_CLONES void renoise_range(const d4j_renoise_coef *c, const float *src, const float *mask, float *x, int64_t first,
                              int64_t count) {
    float z[kTile];
    for (int64_t i0 = 0; i0 < count; i0 += kTile) {
        int64_t m = count - i0 < kTile ? count - i0 : kTile;
        if (c->s != 0.0f) {
            fill_normals(c->seed, c->offset, (uint64_t)(first + i0), z, m);
        } else {
            for (int64_t i = 0; i < m; ++i) z[i] = 0.0f;
        }
        if (mask == nullptr) {
            for (int64_t i = 0; i < m; ++i) x[i0 + i] = d4j_renoise_elem(c, src[i0 + i], z[i]);
        } else {
            for (int64_t i = 0; i < m; ++i)
                x[i0 + i] = d4j_mask_blend(mask[i0 + i], d4j_renoise_elem(c, src[i0 + i], z[i]), x[i0 + i]);
        }
    }
}

}  // namespace

d4j_status class_embedding_forward(void *, const float *table, const int32_t *labels, int32_t batch, int32_t dim,
                                   float *emb) {
    for (int32_t b = 0; b < batch; ++b) {
        const float *row = table + (int64_t)labels[b] * dim;
        float *e = emb + (int64_t)b * dim;
        for (int32_t j = 0; j < dim; ++j) e[j] = e[j] + row[j];
    }
    return D4J_OK;
}

d4j_status class_embedding_backward(void *, const float *d_emb, const int32_t *labels, int32_t batch, int32_t dim,
                                    float *d_table) {
    // Rows in increasing b: the order CUDA's per-column loop uses, so the sums round alike.
    for (int32_t b = 0; b < batch; ++b) {
        float *row = d_table + (int64_t)labels[b] * dim;
        const float *g = d_emb + (int64_t)b * dim;
        for (int32_t j = 0; j < dim; ++j) row[j] = row[j] + g[j];
    }
    return D4J_OK;
}

d4j_status guidance(void *state, const float *cond, const float *uncond, int64_t count, float scale, float *out) {
    const int64_t chunks = (count + kGrain - 1) / kGrain;
    run_tasks(pool_of(state), chunks, count, [&](int64_t task) {
        int64_t c0 = task * kGrain;
        int64_t m = count - c0 < kGrain ? count - c0 : kGrain;
        guidance_range(cond + c0, uncond + c0, scale, out + c0, m);
    });
    return D4J_OK;
}

d4j_status renoise(void *state, const d4j_renoise_coef *coef, int32_t batch, int64_t n, const float *src,
                   const float *mask, float *x) {
    const int64_t chunks = (n + kGrain - 1) / kGrain;
    run_tasks(pool_of(state), (int64_t)batch * chunks, (int64_t)batch * n, [&](int64_t task) {
        int64_t b = task / chunks, c0 = (task % chunks) * kGrain;
        int64_t m = n - c0 < kGrain ? n - c0 : kGrain;
        int64_t base = b * n + c0;
        renoise_range(&coef[b], src + base, mask ? mask + base : nullptr, x + base, c0, m);
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
