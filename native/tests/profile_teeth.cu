// Kernels whose profiler counts are known exactly, run on the profiling
// simulator by a small driver (main below): ProfileCountersTest compares what
// it prints with the counts worked out by hand. Built only for tests.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdio>
#include <string>
#include <vector>

#include "../cuda/cuda_common.h"
#include "cudasim_profile.h"

namespace {

// out[i] = in[i * stride]: unit stride is perfectly coalesced; a stride of 32
// floats puts every lane of a warp in its own 32-byte sector.
__global__ void copy_kernel(const float *in, float *out, int n, int stride) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[(long)i * stride];
}

// A 32x32 tile transposed through shared memory by a 32x32 block: the store
// into the tile walks a row (conflict-free), the load walks a column, whose 32
// words share one bank unless each row is padded to 33 words.
template <int kPitch>
__global__ void transpose_kernel(const float *in, float *out, int width) {
    __shared__ float tile[32][kPitch];
    int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
    tile[threadIdx.y][threadIdx.x] = in[y * width + x];
    __syncthreads();
    int tx = blockIdx.y * 32 + threadIdx.x, ty = blockIdx.x * 32 + threadIdx.y;
    out[ty * width + tx] = tile[threadIdx.x][threadIdx.y];
}

// iters FMAs per thread; the odd lanes add one more value after the loop.
__global__ void fma_kernel(const float *a, float *out, int iters) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float acc = a[i];
    for (int k = 0; k < iters; ++k) acc = fmaf(acc, 0.5f, 1.0f);
    if (threadIdx.x & 1) acc = acc + a[i + 1];
    out[i] = acc;
}

// One 64-bit division and one 32-bit remainder by a variable per thread (the
// index arithmetic of an NHWC kernel with runtime sizes).
__global__ void div_kernel(float *out, int64_t d64, int d32) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t q = i / d64;
    int r = (int)threadIdx.x % d32;
    out[i] = (float)q + (float)r;
}

// A 16 x 8 tf32 tile staged in shared memory with row pitch kPitch, loaded
// as a matrix_a fragment and multiplied `reps` times. The documented layout
// puts lane (4g + t) on row g, column t: with 8-float rows, rows g and g + 4
// share banks (2 wavefronts per load instruction); 12-float rows spread the 32
// words over the 32 banks (1 wavefront).
template <int kPitch>
__global__ void wmma_kernel(const float *in, float *out, int reps) {
    __shared__ __align__(32) float tile[16 * kPitch];
    for (int i = threadIdx.x; i < 16 * kPitch; i += 32) tile[i] = in[i % 128];
    __syncthreads();
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 8, nvcuda::wmma::precision::tf32, nvcuda::wmma::row_major> a;
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 8, nvcuda::wmma::precision::tf32, nvcuda::wmma::col_major> b;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float> acc;
    nvcuda::wmma::load_matrix_sync(a, tile, kPitch);
    nvcuda::wmma::fill_fragment(b, 1.0f);
    nvcuda::wmma::fill_fragment(acc, 0.0f);
    for (int r = 0; r < reps; ++r) nvcuda::wmma::mma_sync(acc, a, b, acc);
    nvcuda::wmma::store_matrix_sync(out, acc, 16, nvcuda::wmma::mem_row_major);
}

// Two bf16 m16n16k16 multiply-accumulates per warp from a bf16 tile in shared memory.
__global__ void wmma_bf16_kernel(float *out) {
    __shared__ __align__(32) __nv_bfloat16 tile[16 * 24];
    for (int i = threadIdx.x; i < 16 * 24; i += 32) tile[i] = __float2bfloat16(0.5f);
    __syncthreads();
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major> a;
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::col_major> b;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc;
    nvcuda::wmma::load_matrix_sync(a, tile, 24);
    nvcuda::wmma::load_matrix_sync(b, tile, 24);
    nvcuda::wmma::fill_fragment(acc, 0.0f);
    for (int r = 0; r < 2; ++r) nvcuda::wmma::mma_sync(acc, a, b, acc);
    nvcuda::wmma::store_matrix_sync(out, acc, 16, nvcuda::wmma::mem_row_major);
}

// Each thread copies 16 bytes (4 floats) from in into shared memory with
// cp.async; with odd_zfill, the odd lanes zero-fill all 16 bytes instead (no
// global read). The copies count as a global load and a shared store.
__global__ void cp_async_kernel(const float *in, bool odd_zfill) {
    __shared__ __align__(16) float buf[64 * 4];
    const int t = threadIdx.x;
    const bool fill = odd_zfill && (t & 1);
    __pipeline_memcpy_async(buf + t * 4, fill ? in : in + t * 4, 16, fill ? 16 : 0);
    __pipeline_commit();
    __pipeline_wait_prior(0);
}

float *device_floats(size_t n) {
    void *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) std::abort();
    std::vector<float> host(n, 1.0f);
    cudaMemcpy(p, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    return static_cast<float *>(p);
}

