// The fused diffusion kernel family on CUDA: forward noising, training loss +
// gradient, reverse step (DDPM and DDIM). Element math from
// native/common/diffusion_math.h, identical to the CPU backend's.
//
// Per-sample coefficient records (computed in float64 by the front) are
// copied into a stream-ordered scratch buffer before each launch.
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

// One thread per Philox block: 4 consecutive elements of the flat [batch, n]
// tensor, whose noise index is the flat index (as on the CPU).
__global__ void add_noise_kernel(const d4j_noise_coef *coef, int64_t n, int64_t total, const float *x0,
                                 uint64_t seed, uint64_t offset, float *x_t, float *eps) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t i = j * 4;
    if (i >= total) return;
    float z[4];
    d4j_normal4(seed, offset, (uint64_t)j, z);
    for (int k = 0; k < 4 && i + k < total; ++k) {
        int64_t e = i + k;
        d4j_noise_coef c = coef[e / n];
        eps[e] = z[k];
        x_t[e] = d4j_noise_elem(c, x0[e], z[k]);
    }
}

// Loss pass 1: grid (chunks, batch); each block reduces kLossChunk elements of
// one sample to a partial sum in a fixed tree order, and writes the gradient.
constexpr int kLossThreads = 256;
constexpr int kLossPerThread = 16;
constexpr int64_t kLossChunk = (int64_t)kLossThreads * kLossPerThread;

// This thread's part of pass 1 for sample blockIdx.y, chunk blockIdx.x: the sum
// of its kLossPerThread squared differences (in k order, coalesced across the
// block), writing the gradient when asked.
__device__ __forceinline__ float loss_thread_sum(const d4j_loss_coef *coef, int64_t n, const float *out,
                                                 const float *x0, const float *eps, float *grad) {
    const int b = blockIdx.y;
    const d4j_loss_coef c = coef[b];
    const int64_t base = (int64_t)b * n;
    const int64_t c0 = (int64_t)blockIdx.x * kLossChunk;
    float acc = 0.0f;
    for (int k = 0; k < kLossPerThread; ++k) {
        int64_t i = c0 + (int64_t)k * kLossThreads + threadIdx.x;
        if (i < n) {
            float d = d4j_loss_diff(c, out[base + i], x0[base + i], eps[base + i]);
            acc += d * d;
            if (grad) grad[base + i] = c.g * d;
        }
    }
    return acc;
}

__global__ void loss_partial_kernel(const d4j_loss_coef *coef, int64_t n, const float *out, const float *x0,
                                    const float *eps, float *grad, float *partial) {
    __shared__ float sums[kLossThreads];
    const int b = blockIdx.y;
    sums[threadIdx.x] = loss_thread_sum(coef, n, out, x0, eps, grad);
    __syncthreads();
    block_tree_sum<kLossThreads>(sums);
    if (threadIdx.x == 0) partial[(int64_t)b * gridDim.x + blockIdx.x] = sums[0];
}

// Loss pass 1, variant v2: the same partial sums reduced with warp shuffles
// (5 steps per warp) and one barrier, instead of log2(256) = 8 barriers.
// Summation order differs from v1, so results agree within float rounding.
__global__ void loss_partial_shfl_kernel(const d4j_loss_coef *coef, int64_t n, const float *out, const float *x0,
                                         const float *eps, float *grad, float *partial) {
    __shared__ float warp_sums[kLossThreads / 32];
    const int b = blockIdx.y;
    float acc = loss_thread_sum(coef, n, out, x0, eps, grad);
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        float v = lane < kLossThreads / 32 ? warp_sums[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0) partial[(int64_t)b * gridDim.x + blockIdx.x] = v;
    }
}

#ifdef D4J_SIM_TEETH
// Deliberately broken copies of loss_partial_kernel (simulator test builds
// only). Each must make the parity suite or the sanitizer fail.

