// The simulator's warp matrix operations checked against independent host
// references: tf32 and bf16 products with float accumulation (bit for bit
// against the documented rounding and k-order accumulation, and within a
// stated bound of float64), every memory layout, the per-launch scrambled
// fragment layouts, the rounding of special values, and the faults a GPU
// leaves undefined (partial warps, misaligned pointers, bad ldm, divergence).
// Prints one line per check ("ok NAME" or "FAIL NAME: why") and exits 1 on any
// failure; WmmaSimulatorTest runs it. Inputs are fresh random numbers every
// run (the seed is printed). Built only for tests.
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "../cuda/cuda_common.h"
#include "cudasim_internal.h"

using namespace nvcuda;

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

// ---- independent host references of the two roundings ------------------------
// Written with frexp/ldexp instead of bit manipulation, so they do not share
// the simulator's code.

// A float rounded to a multiple of 2^q, where q is the exponent of the
// format's last mantissa bit: `bits` significant bits for normal numbers, and
// the subnormal spacing (the float's exponent range with that many mantissa
// bits) below 2^-126.
double quantum_exponent(double v, int bits) {
    int e;
    std::frexp(v, &e);                                      // |v| = m 2^e, m in [0.5, 1)
    return std::max(e - bits, -126 - (bits - 1));
}

// Nearest tf32 (10 stored mantissa bits), ties away from zero.
float ref_tf32(float v) {
    if (!std::isfinite(v) || v == 0.0f) return v;
    const int q = (int)quantum_exponent(v, 11);
    return (float)std::ldexp(std::round(std::ldexp((double)v, -q)), q);  // halves away from zero
}

// Nearest bf16 (7 stored mantissa bits), ties to even.
float ref_bf16(float v) {
    if (!std::isfinite(v) || v == 0.0f) return v;
    const int q = (int)quantum_exponent(v, 8);
    return (float)std::ldexp(std::nearbyint(std::ldexp((double)v, -q)), q);  // default mode: ties to even
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

template <class T>
T *device(size_t n) {
    void *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) std::abort();
    return static_cast<T *>(p);
}
template <class T>
void upload(T *dst, const std::vector<T> &src) {
    cudaMemcpy(dst, src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice);
}
template <class T>
std::vector<T> download(const T *src, size_t n) {
    std::vector<T> v(n);
    cudaMemcpy(v.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
}

// Launch status and the simulator's message for it.
std::string launch_error() {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? std::string() : d4j_sim::t_last_message;
}

// ---- kernels ----------------------------------------------------------------------

// D (16 x 16) = A (16 x 8) B (8 x 16) + C in tf32, with every operand's memory
// layout chosen by the flags (leading dimensions padded to odd multiples of 4).
template <class LA, class LB>
__global__ void tf32_kernel(const float *a, unsigned lda, const float *b, unsigned ldb, const float *c, unsigned ldc,
                            bool c_col, float *d, unsigned ldd, bool d_col) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::load_matrix_sync(fa, a, lda);
    wmma::load_matrix_sync(fb, b, ldb);
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
    wmma::load_matrix_sync(acc, c, ldc, c_col ? wmma::mem_col_major : wmma::mem_row_major);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, ldd, d_col ? wmma::mem_col_major : wmma::mem_row_major);
}

// D (16 x 16) = A (16 x 16) B (16 x 16), bf16 inputs, two k-steps of 16 over K = 32.
template <class LA, class LB>
__global__ void bf16_kernel(const __nv_bfloat16 *a, unsigned lda, const __nv_bfloat16 *b, unsigned ldb, bool a_col,
                            bool b_col, float *d, unsigned ldd) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LA> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LB> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k0 = 0; k0 < 32; k0 += 16) {
        // column k0 of A and row k0 of B in their memory layouts
        wmma::load_matrix_sync(fa, a + (a_col ? (size_t)k0 * lda : (size_t)k0), lda);
        wmma::load_matrix_sync(fb, b + (b_col ? (size_t)k0 : (size_t)k0 * ldb), ldb);
        wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(d, acc, ldd, wmma::mem_row_major);
}

// A kernel that assumes the fragment layout NVIDIA documents for mma.sync
// (lane = 4 * row + column % 4 ...) instead of loading with load_matrix_sync:
// correct on one GPU generation by luck, wrong on the simulator by design.
__global__ void assumes_layout_kernel(const float *a, const float *b, float *d) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    const unsigned lane = threadIdx.x, g = lane >> 2, t = lane & 3u;
    for (unsigned i = 0; i < 4; ++i) {
        fa.x[i] = wmma::__float_to_tf32(a[(g + ((i & 1u) ? 8u : 0u)) * 8 + t + ((i & 2u) ? 4u : 0u)]);
        fb.x[i] = wmma::__float_to_tf32(b[(t + ((i & 1u) ? 4u : 0u)) * 16 + g + ((i & 2u) ? 8u : 0u)]);
    }
    wmma::fill_fragment(acc, 0.0f);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// Which element of A each lane's fragment holds: a[i] = i, out[lane * 4 + e] = fa.x[e].
