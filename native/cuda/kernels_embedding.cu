// Sinusoidal timestep embedding on CUDA: float64 argument and sin/cos, as on
// the CPU; one thread per (sample, frequency).
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

__global__ void embedding_kernel(const float *t, int32_t batch, int32_t dim, const double *freqs, int32_t half,
                                 int32_t flip, float *out) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)batch * half) return;
    int32_t b = (int32_t)(idx / half), j = (int32_t)(idx % half);
    double arg = (double)t[b] * freqs[j];
    float sn = (float)sin(arg), cs = (float)cos(arg);
    float *row = out + (int64_t)b * dim;
    row[j] = flip ? cs : sn;
    row[half + j] = flip ? sn : cs;
    if ((dim & 1) && j == 0) row[dim - 1] = 0.0f;
}

d4j_status timestep_embedding(void *state, const float *t, int32_t batch, int32_t dim, const double *freqs,
                              int32_t half, int32_t flip, float *out) {
    auto *s = static_cast<State *>(state);
    size_t tb = ((sizeof(float) * (size_t)batch) + 255) & ~(size_t)255;
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    d4j_status st = ensure_scratch(s, tb + sizeof(double) * (size_t)half, &scratch);
    if (st != D4J_OK) return st;
    float *dt = static_cast<float *>(scratch);
    double *df = reinterpret_cast<double *>(static_cast<char *>(scratch) + tb);
    if ((st = upload_host(s, dt, t, sizeof(float) * batch, "cudaMemcpyAsync(t)")) != D4J_OK) return st;
    if ((st = upload_host(s, df, freqs, sizeof(double) * half, "cudaMemcpyAsync(freqs)")) != D4J_OK) return st;
    const int threads = 128;
    D4J_LAUNCH(embedding_kernel, blocks_for((int64_t)batch * half, threads), threads, 0, s->stream, dt, batch, dim, df,
               half, flip, out);
    return launched("embedding_kernel");
}

}  // namespace d4j::cuda