// A barrier inside a branch not every thread takes.
__global__ void loss_partial_divergent_sync_kernel(const d4j_loss_coef *coef, int64_t n, const float *out,
                                                   const float *x0, const float *eps, float *grad, float *partial) {
    __shared__ float sums[kLossThreads];
    const int b = blockIdx.y;
    sums[threadIdx.x] = loss_thread_sum(coef, n, out, x0, eps, grad);
    __syncthreads();
    for (int stride = kLossThreads / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) {
            sums[threadIdx.x] += sums[threadIdx.x + stride];
            __syncthreads();  // BUG: only threads below `stride` get here
        }
    }
    if (threadIdx.x == 0) partial[(int64_t)b * gridDim.x + blockIdx.x] = sums[0];
}

// The tree reduction with its barriers removed: a data race.
__global__ void loss_partial_missing_sync_kernel(const d4j_loss_coef *coef, int64_t n, const float *out,
                                                 const float *x0, const float *eps, float *grad, float *partial) {
    __shared__ float sums[kLossThreads];
    const int b = blockIdx.y;
    sums[threadIdx.x] = loss_thread_sum(coef, n, out, x0, eps, grad);  // BUG: no __syncthreads before others read it
    for (int stride = kLossThreads / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) sums[threadIdx.x] += sums[threadIdx.x + stride];
    }
    if (threadIdx.x == 0) partial[(int64_t)b * gridDim.x + blockIdx.x] = sums[0];
}

// An index off by one: reads one element past the sample (past the buffer for the last one).
__global__ void loss_partial_off_by_one_kernel(const d4j_loss_coef *coef, int64_t n, const float *out,
                                               const float *x0, const float *eps, float *grad, float *partial) {
    __shared__ float sums[kLossThreads];
    const int b = blockIdx.y;
    sums[threadIdx.x] = loss_thread_sum(coef, n, out + 1, x0, eps, grad);  // BUG: out + 1 reads out[base + i + 1]
    __syncthreads();
    block_tree_sum<kLossThreads>(sums);
    if (threadIdx.x == 0) partial[(int64_t)b * gridDim.x + blockIdx.x] = sums[0];
}
#endif

// Loss pass 2: one thread per sample adds its partials in chunk order.
__global__ void loss_final_kernel(const d4j_loss_coef *coef, int32_t batch, int64_t chunks, const float *partial,
                                  float *loss) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += (double)partial[(int64_t)b * chunks + c];
    loss[b] = (float)(s * (double)coef[b].lw);
}

// Reverse step: grid (blocks over n/4, batch); sample b's noise index is the
// element's index within the sample, so a sample's result is independent of
// the batch around it.
__global__ void reverse_step_kernel(const d4j_step_coef *coef, int64_t n, int32_t clip, float r, const float *x,
                                    const float *out, float *x_prev) {
    const int b = blockIdx.y;
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t i = j * 4;
    if (i >= n) return;
    const d4j_step_coef c = coef[b];
    float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (c.sigma != 0.0f) d4j_normal4(c.seed, c.offset, (uint64_t)j, z);
    const int64_t base = (int64_t)b * n;
    for (int k = 0; k < 4 && i + k < n; ++k) {
        int64_t e = base + i + k;
        x_prev[e] = d4j_step_elem(&c, clip, r, x[e], out[e], z[k]);
    }
}

template <class T>
static d4j_status upload(State *s, const T *host, int32_t count, size_t extra_bytes, T **dev) {
    size_t bytes = sizeof(T) * (size_t)count;
    size_t aligned = (bytes + 255) & ~(size_t)255;
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    d4j_status st = ensure_scratch(s, aligned + extra_bytes, &scratch);
    if (st != D4J_OK) return st;
    st = upload_host(s, scratch, host, bytes, "cudaMemcpyAsync(coef)");
    if (st != D4J_OK) return st;
    *dev = static_cast<T *>(scratch);
    return D4J_OK;
}