__global__ void dump_layout_kernel(const float *a, float *out) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a, 8);
    for (int e = 0; e < fa.num_elements; ++e) out[threadIdx.x * fa.num_elements + e] = fa.x[e];
}

// Misuse: a load from a misaligned pointer or with a bad ldm; an mma in half a warp; a divergent load.
__global__ void misuse_kernel(const float *a, unsigned ldm, int offset, bool divergent, float *out) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    if (divergent && threadIdx.x >= 16) return;
    wmma::load_matrix_sync(fa, a + offset, ldm);
    out[threadIdx.x] = fa.x[0];
}
__global__ void half_warp_kernel(const float *a, float *out) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(fa, 1.0f);
    wmma::fill_fragment(fb, 1.0f);
    wmma::fill_fragment(acc, 0.0f);
    wmma::mma_sync(acc, fa, fb, acc);
    out[threadIdx.x] = acc.x[0] + a[0];
}

// ---- checks ---------------------------------------------------------------------

std::mt19937_64 g_rng;

std::vector<float> randoms(size_t n) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto &x : v) x = nd(g_rng);
    return v;
}

// Element (r, c) of a matrix stored with leading dimension ld.
inline size_t at(size_t r, size_t c, size_t ld, bool col) { return col ? c * ld + r : r * ld + c; }

template <class LA, class LB>
void check_tf32(bool a_col, bool b_col, bool c_col, bool d_col) {
    const std::string name = std::string("tf32 a=") + (a_col ? "col" : "row") + " b=" + (b_col ? "col" : "row") +
                             " c=" + (c_col ? "col" : "row") + " d=" + (d_col ? "col" : "row");
    // odd multiples of 4 floats (16 bytes): rows of a tile never share a stride of 32
    const unsigned lda = 12, ldb = 20, ldc = 20, ldd = 28;
    std::vector<float> A = randoms(16 * 16), B = randoms(16 * 20), C = randoms(16 * 20);
    float *a = device<float>(A.size()), *b = device<float>(B.size()), *c = device<float>(C.size());
    float *d = device<float>(16 * ldd);
    upload(a, A), upload(b, B), upload(c, C);
    D4J_LAUNCH((tf32_kernel<LA, LB>), 1, 32, 0, nullptr, a, lda, b, ldb, c, ldc, c_col, d, ldd, d_col);
    const std::string err = launch_error();
    if (!err.empty()) return check(false, name, err);
    std::vector<float> D = download(d, 16 * ldd);
    unsigned exact = 0, within = 0;
    double worst = 0;
    for (unsigned r = 0; r < 16; ++r)
        for (unsigned n = 0; n < 16; ++n) {
            float acc = C[at(r, n, ldc, c_col)];
            double ref = acc, mag = std::fabs(acc);
            for (unsigned k = 0; k < 8; ++k) {
                const float x = ref_tf32(A[at(r, k, lda, a_col)]), y = ref_tf32(B[at(k, n, ldb, b_col)]);
                acc += x * y;  // exact product, k-order float sum: the simulator's documented arithmetic
                ref += (double)A[at(r, k, lda, a_col)] * (double)B[at(k, n, ldb, b_col)];
                mag += std::fabs((double)A[at(r, k, lda, a_col)] * (double)B[at(k, n, ldb, b_col)]);
            }
            const float got = D[at(r, n, ldd, d_col)];
            exact += bits(got) == bits(acc);
            // tf32 keeps 11 significant bits: each input is off by at most 2^-11 relative
            const double err_bound = 1e-6 + 2.0 * std::ldexp(1.0, -11) * mag + 8 * 0x1p-24 * mag;
            worst = std::max(worst, std::fabs(got - ref) / err_bound);
            within += std::fabs(got - ref) <= err_bound;
        }
    check(exact == 256 && within == 256, name,
          std::to_string(exact) + "/256 bit-exact, " + std::to_string(within) + "/256 within bound (worst " +
              std::to_string(worst) + " of it)");
    cudaFree(a), cudaFree(b), cudaFree(c), cudaFree(d);
}

