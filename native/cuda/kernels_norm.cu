// The norm family on CUDA: GroupNorm (+ optional time-embedding bias before,
// SiLU after), SiLU, scaled residual add; forward and backward. Element math
// from native/common/norm_math.h, identical to the CPU backend's.
//
// GroupNorm reductions are deterministic two-stage reductions (no float
// atomics; every sum is taken in an order fixed by the shape alone):
//   stage 1, grid (ceil(C/32), S, N), block 32 x 8: block (cx, s, n) covers
//     channels [32 cx, 32 cx + 32) of rows [64 s, 64 s + 64) of sample n;
//     thread (tx, ty) takes channel 32 cx + tx (so a warp reads 32 consecutive
//     floats of a row: coalesced in NHWC) and every 8th row from ty; the 8
//     row lanes are then combined in shared memory in a fixed tree order and
//     one partial per (n, s, channel) is written to scratch.
//   stage 2 of the forward, per (n, group), in float64 over the group's
//     partials (channels in order, each channel's splits in order): their sum
//     gives the mean, then M2 is the sum of the partials' M2 plus their means'
//     squared deviations from it (two passes, one division per group). It
//     runs in the same launch as stage 1: each stage-1 block takes a ticket
//     from its sample's counter (an integer atomic, after a __threadfence that
//     publishes its partials), and the block that takes the sample's last
//     ticket merges that sample's groups, one thread per group. Which block
//     does it depends on timing; the order of the merge does not, so the
//     result is the same on every run. The counters persist in the backend's
//     state (one 64-bit word per sample: launch epoch, tickets taken); the
//     merging block resets its count, and a word left by another epoch counts
//     as zero, so a launch that stopped early (or ran only a sample of its
//     blocks under the profiling simulator) cannot shift a later one.
//   stage 2 of the backward: per (n, group) one thread sums the group's
//     partials in float64 in order; dgamma / dbeta per channel, a block per 8
//     channels whose 64 row lanes each sum a fixed strided subset of the
//     (n, s) partial rows in float64, then a fixed tree in shared memory.
// The forward partials are Welford (count, mean, M2) summaries of the values
// less a per-channel shift, merged within a block with Chan's formula: stable
// for inputs with a large mean. Elementwise passes
// (normalise, dx) are grid-stride loops over the flat NHWC tensor.
// Memory passes as on the CPU: forward reads x twice and writes y (once with
// y == NULL, the statistics only); backward reads dy and x twice and writes dx
// (see d4j.h).
#include "../common/norm_math.h"
#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

