// The conv2d family of d4j.h: geometry, sizes and overlap checks, then the backend.

#include "front_internal.h"

using namespace d4j::front;

namespace {

using ConvGeom = d4j_conv2d_geom;

constexpr int64_t kConvMaxElements = (int64_t)INT32_MAX;  // per tensor, see d4j.h
constexpr int32_t kConvMaxChannels = 1 << 20;

d4j_status conv_elements(const char *what, int64_t a, int64_t b, int64_t c, int64_t d, int64_t *out) {
    // each factor is in [1, 2^31), so every partial product of two fits; stop as soon as the bound is passed
    int64_t p = a * b;
    if (p <= kConvMaxElements) p *= c;
    if (p <= kConvMaxElements) p *= d;
    if (p > kConvMaxElements)
        return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: %s has %lld x %lld x %lld x %lld elements, the limit is 2^31 - 1",
                    what, (long long)a, (long long)b, (long long)c, (long long)d);
    *out = p;
    return D4J_OK;
}

// Validates the geometry arguments shared by forward and backward and derives the sizes.
d4j_status conv_geometry(int32_t n, int32_t h, int32_t w, int32_t c_in, int32_t c_out, int32_t k, int32_t stride,
                         int32_t pt, int32_t pl, int32_t pb, int32_t pr, int32_t up, ConvGeom *g, int64_t *x_elems,
                         int64_t *w_elems, int64_t *y_elems) {
    const struct { const char *name; int32_t v; } dims[] = {{"n", n}, {"h", h}, {"w", w}, {"c_in", c_in}, {"c_out", c_out}};
    for (const auto &d : dims)
        if (d.v < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: %s must be >= 1, got %d", d.name, d.v);
    if (c_in > kConvMaxChannels || c_out > kConvMaxChannels)
        return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: c_in = %d and c_out = %d must be <= 2^20", c_in, c_out);
    if (k != 1 && k != 3) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: kernel_size must be 1 or 3, got %d", k);
    if (stride != 1 && stride != 2) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: stride must be 1 or 2, got %d", stride);
    if (up != 0 && up != 1) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: upsample2x must be 0 or 1, got %d", up);
    const struct { const char *name; int32_t v; } pads[] = {
        {"pad_top", pt}, {"pad_left", pl}, {"pad_bottom", pb}, {"pad_right", pr}};
    for (const auto &p : pads)
        if (p.v < 0 || p.v > k - 1)
            return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: %s = %d must be in [0, kernel_size - 1 = %d]", p.name, p.v,
                        k - 1);
    const int64_t H = up ? 2 * (int64_t)h : h, W = up ? 2 * (int64_t)w : w;
    if (H + pt + pb < k || W + pl + pr < k)
        return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: the padded input %lld x %lld is smaller than the %dx%d kernel",
                    (long long)(H + pt + pb), (long long)(W + pl + pr), k, k);
    const int64_t h_out = (H + pt + pb - k) / stride + 1, w_out = (W + pl + pr - k) / stride + 1;
    int64_t u_elems;
    D4J_TRY(conv_elements("x", n, h, w, c_in, x_elems));
    D4J_TRY(conv_elements("the upsampled input", n, H, W, c_in, &u_elems));
    D4J_TRY(conv_elements("weight", k, k, c_in, c_out, w_elems));
    D4J_TRY(conv_elements("y", n, h_out, w_out, c_out, y_elems));
    *g = ConvGeom{n, h, w, c_in, c_out, k, stride, pt, pl, up, (int32_t)H, (int32_t)W, (int32_t)h_out, (int32_t)w_out, 0};
    return D4J_OK;
}

// The floats of the backend's prepared form of g's weights (0: none; g.n does not matter).
int64_t prepared_floats(const d4j_backend *backend, ConvGeom g) {
    if (backend->iface->conv2d_prepared_floats == nullptr) return 0;
    g.n = 1;
    g.prepared = 0;
    return backend->iface->conv2d_prepared_floats(backend->state, &g);
}

