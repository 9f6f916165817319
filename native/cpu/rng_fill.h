// fill_normals: normals first..first+count-1 of a stream into dst, handling
// ranges that start or end inside a 4-element Philox block.
//
// Work is done in tiles of kTileBlocks Philox blocks, in two loops that the
// compiler vectorises (16 lanes with AVX-512): all Philox words of the tile,
// then Box-Muller on them. Same operations per element as the scalar and
// CUDA paths (no contraction), so the same bits.
#ifndef D4J_CPU_RNG_FILL_H
#define D4J_CPU_RNG_FILL_H

#include <cstdint>

#include "../common/philox.h"

// Wider SIMD paths are compiled side by side and picked at load time (ifunc),
// so the library runs on any x86-64 and uses AVX2/AVX-512 where present.
// D4J_NO_CLONES compiles one path, the one the compiler's flags target: the
// libFuzzer build (clang 14, whose resolvers of internal-linkage clones collide
// at link time) and the test builds of one SIMD width each.
#ifdef D4J_NO_CLONES
#define D4J_CLONES
#else
#define D4J_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

namespace d4j::cpu {

constexpr int kTileBlocks = 64;

// Philox words of blocks j0 .. j0+m-1 (m <= kTileBlocks), one array per word of the block (structure
// of arrays, so the loop vectorises across blocks). Always inlined: each caller's SIMD clone compiles
// it for its own target.
__attribute__((always_inline)) static inline void philox_tile(uint64_t seed, uint64_t offset, uint64_t j0, int m,
                                                              uint32_t *w0, uint32_t *w1, uint32_t *w2, uint32_t *w3) {
    for (int k = 0; k < m; ++k) {
        d4j_u32x4 r = d4j_philox_block(seed, offset, j0 + (uint64_t)k);
        w0[k] = r.v[0];
        w1[k] = r.v[1];
        w2[k] = r.v[2];
        w3[k] = r.v[3];
    }
}

// Normals of blocks j0 .. j0+m-1 (m <= kTileBlocks) into out[0 .. 4m).
D4J_CLONES static inline void normals_tile(uint64_t seed, uint64_t offset, uint64_t j0, int m, float *out) {
    uint32_t w0[kTileBlocks], w1[kTileBlocks], w2[kTileBlocks], w3[kTileBlocks];
    philox_tile(seed, offset, j0, m, w0, w1, w2, w3);
    float z0[kTileBlocks], z1[kTileBlocks], z2[kTileBlocks], z3[kTileBlocks];
    for (int k = 0; k < m; ++k) {
        d4j_box_muller(w0[k], w1[k], &z0[k], &z1[k]);
        d4j_box_muller(w2[k], w3[k], &z2[k], &z3[k]);
    }
    for (int k = 0; k < m; ++k) {
        out[4 * k] = z0[k];
        out[4 * k + 1] = z1[k];
        out[4 * k + 2] = z2[k];
        out[4 * k + 3] = z3[k];
    }
}

D4J_CLONES static inline void fill_normals(uint64_t seed, uint64_t offset, uint64_t first, float *dst, int64_t count) {
    float tile[4 * kTileBlocks];
    int64_t i = 0;
    while (i < count) {
        uint64_t pos = first + (uint64_t)i;
        uint64_t j0 = pos >> 2;
        int skip = (int)(pos & 3);
        // blocks needed for the rest, capped at a tile
        int64_t need = (int64_t)((skip + (count - i) + 3) >> 2);
        int m = need < kTileBlocks ? (int)need : kTileBlocks;
        normals_tile(seed, offset, j0, m, tile);
        int64_t take = 4 * (int64_t)m - skip;
        if (take > count - i) take = count - i;
        for (int64_t k = 0; k < take; ++k) dst[i + k] = tile[skip + k];
        i += take;
    }
}

}  // namespace d4j::cpu
#endif