namespace {

constexpr int kTileC = 32;         // channels per block (threadIdx.x)
constexpr int kLanes = 8;          // row lanes per block (threadIdx.y)
constexpr int kSplitRows = 64;     // rows per stage-1 block
constexpr int kParamC = 8;       // channels per dgamma / dbeta block (threadIdx.x)
constexpr int kParamLanes = 64;  // partial-row lanes per dgamma / dbeta block (threadIdx.y)
constexpr int kEltThreads = 256;
constexpr unsigned kMaxEltBlocks = 1u << 16;  // grid-stride beyond this

// A loop nvcc must keep rolled (its unrolled copies would hold more values in
// registers than the kernel may use); the simulator's g++ knows no such pragma.
#ifdef D4J_CUDA_SIM
#define D4J_ROLLED
#else
#define D4J_ROLLED _Pragma("unroll 1")
#endif

inline int64_t splits_of(int64_t hw) { return (hw + kSplitRows - 1) / kSplitRows; }

__device__ __forceinline__ int64_t split_rows(int64_t hw, int64_t s) {
    int64_t r = hw - s * kSplitRows;
    return r < kSplitRows ? r : kSplitRows;
}

__device__ __forceinline__ float load_v(const float *x, const float *tb, int64_t e, int64_t nc) {
    return tb ? x[e] + tb[nc] : x[e];
}

// Takes one of the `blocks` tickets of a sample's counter word (high 32 bits:
// the launch's epoch, low 32: tickets taken); a word of another epoch counts
// as none taken. True for the block that takes the last one.
__device__ __forceinline__ bool take_last_ticket(unsigned long long *word, uint32_t epoch, uint32_t blocks) {
    unsigned long long seen = *(volatile unsigned long long *)word;
    for (;;) {
        const uint32_t taken = (uint32_t)(seen >> 32) == epoch ? (uint32_t)seen : 0u;
        const unsigned long long want = ((unsigned long long)epoch << 32) | (unsigned long long)(taken + 1u);
        const unsigned long long prev = atomicCAS(word, seen, want);
        if (prev == seen) return taken + 1u == blocks;
        seen = prev;
    }
}

// The forward statistics in one launch: stage 1 per (n, split, channel)
// Welford mean and M2 into scratch, then stage 2 (by the sample's last block)
// per (n, g) in float64, each channel's shift added back. The stage-2 loops
// stay rolled and divide once per group, not per partial, and the bounds ask
// for 5 resident blocks per SM: the merge, which one block per sample runs,
// then needs no more registers than stage 1 (a per-partial Chan merge, or
// unrolled loops, would set a higher register count for every block).
__global__ void __launch_bounds__(kTileC * kLanes, 5)
    gn_stats_kernel(const float *x, const float *tb, int64_t hw, int32_t c, int32_t groups, float eps, uint32_t epoch,
                    unsigned long long *tickets, float *pmean, float *pm2, float *mean, float *rstd) {
    __shared__ float s_cnt[kLanes][kTileC];
    __shared__ float s_mean[kLanes][kTileC];
    __shared__ float s_m2[kLanes][kTileC];
    __shared__ int s_last;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int32_t ch = blockIdx.x * kTileC + tx;
    const int64_t s = blockIdx.y, b = blockIdx.z;
    const int64_t splits = gridDim.y;
    const int64_t r0 = s * kSplitRows, rows = split_rows(hw, s);
    float cnt = 0.0f, wmean = 0.0f, wm2 = 0.0f;
    if (ch < c) {
        // Welford on v - K with K = v of the sample's first pixel in this channel
        // (stage 2 adds it back in float64): a float32 running mean of ~1000
        // would round by 3e-5 per update, a variance error of 1e-3 relative
        // for noise of 0.05; the shifted mean is of the order of the spread.
        const float k = load_v(x, tb, b * hw * c + ch, b * c + ch);
        for (int64_t r = ty; r < rows; r += kLanes) {
            int64_t e = ((b * hw) + r0 + r) * c + ch;
            float v = load_v(x, tb, e, b * c + ch) - k;
            cnt += 1.0f;
            float d = v - wmean;
            wmean += d / cnt;
            wm2 += d * (v - wmean);
        }
    }
    s_cnt[ty][tx] = cnt;
    s_mean[ty][tx] = wmean;
    s_m2[ty][tx] = wm2;
    __syncthreads();
    for (int stride = kLanes / 2; stride > 0; stride >>= 1) {
        if (ty < stride) {
            float na = s_cnt[ty][tx], nb = s_cnt[ty + stride][tx];
            if (nb > 0.0f) {
                float n = na + nb;
                float d = s_mean[ty + stride][tx] - s_mean[ty][tx];
                s_mean[ty][tx] += d * (nb / n);
                s_m2[ty][tx] += s_m2[ty + stride][tx] + d * d * (na * nb / n);
                s_cnt[ty][tx] = n;
            }
        }
        __syncthreads();
    }
    if (ty == 0 && ch < c) {
        int64_t i = (b * splits + s) * c + ch;
        pmean[i] = s_mean[0][tx];
        pm2[i] = s_m2[0][tx];
        __threadfence();  // the partials are visible device-wide before the ticket says so
    }
    __syncthreads();
    if (tx == 0 && ty == 0) s_last = take_last_ticket(&tickets[b], epoch, gridDim.x * gridDim.y);
    __syncthreads();
    if (!s_last) return;
    __threadfence();  // the other blocks' partials, published before their tickets
    // this sample's partials, written by other blocks of this launch: read past L1
    const volatile float *vm = pmean + b * splits * c, *vm2 = pm2 + b * splits * c;
    const float *xb = x + b * hw * c, *tbb = tb ? tb + b * c : nullptr;
    const int32_t cg = c / groups;
    const double count = (double)cg * (double)hw;
    for (int32_t g = ty * kTileC + tx; g < groups; g += kTileC * kLanes) {
        // Two passes over the group's partials in float64: the sum of the
        // values, then M2 as the partials' M2 plus their means' squared
        // deviations from the group mean (no division per partial).
        double sum = 0.0;
        for (int32_t chg = g * cg; chg < (g + 1) * cg; ++chg) {
            const double k = (double)load_v(xb, tbb, chg, chg);
D4J_ROLLED
            for (int64_t sp = 0; sp < splits; ++sp)
                sum += (double)split_rows(hw, sp) * (k + (double)vm[sp * c + chg]);
        }
        const double mu = sum / count;
        double gm2 = 0.0;
        for (int32_t chg = g * cg; chg < (g + 1) * cg; ++chg) {
            const double k = (double)load_v(xb, tbb, chg, chg);
D4J_ROLLED
            for (int64_t sp = 0; sp < splits; ++sp) {
                const double d = k + (double)vm[sp * c + chg] - mu;
                gm2 += (double)vm2[sp * c + chg] + (double)split_rows(hw, sp) * d * d;
            }
        }
        mean[b * groups + g] = (float)mu;
        rstd[b * groups + g] = (float)(1.0 / sqrt(gm2 / count + (double)eps));
    }
    if (tx == 0 && ty == 0) tickets[b] = (unsigned long long)epoch << 32;  // every ticket is taken: back to none
}

__global__ void gn_apply_kernel(const float *x, const float *tb, const float *gamma, const float *beta,
                                const float *mean, const float *rstd, int64_t total, int64_t hw, int32_t c,
                                int32_t groups, int32_t silu, float *y) {
    const int32_t cg = c / groups;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int32_t ch = (int32_t)(e % c);
        const int64_t b = e / (hw * c);
        const int64_t sg = b * groups + ch / cg;
        float z = d4j_gn_z(d4j_gn_xhat(load_v(x, tb, e, b * c + ch), mean[sg], rstd[sg]), gamma[ch], beta[ch]);
        y[e] = silu ? d4j_silu(z) : z;
    }
}

