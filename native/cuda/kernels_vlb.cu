// The variational-bound kernel family "vlb" on CUDA; element math
// from native/common/vlb_math.h (float64), as on the CPU.
//
// Deterministic without atomics: pass 1, grid (chunks, batch), has each
// block of 256 threads sum kVlbChunk elements of one sample (16 per thread,
// coalesced) in float64 and reduce them in a fixed shared-memory tree to one
// partial; pass 2, one thread per sample, adds that sample's partials in
// chunk order. The float64 results are copied to the host (the call waits).
// Summation order differs from the CPU's, so the two agree to float64
// rounding, not bit for bit.
#include "../common/vlb_math.h"
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

namespace {

constexpr int kVlbThreads = 256;
constexpr int kVlbPerThread = 16;
constexpr int64_t kVlbChunk = (int64_t)kVlbThreads * kVlbPerThread;

__global__ void __launch_bounds__(kVlbThreads) vlb_partial_kernel(const d4j_vlb_coef *coef, int64_t n, int32_t clip,
                                                                  double r, const float *x0, const float *xt,
                                                                  const float *out, double *partial) {
    __shared__ double sums[kVlbThreads];
    const int b = blockIdx.y;
    const d4j_vlb_coef c = coef[b];
    const int64_t base = (int64_t)b * n;
    const int64_t c0 = (int64_t)blockIdx.x * kVlbChunk;
    double acc = 0.0;
    for (int k = 0; k < kVlbPerThread; ++k) {
        const int64_t i = c0 + (int64_t)k * kVlbThreads + threadIdx.x;
        if (i < n) acc += d4j_vlb_elem(&c, clip, r, x0[base + i], xt[base + i], out[base + i]);
    }
    sums[threadIdx.x] = acc;
    __syncthreads();
    block_tree_sum<kVlbThreads>(sums);
    if (threadIdx.x == 0) partial[(int64_t)b * gridDim.x + blockIdx.x] = sums[0];
}

__global__ void vlb_final_kernel(int32_t batch, int64_t chunks, const double *partial, double *terms) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[(int64_t)b * chunks + c];
    terms[b] = s;
}

}  // namespace

d4j_status vlb_terms(void *state, const d4j_vlb_coef *coef, int32_t batch, int64_t n, int32_t clip,
                     double clip_range, const float *x0, const float *x_t, const float *out, double *terms) {
    auto *s = static_cast<State *>(state);
    if (check_grid_batch(batch) != D4J_OK) return D4J_ERR_INVALID_ARGUMENT;
    const int64_t chunks = (n + kVlbChunk - 1) / kVlbChunk;
    if (chunks > 2147483647LL) {
        g_host->set_error("n_per_sample %lld needs more than 2^31 - 1 blocks", (long long)n);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    // scratch: [coef (256-byte aligned)] [partial: batch * chunks doubles] [terms: batch doubles]
    const size_t coef_bytes = (sizeof(d4j_vlb_coef) * (size_t)batch + 255) & ~(size_t)255;
    const size_t partial_bytes = sizeof(double) * (size_t)(batch * chunks);
    void *scratch = nullptr;
    d4j_status st = ensure_scratch(s, coef_bytes + partial_bytes + sizeof(double) * (size_t)batch, &scratch);
    if (st != D4J_OK) return st;
    char *base = static_cast<char *>(scratch);
    auto *dcoef = reinterpret_cast<d4j_vlb_coef *>(base);
    auto *partial = reinterpret_cast<double *>(base + coef_bytes);
    auto *dterms = reinterpret_cast<double *>(base + coef_bytes + partial_bytes);
    if ((st = upload_host(s, dcoef, coef, sizeof(d4j_vlb_coef) * (size_t)batch, "cudaMemcpyAsync(vlb coef)")) != D4J_OK)
        return st;
    D4J_LAUNCH(vlb_partial_kernel, dim3((unsigned)chunks, (unsigned)batch), kVlbThreads, 0, s->stream, dcoef, n, clip,
               clip_range, x0, x_t, out, partial);
    st = launched("vlb_partial_kernel");
    if (st != D4J_OK) return st;
    D4J_LAUNCH(vlb_final_kernel, blocks_for(batch, 128), 128, 0, s->stream, batch, chunks, partial, dterms);
    st = launched("vlb_final_kernel");
    if (st != D4J_OK) return st;
    D4J_CHECK(cudaMemcpyAsync(terms, dterms, sizeof(double) * (size_t)batch, cudaMemcpyDeviceToHost, s->stream),
              "cudaMemcpyAsync(vlb terms)");
    D4J_CHECK(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize");
    return D4J_OK;
}

}  // namespace d4j::cuda
