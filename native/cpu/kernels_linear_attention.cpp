// Linear layers and multi-head attention on the CPU.
//
// Linear: all three products (forward, dX, dW) are one strided SGEMM,
//   C[m, n] (+)= sum_k A(m, k) B(k, n),  A(m, k) = A[m*sam + k*sak], B(k, n) = B[k*sbk + n*sbn],
// so the transposes of the backward pass cost nothing but the packing. The
// GEMM is Goto-style: C is cut into MC x NC output tiles, one task each (so a
// C element is computed by one task with a fixed k order, whatever the thread
// count); inside a task, KC-deep slices of A and B are packed into contiguous
// micro-panels and an MR x NR register-blocked micro-kernel runs over them.
//
// Attention: per (batch, head) and block of 64 query rows, the score block
// S = Q K^T (64 x tokens) is computed with the same GEMM into a per-thread
// workspace (for heads of <= 16 dimensions, forward and backward run
// directly, without the GEMM);
// nothing of size tokens^2 is stored. The
// backward pass runs twice over the score matrix (rows: dq and Dsum; columns:
// dk and dv) so that every output is owned by one task: no atomics, no
// thread-count dependent partial sums.
//
// Contraction of a*b+c into FMA is allowed in this file only (the RNG files
// keep -ffp-contract=off for their bit-exact contract): it doubles the GEMM's
// peak and only removes roundings. Results therefore depend on the SIMD path
// picked at load time (FMA exists on the AVX2 and AVX-512 paths), never on
// the number of threads.
#pragma GCC optimize("fp-contract=fast")

#include <algorithm>
#include <cmath>
#include <cstring>
#include <atomic>
#include <vector>

#include "cpu_kernels.h"
#include "exp_poly.h"
#include "rng_fill.h"

namespace d4j::cpu {

namespace {

// 16 floats: one AVX-512 register, two AVX2 registers, four SSE registers.
// GCC lowers the vector extension to whatever the clone's target has.
typedef float v16f __attribute__((vector_size(64)));

#define D4J_INLINE inline __attribute__((always_inline))

// Unaligned 16-float load / store. Macros, not functions: a function taking or
// returning v16f would change its ABI between the clones (-Wpsabi).
#define D4J_LOAD16(v, p) std::memcpy(&(v), (p), sizeof(v16f))
#define D4J_STORE16(p, v) std::memcpy((p), &(v), sizeof(v16f))

// ---- SGEMM ----------------------------------------------------------------

// Micro-tile 8 x 16: eight 16-wide accumulators (8 zmm on AVX-512, enough
// independent FMA chains to cover its latency on two ports).
constexpr int MR = 8;
constexpr int NR = 16;
constexpr int64_t KC = 256;  // depth of a packed slice: an NR x KC B micro-panel is 16 KiB (L1)
constexpr int64_t MC = 64;   // rows per task: the packed A slice is 64 KiB (L2)
constexpr int64_t NC = 256;  // columns per task: the packed B slice is 256 KiB (L2)

struct Gemm {
    int64_t M, N, K;
    const float *A;
    int64_t sam, sak;
    const float *B;
    int64_t sbk, sbn;
    float *C;            // [M, N], row stride ldc
    int64_t ldc;
    const float *bias;   // [N] added on store (overwrite mode only), or null
    bool accumulate;     // C += A B instead of C = A B (+ bias)
};

// A(m0.., k0..) as ceil(mc/MR) micro-panels, each [kc][MR], zero padded.
D4J_INLINE void pack_a(const Gemm &g, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float *ap) {
    for (int64_t r = 0; r < mc; r += MR) {
        float *dst = ap + r * kc;
        const int rows = (int)std::min<int64_t>(MR, mc - r);
        for (int i = 0; i < MR; ++i) {
            if (i < rows) {
                const float *src = g.A + (m0 + r + i) * g.sam + k0 * g.sak;
                for (int64_t p = 0; p < kc; ++p) dst[p * MR + i] = src[p * g.sak];
            } else {
                for (int64_t p = 0; p < kc; ++p) dst[p * MR + i] = 0.0f;
            }
        }
    }
}

// B(k0.., n0..) as ceil(nc/NR) micro-panels, each [kc][NR], zero padded.
D4J_INLINE void pack_b(const Gemm &g, int64_t n0, int64_t nc, int64_t k0, int64_t kc, float *bp) {
    for (int64_t c = 0; c < nc; c += NR) {
        float *dst = bp + c * kc;
        const int cols = (int)std::min<int64_t>(NR, nc - c);
        if (g.sbn == 1 && cols == NR) {
            // contiguous rows of 16: straight copies
            for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * NR, g.B + (k0 + p) * g.sbk + n0 + c, NR * 4);
            continue;
        }
        for (int j = 0; j < NR; ++j) {
            if (j < cols) {
                const float *src = g.B + (k0)*g.sbk + (n0 + c + j) * g.sbn;
                for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p * g.sbk];
            } else {
                for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = 0.0f;
            }
        }
    }
}

