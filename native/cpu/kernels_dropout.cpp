// The dropout family on the CPU: y[i] = (u[i] >= threshold) ? x[i] * scale : 0
// with u[i] uint32 element i of the Philox stream (seed, offset) (the words of
// d4j_rng_uint32; native/common/philox.h, shared with CUDA). Forward and
// backward are this one map. Every element depends only on (seed, offset, i)
// and its own input, so ranges are independent: parallel over kGrain-element
// ranges, identical bits for every thread count, and in place (y == x) is
// safe (each element is read before it is written, by the same iteration).
//
// Work is done in tiles of kDropTile Philox blocks: the words of the tile
// first (a loop over blocks the compiler vectorises, as rng_fill.h), then the
// select over contiguous floats. One read of x and one write of y.
#include "cpu_kernels.h"
#include "rng_fill.h"

namespace d4j::cpu {

namespace {

constexpr int kDropTile = kTileBlocks;  // Philox blocks per tile (256 elements): philox_tile's limit

// Words of blocks j0 .. j0+m-1 (m <= kDropTile), interleaved into w[0 .. 4m).
D4J_CLONES void philox_words(uint64_t seed, uint64_t offset, uint64_t j0, int m, uint32_t *w) {
    uint32_t w0[kDropTile], w1[kDropTile], w2[kDropTile], w3[kDropTile];
    philox_tile(seed, offset, j0, m, w0, w1, w2, w3);
    for (int k = 0; k < m; ++k) {
        w[4 * k] = w0[k];
        w[4 * k + 1] = w1[k];
        w[4 * k + 2] = w2[k];
        w[4 * k + 3] = w3[k];
    }
}

// Elements [begin, end) of the map; begin need not be a multiple of 4.
D4J_CLONES void dropout_range(const float *x, uint64_t seed, uint64_t offset, uint32_t threshold, float scale,
                              float *y, int64_t begin, int64_t end) {
    uint32_t w[4 * kDropTile];
    int64_t i = begin;
    while (i < end) {
        const uint64_t j0 = (uint64_t)i >> 2;
        const int skip = (int)(i & 3);
        const int64_t need = (skip + (end - i) + 3) >> 2;  // blocks for the rest
        const int m = need < kDropTile ? (int)need : kDropTile;
        philox_words(seed, offset, j0, m, w);
        int64_t take = 4 * (int64_t)m - skip;
        if (take > end - i) take = end - i;
        const uint32_t *u = w + skip;
        const float *xs = x + i;
        float *ys = y + i;
        for (int64_t k = 0; k < take; ++k) ys[k] = u[k] >= threshold ? xs[k] * scale : 0.0f;
        i += take;
    }
}

}  // namespace

d4j_status dropout(void *state, const float *x, int64_t count, uint64_t seed, uint64_t offset, uint32_t threshold,
                   float scale, float *y) {
    parallel_ranges(pool_of(state), count, kGrain, [&](int64_t b, int64_t e) {
        dropout_range(x, seed, offset, threshold, scale, y, b, e);
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
