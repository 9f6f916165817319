// The conditioning kernel families on CUDA: class embedding forward and
// backward, classifier-free guidance, renoising. Element math from
// native/common/conditioning_math.h (rounded operation by operation), so the
// results equal the CPU backend's bit for bit.
#include "../common/conditioning_math.h"
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

// One thread per (row, column): adds the row's class vector.
__global__ void class_embedding_forward_kernel(const float *table, const int32_t *labels, int32_t batch, int32_t dim,
                                               float *emb) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)batch * dim) return;
    int32_t b = (int32_t)(idx / dim), j = (int32_t)(idx % dim);
    emb[idx] = D4J_FADD(emb[idx], table[(int64_t)labels[b] * dim + j]);
}

// One thread per column j: walks the rows in increasing b, so each table
// element receives its rows' gradients in the CPU's order (deterministic,
// and no two threads write one element).
__global__ void class_embedding_backward_kernel(const float *d_emb, const int32_t *labels, int32_t batch, int32_t dim,
                                                float *d_table) {
    int32_t j = (int32_t)(blockIdx.x * blockDim.x + threadIdx.x);
    if (j >= dim) return;
    for (int32_t b = 0; b < batch; ++b) {
        float *t = d_table + (int64_t)labels[b] * dim + j;
        *t = D4J_FADD(*t, d_emb[(int64_t)b * dim + j]);
    }
}

__global__ void guidance_kernel(const float *cond, const float *uncond, int64_t count, float scale, float *out) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    out[i] = d4j_guidance_elem(cond[i], uncond[i], scale);
}

// Grid (blocks over n / 4, batch): one thread per Philox block of 4 elements
// of one sample, whose noise index is the element index in the sample.
__global__ void renoise_kernel(const d4j_renoise_coef *coef, int64_t n, const float *src, const float *mask,
                               float *x) {
    const int b = blockIdx.y;
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t i = j * 4;
    if (i >= n) return;
    const d4j_renoise_coef c = coef[b];
    float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (c.s != 0.0f) d4j_normal4(c.seed, c.offset, (uint64_t)j, z);
    const int64_t base = (int64_t)b * n;
    for (int k = 0; k < 4 && i + k < n; ++k) {
        int64_t e = base + i + k;
        float v = d4j_renoise_elem(&c, src[e], z[k]);
        x[e] = mask ? d4j_mask_blend(mask[e], v, x[e]) : v;
    }
}

static d4j_status upload_labels(State *s, const int32_t *labels, int32_t batch, int32_t **dev) {
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    size_t bytes = sizeof(int32_t) * (size_t)batch;
    d4j_status st = ensure_scratch(s, bytes, &scratch);
    if (st != D4J_OK) return st;
    if ((st = upload_host(s, scratch, labels, bytes, "cudaMemcpyAsync(labels)")) != D4J_OK) return st;
    *dev = static_cast<int32_t *>(scratch);
    return D4J_OK;
}

d4j_status class_embedding_forward(void *state, const float *table, const int32_t *labels, int32_t batch, int32_t dim,
                                   float *emb) {
    auto *s = static_cast<State *>(state);
    int32_t *dl = nullptr;
    d4j_status st = upload_labels(s, labels, batch, &dl);
    if (st != D4J_OK) return st;
    const int threads = 256;
    D4J_LAUNCH(class_embedding_forward_kernel, blocks_for((int64_t)batch * dim, threads), threads, 0, s->stream, table,
               dl, batch, dim, emb);
    return launched("class_embedding_forward_kernel");
}

d4j_status class_embedding_backward(void *state, const float *d_emb, const int32_t *labels, int32_t batch, int32_t dim,
                                    float *d_table) {
    auto *s = static_cast<State *>(state);
    int32_t *dl = nullptr;
    d4j_status st = upload_labels(s, labels, batch, &dl);
    if (st != D4J_OK) return st;
    const int threads = 128;
    D4J_LAUNCH(class_embedding_backward_kernel, blocks_for(dim, threads), threads, 0, s->stream, d_emb, dl, batch, dim,
               d_table);
    return launched("class_embedding_backward_kernel");
}

d4j_status guidance(void *state, const float *cond, const float *uncond, int64_t count, float scale, float *out) {
    auto *s = static_cast<State *>(state);
    const int threads = 256;
    D4J_LAUNCH(guidance_kernel, blocks_for(count, threads), threads, 0, s->stream, cond, uncond, count, scale, out);
    return launched("guidance_kernel");
}

d4j_status renoise(void *state, const d4j_renoise_coef *coef, int32_t batch, int64_t n, const float *src,
                   const float *mask, float *x) {
    auto *s = static_cast<State *>(state);
    if (check_grid_batch(batch) != D4J_OK) return D4J_ERR_INVALID_ARGUMENT;
    void *scratch = nullptr;
    size_t bytes = sizeof(d4j_renoise_coef) * (size_t)batch;
    d4j_status st = ensure_scratch(s, bytes, &scratch);
    if (st != D4J_OK) return st;
    if ((st = upload_host(s, scratch, coef, bytes, "cudaMemcpyAsync(coef)")) != D4J_OK) return st;
    const int threads = 256;
    D4J_LAUNCH(renoise_kernel, dim3(blocks_for((n + 3) / 4, threads), (unsigned)batch), threads, 0, s->stream,
               static_cast<const d4j_renoise_coef *>(scratch), n, src, mask, x);
    return launched("renoise_kernel");
}

}  // namespace d4j::cuda