// A(i, p) of a micro-tile's MR rows: from a packed panel [kc][MR], or in place from MR row pointers (A(m, k)
// contiguous in k: no transposing copy).
struct PackedA {
    const float *ap;
    D4J_INLINE float operator()(int i, int64_t p) const { return ap[p * MR + i]; }
};
struct RowsA {
    const float *const *ar;
    D4J_INLINE float operator()(int i, int64_t p) const { return ar[i][p]; }
};

// acc = A[MR][kc] x B_panel[kc][NR]: per k one B vector load, MR
// broadcasts and MR vector FMAs.
template <class A>
D4J_INLINE void micro_kernel(int64_t kc, const A &a, const float *bp, v16f acc[MR]) {
    for (int i = 0; i < MR; ++i) acc[i] = v16f{};
    for (int64_t p = 0; p < kc; ++p) {
        v16f b;
        D4J_LOAD16(b, bp + p * NR);
        for (int i = 0; i < MR; ++i) acc[i] += a(i, p) * b;
    }
}

// Two adjacent B micro-panels at once (acc2: the second's columns): each A value loaded feeds two FMAs, and
// 16 independent accumulator chains instead of 8 keep both FMA pipes busy past the FMA latency. Per element
// the same products in the same order as two micro_kernel calls.
template <class A>
D4J_INLINE void micro_kernel_2(int64_t kc, const A &a, const float *bp, const float *bp2, v16f acc[MR],
                               v16f acc2[MR]) {
    for (int i = 0; i < MR; ++i) acc[i] = acc2[i] = v16f{};
    for (int64_t p = 0; p < kc; ++p) {
        v16f b, b2;
        D4J_LOAD16(b, bp + p * NR);
        D4J_LOAD16(b2, bp2 + p * NR);
        for (int i = 0; i < MR; ++i) {
            const float x = a(i, p);
            acc[i] += x * b;
            acc2[i] += x * b2;
        }
    }
}

// What the B buffer of this thread holds: the packed slice (n0, k0) of the gemm call `call` (a number per call),
// so the tasks of one call that share a column block pack it once per thread instead of once per task.
struct PackedB {
    uint64_t call = 0;
    int64_t n0 = -1, k0 = -1;
};

// One MC x NC output tile of C, all of K. first slice: C = bias + slice0 (or
// C += slice0 when accumulating); later slices add to C. Fixed order per element.
// A row-major in k (sak == 1, the forward products) is read in place; else packed.
D4J_CLONES void gemm_tile(const Gemm &g, int64_t m0, int64_t n0, float *ap, float *bp, PackedB *held, uint64_t call,
                          const float *zero) {
    const int64_t mc = std::min(MC, g.M - m0), nc = std::min(NC, g.N - n0);
    const bool a_in_place = g.sak == 1;
    for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
        const int64_t kc = std::min(KC, g.K - k0);
        if (!a_in_place) pack_a(g, m0, mc, k0, kc, ap);
        if (held == nullptr || held->call != call || held->n0 != n0 || held->k0 != k0) {
            pack_b(g, n0, nc, k0, kc, bp);
            if (held) *held = PackedB{call, n0, k0};
        }
        const bool init = k0 == 0 && !g.accumulate;
        // C columns c .. c + cols of rows r .. r + rows from acc
        const auto store = [&](int64_t r, int rows, int64_t c, int cols, const v16f *acc) {
            for (int i = 0; i < rows; ++i) {
                float *crow = g.C + (m0 + r + i) * g.ldc + n0 + c;
                if (cols == NR) {
                    v16f base{};
                    if (!init) D4J_LOAD16(base, crow);
                    else if (g.bias) D4J_LOAD16(base, g.bias + n0 + c);
                    base += acc[i];
                    D4J_STORE16(crow, base);
                } else {
                    float t[NR];
                    D4J_STORE16(t, acc[i]);
                    for (int j = 0; j < cols; ++j) {
                        float base = !init ? crow[j] : g.bias ? g.bias[n0 + c + j] : 0.0f;
                        crow[j] = base + t[j];
                    }
                }
            }
        };
        for (int64_t c = 0; c < nc; c += 2 * NR) {
            const int cols = (int)std::min<int64_t>(NR, nc - c);
            const bool pair = c + NR < nc;
            for (int64_t r = 0; r < mc; r += MR) {
                const int rows = (int)std::min<int64_t>(MR, mc - r);
                v16f acc[MR], acc2[MR];
                const auto run = [&](const auto &a) {
                    if (pair) {
                        micro_kernel_2(kc, a, bp + c * kc, bp + (c + NR) * kc, acc, acc2);
                        store(r, rows, c, cols, acc);
                        store(r, rows, c + NR, (int)std::min<int64_t>(NR, nc - c - NR), acc2);
                    } else {
                        micro_kernel(kc, a, bp + c * kc, acc);
                        store(r, rows, c, cols, acc);
                    }
                };
                if (a_in_place) {
                    const float *ar[MR];
                    for (int i = 0; i < MR; ++i) ar[i] = i < rows ? g.A + (m0 + r + i) * g.sam + k0 : zero;
                    run(RowsA{ar});
                } else {
                    run(PackedA{ap + r * kc});
                }
            }
        }
    }
}

