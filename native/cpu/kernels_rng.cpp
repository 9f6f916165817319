// RNG kernel family on the CPU: raw Philox words and normals. The math is
// native/common/philox.h, shared with CUDA; this file only spreads it over
// threads. Compiled with -ffp-contract=off (see CMakeLists.txt) so normals are
// bit-identical to the device's.
#include "cpu_kernels.h"
#include "rng_fill.h"

namespace d4j::cpu {

D4J_CLONES static void uint32_range(uint64_t seed, uint64_t offset, uint32_t *out, int64_t begin, int64_t end) {
    int64_t i = begin;
    while (i < end) {
        d4j_u32x4 w = d4j_philox_block(seed, offset, (uint64_t)i >> 2);
        for (int64_t k = i & 3; k < 4 && i < end; ++k, ++i) out[i] = w.v[k];
    }
}

d4j_status rng_uint32(void *state, uint64_t seed, uint64_t offset, uint32_t *out, int64_t count) {
    parallel_ranges(pool_of(state), count, kGrain,
                    [&](int64_t b, int64_t e) { uint32_range(seed, offset, out, b, e); });
    return D4J_OK;
}

d4j_status rng_normal(void *state, uint64_t seed, uint64_t offset, float *out, int64_t count) {
    parallel_ranges(pool_of(state), count, kGrain,
                    [&](int64_t b, int64_t e) { fill_normals(seed, offset, (uint64_t)b, out + b, e - b); });
    return D4J_OK;
}

}  // namespace d4j::cpu
