// The simulator's asynchronous copies (cuda_pipeline_primitives.h) checked
// on small kernels: copies of every size with every zero-fill, the deferred
// landing (a destination read before its wait sees poison, not the data),
// wait_prior(N) leaving the newest N batches outstanding and uncommitted
// copies untouched, and the faults. Prints one line per check ("ok NAME" or
// "FAIL NAME: why") and exits 1 on any failure; CpAsyncSimulatorTest runs it.
// Built only for tests.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../cuda/cuda_common.h"
#include "cudasim_internal.h"

namespace {

int g_failures = 0;

void check(bool ok, const std::string &name, const std::string &why = "") {
    if (ok) {
        std::printf("ok %s\n", name.c_str());
    } else {
        std::printf("FAIL %s: %s\n", name.c_str(), why.c_str());
        ++g_failures;
    }
}

template <class T>
T *device(size_t n) {
    void *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) std::abort();
    return static_cast<T *>(p);
}
template <class T>
std::vector<T> download(const T *src, size_t n) {
    std::vector<T> v(n);
    cudaMemcpy(v.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
}

std::string launch_error() {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? std::string() : d4j_sim::t_last_message;
}

constexpr int kThreads = 64;  // two warps: copies land for the whole block after the barrier

// ---- kernels ----------------------------------------------------------------------

// Thread t copies `size` bytes from src + t * size into a shared buffer (the last zfill of
// them zero-filled), waits, and after a barrier writes the neighbour's bytes to out.
__global__ void copy_kernel(const unsigned char *src, unsigned size, unsigned zfill, unsigned char *out) {
    __shared__ __align__(16) unsigned char buf[kThreads * 16];
    const unsigned t = threadIdx.x;
    __pipeline_memcpy_async(buf + t * size, src + t * size, size, zfill);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();
    const unsigned from = (t + 1) % kThreads;
    for (unsigned i = 0; i < size; ++i) out[from * size + i] = buf[from * size + i];
}

// Dynamic shared memory as the destination, and what it reads before and after the wait.
__global__ void early_read_kernel(const float *src, float *before, float *after) {
    D4J_DYNAMIC_SHARED(float, buf);
    const unsigned t = threadIdx.x;
    buf[t] = -1.0f;  // what the buffer held before the copy
    __pipeline_memcpy_async(buf + t, src + t, 4);
    __pipeline_commit();
    before[t] = buf[t];
    __pipeline_wait_prior(0);
    after[t] = buf[t];
}

// Four batches of one copy each (float i into slot i), wait_prior(prior), then read the slots;
// a fifth copy is left uncommitted across a wait_prior(0), then committed and waited for.
__global__ void batches_kernel(const float *src, unsigned prior, float *seen, float *uncommitted) {
    __shared__ __align__(16) float slot[kThreads][5];
    const unsigned t = threadIdx.x;
    for (int b = 0; b < 4; ++b) {
        __pipeline_memcpy_async(&slot[t][b], src + b, 4);
        __pipeline_commit();
    }
    __pipeline_wait_prior(prior);
    for (int b = 0; b < 4; ++b) seen[t * 4 + b] = slot[t][b];
    __pipeline_wait_prior(0);
    __pipeline_memcpy_async(&slot[t][4], src + 4, 4);
    __pipeline_wait_prior(0);
    uncommitted[t * 2] = slot[t][4];
    __pipeline_commit();
    __pipeline_wait_prior(0);
    uncommitted[t * 2 + 1] = slot[t][4];
}

enum Misuse { GlobalDst, SharedSrc, HostSrc, MisalignedDst, MisalignedSrc, BadSize, BigZfill, Uncommitted, NotWaited };

__global__ void misuse_kernel(const float *src, float *global_dst, int misuse) {
    __shared__ __align__(16) float buf[kThreads * 8];
    __shared__ __align__(16) float other[16];
    float local[4] = {1, 2, 3, 4};
    float *dst = buf + threadIdx.x * 4;
    switch (misuse) {
        case GlobalDst: __pipeline_memcpy_async(global_dst, src, 4); break;
        case SharedSrc: __pipeline_memcpy_async(dst, other, 4); break;
        case HostSrc: __pipeline_memcpy_async(dst, local, 4); break;
        case MisalignedDst: __pipeline_memcpy_async(dst + 1, src, 16); break;
        case MisalignedSrc: __pipeline_memcpy_async(dst, src + 1, 8); break;
        case BadSize: __pipeline_memcpy_async(dst, src, 12); break;
        case BigZfill: __pipeline_memcpy_async(dst, src, 8, 12); break;
        case Uncommitted: __pipeline_memcpy_async(dst, src, 16); return;
        case NotWaited:
            __pipeline_memcpy_async(dst, src, 16);
            __pipeline_commit();
            __pipeline_memcpy_async(dst + 4, src, 16);
            __pipeline_commit();
            __pipeline_wait_prior(1);
            return;
    }
    __pipeline_commit();
    __pipeline_wait_prior(0);
}

// ---- checks ----------------------------------------------------------------------

void check_copies() {
    unsigned char *src = device<unsigned char>(kThreads * 16), *out = device<unsigned char>(kThreads * 16);
    std::vector<unsigned char> host(kThreads * 16);
    for (size_t i = 0; i < host.size(); ++i) host[i] = (unsigned char)(i * 7 + 3);
    cudaMemcpy(src, host.data(), host.size(), cudaMemcpyHostToDevice);
    for (unsigned size : {4u, 8u, 16u}) {
        std::string why;
        for (unsigned zfill = 0; zfill <= size && why.empty(); ++zfill) {
            cudaMemset(out, 0xAB, kThreads * 16);
            D4J_LAUNCH(copy_kernel, 1, kThreads, 0, nullptr, src, size, zfill, out);
            const std::string err = launch_error();
            if (!err.empty()) {
                why = "zfill " + std::to_string(zfill) + ": " + err;
                break;
            }
            const std::vector<unsigned char> got = download(out, kThreads * 16);
            for (unsigned t = 0; t < kThreads && why.empty(); ++t)
                for (unsigned i = 0; i < size; ++i) {
                    const unsigned char want = i < size - zfill ? host[t * size + i] : 0;
                    if (got[t * size + i] != want) {
                        why = "zfill " + std::to_string(zfill) + ": thread " + std::to_string(t) + " byte " +
                              std::to_string(i) + " is " + std::to_string(got[t * size + i]) + ", not " +
                              std::to_string(want);
                        break;
                    }
                }
        }
        check(why.empty(), "copies of " + std::to_string(size) + " bytes with every zfill", why);
    }
    cudaFree(src), cudaFree(out);
}

void check_deferred() {
    float *src = device<float>(kThreads), *before = device<float>(kThreads), *after = device<float>(kThreads);
    std::vector<float> h(kThreads);
    for (int i = 0; i < kThreads; ++i) h[i] = 0.5f + i;
    cudaMemcpy(src, h.data(), sizeof(float) * kThreads, cudaMemcpyHostToDevice);
    D4J_LAUNCH(early_read_kernel, 1, kThreads, kThreads * sizeof(float), nullptr, src, before, after);
    const std::string err = launch_error();
    const std::vector<float> b = download(before, kThreads), a = download(after, kThreads);
    unsigned poisoned = 0, landed = 0;
    for (int i = 0; i < kThreads; ++i) {
        uint32_t u;
        std::memcpy(&u, &b[i], 4);
        poisoned += u == 0xFFFFFFFFu;
        landed += a[i] == h[i];
    }
    check(err.empty() && poisoned == kThreads && landed == kThreads,
          "a read before the wait sees poison, not the old value or the copy",
          err + " poisoned " + std::to_string(poisoned) + ", landed " + std::to_string(landed));
    cudaFree(src), cudaFree(before), cudaFree(after);
}

void check_batches() {
    float *src = device<float>(5), *seen = device<float>(kThreads * 4), *unc = device<float>(kThreads * 2);
    const float h[5] = {10, 11, 12, 13, 14};
    cudaMemcpy(src, h, sizeof h, cudaMemcpyHostToDevice);
    for (unsigned prior : {0u, 1u, 2u, 3u, 4u, 9u}) {
        D4J_LAUNCH(batches_kernel, 1, kThreads, 0, nullptr, src, prior, seen, unc);
        const std::string err = launch_error();
        const std::vector<float> s = download(seen, kThreads * 4);
        std::string why = err;
        for (unsigned t = 0; t < kThreads && why.empty(); ++t)
            for (unsigned b = 0; b < 4; ++b) {
                const bool should_land = b + (prior > 4 ? 4 : prior) < 4;
                if ((s[t * 4 + b] == h[b]) != should_land) {
                    why = "batch " + std::to_string(b) + (should_land ? " not landed" : " landed early");
                    break;
                }
            }
        check(why.empty(), "wait_prior(" + std::to_string(prior) + ") leaves the newest " +
                               std::to_string(prior > 4 ? 4 : prior) + " batches pending", why);
    }
    const std::vector<float> u = download(unc, kThreads * 2);
    bool ok = true;
    for (unsigned t = 0; t < kThreads; ++t) ok = ok && std::isnan(u[t * 2]) && u[t * 2 + 1] == h[4];
    check(ok, "wait_prior leaves uncommitted copies queued");
    cudaFree(src), cudaFree(seen), cudaFree(unc);
}

void check_faults() {
    float *src = device<float>(64), *dst = device<float>(64);
    cudaMemset(src, 0, 64 * sizeof(float));
    struct Fault {
        Misuse misuse;
        const char *name;
        const char *expect;
    };
    const Fault faults[] = {
        {GlobalDst, "destination in global memory", "not in shared memory"},
        {SharedSrc, "source in shared memory", "not in a device allocation"},
        {HostSrc, "source in a thread's local memory", "not in a device allocation"},
        {MisalignedDst, "destination not aligned to the size", "not 16-byte aligned"},
        {MisalignedSrc, "source not aligned to the size", "not 8-byte aligned"},
        {BadSize, "size not 4, 8 or 16", "is not 4, 8 or 16"},
        {BigZfill, "zfill larger than the size", "exceeds size_and_align"},
        {Uncommitted, "uncommitted copies at thread exit", "1 uncommitted"},
        {NotWaited, "copies not waited for at thread exit", "1 committed but not waited for"},
    };
    for (const Fault &f : faults) {
        D4J_LAUNCH(misuse_kernel, 1, kThreads, 0, nullptr, src, dst, (int)f.misuse);
        const std::string err = launch_error();
        check(err.find(f.expect) != std::string::npos && err.find("misuse_kernel") != std::string::npos,
              std::string("fault: ") + f.name, "message: '" + err + "'");
    }
    // after a fault, the next launch starts with empty queues
    D4J_LAUNCH(misuse_kernel, 1, kThreads, 0, nullptr, src, dst, -1);
    const std::string err = launch_error();
    check(err.empty(), "a launch after a fault starts with empty queues", err);
    cudaFree(src), cudaFree(dst);
}

}  // namespace

int main() {
    check_copies();
    check_deferred();
    check_batches();
    check_faults();
    std::printf("%d failure(s)\n", g_failures);
    return g_failures == 0 ? 0 : 1;
}