// Packing buffers per worker thread, reused across calls (sized once: a
// malloc of 320 KiB per task would be an mmap + page faults each time), and a row of KC zeros (the rows of a
// partial micro-tile when A is read in place).
struct GemmWorkspace {
    std::vector<float> buf = std::vector<float>((size_t)(MC * KC + KC * NC));
    std::vector<float> zero = std::vector<float>((size_t)KC, 0.0f);
    PackedB held;
};
GemmWorkspace &gemm_workspace() {
    thread_local GemmWorkspace ws;
    return ws;
}
std::atomic<uint64_t> gemm_calls{0};

// All of C on the calling thread (inside an attention task).
void gemm_serial(const Gemm &g) {
    GemmWorkspace &ws = gemm_workspace();
    const uint64_t call = gemm_calls.fetch_add(1, std::memory_order_relaxed) + 1;
    for (int64_t m0 = 0; m0 < g.M; m0 += MC)
        for (int64_t n0 = 0; n0 < g.N; n0 += NC)
            gemm_tile(g, m0, n0, ws.buf.data(), ws.buf.data() + MC * KC, &ws.held, call, ws.zero.data());
}

void gemm(ThreadPool &pool, const Gemm &g) {
    const int64_t mt = (g.M + MC - 1) / MC, nt = (g.N + NC - 1) / NC;
    // run_tasks goes parallel above kSerialBelow "elements"; one element here
    // is 32 multiply-adds, so below ~1M MACs (~50 us on one core) stay serial.
    const double macs = (double)g.M * (double)g.N * (double)g.K;
    const int64_t work = macs / 32 > 1e15 ? (int64_t)1e15 : (int64_t)(macs / 32);
    const uint64_t call = gemm_calls.fetch_add(1, std::memory_order_relaxed) + 1;
    // tasks column block by column block (t % mt: the row block), so the consecutive tasks a thread is dealt
    // share their B slice
    run_tasks(pool, mt * nt, work, [&](int64_t t) {
        GemmWorkspace &ws = gemm_workspace();
        gemm_tile(g, (t % mt) * MC, (t / mt) * NC, ws.buf.data(), ws.buf.data() + MC * KC, &ws.held, call,
                  ws.zero.data());
    });
}

// db[n] += sum_m dy[m, n], m in order; tasks own 256 columns each.
D4J_CLONES void bias_grad_range(const float *dy, int64_t rows, int64_t n_total, int64_t n0, int64_t n1, float *db) {
    float acc[256];
    const int64_t w = n1 - n0;
    for (int64_t j = 0; j < w; ++j) acc[j] = 0.0f;
    for (int64_t m = 0; m < rows; ++m) {
        const float *row = dy + m * n_total + n0;
        for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < w; ++j) db[n0 + j] += acc[j];
}

// ---- attention --------------------------------------------------------------

struct Attn {
    int64_t B, L, H, D;
    float scale;
    int64_t at(int64_t b, int64_t l, int64_t h) const { return ((b * L + l) * H + h) * D; }
};

// Query (or key) tokens per task: a 64-row GEMM tile, the score block is
// 64 x L floats.
constexpr int64_t kRows = 64;

