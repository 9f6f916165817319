// The concat family on the CPU: channel concatenation of two NHWC tensors
// (the skip connections of UNet2DModel's up blocks) and its backward, a split.
// Pure copies, so every thread count gives the same bits. Parallel over rows:
// each task copies a contiguous range of rows, and a row is two contiguous
// runs (c1 and c2 floats), which memcpy moves at memory speed.
//
// Memory passes: forward reads a and b once, writes out once; backward reads
// dout once and writes da and db once.
#include <cstring>

#include "cpu_kernels.h"

namespace d4j::cpu {

namespace {

// Rows per task: about kGrain floats of output per task, at least one row.
int64_t rows_per_task(int32_t c) {
    int64_t r = kGrain / c;
    return r > 0 ? r : 1;
}

}  // namespace

d4j_status concat_forward(void *state, const float *a, const float *b, int64_t rows, int32_t c1, int32_t c2,
                          float *out) {
    const int64_t c = (int64_t)c1 + c2;
    parallel_ranges(pool_of(state), rows, rows_per_task((int32_t)c), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            std::memcpy(out + r * c, a + r * c1, (size_t)c1 * sizeof(float));
            std::memcpy(out + r * c + c1, b + r * c2, (size_t)c2 * sizeof(float));
        }
    });
    return D4J_OK;
}

d4j_status concat_backward(void *state, const float *dout, int64_t rows, int32_t c1, int32_t c2, float *da,
                           float *db) {
    const int64_t c = (int64_t)c1 + c2;
    parallel_ranges(pool_of(state), rows, rows_per_task((int32_t)c), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            if (da) std::memcpy(da + r * c1, dout + r * c, (size_t)c1 * sizeof(float));
            if (db) std::memcpy(db + r * c2, dout + r * c + c1, (size_t)c2 * sizeof(float));
        }
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