// The weight argument of a forward: the HWIO weights (we elements) or, with prepared, the backend's prepared form
// of them for this geometry. Sets the bytes it is read as and marks g.
d4j_status check_weight(const d4j_backend *backend, const d4j_buffer *weight, ConvGeom *g, int64_t we, bool prepared,
                        int64_t *bytes) {
    if (!prepared) {
        *bytes = we * 4;
        return check_buffer("weight", weight, backend, *bytes);
    }
    const int64_t floats = prepared_floats(backend, *g);
    if (floats == 0)
        return fail(D4J_ERR_UNSUPPORTED,
                    "conv2d: the %s backend has no prepared weights for this geometry (%dx%d, c_in %d, c_out %d, "
                    "kernel %d, stride %d, upsample2x %d): pass the weights to the plain forward",
                    backend->iface->name, g->h, g->w, g->c_in, g->c_out, g->k, g->stride, g->upsample2x);
    *bytes = floats * 4;
    g->prepared = 1;
    return check_buffer("prepared", weight, backend, *bytes);
}

d4j_status conv_forward(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w, int32_t c_in,
                        const d4j_buffer *weight, bool prepared, const d4j_buffer *bias, int32_t c_out,
                        int32_t kernel_size, int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom,
                        int32_t pad_right, int32_t upsample2x, d4j_buffer *y) {
    D4J_USE_BACKEND(backend);
    ConvGeom g;
    int64_t xe, we, ye, wb;
    D4J_TRY(conv_geometry(n, h, w, c_in, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                          upsample2x, &g, &xe, &we, &ye));
    D4J_TRY(check_buffer("x", x, backend, xe * 4));
    D4J_TRY(check_weight(backend, weight, &g, we, prepared, &wb));
    if (bias != nullptr) D4J_TRY(check_buffer("bias", bias, backend, (int64_t)c_out * 4));
    D4J_TRY(check_buffer("y", y, backend, ye * 4));
    D4J_TRY(check_outputs_disjoint({{"y", y, ye * 4}},
                                   {{"x", x, xe * 4}, {"weight", weight, wb}, {"bias", bias, (int64_t)c_out * 4}}));
    return guarded([&] {
        return backend->iface->conv2d_forward(backend->state, &g, (const float *)x->ptr, (const float *)weight->ptr,
                                              bias ? (const float *)bias->ptr : nullptr, (float *)y->ptr);
    });
}

d4j_status gn_conv_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb, const d4j_buffer *gamma,
                           const d4j_buffer *beta, const d4j_buffer *mean, const d4j_buffer *rstd, int32_t num_groups,
                           int32_t apply_silu, int32_t n, int32_t h, int32_t w, int32_t c_in, const d4j_buffer *weight,
                           bool prepared, const d4j_buffer *bias, int32_t c_out, int32_t kernel_size, int32_t stride,
                           int32_t pad_top, int32_t pad_left, int32_t pad_bottom, int32_t pad_right,
                           int32_t upsample2x, d4j_buffer *y) {
    D4J_USE_BACKEND(backend);
    ConvGeom g;
    int64_t xe, we, ye, wb;
    D4J_TRY(conv_geometry(n, h, w, c_in, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                          upsample2x, &g, &xe, &we, &ye));
    if (num_groups < 1 || c_in % num_groups != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "group_norm_conv2d: num_groups = %d must be >= 1 and divide c_in = %d",
                    num_groups, c_in);
    D4J_TRY(check_flag("apply_silu", apply_silu));
    const int64_t cb = (int64_t)c_in * 4, sb = (int64_t)n * num_groups * 4, tbb = (int64_t)n * c_in * 4;
    D4J_TRY(check_buffer("x", x, backend, xe * 4));
    if (tb != nullptr) D4J_TRY(check_buffer("tb", tb, backend, tbb));
    D4J_TRY(check_buffer("gamma", gamma, backend, cb));
    D4J_TRY(check_buffer("beta", beta, backend, cb));
    D4J_TRY(check_buffer("mean", mean, backend, sb));
    D4J_TRY(check_buffer("rstd", rstd, backend, sb));
    D4J_TRY(check_weight(backend, weight, &g, we, prepared, &wb));
    if (bias != nullptr) D4J_TRY(check_buffer("bias", bias, backend, (int64_t)c_out * 4));
    D4J_TRY(check_buffer("y", y, backend, ye * 4));
    D4J_TRY(check_outputs_disjoint({{"y", y, ye * 4}},
                                   {{"x", x, xe * 4}, {"tb", tb, tbb}, {"gamma", gamma, cb}, {"beta", beta, cb},
                                    {"mean", mean, sb}, {"rstd", rstd, sb}, {"weight", weight, wb},
                                    {"bias", bias, (int64_t)c_out * 4}}));
    const d4j_gn_input gn{tb ? (const float *)tb->ptr : nullptr, (const float *)gamma->ptr, (const float *)beta->ptr,
                          (const float *)mean->ptr, (const float *)rstd->ptr, num_groups, apply_silu};
    return guarded([&] {
        return backend->iface->group_norm_conv2d_forward(backend->state, &g, &gn, (const float *)x->ptr,
                                                         (const float *)weight->ptr,
                                                         bias ? (const float *)bias->ptr : nullptr, (float *)y->ptr);
    });
}

}  // namespace

