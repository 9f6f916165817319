// Kernel families of the CPU backend, one file each.
#ifndef D4J_CPU_KERNELS_H
#define D4J_CPU_KERNELS_H

#include "../common/backend_iface.h"
#include "../common/variants.h"
#include "parallel.h"

namespace d4j::cpu {

extern const d4j_host_api *g_host;

struct State {
    explicit State(int threads) : pool(threads), variants(single_variants()) {}
    ThreadPool pool;
    VariantTable variants;  // one implementation per family on the CPU
};

// Elements per parallel task: large enough to amortise a task claim (~100 ns),
// small enough to balance 2..64 threads on 1M-element tensors.
constexpr int64_t kGrain = 16384;

// Every kernel of the backend table (common/backend_kernels.h).
D4J_BACKEND_KERNELS(D4J_DECLARE_KERNEL)

// The normalise pass of group_norm_forward on its own: y = silu?(z) of x with
// the given statistics (group_norm_conv2d_forward materialises its input so).
void group_norm_apply(void *state, const d4j_gn_input *gn, const float *x, int32_t n, int64_t hw, int32_t c,
                      float *y);

// Prepared convolution weights (the iface's conv2d_prepared_floats / conv2d_prepare; kernels_conv2d.cpp).
int64_t conv2d_prepared_floats(void *state, const d4j_conv2d_geom *g);
d4j_status conv2d_prepare(void *state, const d4j_conv2d_geom *g, const float *weight, float *prepared);

inline ThreadPool &pool_of(void *state) { return static_cast<State *>(state)->pool; }

}  // namespace d4j::cpu
#endif
