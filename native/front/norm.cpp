// The norm family of d4j.h: GroupNorm (plain and with a per-channel bias), SiLU
// and the scaled residual add.
#include <cmath>

#include "front_internal.h"

using namespace d4j::front;

namespace {

// Shape of a GroupNorm call: every dimension >= 1, num_groups | c, byte counts in range.
d4j_status check_norm_shape(int32_t n, int32_t h, int32_t w, int32_t c, int32_t groups, int64_t *hw,
                            int64_t *tensor_bytes) {
    if (n < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "n (batch) must be >= 1, got %d", n);
    if (h < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "h must be >= 1, got %d", h);
    if (w < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "w must be >= 1, got %d", w);
    if (c < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "c (channels) must be >= 1, got %d", c);
    if (groups < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "num_groups must be >= 1, got %d", groups);
    if (c % groups != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "num_groups = %d must divide the channel count c = %d", groups, c);
    // h*w < 2^62 and c < 2^31: the products below are checked before they are formed.
    int64_t p = (int64_t)h * w;
    if (p > INT64_MAX / 4 / c / n)
        return fail(D4J_ERR_INVALID_ARGUMENT, "tensor [%d, %d, %d, %d] overflows a 64-bit byte count", n, h, w, c);
    *hw = p;
    *tensor_bytes = p * c * n * 4;
    return D4J_OK;
}

d4j_status group_norm_forward_impl(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                   bool with_bias, const d4j_buffer *gamma, const d4j_buffer *beta, int32_t n,
                                   int32_t h, int32_t w, int32_t c, int32_t groups, float eps, int32_t silu,
                                   d4j_buffer *y, d4j_buffer *mean, d4j_buffer *rstd) {
    int64_t hw = 0, bytes = 0;
    D4J_TRY(check_norm_shape(n, h, w, c, groups, &hw, &bytes));
    if (!(std::isfinite(eps) && eps > 0.0f))
        return fail(D4J_ERR_INVALID_ARGUMENT, "eps must be finite and > 0, got %g", (double)eps);
    D4J_TRY(check_flag("apply_silu", silu));
    const int64_t cbytes = (int64_t)c * 4, sbytes = (int64_t)n * groups * 4, tbbytes = (int64_t)n * c * 4;
    D4J_TRY(check_buffer("x", x, backend, bytes));
    if (with_bias) D4J_TRY(check_buffer("tb", tb, backend, tbbytes));
    D4J_TRY(check_buffer("gamma", gamma, backend, cbytes));
    D4J_TRY(check_buffer("beta", beta, backend, cbytes));
    if (y != nullptr) D4J_TRY(check_buffer("y", y, backend, bytes));  // NULL: the statistics only
    D4J_TRY(check_buffer("mean", mean, backend, sbytes));
    D4J_TRY(check_buffer("rstd", rstd, backend, sbytes));
    D4J_TRY(check_outputs_disjoint({{"y", y, bytes}, {"mean", mean, sbytes}, {"rstd", rstd, sbytes}},
                                   {{"x", x, bytes}, {"tb", with_bias ? tb : nullptr, tbbytes},
                                    {"gamma", gamma, cbytes}, {"beta", beta, cbytes}}));
    return guarded([&] {
        return backend->iface->group_norm_forward(
            backend->state, (const float *)x->ptr, with_bias ? (const float *)tb->ptr : nullptr,
            (const float *)gamma->ptr, (const float *)beta->ptr, n, hw, c, groups, eps, silu,
            y ? (float *)y->ptr : nullptr, (float *)mean->ptr, (float *)rstd->ptr);
    });
}

d4j_status group_norm_backward_impl(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                    const d4j_buffer *tb, bool with_bias, const d4j_buffer *gamma,
                                    const d4j_buffer *beta, const d4j_buffer *mean, const d4j_buffer *rstd,
                                    int32_t n, int32_t h, int32_t w, int32_t c, int32_t groups, int32_t silu,
                                    d4j_buffer *dx, d4j_buffer *dtb, d4j_buffer *dgamma, d4j_buffer *dbeta) {
    int64_t hw = 0, bytes = 0;
    D4J_TRY(check_norm_shape(n, h, w, c, groups, &hw, &bytes));
    D4J_TRY(check_flag("apply_silu", silu));
    const int64_t cbytes = (int64_t)c * 4, sbytes = (int64_t)n * groups * 4, tbbytes = (int64_t)n * c * 4;
    D4J_TRY(check_buffer("dy", dy, backend, bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    if (with_bias) D4J_TRY(check_buffer("tb", tb, backend, tbbytes));
    D4J_TRY(check_buffer("gamma", gamma, backend, cbytes));
    if (silu) {
        D4J_TRY(check_buffer("beta (needed with apply_silu = 1)", beta, backend, cbytes));
    } else if (beta != nullptr) {
        D4J_TRY(check_buffer("beta", beta, backend, cbytes));
    }
    D4J_TRY(check_buffer("mean", mean, backend, sbytes));
    D4J_TRY(check_buffer("rstd", rstd, backend, sbytes));
    if (dx != nullptr) D4J_TRY(check_buffer("dx", dx, backend, bytes));
    if (dtb != nullptr) D4J_TRY(check_buffer("dtb", dtb, backend, tbbytes));
    if (dgamma != nullptr) D4J_TRY(check_buffer("dgamma", dgamma, backend, cbytes));
    if (dbeta != nullptr) D4J_TRY(check_buffer("dbeta", dbeta, backend, cbytes));
    D4J_TRY(check_outputs_disjoint(
        {{"dx", dx, bytes}, {"dtb", dtb, tbbytes}, {"dgamma", dgamma, cbytes}, {"dbeta", dbeta, cbytes}},
        {{"dy", dy, bytes}, {"x", x, bytes}, {"tb", tb, tbbytes}, {"gamma", gamma, cbytes}, {"beta", beta, cbytes},
         {"mean", mean, sbytes}, {"rstd", rstd, sbytes}}));
    if (dx == nullptr && dtb == nullptr && dgamma == nullptr && dbeta == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->group_norm_backward(
            backend->state, (const float *)dy->ptr, (const float *)x->ptr,
            with_bias ? (const float *)tb->ptr : nullptr, (const float *)gamma->ptr,
            beta ? (const float *)beta->ptr : nullptr, (const float *)mean->ptr, (const float *)rstd->ptr, n, hw, c,
            groups, silu, dx ? (float *)dx->ptr : nullptr, dtb ? (float *)dtb->ptr : nullptr,
            dgamma ? (float *)dgamma->ptr : nullptr, dbeta ? (float *)dbeta->ptr : nullptr);
    });
}

}  // namespace

D4J_ENTRY_FORWARDS_TO(d4j_silu_forward, silu_forward);
D4J_ENTRY_FORWARDS_TO(d4j_silu_backward, silu_backward);
D4J_ENTRY_FORWARDS_TO(d4j_residual_add, residual_add);
D4J_ENTRY_FORWARDS_TO(d4j_residual_add_backward, residual_add_backward);

extern "C" {

d4j_status d4j_group_norm_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *gamma,
                                  const d4j_buffer *beta, int32_t n, int32_t h, int32_t w, int32_t c,
                                  int32_t num_groups, float eps, int32_t apply_silu, d4j_buffer *y, d4j_buffer *mean,
                                  d4j_buffer *rstd) {
    D4J_USE_BACKEND(backend);
    return group_norm_forward_impl(backend, x, nullptr, false, gamma, beta, n, h, w, c, num_groups, eps, apply_silu,
                                   y, mean, rstd);
}

d4j_status d4j_bias_group_norm_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                       const d4j_buffer *gamma, const d4j_buffer *beta, int32_t n, int32_t h,
                                       int32_t w, int32_t c, int32_t num_groups, float eps, int32_t apply_silu,
                                       d4j_buffer *y, d4j_buffer *mean, d4j_buffer *rstd) {
    D4J_USE_BACKEND(backend);
    return group_norm_forward_impl(backend, x, tb, true, gamma, beta, n, h, w, c, num_groups, eps, apply_silu, y,
                                   mean, rstd);
}