d4j_status add_noise(void *state, const d4j_noise_coef *coef, int32_t batch, int64_t n, const float *x0,
                     uint64_t seed, uint64_t offset, float *x_t, float *eps) {
    auto *s = static_cast<State *>(state);
    d4j_noise_coef *dcoef;
    d4j_status st = upload(s, coef, batch, 0, &dcoef);
    if (st != D4J_OK) return st;
    const int64_t total = (int64_t)batch * n;
    const int threads = 256;
    D4J_LAUNCH(add_noise_kernel, blocks_for((total + 3) / 4, threads), threads, 0, s->stream, dcoef, n, total, x0,
               seed, offset, x_t, eps);
    return launched("add_noise_kernel");
}

d4j_status diffusion_loss(void *state, const d4j_loss_coef *coef, int32_t batch, int64_t n, const float *out,
                          const float *x0, const float *eps, float *loss, float *grad) {
    auto *s = static_cast<State *>(state);
    if (check_grid_batch(batch) != D4J_OK) return D4J_ERR_INVALID_ARGUMENT;
    const int64_t chunks = (n + kLossChunk - 1) / kLossChunk;
    size_t coef_bytes = ((sizeof(d4j_loss_coef) * (size_t)batch) + 255) & ~(size_t)255;
    d4j_loss_coef *dcoef;
    d4j_status st = upload(s, coef, batch, sizeof(float) * (size_t)(chunks * batch), &dcoef);
    if (st != D4J_OK) return st;
    float *partial = reinterpret_cast<float *>(reinterpret_cast<char *>(dcoef) + coef_bytes);
    const dim3 grid((unsigned)chunks, (unsigned)batch);
    const char *kernel = "loss_partial_kernel";
    switch (s->variants.index("diffusion_loss")) {
        case 1:
            kernel = "loss_partial_shfl_kernel";
            D4J_LAUNCH(loss_partial_shfl_kernel, grid, kLossThreads, 0, s->stream, dcoef, n, out, x0, eps, grad,
                       partial);
            break;
#ifdef D4J_SIM_TEETH
        case 2:
            kernel = "loss_partial_divergent_sync_kernel";
            D4J_LAUNCH(loss_partial_divergent_sync_kernel, grid, kLossThreads, 0, s->stream, dcoef, n, out, x0, eps,
                       grad, partial);
            break;
        case 3:
            kernel = "loss_partial_missing_sync_kernel";
            D4J_LAUNCH(loss_partial_missing_sync_kernel, grid, kLossThreads, 0, s->stream, dcoef, n, out, x0, eps,
                       grad, partial);
            break;
        case 4:
            kernel = "loss_partial_off_by_one_kernel";
            D4J_LAUNCH(loss_partial_off_by_one_kernel, grid, kLossThreads, 0, s->stream, dcoef, n, out, x0, eps,
                       grad, partial);
            break;
#endif
        default:
            D4J_LAUNCH(loss_partial_kernel, grid, kLossThreads, 0, s->stream, dcoef, n, out, x0, eps, grad, partial);
            break;
    }
    st = launched(kernel);
    if (st != D4J_OK) return st;
    D4J_LAUNCH(loss_final_kernel, blocks_for(batch, 128), 128, 0, s->stream, dcoef, batch, chunks, partial, loss);
    return launched("loss_final_kernel");
}

d4j_status reverse_step(void *state, const d4j_step_coef *coef, int32_t batch, int64_t n, int32_t clip,
                        float clip_range, const float *x, const float *out, float *x_prev) {
    auto *s = static_cast<State *>(state);
    if (check_grid_batch(batch) != D4J_OK) return D4J_ERR_INVALID_ARGUMENT;
    d4j_step_coef *dcoef;
    d4j_status st = upload(s, coef, batch, 0, &dcoef);
    if (st != D4J_OK) return st;
    const int threads = 256;
    D4J_LAUNCH(reverse_step_kernel, dim3(blocks_for((n + 3) / 4, threads), (unsigned)batch), threads, 0, s->stream,
               dcoef, n, clip, clip_range, x, out, x_prev);
    return launched("reverse_step_kernel");
}

}  // namespace d4j::cuda