extern "C" {

d4j_status d4j_conv2d_forward(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w, int32_t c_in,
                              const d4j_buffer *weight, const d4j_buffer *bias, int32_t c_out, int32_t kernel_size,
                              int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom, int32_t pad_right,
                              int32_t upsample2x, d4j_buffer *y) {
    return conv_forward(backend, x, n, h, w, c_in, weight, false, bias, c_out, kernel_size, stride, pad_top, pad_left,
                        pad_bottom, pad_right, upsample2x, y);
}

d4j_status d4j_conv2d_forward_prepared(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w,
                                       int32_t c_in, const d4j_buffer *prepared, const d4j_buffer *bias,
                                       int32_t c_out, int32_t kernel_size, int32_t stride, int32_t pad_top,
                                       int32_t pad_left, int32_t pad_bottom, int32_t pad_right, int32_t upsample2x,
                                       d4j_buffer *y) {
    return conv_forward(backend, x, n, h, w, c_in, prepared, true, bias, c_out, kernel_size, stride, pad_top,
                        pad_left, pad_bottom, pad_right, upsample2x, y);
}

d4j_status d4j_group_norm_conv2d_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                         const d4j_buffer *gamma, const d4j_buffer *beta, const d4j_buffer *mean,
                                         const d4j_buffer *rstd, int32_t num_groups, int32_t apply_silu, int32_t n,
                                         int32_t h, int32_t w, int32_t c_in, const d4j_buffer *weight,
                                         const d4j_buffer *bias, int32_t c_out, int32_t kernel_size, int32_t stride,
                                         int32_t pad_top, int32_t pad_left, int32_t pad_bottom, int32_t pad_right,
                                         int32_t upsample2x, d4j_buffer *y) {
    return gn_conv_forward(backend, x, tb, gamma, beta, mean, rstd, num_groups, apply_silu, n, h, w, c_in, weight,
                           false, bias, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                           upsample2x, y);
}

d4j_status d4j_group_norm_conv2d_forward_prepared(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                                  const d4j_buffer *gamma, const d4j_buffer *beta,
                                                  const d4j_buffer *mean, const d4j_buffer *rstd, int32_t num_groups,
                                                  int32_t apply_silu, int32_t n, int32_t h, int32_t w, int32_t c_in,
                                                  const d4j_buffer *prepared, const d4j_buffer *bias, int32_t c_out,
                                                  int32_t kernel_size, int32_t stride, int32_t pad_top,
                                                  int32_t pad_left, int32_t pad_bottom, int32_t pad_right,
                                                  int32_t upsample2x, d4j_buffer *y) {
    return gn_conv_forward(backend, x, tb, gamma, beta, mean, rstd, num_groups, apply_silu, n, h, w, c_in, prepared,
                           true, bias, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                           upsample2x, y);
}

