// The optimiser family of d4j.h: gradient norm, AdamW and the EMA update.
#include <cmath>

#include "../common/optim_math.h"
#include "front_internal.h"

using namespace d4j::front;

namespace {

d4j_status check_count(int64_t count, int64_t *bytes) {
    if (count < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "count must be >= 1, got %lld", (long long)count);
    return checked_bytes("count", count, 4, bytes);
}

}  // namespace

D4J_ENTRY_FORWARDS_TO(d4j_grad_norm, grad_sumsq);

extern "C" {

d4j_status d4j_grad_norm(d4j_backend *backend, const d4j_buffer *grad, int64_t count, double *out_norm) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_grad_norm"));
    if (out_norm == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out_norm is null");
    int64_t bytes = 0;
    D4J_TRY(check_count(count, &bytes));
    D4J_TRY(check_buffer("grad", grad, backend, bytes));
    return guarded([&]() -> d4j_status {
        double sumsq = 0.0;
        D4J_TRY(backend->iface->grad_sumsq(backend->state, (const float *)grad->ptr, count, &sumsq));
        *out_norm = std::sqrt(sumsq);
        return D4J_OK;
    });
}

d4j_status d4j_adamw(d4j_backend *backend, d4j_buffer *param, const d4j_buffer *grad, d4j_buffer *m, d4j_buffer *v,
                     int64_t count, double lr, double beta1, double beta2, double eps, double weight_decay,
                     int64_t step, double grad_scale) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(check_count(count, &bytes));
    D4J_TRY(check_buffer("param", param, backend, bytes));
    D4J_TRY(check_buffer("grad", grad, backend, bytes));
    D4J_TRY(check_buffer("m", m, backend, bytes));
    D4J_TRY(check_buffer("v", v, backend, bytes));
    D4J_TRY(check_outputs_disjoint({{"param", param, bytes}, {"m", m, bytes}, {"v", v, bytes}}, {{"grad", grad, bytes}}));
    if (!(std::isfinite(lr) && lr >= 0.0)) return fail(D4J_ERR_INVALID_ARGUMENT, "lr must be finite and >= 0, got %g", lr);
    if (!(std::isfinite(beta1) && beta1 >= 0.0 && beta1 < 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "beta1 must be in [0, 1), got %g", beta1);
    if (!(std::isfinite(beta2) && beta2 >= 0.0 && beta2 < 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "beta2 must be in [0, 1), got %g", beta2);
    if (!(std::isfinite(eps) && eps > 0.0)) return fail(D4J_ERR_INVALID_ARGUMENT, "eps must be finite and > 0, got %g", eps);
    if (!(std::isfinite(weight_decay) && weight_decay >= 0.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "weight_decay must be finite and >= 0, got %g", weight_decay);
    if (!(std::isfinite(grad_scale) && grad_scale >= 0.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "grad_scale must be finite and >= 0, got %g", grad_scale);
    if (step < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "step must be >= 1 (1-based), got %lld", (long long)step);
    // float32 coefficients: each must be finite after rounding (eps below the
    // float32 range would round to 0 and divide by zero on v = 0).
    const double bc1 = 1.0 - std::pow(beta1, (double)step);
    const double bc2 = 1.0 - std::pow(beta2, (double)step);
    if (!(bc1 > 0.0 && bc2 > 0.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "bias corrections 1 - beta^step are zero (beta1 %g, beta2 %g, step %lld)",
                    beta1, beta2, (long long)step);
    d4j_adamw_coef c;
    c.grad_scale = (float)grad_scale;
    c.param_decay = (float)(1.0 - lr * weight_decay);
    c.b1 = (float)beta1;
    c.omb1 = (float)(1.0 - beta1);
    c.b2 = (float)beta2;
    c.omb2 = (float)(1.0 - beta2);
    c.step_size = (float)(lr / bc1);
    c.inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
    c.eps = (float)eps;
    const float all[] = {c.grad_scale, c.param_decay, c.step_size, c.inv_sqrt_bc2, c.eps};
    const char *what[] = {"grad_scale", "1 - lr * weight_decay", "lr / (1 - beta1^step)", "1 / sqrt(1 - beta2^step)", "eps"};
    for (int i = 0; i < 5; ++i)
        if (!std::isfinite(all[i]))
            return fail(D4J_ERR_INVALID_ARGUMENT, "%s does not fit in float32", what[i]);
    if (!(c.eps > 0.0f)) return fail(D4J_ERR_INVALID_ARGUMENT, "eps = %g rounds to 0 in float32", eps);
    return guarded([&] {
        return backend->iface->adamw(backend->state, &c, (float *)param->ptr, (const float *)grad->ptr, (float *)m->ptr,
                                     (float *)v->ptr, count);
    });
}

d4j_status d4j_ema_update(d4j_backend *backend, d4j_buffer *ema, const d4j_buffer *param, int64_t count, double decay) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(check_count(count, &bytes));
    D4J_TRY(check_buffer("ema", ema, backend, bytes));
    D4J_TRY(check_buffer("param", param, backend, bytes));
    D4J_TRY(check_no_overlap({"ema", ema, bytes}, {"param", param, bytes}));
    if (!(std::isfinite(decay) && decay >= 0.0 && decay <= 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "decay must be in [0, 1], got %g", decay);
    return guarded([&] {
        return backend->iface->ema_update(backend->state, (float *)ema->ptr, (const float *)param->ptr, count,
                                          (float)(1.0 - decay));
    });
}

}  // extern "C"