// Stage 1 of the backward: per (n, split, channel) sums of dz, dz*xhat, xhat.
__global__ void gn_bwd_partial_kernel(const float *dy, const float *x, const float *tb, const float *gamma,
                                      const float *beta, const float *mean, const float *rstd, int64_t hw,
                                      int32_t c, int64_t cp, int32_t groups, int32_t silu, float *pa, float *pb,
                                      float *px) {
    __shared__ float s_a[kLanes][kTileC];
    __shared__ float s_b[kLanes][kTileC];
    __shared__ float s_x[kLanes][kTileC];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int32_t ch = blockIdx.x * kTileC + tx;
    const int64_t s = blockIdx.y, b = blockIdx.z;
    const int64_t r0 = s * kSplitRows, rows = split_rows(hw, s);
    float sa = 0.0f, sb = 0.0f, sx = 0.0f;
    if (ch < c) {
        const int64_t sg = b * groups + ch / (c / groups);
        const float m = mean[sg], r = rstd[sg], ga = gamma[ch], be = silu ? beta[ch] : 0.0f;
        for (int64_t row = ty; row < rows; row += kLanes) {
            int64_t e = ((b * hw) + r0 + row) * c + ch;
            float xh = d4j_gn_xhat(load_v(x, tb, e, b * c + ch), m, r);
            float dz = d4j_gn_dz(dy[e], d4j_gn_z(xh, ga, be), silu);
            sa += dz;
            sb += dz * xh;
            sx += xh;
        }
    }
    s_a[ty][tx] = sa;
    s_b[ty][tx] = sb;
    s_x[ty][tx] = sx;
    __syncthreads();
    for (int stride = kLanes / 2; stride > 0; stride >>= 1) {
        if (ty < stride) {
            s_a[ty][tx] += s_a[ty + stride][tx];
            s_b[ty][tx] += s_b[ty + stride][tx];
            s_x[ty][tx] += s_x[ty + stride][tx];
        }
        __syncthreads();
    }
    if (ty == 0 && ch < c) {
        int64_t i = (b * gridDim.y + s) * cp + ch;
        pa[i] = s_a[0][tx];
        pb[i] = s_b[0][tx];
        px[i] = s_x[0][tx];
    }
}