template <class LA, class LB>
void check_bf16(bool a_col, bool b_col) {
    const std::string name = std::string("bf16 a=") + (a_col ? "col" : "row") + " b=" + (b_col ? "col" : "row");
    const unsigned ld = 40;  // 80 bytes: a multiple of 16 bytes
    std::vector<float> A = randoms(32 * ld), B = randoms(32 * ld);
    std::vector<__nv_bfloat16> Ah(A.size()), Bh(B.size());
    for (size_t i = 0; i < A.size(); ++i) Ah[i] = __float2bfloat16(A[i]), Bh[i] = __float2bfloat16(B[i]);
    __nv_bfloat16 *a = device<__nv_bfloat16>(Ah.size()), *b = device<__nv_bfloat16>(Bh.size());
    float *d = device<float>(16 * 16);
    upload(a, Ah), upload(b, Bh);
    D4J_LAUNCH((bf16_kernel<LA, LB>), 1, 32, 0, nullptr, a, ld, b, ld, a_col, b_col, d, 16);
    const std::string err = launch_error();
    if (!err.empty()) return check(false, name, err);
    std::vector<float> D = download(d, 256);
    unsigned exact = 0, within = 0, rounded = 0;
    for (unsigned r = 0; r < 16; ++r)
        for (unsigned n = 0; n < 16; ++n) {
            float acc = 0.0f;
            double ref = 0, mag = 0;
            for (unsigned k = 0; k < 32; ++k) {
                const float x0 = A[at(r, k, ld, a_col)], y0 = B[at(k, n, ld, b_col)];
                const float x = ref_bf16(x0), y = ref_bf16(y0);
                acc += x * y;
                ref += (double)x0 * y0;
                mag += std::fabs((double)x0 * y0);
            }
            const float got = D[r * 16 + n];
            exact += bits(got) == bits(acc);
            const double bound = 1e-6 + 2.0 * std::ldexp(1.0, -8) * mag + 32 * 0x1p-24 * mag;
            within += std::fabs(got - ref) <= bound;
        }
    for (size_t i = 0; i < A.size(); ++i) rounded += bits(ref_bf16(A[i])) == bits(__bfloat162float(Ah[i]));
    check(exact == 256 && within == 256 && rounded == A.size(), name,
          std::to_string(exact) + "/256 bit-exact, " + std::to_string(within) + "/256 within bound, " +
              std::to_string(rounded) + "/" + std::to_string(A.size()) + " conversions as the reference");
    cudaFree(a), cudaFree(b), cudaFree(d);
}

void check_special_values() {
    struct Case {
        uint32_t in, tf32, bf16;
    };
    const Case cases[] = {
        {0x3f800000u, 0x3f800000u, 0x3f80u},  // 1
        {0x3f801000u, 0x3f802000u, 0x3f80u},  // tf32 tie: away from zero; bf16: below half
        {0xbf801000u, 0xbf802000u, 0xbf80u},  // negative tie: away from zero
        {0x3f808000u, 0x3f808000u, 0x3f80u},  // bf16 tie to even (down)
        {0x3f818000u, 0x3f818000u, 0x3f82u},  // bf16 tie to even (up)
        {0x3f800fffu, 0x3f800000u, 0x3f80u},  // just below the tf32 half
        {0x7f7fffffu, 0x7f800000u, 0x7f80u},  // largest float rounds to infinity in both
        {0x7f800000u, 0x7f800000u, 0x7f80u},  // +inf
        {0xff800000u, 0xff800000u, 0xff80u},  // -inf
        {0x7fc00001u, 0x7fffffffu, 0x7fffu},  // NaN: canonical
        {0x00000001u, 0x00000000u, 0x0000u},  // smallest subnormal rounds to zero
        {0x80000000u, 0x80000000u, 0x8000u},  // -0
    };
    unsigned bad = 0;
    std::string why;
    for (const Case &c : cases) {
        const float t = wmma::__float_to_tf32(from_bits(c.in));
        const __nv_bfloat16 h = __float2bfloat16(from_bits(c.in));
        if (bits(t) != c.tf32 || h.__x != c.bf16) {
            ++bad;
            char buf[128];
            std::snprintf(buf, sizeof buf, "0x%08x -> tf32 0x%08x (want 0x%08x), bf16 0x%04x (want 0x%04x); ", c.in,
                          bits(t), c.tf32, h.__x, c.bf16);
            why += buf;
        }
    }
    // and the rounding of random finite values against the independent references
    std::uniform_int_distribution<uint32_t> u(0, 0xffffffffu);
    unsigned random_bad = 0;
    for (int i = 0; i < 100000; ++i) {
        const float f = from_bits(u(g_rng));
        if (!std::isfinite(f) || std::fabs(f) > 3e38f) continue;
        random_bad += bits(wmma::__float_to_tf32(f)) != bits(ref_tf32(f));
        random_bad += bits(__bfloat162float(__float2bfloat16(f))) != bits(ref_bf16(f));
    }
    check(bad == 0 && random_bad == 0, "rounding of special and random values",
          why + std::to_string(random_bad) + " random mismatches");
}