d4j_status d4j_group_norm_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                   const d4j_buffer *gamma, const d4j_buffer *beta, const d4j_buffer *mean,
                                   const d4j_buffer *rstd, int32_t n, int32_t h, int32_t w, int32_t c,
                                   int32_t num_groups, int32_t apply_silu, d4j_buffer *dx, d4j_buffer *dgamma,
                                   d4j_buffer *dbeta) {
    D4J_USE_BACKEND(backend);
    return group_norm_backward_impl(backend, dy, x, nullptr, false, gamma, beta, mean, rstd, n, h, w, c, num_groups,
                                    apply_silu, dx, nullptr, dgamma, dbeta);
}

d4j_status d4j_bias_group_norm_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                        const d4j_buffer *tb, const d4j_buffer *gamma, const d4j_buffer *beta,
                                        const d4j_buffer *mean, const d4j_buffer *rstd, int32_t n, int32_t h,
                                        int32_t w, int32_t c, int32_t num_groups, int32_t apply_silu, d4j_buffer *dx,
                                        d4j_buffer *dtb, d4j_buffer *dgamma, d4j_buffer *dbeta) {
    D4J_USE_BACKEND(backend);
    return group_norm_backward_impl(backend, dy, x, tb, true, gamma, beta, mean, rstd, n, h, w, c, num_groups,
                                    apply_silu, dx, dtb, dgamma, dbeta);
}

