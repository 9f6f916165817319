// The sampler kernel families on CUDA; element math from
// native/common/sampler_math.h, identical to the CPU backend's.
//   sampler_step: one thread per 4 elements (one Philox block of noise),
//                 grid (blocks over n/4, batch).
//   x0_threshold: one block per sample; the k-th and (k+1)-th smallest |x0|
//                 by a radix select over the float bit patterns (4 passes of 8
//                 bits, shared-memory histograms with integer atomics, so the
//                 counts and the result are exact and deterministic).
#include "../common/sampler_math.h"
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

namespace {

__global__ void sampler_step_kernel(const d4j_sampler_coef *coef, int64_t n, int32_t mode, float r,
                                    const float *threshold, const float *x, const float *out, const float *m1,
                                    float *x0_out, float *x_prev) {
    const int b = blockIdx.y;
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t i = j * 4;
    if (i >= n) return;
    const d4j_sampler_coef c = coef[b];
    const float s = mode == D4J_X0_THRESHOLD ? threshold[b] : 1.0f;
    float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (c.step.sigma != 0.0f) d4j_normal4(c.step.seed, c.step.offset, (uint64_t)j, z);
    const int64_t base = (int64_t)b * n;
    for (int k = 0; k < 4 && i + k < n; ++k) {
        const int64_t e = base + i + k;
        const float xv = x[e], ov = out[e];
        const float mv = m1 ? m1[e] : 0.0f;  // read before x0_out (which may be m1) is written
        const float x0 = d4j_x0_process(d4j_x0_raw(&c.step, xv, ov), mode, r, s);
        if (x0_out) x0_out[e] = x0;
        x_prev[e] = d4j_sampler_update(&c, xv, ov, x0, mv, z[k]);
    }
}

constexpr int kSelectThreads = 256;

__device__ __forceinline__ unsigned abs_x0_bits(const d4j_step_coef *c, float x, float o) {
    return __float_as_uint(fabsf(d4j_x0_raw(c, x, o)));
}

// The bit pattern of the k-th smallest (0-based) |x0| of one sample. Every
// thread of the block calls it and gets the result.
__device__ unsigned radix_select(const d4j_step_coef *c, const float *x, const float *o, int64_t n,
                                 unsigned long long k, unsigned *hist, unsigned *s_prefix,
                                 unsigned long long *s_k) {
    unsigned prefix = 0, mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        hist[threadIdx.x] = 0u;  // blockDim.x == 256 bins
        __syncthreads();
        for (int64_t i = threadIdx.x; i < n; i += kSelectThreads) {
            unsigned u = abs_x0_bits(c, x[i], o[i]);
            if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned long long cum = 0;
            for (unsigned d = 0; d < 256; ++d) {
                if (k < cum + hist[d]) {
                    *s_prefix = prefix | (d << shift);
                    *s_k = k - cum;
                    break;
                }
                cum += hist[d];
            }
        }
        __syncthreads();  // thread 0 has finished reading hist before it is cleared again
        prefix = *s_prefix;
        k = *s_k;
        mask |= 255u << shift;
    }
    __syncthreads();  // every thread has read s_prefix before a second select overwrites it
    return prefix;
}

__global__ void x0_threshold_kernel(const d4j_sampler_coef *coef, int64_t n, const float *x, const float *out,
                                    long long k, double frac, float max_value, float *threshold) {
    __shared__ unsigned hist[kSelectThreads];
    __shared__ unsigned s_prefix;
    __shared__ unsigned long long s_k;
    const int b = blockIdx.x;
    const d4j_step_coef c = coef[b].step;
    const float *xs = x + (int64_t)b * n, *os = out + (int64_t)b * n;
    unsigned lo = radix_select(&c, xs, os, n, (unsigned long long)k, hist, &s_prefix, &s_k);
    unsigned hi = lo;
    if (k + 1 < n) hi = radix_select(&c, xs, os, n, (unsigned long long)(k + 1), hist, &s_prefix, &s_k);
    if (threadIdx.x == 0)
        threshold[b] = d4j_threshold_from_order_stats(__uint_as_float(lo), __uint_as_float(hi), frac, max_value);
}

// Copies the per-sample coefficient records into the stream-ordered scratch buffer.
d4j_status upload_coef(State *s, const d4j_sampler_coef *host, int32_t batch, d4j_sampler_coef **dev) {
    const size_t bytes = sizeof(d4j_sampler_coef) * (size_t)batch;
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    d4j_status st = ensure_scratch(s, bytes, &scratch);
    if (st != D4J_OK) return st;
    st = upload_host(s, scratch, host, bytes, "cudaMemcpyAsync(sampler coef)");
    if (st != D4J_OK) return st;
    *dev = static_cast<d4j_sampler_coef *>(scratch);
    return D4J_OK;
}

}  // namespace

d4j_status sampler_step(void *state, const d4j_sampler_coef *coef, int32_t batch, int64_t n, int32_t x0_mode,
                        float clip_range, const float *threshold, const float *x, const float *out, const float *m1,
                        float *x0_out, float *x_prev) {
    auto *s = static_cast<State *>(state);
    if (check_grid_batch(batch) != D4J_OK) return D4J_ERR_INVALID_ARGUMENT;
    const int threads = 256;
    const int64_t blocks = (int64_t)blocks_for((n + 3) / 4, threads);
    if (blocks > 2147483647LL) {
        g_host->set_error("n_per_sample %lld needs more than 2^31 - 1 blocks", (long long)n);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    d4j_sampler_coef *dcoef;
    d4j_status st = upload_coef(s, coef, batch, &dcoef);
    if (st != D4J_OK) return st;
    D4J_LAUNCH(sampler_step_kernel, dim3((unsigned)blocks, (unsigned)batch), threads, 0, s->stream, dcoef, n,
               x0_mode, clip_range, threshold, x, out, m1, x0_out, x_prev);
    return launched("sampler_step_kernel");
}

d4j_status x0_threshold(void *state, const d4j_sampler_coef *coef, int32_t batch, int64_t n, const float *x,
                        const float *out, int64_t k, double frac, float max_value, float *threshold) {
    auto *s = static_cast<State *>(state);
    d4j_sampler_coef *dcoef;
    d4j_status st = upload_coef(s, coef, batch, &dcoef);
    if (st != D4J_OK) return st;
    D4J_LAUNCH(x0_threshold_kernel, (unsigned)batch, kSelectThreads, 0, s->stream, dcoef, n, x, out, (long long)k,
               frac, max_value, threshold);
    return launched("x0_threshold_kernel");
}

}  // namespace d4j::cuda
