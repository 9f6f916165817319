// The linear and attention families of d4j.h.
#include <cmath>

#include "front_internal.h"

using namespace d4j::front;

namespace {

// rows >= 1, features in [1, 2^24], and rows * features * 4 in range.
d4j_status check_linear_dims(int64_t rows, int32_t in, int32_t out, int64_t *x_bytes, int64_t *y_bytes,
                             int64_t *w_bytes) {
    if (rows < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "rows must be >= 1, got %lld", (long long)rows);
    if (in < 1 || in > (1 << 24))
        return fail(D4J_ERR_INVALID_ARGUMENT, "in_features must be in [1, 2^24], got %d", in);
    if (out < 1 || out > (1 << 24))
        return fail(D4J_ERR_INVALID_ARGUMENT, "out_features must be in [1, 2^24], got %d", out);
    const int32_t wide = in > out ? in : out;
    if (rows > INT64_MAX / 4 / wide)
        return fail(D4J_ERR_INVALID_ARGUMENT, "rows %lld x features %d overflows a 64-bit byte count", (long long)rows,
                    wide);
    *x_bytes = rows * in * 4;
    *y_bytes = rows * out * 4;
    *w_bytes = (int64_t)in * out * 4;
    return D4J_OK;
}

// batch, tokens, heads >= 1, head_dim in [1, 512], tokens <= 2^20, finite
// scale; yields the bytes of a [B, L, H, D] tensor and of a [B, H, L] one.
d4j_status check_attention_dims(int32_t batch, int32_t tokens, int32_t heads, int32_t head_dim, float scale,
                                int64_t *t_bytes, int64_t *row_bytes) {
    if (batch < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %d", batch);
    if (tokens < 1 || tokens > (1 << 20))
        return fail(D4J_ERR_INVALID_ARGUMENT, "tokens must be in [1, 2^20], got %d", tokens);
    if (heads < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "heads must be >= 1, got %d", heads);
    if (head_dim < 1 || head_dim > 512)
        return fail(D4J_ERR_INVALID_ARGUMENT, "head_dim must be in [1, 512], got %d", head_dim);
    if (!std::isfinite(scale)) return fail(D4J_ERR_INVALID_ARGUMENT, "scale must be finite, got %g", (double)scale);
    // batch * tokens * heads * head_dim * 4 without overflow
    int64_t n = (int64_t)batch * tokens;  // < 2^51
    if (n > INT64_MAX / 4 / 512 / heads)
        return fail(D4J_ERR_INVALID_ARGUMENT, "batch %d x tokens %d x heads %d overflows", batch, tokens, heads);
    *row_bytes = n * heads * 4;
    *t_bytes = n * heads * head_dim * 4;
    return D4J_OK;
}

// q, k, v and out: [B, L, H, D] tensors of this backend.
d4j_status check_attention_tensors(const d4j_backend *backend, const d4j_buffer *q, const d4j_buffer *k,
                                   const d4j_buffer *v, const d4j_buffer *out, int64_t t_bytes) {
    D4J_TRY(check_buffer("q", q, backend, t_bytes));
    D4J_TRY(check_buffer("k", k, backend, t_bytes));
    D4J_TRY(check_buffer("v", v, backend, t_bytes));
    return check_buffer("out", out, backend, t_bytes);
}

}  // namespace

D4J_ENTRY_FORWARDS_TO(d4j_linear_forward, linear_forward);
D4J_ENTRY_FORWARDS_TO(d4j_linear_backward, linear_backward);
D4J_ENTRY_FORWARDS_TO(d4j_attention_forward, attention_forward);
D4J_ENTRY_FORWARDS_TO(d4j_attention_backward, attention_backward);

extern "C" {

d4j_status d4j_linear_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *weight,
                              const d4j_buffer *bias, int64_t rows, int32_t in_features, int32_t out_features,
                              d4j_buffer *y) {
    D4J_USE_BACKEND(backend);
    int64_t xb, yb, wb;
    D4J_TRY(check_linear_dims(rows, in_features, out_features, &xb, &yb, &wb));
    D4J_TRY(check_buffer("x", x, backend, xb));
    D4J_TRY(check_buffer("weight", weight, backend, wb));
    if (bias != nullptr) D4J_TRY(check_buffer("bias", bias, backend, (int64_t)out_features * 4));
    D4J_TRY(check_buffer("y", y, backend, yb));
    D4J_TRY(check_outputs_disjoint({{"y", y, yb}},
                                   {{"x", x, xb}, {"weight", weight, wb}, {"bias", bias, (int64_t)out_features * 4}}));
    return guarded([&] {
        return backend->iface->linear_forward(backend->state, (const float *)x->ptr, (const float *)weight->ptr,
                                              bias ? (const float *)bias->ptr : nullptr, rows, in_features,
                                              out_features, (float *)y->ptr);
    });
}

d4j_status d4j_linear_backward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *weight,
                               const d4j_buffer *dy, int64_t rows, int32_t in_features, int32_t out_features,
                               d4j_buffer *dx, d4j_buffer *dweight, d4j_buffer *dbias) {
    D4J_USE_BACKEND(backend);
    int64_t xb, yb, wb;
    D4J_TRY(check_linear_dims(rows, in_features, out_features, &xb, &yb, &wb));
    D4J_TRY(check_buffer("x", x, backend, xb));
    D4J_TRY(check_buffer("weight", weight, backend, wb));
    D4J_TRY(check_buffer("dy", dy, backend, yb));
    if (dx != nullptr) D4J_TRY(check_buffer("dx", dx, backend, xb));
    if (dweight != nullptr) D4J_TRY(check_buffer("dweight", dweight, backend, wb));
    if (dbias != nullptr) D4J_TRY(check_buffer("dbias", dbias, backend, (int64_t)out_features * 4));
    D4J_TRY(check_outputs_disjoint(
        {{"dx", dx, xb}, {"dweight", dweight, wb}, {"dbias", dbias, (int64_t)out_features * 4}},
        {{"x", x, xb}, {"weight", weight, wb}, {"dy", dy, yb}}));
    if (dx == nullptr && dweight == nullptr && dbias == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->linear_backward(backend->state, (const float *)x->ptr, (const float *)weight->ptr,
                                               (const float *)dy->ptr, rows, in_features, out_features,
                                               dx ? (float *)dx->ptr : nullptr, dweight ? (float *)dweight->ptr : nullptr,
                                               dbias ? (float *)dbias->ptr : nullptr);
    });
}