// exp(x) for x <= 88 (softmax arguments are <= 0), written so that loops
// calling it vectorise (libm's expf is a scalar call without -ffast-math and
// would dominate the softmax loop). Cody-Waite reduction x = k ln2 + r,
// |r| <= ln2/2, Cephes' degree-7 polynomial for e^r, 2^k through the exponent
// bits. Relative error about 2 ulp; below -87 it returns e^-87 ~ 1.6e-38
// instead of smaller values, an absolute error far below any tolerance here.
D4J_INLINE float exp_vec(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    int32_t k;
    const float p = exp_poly(x, k);
    // k in [-126, 127]: a normal power of two
    const int32_t bits = (k + 127) << 23;
    float two_k;
    std::memcpy(&two_k, &bits, 4);
    return p * two_k;
}

float *attn_workspace(size_t floats) {
    thread_local std::vector<float> ws;
    if (ws.size() < floats) ws.resize(floats);
    return ws.data();
}

// C[R, N] = A[R, K] B[K, N] for one head: the products of attention, as strided
// GEMMs straight on the [B, L, H, D] tensors (packing does the gathers).
D4J_INLINE void head_gemm(int64_t R, int64_t N, int64_t K, const float *A, int64_t sam, int64_t sak, const float *Bm,
                          int64_t sbk, int64_t sbn, float *C, int64_t ldc) {
    Gemm g{R, N, K, A, sam, sak, Bm, sbk, sbn, C, ldc, nullptr, false};
    gemm_serial(g);
}

// Forward for query rows [i0, i1) of head (b, h). Workspace: scores [R][L].
//   S = Q K^T (scaled), P = exp(S - rowmax), O = (P V) / rowsum
// Softmax normaliser of one score row in place: sr[j] = exp(sr[j] - max),
// returns the sum of the exponentials in float64 (its rounding does not grow
// with L). Four interleaved partial sums (j mod 4), added as (s0 + s1) +
// (s2 + s3): a fixed order that vectorises, where one running sum is a chain
// of L dependent additions.
D4J_INLINE double softmax_row(float *sr, int64_t L, float &max_out) {
    // the maximum in 16 lanes (a scalar ?: reduction does not vectorise; max is exact in any order)
    v16f mv;
    for (int u = 0; u < 16; ++u) mv[u] = -INFINITY;
    int64_t j = 0;
    for (; j + 16 <= L; j += 16) {
        v16f x;
        D4J_LOAD16(x, sr + j);
        mv = mv > x ? mv : x;
    }
    float m = -INFINITY;
    for (int u = 0; u < 16; ++u) m = mv[u] > m ? mv[u] : m;
    for (; j < L; ++j) m = sr[j] > m ? sr[j] : m;
    for (j = 0; j < L; ++j) sr[j] = exp_vec(sr[j] - m);
    typedef double v4d __attribute__((vector_size(32)));
    typedef float v4f __attribute__((vector_size(16)));
    v4d s4 = {0.0, 0.0, 0.0, 0.0};
    for (j = 0; j + 4 <= L; j += 4) {
        v4f x;
        std::memcpy(&x, sr + j, sizeof(x));
        s4 += __builtin_convertvector(x, v4d);
    }
    for (int u = 0; j < L; ++j, ++u) s4[u] += (double)sr[j];
    max_out = m;
    return (s4[0] + s4[1]) + (s4[2] + s4[3]);
}

// Forward, shared by both paths: the R score rows of query rows [i0, i0 + R) of
// head (b, h) (rows ld apart) scaled and exponentiated in place; inv[r] = 1 /
// row sum, and lse (when not null) = max + log(row sum).
D4J_INLINE void softmax_rows(const Attn &a, int64_t b, int64_t h, int64_t i0, int64_t R, float *s, int64_t ld,
                             float *inv, float *lse) {
    for (int64_t r = 0; r < R; ++r) {
        float *sr = s + r * ld;
        for (int64_t j = 0; j < a.L; ++j) sr[j] *= a.scale;
        float m;
        const double sum = softmax_row(sr, a.L, m);
        inv[r] = (float)(1.0 / sum);
        if (lse) lse[(b * a.H + h) * a.L + i0 + r] = m + (float)std::log(sum);
    }
}

D4J_CLONES void attn_fwd_rows(const Attn &a, const float *q, const float *k, const float *v, int64_t b, int64_t h,
                              int64_t i0, int64_t i1, float *out, float *lse) {
    const int64_t L = a.L, D = a.D, HD = a.H * a.D, R = i1 - i0;
    float *s = attn_workspace((size_t)(R * L));
    float inv[kRows];
    head_gemm(R, L, D, q + a.at(b, i0, h), HD, 1, k + a.at(b, 0, h), 1, HD, s, L);
    softmax_rows(a, b, h, i0, R, s, L, inv, lse);
    float *o = out + a.at(b, i0, h);
    head_gemm(R, D, L, s, L, 1, v + a.at(b, 0, h), HD, 1, o, HD);
    for (int64_t r = 0; r < R; ++r)
        for (int64_t d = 0; d < D; ++d) o[r * HD + d] *= inv[r];
}

