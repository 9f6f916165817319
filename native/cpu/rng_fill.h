// fill_normals: normals first..first+count-1 of a stream into dst, handling
// ranges that start or end inside a 4-element Philox block.
#ifndef D4J_CPU_RNG_FILL_H
#define D4J_CPU_RNG_FILL_H

#include <cstdint>

#include "../common/philox.h"

// Wider SIMD paths are compiled side by side and picked at load time (ifunc),
// so the library runs on any x86-64 and uses AVX2/AVX-512 where present.
#define D4J_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

namespace d4j::cpu {

D4J_CLONES static inline void fill_normals(uint64_t seed, uint64_t offset, uint64_t first, float *dst, int64_t count) {
    int64_t i = 0;
    // Leading partial block.
    if ((first & 3) != 0) {
        float z[4];
        d4j_normal4(seed, offset, first >> 2, z);
        for (uint64_t k = first & 3; k < 4 && i < count; ++k) dst[i++] = z[k];
    }
    // Whole blocks.
    uint64_t j = (first + (uint64_t)i) >> 2;
    for (; i + 4 <= count; i += 4, ++j) d4j_normal4(seed, offset, j, dst + i);
    // Trailing partial block.
    if (i < count) {
        float z[4];
        d4j_normal4(seed, offset, j, z);
        for (int k = 0; i < count; ++k) dst[i++] = z[k];
    }
}

}  // namespace d4j::cpu
#endif