d4j_status d4j_attention_forward(d4j_backend *backend, const d4j_buffer *q, const d4j_buffer *k, const d4j_buffer *v,
                                 int32_t batch, int32_t tokens, int32_t heads, int32_t head_dim, float scale,
                                 d4j_buffer *out, d4j_buffer *lse) {
    D4J_USE_BACKEND(backend);
    int64_t tb, rb;
    D4J_TRY(check_attention_dims(batch, tokens, heads, head_dim, scale, &tb, &rb));
    D4J_TRY(check_attention_tensors(backend, q, k, v, out, tb));
    if (lse != nullptr) D4J_TRY(check_buffer("lse", lse, backend, rb));
    D4J_TRY(check_outputs_disjoint({{"out", out, tb}, {"lse", lse, rb}}, {{"q", q, tb}, {"k", k, tb}, {"v", v, tb}}));
    return guarded([&] {
        return backend->iface->attention_forward(backend->state, (const float *)q->ptr, (const float *)k->ptr,
                                                 (const float *)v->ptr, batch, tokens, heads, head_dim, scale,
                                                 (float *)out->ptr, lse ? (float *)lse->ptr : nullptr);
    });
}

d4j_status d4j_attention_backward(d4j_backend *backend, const d4j_buffer *q, const d4j_buffer *k, const d4j_buffer *v,
                                  const d4j_buffer *out, const d4j_buffer *lse, const d4j_buffer *dout, int32_t batch,
                                  int32_t tokens, int32_t heads, int32_t head_dim, float scale, d4j_buffer *dq,
                                  d4j_buffer *dk, d4j_buffer *dv) {
    D4J_USE_BACKEND(backend);
    int64_t tb, rb;
    D4J_TRY(check_attention_dims(batch, tokens, heads, head_dim, scale, &tb, &rb));
    D4J_TRY(check_attention_tensors(backend, q, k, v, out, tb));
    D4J_TRY(check_buffer("lse", lse, backend, rb));
    D4J_TRY(check_buffer("dout", dout, backend, tb));
    D4J_TRY(check_buffer("dq", dq, backend, tb));
    D4J_TRY(check_buffer("dk", dk, backend, tb));
    D4J_TRY(check_buffer("dv", dv, backend, tb));
    D4J_TRY(check_outputs_disjoint({{"dq", dq, tb}, {"dk", dk, tb}, {"dv", dv, tb}},
                                   {{"q", q, tb}, {"k", k, tb}, {"v", v, tb}, {"out", out, tb}, {"lse", lse, rb},
                                    {"dout", dout, tb}}));
    return guarded([&] {
        return backend->iface->attention_backward(backend->state, (const float *)q->ptr, (const float *)k->ptr,
                                                  (const float *)v->ptr, (const float *)out->ptr,
                                                  (const float *)lse->ptr, (const float *)dout->ptr, batch, tokens,
                                                  heads, head_dim, scale, (float *)dq->ptr, (float *)dk->ptr,
                                                  (float *)dv->ptr);
    });
}

}  // extern "C"