// Backward, shared by both paths. Row pass: for query rows [i0, i0 + R) of head
// (b, h) with scores S in s and dP = dout v^T in dp (rows ld apart): stores
// Dsum[i] = sum_d dout[i, d] out[i, d] and overwrites s with
// dS = exp(S scale - lse[i]) (dP - Dsum[i]).
D4J_INLINE void row_ds(const Attn &a, const float *out, const float *lse, const float *dout, int64_t b, int64_t h,
                       int64_t i0, int64_t R, float *s, const float *dp, int64_t ld, float *dsum) {
    const float *lse_bh = lse + (b * a.H + h) * a.L;
    for (int64_t r = 0; r < R; ++r) {
        const int64_t i = i0 + r;
        const float *oi = out + a.at(b, i, h), *gi = dout + a.at(b, i, h);
        float di = 0.0f;
        for (int64_t d = 0; d < a.D; ++d) di += gi[d] * oi[d];
        dsum[(b * a.H + h) * a.L + i] = di;
        const float li = lse_bh[i];
        float *sr = s + r * ld;
        const float *dpr = dp + r * ld;
        for (int64_t j = 0; j < a.L; ++j) sr[j] = exp_vec(sr[j] * a.scale - li) * (dpr[j] - di);  // dS
    }
}

// Column pass: for R key rows with S^T in st and dP^T in dpt (rows ld apart):
// st becomes P^T and dpt becomes dS^T.
D4J_INLINE void col_p_ds(const Attn &a, const float *lse, const float *dsum, int64_t b, int64_t h, int64_t R,
                         float *st, float *dpt, int64_t ld) {
    const float *lse_bh = lse + (b * a.H + h) * a.L, *ds_bh = dsum + (b * a.H + h) * a.L;
    for (int64_t r = 0; r < R; ++r) {
        float *sr = st + r * ld, *dpr = dpt + r * ld;
        for (int64_t i = 0; i < a.L; ++i) {
            float p = exp_vec(sr[i] * a.scale - lse_bh[i]);
            sr[i] = p;                          // P^T[j, i]
            dpr[i] = p * (dpr[i] - ds_bh[i]);   // dS^T[j, i]
        }
    }
}

// Heads of at most kSmallD dimensions (diffusers' default attention_head_dim
// is 8): the GEMM's 8 x 16 tiles would mostly multiply zero padding and its
// packing would cost more than the products, so these heads run directly.
// Products summed over d take the other operand transposed, Bt[d][Lp] (16
// results per vector, D multiply-adds each); products summed over tokens take
// it zero-padded to 16 columns, Bp[L][16] (eight rows of results are eight
// 16-wide accumulators). Every sum runs in order from zero with the same
// contractions as in the GEMM path, so both paths round alike.
constexpr int64_t kSmallD = 16;

inline int64_t padded16(int64_t n) { return (n + 15) / 16 * 16; }

// Bt[d][j] = src[token j of head (b, h)][d], zero for L <= j < Lp.
D4J_INLINE void gather_cols(const Attn &a, const float *src, int64_t b, int64_t h, int64_t Lp, float *bt) {
    for (int64_t j = 0; j < a.L; ++j) {
        const float *sj = src + a.at(b, j, h);
        for (int64_t d = 0; d < a.D; ++d) bt[d * Lp + j] = sj[d];
    }
    for (int64_t d = 0; d < a.D; ++d)
        for (int64_t j = a.L; j < Lp; ++j) bt[d * Lp + j] = 0.0f;
}

// Bp[j][d] = src[token j of head (b, h)][d], zero for D <= d < 16.
D4J_INLINE void gather_rows16(const Attn &a, const float *src, int64_t b, int64_t h, float *bp) {
    for (int64_t j = 0; j < a.L; ++j) {
        const float *sj = src + a.at(b, j, h);
        for (int64_t d = 0; d < kSmallD; ++d) bp[j * kSmallD + d] = d < a.D ? sj[d] : 0.0f;
    }
}