// Stage 2 of the backward, per (n, g): m1 = mean(gamma dz), m2 = mean(gamma dz xhat)
// and dtb[n, c] = sum_hw dx in closed form, all in float64.
__global__ void gn_bwd_group_kernel(const float *pa, const float *pb, const float *px, const float *gamma,
                                    const float *rstd, int32_t n, int64_t hw, int32_t c, int64_t cp, int32_t groups,
                                    int64_t splits, float *m1, float *m2, float *dtb) {
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (int64_t)n * groups) return;
    const int64_t b = t / groups;
    const int32_t g = (int32_t)(t % groups), cg = c / groups;
    double s1 = 0.0, s2 = 0.0;
    for (int32_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
        double a = 0.0, bb = 0.0;
        for (int64_t s = 0; s < splits; ++s) {
            int64_t i = (b * splits + s) * cp + ch;
            a += (double)pa[i];
            bb += (double)pb[i];
        }
        s1 += (double)gamma[ch] * a;
        s2 += (double)gamma[ch] * bb;
    }
    const double count = (double)cg * (double)hw;
    const double mm1 = s1 / count, mm2 = s2 / count;
    m1[t] = (float)mm1;
    m2[t] = (float)mm2;
    if (dtb) {
        const double r = (double)rstd[t];
        for (int32_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
            double a = 0.0, sx = 0.0;
            for (int64_t s = 0; s < splits; ++s) {
                int64_t i = (b * splits + s) * cp + ch;
                a += (double)pa[i];
                sx += (double)px[i];
            }
            dtb[b * c + ch] = (float)(r * ((double)gamma[ch] * a - (double)hw * mm1 - mm2 * sx));
        }
    }
}

// Stage 2 of the backward, per channel: dgamma += sum dz xhat, dbeta += sum dz
// over the n * splits partial rows. Block (8 channels) x (64 row lanes): lane
// ty sums rows ty, ty + 64, ... in float64, then the lanes are combined in a
// fixed tree; the order depends on the row count only, not on the grid. The
// backward's partial rows are cp floats apart, C rounded up to 8, so a warp
// reads 8 consecutive floats of 4 rows as 4 whole 32-byte sectors.
__global__ void gn_bwd_param_kernel(const float *pa, const float *pb, int64_t rows, int32_t c, int64_t cp,
                                    float *dgamma, float *dbeta) {
    __shared__ double s_a[kParamLanes][kParamC];
    __shared__ double s_b[kParamLanes][kParamC];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int32_t ch = blockIdx.x * kParamC + tx;
    double a = 0.0, bb = 0.0;
    if (ch < c) {
        for (int64_t r = ty; r < rows; r += kParamLanes) {
            a += (double)pa[r * cp + ch];
            bb += (double)pb[r * cp + ch];
        }
    }
    s_a[ty][tx] = a;
    s_b[ty][tx] = bb;
    __syncthreads();
    for (int stride = kParamLanes / 2; stride > 0; stride >>= 1) {
        if (ty < stride) {
            s_a[ty][tx] += s_a[ty + stride][tx];
            s_b[ty][tx] += s_b[ty + stride][tx];
        }
        __syncthreads();
    }
    if (ty == 0 && ch < c) {
        if (dbeta) dbeta[ch] = (float)((double)dbeta[ch] + s_a[0][tx]);
        if (dgamma) dgamma[ch] = (float)((double)dgamma[ch] + s_b[0][tx]);
    }
}

__global__ void gn_bwd_dx_kernel(const float *dy, const float *x, const float *tb, const float *gamma,
                                 const float *beta, const float *mean, const float *rstd, const float *m1,
                                 const float *m2, int64_t total, int64_t hw, int32_t c, int32_t groups, int32_t silu,
                                 float *dx) {
    const int32_t cg = c / groups;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int32_t ch = (int32_t)(e % c);
        const int64_t b = e / (hw * c);
        const int64_t sg = b * groups + ch / cg;
        const float r = rstd[sg], ga = gamma[ch];
        float xh = d4j_gn_xhat(load_v(x, tb, e, b * c + ch), mean[sg], r);
        float dz = d4j_gn_dz(dy[e], d4j_gn_z(xh, ga, silu ? beta[ch] : 0.0f), silu);
        dx[e] = d4j_gn_dx(dz, xh, ga, r, m1[sg], m2[sg]);
    }
}