void check_layouts() {
    std::vector<float> A(128);
    for (int i = 0; i < 128; ++i) A[i] = (float)i;
    float *a = device<float>(128), *out = device<float>(128);
    upload(a, A);
    std::vector<float> runs[2];
    for (auto &r : runs) {
        D4J_LAUNCH(dump_layout_kernel, 1, 32, 0, nullptr, a, out);
        if (!launch_error().empty()) return check(false, "scrambled layouts", "launch failed");
        r = download(out, 128);
    }
    bool permutation = true;
    for (auto &r : runs) {
        std::vector<int> seen(128, 0);
        for (float v : r) {
            if (v < 0 || v >= 128 || seen[(int)v]) permutation = false;
            else seen[(int)v] = 1;
        }
    }
    check(permutation && runs[0] != runs[1], "scrambled layouts: a permutation, different per launch",
          permutation ? "two launches gave the same layout" : "a lane's elements are not a permutation of the matrix");

    // a kernel that assumes the documented mma layout computes the wrong product here
    std::vector<float> Am = randoms(128), Bm = randoms(128);
    float *am = device<float>(128), *bm = device<float>(128), *d = device<float>(256);
    upload(am, Am), upload(bm, Bm);
    D4J_LAUNCH(assumes_layout_kernel, 1, 32, 0, nullptr, am, bm, d);
    if (!launch_error().empty()) return check(false, "a kernel assuming a layout fails", "launch failed");
    std::vector<float> D = download(d, 256);
    unsigned wrong = 0;
    for (unsigned r = 0; r < 16; ++r)
        for (unsigned n = 0; n < 16; ++n) {
            double ref = 0;
            for (unsigned k = 0; k < 8; ++k) ref += (double)Am[r * 8 + k] * Bm[k * 16 + n];
            wrong += std::fabs(D[r * 16 + n] - ref) > 1e-2 * (1 + std::fabs(ref));
        }
    check(wrong > 128, "a kernel assuming a fragment layout computes a wrong product",
          "only " + std::to_string(wrong) + "/256 elements wrong");
    cudaFree(a), cudaFree(out), cudaFree(am), cudaFree(bm), cudaFree(d);
}

void check_faults() {
    float *a = device<float>(4096), *out = device<float>(64);
    std::vector<float> z(4096, 0.0f);
    upload(a, z);
    struct Fault {
        const char *name;
        unsigned ldm;
        int offset;
        bool divergent;
        const char *expect;
    };
    const Fault faults[] = {
        {"misaligned pointer", 8, 1, false, "not 32-byte aligned"},
        {"ldm not a multiple of 16 bytes", 6, 0, false, "not a multiple of 16 bytes"},
        {"divergent load", 8, 0, true, "load_matrix_sync"},
    };
    for (const Fault &f : faults) {
        D4J_LAUNCH(misuse_kernel, 1, 32, 0, nullptr, a, f.ldm, f.offset, f.divergent, out);
        const std::string err = launch_error();
        check(err.find(f.expect) != std::string::npos && err.find("misuse_kernel") != std::string::npos,
              std::string("fault: ") + f.name, "message: '" + err + "'");
    }
    D4J_LAUNCH(half_warp_kernel, 1, 16, 0, nullptr, a, out);
    const std::string err = launch_error();
    check(err.find("full warp") != std::string::npos, "fault: mma_sync in a partial warp", "message: '" + err + "'");
    cudaFree(a), cudaFree(out);
}

}  // namespace

int main() {
    const uint64_t seed = (uint64_t)std::time(nullptr) ^ ((uint64_t)clock() << 20);
    g_rng.seed(seed);
    std::printf("seed %llu\n", (unsigned long long)seed);
    check_special_values();
    check_tf32<wmma::row_major, wmma::row_major>(false, false, false, false);
    check_tf32<wmma::col_major, wmma::row_major>(true, false, true, false);
    check_tf32<wmma::row_major, wmma::col_major>(false, true, false, true);
    check_tf32<wmma::col_major, wmma::col_major>(true, true, true, true);
    check_bf16<wmma::row_major, wmma::row_major>(false, false);
    check_bf16<wmma::col_major, wmma::col_major>(true, true);
    check_bf16<wmma::row_major, wmma::col_major>(false, true);
    check_layouts();
    check_faults();
    std::printf("%d failure(s)\n", g_failures);
    return g_failures == 0 ? 0 : 1;
}