// out[r][j] = sum_d A[r*lda + d] Bt[d][j], r < R, j < Lp (row stride Lp).
D4J_INLINE void small_scores(const float *A, int64_t lda, int64_t R, int64_t D, const float *bt, int64_t Lp,
                             float *out) {
    for (int64_t r = 0; r < R; ++r) {
        const float *ar = A + r * lda;
        for (int64_t j0 = 0; j0 < Lp; j0 += 16) {
            v16f acc{};
            for (int64_t d = 0; d < D; ++d) {
                v16f bv;
                D4J_LOAD16(bv, bt + d * Lp + j0);
                acc += ar[d] * bv;
            }
            D4J_STORE16(out + r * Lp + j0, acc);
        }
    }
}

// For each row r < R: t = sum_{j < L} P[r*ldp + j] Bp[j] (16 floats), then store(r, t).
template <class Store>
D4J_INLINE void small_rows_times(const float *P, int64_t ldp, int64_t R, int64_t L, const float *bp, Store store) {
    for (int64_t r0 = 0; r0 < R; r0 += 8) {
        const int rows = (int)std::min<int64_t>(8, R - r0);
        const float *p[8];
        for (int r = 0; r < 8; ++r) p[r] = P + (r0 + (r < rows ? r : 0)) * ldp;
        v16f o0{}, o1{}, o2{}, o3{}, o4{}, o5{}, o6{}, o7{};
        for (int64_t j = 0; j < L; ++j) {
            v16f bj;
            D4J_LOAD16(bj, bp + j * kSmallD);
            o0 += p[0][j] * bj;
            o1 += p[1][j] * bj;
            o2 += p[2][j] * bj;
            o3 += p[3][j] * bj;
            o4 += p[4][j] * bj;
            o5 += p[5][j] * bj;
            o6 += p[6][j] * bj;
            o7 += p[7][j] * bj;
        }
        float t[8][kSmallD];
        D4J_STORE16(t[0], o0);
        D4J_STORE16(t[1], o1);
        D4J_STORE16(t[2], o2);
        D4J_STORE16(t[3], o3);
        D4J_STORE16(t[4], o4);
        D4J_STORE16(t[5], o5);
        D4J_STORE16(t[6], o6);
        D4J_STORE16(t[7], o7);
        for (int r = 0; r < rows; ++r) store(r0 + r, t[r]);
    }
}

D4J_CLONES void attn_fwd_small(const Attn &a, const float *q, const float *k, const float *v, int64_t b, int64_t h,
                               int64_t i0, int64_t i1, float *out, float *lse) {
    const int64_t L = a.L, D = a.D, HD = a.H * a.D, R = i1 - i0, Lp = padded16(L);
    float *kt = attn_workspace((size_t)(D * Lp + L * kSmallD + R * Lp));
    float *vp = kt + D * Lp, *s = vp + L * kSmallD;
    gather_cols(a, k, b, h, Lp, kt);
    gather_rows16(a, v, b, h, vp);
    small_scores(q + a.at(b, i0, h), HD, R, D, kt, Lp, s);
    float inv[kRows];
    softmax_rows(a, b, h, i0, R, s, Lp, inv, lse);
    small_rows_times(s, Lp, R, L, vp, [&](int64_t r, const float *t) {
        float *o = out + a.at(b, i0 + r, h);
        for (int64_t d = 0; d < D; ++d) o[d] = t[d] * inv[r];
    });
}

// Backward of a small head, row pass (as attn_bwd_rows): Dsum and dq for query rows [i0, i1).
D4J_CLONES void attn_bwd_rows_small(const Attn &a, const float *q, const float *k, const float *v, const float *out,
                                    const float *lse, const float *dout, int64_t b, int64_t h, int64_t i0,
                                    int64_t i1, float *dsum, float *dq) {
    const int64_t L = a.L, D = a.D, HD = a.H * a.D, R = i1 - i0, Lp = padded16(L);
    float *kt = attn_workspace((size_t)(2 * D * Lp + L * kSmallD + 2 * R * Lp));
    float *vt = kt + D * Lp, *kp = vt + D * Lp, *s = kp + L * kSmallD, *dp = s + R * Lp;
    gather_cols(a, k, b, h, Lp, kt);
    gather_cols(a, v, b, h, Lp, vt);
    gather_rows16(a, k, b, h, kp);
    small_scores(q + a.at(b, i0, h), HD, R, D, kt, Lp, s);
    small_scores(dout + a.at(b, i0, h), HD, R, D, vt, Lp, dp);
    row_ds(a, out, lse, dout, b, h, i0, R, s, dp, Lp, dsum);
    small_rows_times(s, Lp, R, L, kp, [&](int64_t r, const float *t) {
        float *g = dq + a.at(b, i0 + r, h);
        for (int64_t d = 0; d < D; ++d) g[d] = t[d] * a.scale;
    });
}

