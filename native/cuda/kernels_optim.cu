// The optimiser kernel family on CUDA: global gradient norm, fused AdamW,
// EMA. Element math from native/common/optim_math.h (correctly rounded
// intrinsics, no FMA contraction), so AdamW and EMA give the CPU's bits.
//
// The gradient norm is deterministic without atomics: pass 1 has each block
// of a fixed-size grid (a function of the count only) accumulate a grid-stride
// slice in float64 and reduce it in a fixed shared-memory tree to one partial;
// pass 2 (one block) reduces the partials the same way. The float64 result is
// copied back to the host. Its summation order differs from the CPU's, so the
// two agree to float64 rounding, not bit for bit.
#include "../common/optim_math.h"
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

constexpr int kNormThreads = 256;
constexpr int kNormPerThread = 8;         // elements per thread before the grid is capped
constexpr int kNormMaxBlocks = 1024;      // partials reduced by pass 2
constexpr int kElemThreads = 256;

__global__ void __launch_bounds__(kNormThreads) sumsq_partial_kernel(const float *grad, int64_t n, double *partial) {
    __shared__ double sums[kNormThreads];
    const int64_t stride = (int64_t)gridDim.x * kNormThreads;
    double acc = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * kNormThreads + threadIdx.x; i < n; i += stride) {
        double x = (double)grad[i];  // coalesced: consecutive threads, consecutive elements
        acc += x * x;
    }
    sums[threadIdx.x] = acc;
    __syncthreads();
    block_tree_sum<kNormThreads>(sums);
    if (threadIdx.x == 0) partial[blockIdx.x] = sums[0];
}

__global__ void __launch_bounds__(kNormThreads) sumsq_final_kernel(const double *partial, int parts, double *out) {
    __shared__ double sums[kNormThreads];
    double acc = 0.0;
    for (int i = threadIdx.x; i < parts; i += kNormThreads) acc += partial[i];
    sums[threadIdx.x] = acc;
    __syncthreads();
    block_tree_sum<kNormThreads>(sums);
    if (threadIdx.x == 0) out[0] = sums[0];
}

__global__ void __launch_bounds__(kElemThreads) adamw_kernel(d4j_adamw_coef c, float *param, const float *grad,
                                                             float *m, float *v, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * kElemThreads + threadIdx.x;
    if (i >= n) return;
    float p = param[i], mi = m[i], vi = v[i];
    d4j_adamw_elem(&c, &p, grad[i], &mi, &vi);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
}

__global__ void __launch_bounds__(kElemThreads) ema_kernel(float c, float *ema, const float *param, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * kElemThreads + threadIdx.x;
    if (i >= n) return;
    ema[i] = d4j_ema_elem(c, ema[i], param[i]);
}

// One thread per element: the grid's x dimension (at most 2^31 - 1 blocks) bounds the count.
static d4j_status check_elementwise(int64_t n) {
    if ((n + kElemThreads - 1) / kElemThreads <= 2147483647LL) return D4J_OK;
    g_host->set_error("the CUDA backend updates at most %lld elements per call, got %lld",
                      2147483647LL * kElemThreads, (long long)n);
    return D4J_ERR_INVALID_ARGUMENT;
}

d4j_status grad_sumsq(void *state, const float *grad, int64_t count, double *sumsq) {
    auto *s = static_cast<State *>(state);
    const int64_t want = (count + (int64_t)kNormThreads * kNormPerThread - 1) / ((int64_t)kNormThreads * kNormPerThread);
    const int blocks = (int)(want < kNormMaxBlocks ? want : kNormMaxBlocks);
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    d4j_status st = ensure_scratch(s, sizeof(double) * (size_t)(kNormMaxBlocks + 1), &scratch);
    if (st != D4J_OK) return st;
    double *partial = static_cast<double *>(scratch);
    double *total = partial + kNormMaxBlocks;
    D4J_LAUNCH(sumsq_partial_kernel, blocks, kNormThreads, 0, s->stream, grad, count, partial);
    st = launched("sumsq_partial_kernel");
    if (st != D4J_OK) return st;
    D4J_LAUNCH(sumsq_final_kernel, 1, kNormThreads, 0, s->stream, partial, blocks, total);
    st = launched("sumsq_final_kernel");
    if (st != D4J_OK) return st;
    D4J_CHECK(cudaMemcpyAsync(sumsq, total, sizeof(double), cudaMemcpyDeviceToHost, s->stream), "cudaMemcpyAsync(norm)");
    D4J_CHECK(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize");
    return D4J_OK;
}

d4j_status adamw(void *state, const d4j_adamw_coef *coef, float *param, const float *grad, float *m, float *v,
                 int64_t count) {
    auto *s = static_cast<State *>(state);
    if (check_elementwise(count) != D4J_OK) return D4J_ERR_INVALID_ARGUMENT;
    // The coefficients travel by value in the launch parameters: no upload.
    D4J_LAUNCH(adamw_kernel, blocks_for(count, kElemThreads), kElemThreads, 0, s->stream, *coef, param, grad, m, v,
               count);
    return launched("adamw_kernel");
}

d4j_status ema_update(void *state, float *ema, const float *param, int64_t count, float one_minus_decay) {
    auto *s = static_cast<State *>(state);
    if (check_elementwise(count) != D4J_OK) return D4J_ERR_INVALID_ARGUMENT;
    D4J_LAUNCH(ema_kernel, blocks_for(count, kElemThreads), kElemThreads, 0, s->stream, one_minus_decay, ema, param,
               count);
    return launched("ema_kernel");
}

}  // namespace d4j::cuda