__global__ void silu_kernel(const float *x, int64_t count, float *y) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = d4j_silu(x[i]);
}

__global__ void silu_grad_kernel(const float *dy, const float *x, int64_t count, float *dx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dx[i] = dy[i] * d4j_silu_grad(x[i]);
}

__global__ void residual_kernel(const float *a, const float *b, int64_t count, float s, float *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = (a[i] + b[i]) * s;
}

__global__ void residual_grad_kernel(const float *g, int64_t count, float s, float *da, float *db) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        float v = g[i] * s;  // read once: da or db may be g itself
        if (da) da[i] = v;
        if (db) db[i] = v;
    }
}

#ifdef D4J_SIM_TEETH
// Test-only (simulator test builds): residual_kernel under another name, which
// the test simulator's resource table gives 128 registers per thread, launched
// with 1024 threads: 131072 registers, twice the SM's register file, so the
// launch must be refused as on a GPU.
__global__ void residual_register_hog_kernel(const float *a, const float *b, int64_t count, float s, float *out) {
    residual_kernel(a, b, count, s, out);
}
#endif

unsigned elt_blocks(int64_t count) {
    unsigned b = blocks_for(count, kEltThreads);
    return b < kMaxEltBlocks ? b : kMaxEltBlocks;
}

// gridDim.y carries the split index, gridDim.z the sample.
d4j_status check_grid(int32_t n, int64_t hw) {
    if (n > kMaxGroupNormSamples) {
        g_host->set_error("the CUDA group norm takes at most %d samples per call, got %d", kMaxGroupNormSamples, n);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    if (splits_of(hw) > 65535) {
        g_host->set_error("the CUDA group norm takes at most %lld pixels (h * w) per sample, got %lld",
                          (long long)kSplitRows * 65535, (long long)hw);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    return D4J_OK;
}

size_t align256(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

// A fresh epoch for a statistics launch (never 0, the value of an unused
// counter word); concurrent callers each get their own.
uint32_t next_gn_epoch(State *s) {
    uint32_t e = s->gn_epoch.fetch_add(1, std::memory_order_relaxed) + 1u;
    return e != 0u ? e : s->gn_epoch.fetch_add(1, std::memory_order_relaxed) + 1u;
}

}  // namespace

d4j_status group_norm_forward(void *state, const float *x, const float *tb, const float *gamma, const float *beta,
                              int32_t n, int64_t hw, int32_t c, int32_t groups, float eps, int32_t silu, float *y,
                              float *mean, float *rstd) {
    auto *s = static_cast<State *>(state);
    d4j_status st = check_grid(n, hw);
    if (st != D4J_OK) return st;
    const int64_t splits = splits_of(hw);
    const size_t part = align256(sizeof(float) * (size_t)(n * splits * c));
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    st = ensure_scratch(s, 2 * part, &scratch);
    if (st != D4J_OK) return st;
    float *pmean = static_cast<float *>(scratch);
    float *pm2 = reinterpret_cast<float *>(static_cast<char *>(scratch) + part);
    const dim3 grid1((unsigned)((c + kTileC - 1) / kTileC), (unsigned)splits, (unsigned)n);
    D4J_LAUNCH(gn_stats_kernel, grid1, dim3(kTileC, kLanes), 0, s->stream, x, tb, hw, c, groups, eps,
               next_gn_epoch(s), s->gn_tickets, pmean, pm2, mean, rstd);
    st = launched("gn_stats_kernel");
    if (st != D4J_OK || y == nullptr) return st;
    const int64_t total = (int64_t)n * hw * c;
    D4J_LAUNCH(gn_apply_kernel, elt_blocks(total), kEltThreads, 0, s->stream, x, tb, gamma, beta, mean, rstd, total,
               hw, c, groups, silu, y);
    return launched("gn_apply_kernel");
}

d4j_status group_norm_backward(void *state, const float *dy, const float *x, const float *tb, const float *gamma,
                               const float *beta, const float *mean, const float *rstd, int32_t n, int64_t hw,
                               int32_t c, int32_t groups, int32_t silu, float *dx, float *dtb, float *dgamma,
                               float *dbeta) {
    auto *s = static_cast<State *>(state);
    d4j_status st = check_grid(n, hw);
    if (st != D4J_OK) return st;
    const int64_t splits = splits_of(hw);
    const int64_t ng = (int64_t)n * groups;
    const int64_t cp = ((int64_t)c + kParamC - 1) / kParamC * kParamC;  // partial row stride (see param kernel)
    const size_t part = align256(sizeof(float) * (size_t)(n * splits * cp));
    const size_t grp = align256(sizeof(float) * (size_t)ng);
    void *scratch = nullptr;  // this thread's scratch (see ensure_scratch)
    st = ensure_scratch(s, 3 * part + 2 * grp, &scratch);
    if (st != D4J_OK) return st;
    char *base = static_cast<char *>(scratch);
    float *pa = reinterpret_cast<float *>(base), *pb = reinterpret_cast<float *>(base + part);
    float *px = reinterpret_cast<float *>(base + 2 * part);
    float *m1 = reinterpret_cast<float *>(base + 3 * part), *m2 = reinterpret_cast<float *>(base + 3 * part + grp);
    const dim3 grid1((unsigned)((c + kTileC - 1) / kTileC), (unsigned)splits, (unsigned)n);
    D4J_LAUNCH(gn_bwd_partial_kernel, grid1, dim3(kTileC, kLanes), 0, s->stream, dy, x, tb, gamma, beta, mean, rstd,
               hw, c, cp, groups, silu, pa, pb, px);
    st = launched("gn_bwd_partial_kernel");
    if (st != D4J_OK) return st;
    if (dgamma || dbeta) {
        D4J_LAUNCH(gn_bwd_param_kernel, (unsigned)((c + kParamC - 1) / kParamC), dim3(kParamC, kParamLanes), 0,
                   s->stream, pa, pb, (int64_t)n * splits, c, cp, dgamma, dbeta);
        st = launched("gn_bwd_param_kernel");
        if (st != D4J_OK) return st;
    }
    if (dx == nullptr && dtb == nullptr) return D4J_OK;
    D4J_LAUNCH(gn_bwd_group_kernel, blocks_for(ng, 128), 128, 0, s->stream, pa, pb, px, gamma, rstd, n, hw, c, cp,
               groups, splits, m1, m2, dtb);
    st = launched("gn_bwd_group_kernel");
    if (st != D4J_OK || dx == nullptr) return st;
    const int64_t total = (int64_t)n * hw * c;
    D4J_LAUNCH(gn_bwd_dx_kernel, elt_blocks(total), kEltThreads, 0, s->stream, dy, x, tb, gamma, beta, mean, rstd, m1,
               m2, total, hw, c, groups, silu, dx);
    return launched("gn_bwd_dx_kernel");
}

d4j_status silu_forward(void *state, const float *x, int64_t count, float *y) {
    auto *s = static_cast<State *>(state);
    D4J_LAUNCH(silu_kernel, elt_blocks(count), kEltThreads, 0, s->stream, x, count, y);
    return launched("silu_kernel");
}

d4j_status silu_backward(void *state, const float *dy, const float *x, int64_t count, float *dx) {
    auto *s = static_cast<State *>(state);
    D4J_LAUNCH(silu_grad_kernel, elt_blocks(count), kEltThreads, 0, s->stream, dy, x, count, dx);
    return launched("silu_grad_kernel");
}

d4j_status residual_add(void *state, const float *a, const float *b, int64_t count, float inv_scale, float *out) {
    auto *s = static_cast<State *>(state);
#ifdef D4J_SIM_TEETH
    if (s->variants.index("residual_add") == 1) {
        D4J_LAUNCH(residual_register_hog_kernel, elt_blocks(count), 1024, 0, s->stream, a, b, count, inv_scale, out);
        return launched("residual_register_hog_kernel");
    }
#endif
    D4J_LAUNCH(residual_kernel, elt_blocks(count), kEltThreads, 0, s->stream, a, b, count, inv_scale, out);
    return launched("residual_kernel");
}

d4j_status residual_add_backward(void *state, const float *dout, int64_t count, float inv_scale, float *da,
                                 float *db) {
    auto *s = static_cast<State *>(state);
    D4J_LAUNCH(residual_grad_kernel, elt_blocks(count), kEltThreads, 0, s->stream, dout, count, inv_scale, da, db);
    return launched("residual_grad_kernel");
}

}  // namespace d4j::cuda