void print(const std::string &label, int64_t max_blocks, const std::function<void()> &launch) {
    std::string why;
    if (d4j_sim::prof::begin(max_blocks, &why) != D4J_OK) {
        std::fprintf(stderr, "profiling cannot start: %s\n", why.c_str());
        std::exit(1);
    }
    launch();
    if (cudaGetLastError() != cudaSuccess) {
        std::fprintf(stderr, "%s: launch failed\n", label.c_str());
        std::exit(1);
    }
    int64_t n = 0;
    d4j_sim::prof::read(nullptr, 0, &n);
    std::vector<d4j_kernel_profile> r((size_t)n);
    d4j_sim::prof::read(r.data(), n, &n);
    d4j_sim::prof::end();
    for (const d4j_kernel_profile &p : r)
        std::printf(
            "%s\tkernel=%s\tblocks=%lld\tblocks_counted=%lld\tgld_requests=%.17g\tgld_sectors=%.17g\t"
            "gld_ideal_sectors=%.17g\tgst_requests=%.17g\tgst_sectors=%.17g\tgst_ideal_sectors=%.17g\t"
            "unique_read_bytes=%.17g\tunique_write_bytes=%.17g\tsmem_requests=%.17g\tsmem_wavefronts=%.17g\t"
            "smem_ideal_wavefronts=%.17g\tfp32_fma=%.17g\tfp32_add=%.17g\tfp32_mul=%.17g\tfp32_warp_inst=%.17g\t"
            "barriers=%.17g\twarp_basic_blocks=%.17g\tactive_lanes=%.17g\tint_div32=%.17g\tint_div64=%.17g\t"
            "int_div64_warp_inst=%.17g\ttensor_flops=%.17g\ttensor_bf16_flops=%.17g\n",
            label.c_str(), p.kernel, (long long)p.blocks, (long long)p.blocks_counted, p.gld_requests,
            p.gld_sectors, p.gld_ideal_sectors, p.gst_requests, p.gst_sectors, p.gst_ideal_sectors,
            p.unique_read_bytes, p.unique_write_bytes, p.smem_requests, p.smem_wavefronts, p.smem_ideal_wavefronts,
            p.fp32_fma, p.fp32_add, p.fp32_mul, p.fp32_warp_inst, p.barriers, p.warp_basic_blocks, p.active_lanes,
            p.int_div32, p.int_div64, p.int_div64_warp_inst, p.tensor_flops, p.tensor_bf16_flops);
}

}  // namespace

int main() {
    const int n = 2048;
    float *in = device_floats((size_t)n * 32), *out = device_floats(n);
    print("copy_stride1", 0, [&] { D4J_LAUNCH(copy_kernel, n / 128, 128, 0, nullptr, in, out, n, 1); });
    print("copy_stride32", 0, [&] { D4J_LAUNCH(copy_kernel, n / 128, 128, 0, nullptr, in, out, n, 32); });
    // a sample of 2 of the 16 blocks, scaled by 8
    print("copy_stride1_sampled", 2, [&] { D4J_LAUNCH(copy_kernel, n / 128, 128, 0, nullptr, in, out, n, 1); });
    float *m = device_floats(64 * 64), *t = device_floats(64 * 64);
    print("transpose_unpadded", 0, [&] { D4J_LAUNCH(transpose_kernel<32>, dim3(2, 2), dim3(32, 32), 0, nullptr, m, t, 64); });
    print("transpose_padded", 0, [&] { D4J_LAUNCH(transpose_kernel<33>, dim3(2, 2), dim3(32, 32), 0, nullptr, m, t, 64); });
    float *a = device_floats(97), *o = device_floats(96);
    print("fma", 0, [&] { D4J_LAUNCH(fma_kernel, 1, 96, 0, nullptr, a, o, 37); });
    float *dv = device_floats(2 * 80);
    print("div", 0, [&] { D4J_LAUNCH(div_kernel, 2, 80, 0, nullptr, dv, (int64_t)7, 5); });
    float *w = device_floats(256), *wo = device_floats(256);
    print("wmma_pitch8", 0, [&] { D4J_LAUNCH(wmma_kernel<8>, 2, 32, 0, nullptr, w, wo, 3); });
    print("wmma_bf16", 0, [&] { D4J_LAUNCH(wmma_bf16_kernel, 3, 32, 0, nullptr, wo); });
    print("wmma_pitch12", 0, [&] { D4J_LAUNCH(wmma_kernel<12>, 2, 32, 0, nullptr, w, wo, 3); });
    print("cp_async", 0, [&] { D4J_LAUNCH(cp_async_kernel, 1, 64, 0, nullptr, w, false); });
    print("cp_async_zfill", 0, [&] { D4J_LAUNCH(cp_async_kernel, 1, 64, 0, nullptr, w, true); });
    return 0;
}
