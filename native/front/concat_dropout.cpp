// The concat and dropout families of d4j.h.
#include <cmath>

#include "front_internal.h"

using namespace d4j::front;

namespace {

constexpr int32_t kConcatMaxChannels = 1 << 20;

// rows >= 1, channel counts in range, byte sizes of a, b and out without overflow.
d4j_status check_concat_dims(int64_t rows, int32_t c1, int32_t c2, int64_t *a_bytes, int64_t *b_bytes,
                             int64_t *out_bytes) {
    if (rows < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "rows (N*H*W) must be >= 1, got %lld", (long long)rows);
    if (c1 < 1 || c1 > kConcatMaxChannels)
        return fail(D4J_ERR_INVALID_ARGUMENT, "c1 must be in [1, %d], got %d", kConcatMaxChannels, c1);
    if (c2 < 1 || c2 > kConcatMaxChannels)
        return fail(D4J_ERR_INVALID_ARGUMENT, "c2 must be in [1, %d], got %d", kConcatMaxChannels, c2);
    const int64_t c = (int64_t)c1 + c2;  // <= 2^21: rows * c * 4 checked against overflow below
    if (rows > INT64_MAX / 4 / c)
        return fail(D4J_ERR_INVALID_ARGUMENT, "rows %lld x %lld channels overflows a 64-bit byte count",
                    (long long)rows, (long long)c);
    *a_bytes = rows * c1 * 4;
    *b_bytes = rows * c2 * 4;
    *out_bytes = rows * c * 4;
    return D4J_OK;
}

// Forward (x -> y) and backward (dy -> dx) are one map with the same mask.
// The keep decision u >= t is made on the raw 32-bit Philox word against an
// integer threshold computed here once, in float64, from p: an exact integer
// comparison on every backend (no float uniform whose rounding or resolution
// could differ), all 32 bits of resolution, and one rounding of p in total
// (p * 2^32 is exact in float64; rounding it to an integer moves the drop
// probability t / 2^32 by at most 2^-33). t is capped at 2^32 - 1 so it fits
// in 32 bits (only p > 1 - 2^-33 is affected: keep probability 2^-32 instead
// of 1 - p). p = 0 gives t = 0: u >= 0 always holds, nothing is dropped, and
// s = 1.0f exactly, so y = x * 1 is a bit-exact copy.
d4j_status dropout_impl(d4j_backend *backend, const char *in_name, const d4j_buffer *in, int64_t count, double p,
                        uint64_t seed, uint64_t offset, const char *out_name, d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    if (!(std::isfinite(p) && p >= 0.0 && p < 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "dropout probability p must be finite and in [0, 1), got %g", p);
    D4J_TRY(check_buffer(in_name, in, backend, bytes));
    D4J_TRY(check_buffer(out_name, out, backend, bytes));
    D4J_TRY(check_no_overlap({out_name, out, bytes}, {in_name, in, bytes}, InPlace::allowed));
    if (count == 0) return D4J_OK;
    if (p == 0.0 && in->ptr == out->ptr) return D4J_OK;  // keeps everything, in place: nothing to do
    const double scaled = std::nearbyint(p * 4294967296.0);
    const uint32_t threshold = scaled >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)scaled;
    const float scale = (float)(1.0 / (1.0 - p));  // <= 2^53: finite in float32
    return guarded([&] {
        return backend->iface->dropout(backend->state, (const float *)in->ptr, count, seed, offset, threshold, scale,
                                       (float *)out->ptr);
    });
}

}  // namespace

D4J_ENTRY_FORWARDS_TO(d4j_concat_channels_forward, concat_forward);
D4J_ENTRY_FORWARDS_TO(d4j_concat_channels_backward, concat_backward);

extern "C" {

d4j_status d4j_concat_channels_forward(d4j_backend *backend, const d4j_buffer *a, const d4j_buffer *b, int64_t rows,
                                       int32_t c1, int32_t c2, d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    int64_t ab = 0, bb = 0, ob = 0;
    D4J_TRY(check_concat_dims(rows, c1, c2, &ab, &bb, &ob));
    D4J_TRY(check_buffer("a", a, backend, ab));
    D4J_TRY(check_buffer("b", b, backend, bb));
    D4J_TRY(check_buffer("out", out, backend, ob));
    D4J_TRY(check_outputs_disjoint({{"out", out, ob}}, {{"a", a, ab}, {"b", b, bb}}));
    return guarded([&] {
        return backend->iface->concat_forward(backend->state, (const float *)a->ptr, (const float *)b->ptr, rows, c1,
                                              c2, (float *)out->ptr);
    });
}

d4j_status d4j_concat_channels_backward(d4j_backend *backend, const d4j_buffer *dout, int64_t rows, int32_t c1,
                                        int32_t c2, d4j_buffer *da, d4j_buffer *db) {
    D4J_USE_BACKEND(backend);
    int64_t ab = 0, bb = 0, ob = 0;
    D4J_TRY(check_concat_dims(rows, c1, c2, &ab, &bb, &ob));
    D4J_TRY(check_buffer("dout", dout, backend, ob));
    if (da != nullptr) D4J_TRY(check_buffer("da", da, backend, ab));
    if (db != nullptr) D4J_TRY(check_buffer("db", db, backend, bb));
    D4J_TRY(check_outputs_disjoint({{"da", da, ab}, {"db", db, bb}}, {{"dout", dout, ob}}));
    if (da == nullptr && db == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->concat_backward(backend->state, (const float *)dout->ptr, rows, c1, c2,
                                               da ? (float *)da->ptr : nullptr, db ? (float *)db->ptr : nullptr);
    });
}

d4j_status d4j_dropout_forward(d4j_backend *backend, const d4j_buffer *x, int64_t count, double p, uint64_t seed,
                               uint64_t offset, d4j_buffer *y) {
    return dropout_impl(backend, "x", x, count, p, seed, offset, "y", y);
}

d4j_status d4j_dropout_backward(d4j_backend *backend, const d4j_buffer *dy, int64_t count, double p, uint64_t seed,
                                uint64_t offset, d4j_buffer *dx) {
    return dropout_impl(backend, "dy", dy, count, p, seed, offset, "dx", dx);
}

}  // extern "C"