// Backward of a small head, column pass (as attn_bwd_cols): dk and dv for key tokens [j0, j1).
D4J_CLONES void attn_bwd_cols_small(const Attn &a, const float *q, const float *k, const float *v, const float *lse,
                                    const float *dout, const float *dsum, int64_t b, int64_t h, int64_t j0,
                                    int64_t j1, float *dk, float *dv) {
    const int64_t L = a.L, D = a.D, HD = a.H * a.D, R = j1 - j0, Lp = padded16(L);
    float *qt = attn_workspace((size_t)(2 * D * Lp + 2 * L * kSmallD + 2 * R * Lp));
    float *gt = qt + D * Lp, *qp = gt + D * Lp, *gp = qp + L * kSmallD, *st = gp + L * kSmallD, *dpt = st + R * Lp;
    gather_cols(a, q, b, h, Lp, qt);
    gather_cols(a, dout, b, h, Lp, gt);
    gather_rows16(a, q, b, h, qp);
    gather_rows16(a, dout, b, h, gp);
    small_scores(k + a.at(b, j0, h), HD, R, D, qt, Lp, st);
    small_scores(v + a.at(b, j0, h), HD, R, D, gt, Lp, dpt);
    col_p_ds(a, lse, dsum, b, h, R, st, dpt, Lp);
    small_rows_times(st, Lp, R, L, gp, [&](int64_t r, const float *t) {
        float *g = dv + a.at(b, j0 + r, h);
        for (int64_t d = 0; d < D; ++d) g[d] = t[d];
    });
    small_rows_times(dpt, Lp, R, L, qp, [&](int64_t r, const float *t) {
        float *g = dk + a.at(b, j0 + r, h);
        for (int64_t d = 0; d < D; ++d) g[d] = t[d] * a.scale;
    });
}

// The scaled gradient of the backward passes: rows [R] x D of one head,
// g = a.scale * (P [R][L] times the head's [L][D] token rows of m), where
// g and m are token-major with row stride H * D.
D4J_INLINE void head_gemm_scaled(const Attn &a, int64_t R, const float *P, const float *m, float *g) {
    const int64_t L = a.L, D = a.D, HD = a.H * a.D;
    head_gemm(R, D, L, P, L, 1, m, HD, 1, g, HD);
    for (int64_t r = 0; r < R; ++r)
        for (int64_t d = 0; d < D; ++d) g[r * HD + d] *= a.scale;
}

// Backward, row pass, query rows [i0, i1) of head (b, h): Dsum and dq.
// Workspace: S and dP [R][L].
D4J_CLONES void attn_bwd_rows(const Attn &a, const float *q, const float *k, const float *v, const float *out,
                              const float *lse, const float *dout, int64_t b, int64_t h, int64_t i0, int64_t i1,
                              float *dsum, float *dq) {
    const int64_t L = a.L, D = a.D, HD = a.H * a.D, R = i1 - i0;
    float *s = attn_workspace((size_t)(2 * R * L));
    float *dp = s + R * L;
    head_gemm(R, L, D, q + a.at(b, i0, h), HD, 1, k + a.at(b, 0, h), 1, HD, s, L);
    head_gemm(R, L, D, dout + a.at(b, i0, h), HD, 1, v + a.at(b, 0, h), 1, HD, dp, L);
    row_ds(a, out, lse, dout, b, h, i0, R, s, dp, L, dsum);
    head_gemm_scaled(a, R, s, k + a.at(b, 0, h), dq + a.at(b, i0, h));
}

// Backward, column pass, key tokens [j0, j1) of head (b, h): dk and dv.
// Works on the transposed blocks S^T = K Q^T and dP^T = V dO^T, so each task
// owns whole rows of dk and dv.
D4J_CLONES void attn_bwd_cols(const Attn &a, const float *q, const float *k, const float *v, const float *lse,
                              const float *dout, const float *dsum, int64_t b, int64_t h, int64_t j0, int64_t j1,
                              float *dk, float *dv) {
    const int64_t L = a.L, D = a.D, HD = a.H * a.D, R = j1 - j0;
    float *st = attn_workspace((size_t)(2 * R * L));
    float *dpt = st + R * L;
    // same products in the same d order as the row pass: identical scores
    head_gemm(R, L, D, k + a.at(b, j0, h), HD, 1, q + a.at(b, 0, h), 1, HD, st, L);
    head_gemm(R, L, D, v + a.at(b, j0, h), HD, 1, dout + a.at(b, 0, h), 1, HD, dpt, L);
    col_p_ds(a, lse, dsum, b, h, R, st, dpt, L);
    head_gemm(R, D, L, st, L, 1, dout + a.at(b, 0, h), HD, 1, dv + a.at(b, j0, h), HD);
    head_gemm_scaled(a, R, dpt, q + a.at(b, 0, h), dk + a.at(b, j0, h));
}

}  // namespace

