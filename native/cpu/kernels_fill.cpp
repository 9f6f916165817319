// Buffer fill (zeroing gradients, poisoning outputs in tests).
#include "cpu_kernels.h"

namespace d4j::cpu {

d4j_status fill_f32(void *state, float *dst, int64_t count, float value) {
    parallel_ranges(pool_of(state), count, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) dst[i] = value;
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