d4j_status d4j_conv2d_prepared_size(d4j_backend *backend, int32_t h, int32_t w, int32_t c_in, int32_t c_out,
                                    int32_t kernel_size, int32_t stride, int32_t pad_top, int32_t pad_left,
                                    int32_t pad_bottom, int32_t pad_right, int32_t upsample2x, int64_t *bytes) {
    D4J_USE_BACKEND(backend);
    if (bytes == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d_prepared_size: bytes is NULL");
    ConvGeom g;
    int64_t xe, we, ye;
    D4J_TRY(conv_geometry(1, h, w, c_in, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                          upsample2x, &g, &xe, &we, &ye));
    *bytes = prepared_floats(backend, g) * 4;
    return D4J_OK;
}

d4j_status d4j_conv2d_prepare(d4j_backend *backend, const d4j_buffer *weight, int32_t h, int32_t w, int32_t c_in,
                              int32_t c_out, int32_t kernel_size, int32_t stride, int32_t pad_top, int32_t pad_left,
                              int32_t pad_bottom, int32_t pad_right, int32_t upsample2x, d4j_buffer *prepared) {
    D4J_USE_BACKEND(backend);
    ConvGeom g;
    int64_t xe, we, ye, pb;
    D4J_TRY(conv_geometry(1, h, w, c_in, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                          upsample2x, &g, &xe, &we, &ye));
    D4J_TRY(check_buffer("weight", weight, backend, we * 4));
    ConvGeom gp = g;
    D4J_TRY(check_weight(backend, prepared, &gp, we, true, &pb));
    D4J_TRY(check_outputs_disjoint({{"prepared", prepared, pb}}, {{"weight", weight, we * 4}}));
    return guarded([&] {
        return backend->iface->conv2d_prepare(backend->state, &g, (const float *)weight->ptr, (float *)prepared->ptr);
    });
}

d4j_status d4j_conv2d_backward(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w,
                               int32_t c_in, const d4j_buffer *weight, int32_t c_out, int32_t kernel_size,
                               int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom,
                               int32_t pad_right, int32_t upsample2x, const d4j_buffer *dy, d4j_buffer *dx,
                               d4j_buffer *dweight, d4j_buffer *dbias) {
    D4J_USE_BACKEND(backend);
    ConvGeom g;
    int64_t xe, we, ye;
    D4J_TRY(conv_geometry(n, h, w, c_in, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                          upsample2x, &g, &xe, &we, &ye));
    D4J_TRY(check_buffer("dy", dy, backend, ye * 4));
    if (dx != nullptr) {
        D4J_TRY(check_buffer("dx", dx, backend, xe * 4));
        if (weight == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d backward: weight is null but dx is requested");
    }
    if (dweight != nullptr) {
        D4J_TRY(check_buffer("dweight", dweight, backend, we * 4));
        if (x == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d backward: x is null but dweight is requested");
    }
    if (dbias != nullptr) D4J_TRY(check_buffer("dbias", dbias, backend, (int64_t)c_out * 4));
    if (x != nullptr) D4J_TRY(check_buffer("x", x, backend, xe * 4));
    if (weight != nullptr) D4J_TRY(check_buffer("weight", weight, backend, we * 4));
    D4J_TRY(check_outputs_disjoint(
        {{"dx", dx, xe * 4}, {"dweight", dweight, we * 4}, {"dbias", dbias, (int64_t)c_out * 4}},
        {{"x", x, xe * 4}, {"weight", weight, we * 4}, {"dy", dy, ye * 4}}));
    if (dx == nullptr && dweight == nullptr && dbias == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->conv2d_backward(
            backend->state, &g, dweight ? (const float *)x->ptr : nullptr, dx ? (const float *)weight->ptr : nullptr,
            (const float *)dy->ptr, dx ? (float *)dx->ptr : nullptr, dweight ? (float *)dweight->ptr : nullptr,
            dbias ? (float *)dbias->ptr : nullptr);
    });
}

}  // extern "C"