d4j_status linear_forward(void *state, const float *x, const float *w, const float *b, int64_t rows, int32_t in,
                          int32_t out, float *y) {
    // y[m, o] = sum_i x[m, i] w[o, i]: A = x, B(i, o) = w[o, i]
    Gemm g{rows, out, in, x, in, 1, w, 1, in, y, out, b, false};
    gemm(pool_of(state), g);
    return D4J_OK;
}

d4j_status linear_backward(void *state, const float *x, const float *w, const float *dy, int64_t rows, int32_t in,
                           int32_t out, float *dx, float *dw, float *db) {
    ThreadPool &pool = pool_of(state);
    if (dx) {
        // dx[m, i] = sum_o dy[m, o] w[o, i]
        Gemm g{rows, in, out, dy, out, 1, w, in, 1, dx, in, nullptr, false};
        gemm(pool, g);
    }
    if (dw) {
        // dw[o, i] += sum_m dy[m, o] x[m, i]: A(o, m) = dy[m, o]
        Gemm g{out, in, rows, dy, 1, out, x, in, 1, dw, in, nullptr, true};
        gemm(pool, g);
    }
    if (db) {
        constexpr int64_t kCols = 256;
        run_tasks(pool, (out + kCols - 1) / kCols, rows * out, [&](int64_t t) {
            int64_t n0 = t * kCols, n1 = std::min<int64_t>(out, n0 + kCols);
            bias_grad_range(dy, rows, out, n0, n1, db);
        });
    }
    return D4J_OK;
}

d4j_status attention_forward(void *state, const float *q, const float *k, const float *v, int32_t batch,
                             int32_t tokens, int32_t heads, int32_t head_dim, float scale, float *out, float *lse) {
    const Attn a{batch, tokens, heads, head_dim, scale};
    const int64_t blocks = (a.L + kRows - 1) / kRows;
    run_tasks(pool_of(state), a.B * a.H * blocks, a.B * a.H * a.L * a.L, [&](int64_t t) {
        const int64_t bh = t / blocks, i0 = (t % blocks) * kRows;
        if (a.D <= kSmallD) attn_fwd_small(a, q, k, v, bh / a.H, bh % a.H, i0, std::min(a.L, i0 + kRows), out, lse);
        else attn_fwd_rows(a, q, k, v, bh / a.H, bh % a.H, i0, std::min(a.L, i0 + kRows), out, lse);
    });
    return D4J_OK;
}

d4j_status attention_backward(void *state, const float *q, const float *k, const float *v, const float *out,
                              const float *lse, const float *dout, int32_t batch, int32_t tokens, int32_t heads,
                              int32_t head_dim, float scale, float *dq, float *dk, float *dv) {
    const Attn a{batch, tokens, heads, head_dim, scale};
    ThreadPool &pool = pool_of(state);
    std::vector<float> dsum((size_t)(a.B * a.H * a.L));
    const int64_t blocks = (a.L + kRows - 1) / kRows, tasks = a.B * a.H * blocks, work = a.B * a.H * a.L * a.L;
    run_tasks(pool, tasks, work, [&](int64_t t) {
        const int64_t bh = t / blocks, i0 = (t % blocks) * kRows;
        const int64_t i1 = std::min(a.L, i0 + kRows);
        if (a.D <= kSmallD) attn_bwd_rows_small(a, q, k, v, out, lse, dout, bh / a.H, bh % a.H, i0, i1, dsum.data(), dq);
        else attn_bwd_rows(a, q, k, v, out, lse, dout, bh / a.H, bh % a.H, i0, i1, dsum.data(), dq);
    });
    run_tasks(pool, tasks, work, [&](int64_t t) {
        const int64_t bh = t / blocks, j0 = (t % blocks) * kRows;
        const int64_t j1 = std::min(a.L, j0 + kRows);
        if (a.D <= kSmallD) attn_bwd_cols_small(a, q, k, v, lse, dout, dsum.data(), bh / a.H, bh % a.H, j0, j1, dk, dv);
        else attn_bwd_cols(a, q, k, v, lse, dout, dsum.data(), bh / a.H, bh % a.H, j0, j1, dk, dv);
    });
    return D4J_OK;
}

}  // namespace d4j::cpu