d4j_status d4j_silu_forward(d4j_backend *backend, const d4j_buffer *x, int64_t count, d4j_buffer *y) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    D4J_TRY(check_buffer("y", y, backend, bytes));
    D4J_TRY(check_no_overlap({"y", y, bytes}, {"x", x, bytes}, InPlace::allowed));
    if (count == 0) return D4J_OK;
    return guarded(
        [&] { return backend->iface->silu_forward(backend->state, (const float *)x->ptr, count, (float *)y->ptr); });
}

d4j_status d4j_silu_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x, int64_t count,
                             d4j_buffer *dx) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("dy", dy, backend, bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    D4J_TRY(check_buffer("dx", dx, backend, bytes));
    D4J_TRY(check_no_overlap({"dx", dx, bytes}, {"dy", dy, bytes}, InPlace::allowed));
    D4J_TRY(check_no_overlap({"dx", dx, bytes}, {"x", x, bytes}, InPlace::allowed));
    if (count == 0) return D4J_OK;
    return guarded([&] {
        return backend->iface->silu_backward(backend->state, (const float *)dy->ptr, (const float *)x->ptr, count,
                                             (float *)dx->ptr);
    });
}

d4j_status d4j_residual_add(d4j_backend *backend, const d4j_buffer *a, const d4j_buffer *b, int64_t count,
                            float inv_scale, d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    if (!std::isfinite(inv_scale))
        return fail(D4J_ERR_INVALID_ARGUMENT, "inv_scale must be finite, got %g", (double)inv_scale);
    D4J_TRY(check_buffer("a", a, backend, bytes));
    D4J_TRY(check_buffer("b", b, backend, bytes));
    D4J_TRY(check_buffer("out", out, backend, bytes));
    D4J_TRY(check_no_overlap({"out", out, bytes}, {"a", a, bytes}, InPlace::allowed));
    D4J_TRY(check_no_overlap({"out", out, bytes}, {"b", b, bytes}, InPlace::allowed));
    if (count == 0) return D4J_OK;
    return guarded([&] {
        return backend->iface->residual_add(backend->state, (const float *)a->ptr, (const float *)b->ptr, count,
                                            inv_scale, (float *)out->ptr);
    });
}

d4j_status d4j_residual_add_backward(d4j_backend *backend, const d4j_buffer *dout, int64_t count, float inv_scale,
                                     d4j_buffer *da, d4j_buffer *db) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    if (!std::isfinite(inv_scale))
        return fail(D4J_ERR_INVALID_ARGUMENT, "inv_scale must be finite, got %g", (double)inv_scale);
    D4J_TRY(check_buffer("dout", dout, backend, bytes));
    if (da != nullptr) D4J_TRY(check_buffer("da", da, backend, bytes));
    if (db != nullptr) D4J_TRY(check_buffer("db", db, backend, bytes));
    D4J_TRY(check_no_overlap({"da", da, bytes}, {"dout", dout, bytes}, InPlace::allowed));
    D4J_TRY(check_no_overlap({"db", db, bytes}, {"dout", dout, bytes}, InPlace::allowed));
    D4J_TRY(check_no_overlap({"da", da, bytes}, {"db", db, bytes}));
    if (count == 0 || (da == nullptr && db == nullptr)) return D4J_OK;
    return guarded([&] {
        return backend->iface->residual_add_backward(backend->state, (const float *)dout->ptr, count, inv_scale,
                                                     da ? (float *)da->ptr : nullptr,
                                                     db ? (float *)db->ptr : nullptr);
    });
}

}  // extern "C"
