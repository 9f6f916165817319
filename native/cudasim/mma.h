/*
 * The CUDA simulator's stand-in for <mma.h>: the warp matrix (WMMA) API of
 * nvcuda::wmma for the shapes diffusion4j's tensor-core kernels use,
 * executed on the simulated warp.
 *
 *   m16n16k8  matrix_a / matrix_b of precision::tf32 (float storage), float accumulator
 *   m16n16k16 matrix_a / matrix_b of __nv_bfloat16, float accumulator
 *
 * What a GPU leaves unspecified, the simulator makes visible:
 * - The element-to-lane layout of a fragment is unspecified by CUDA. Here it
 *   is a random permutation, drawn again for every launch and every fragment
 *   type (all warps of a launch agree, as they would on one GPU). A kernel that
 *   reads or writes fragment elements assuming a layout computes garbage here.
 *   Element-wise operations on fragments of one type (scaling an accumulator,
 *   rounding a loaded tf32 fragment) stay valid, as in CUDA.
 * - Every operation is warp-collective (.sync.aligned): all 32 lanes of a full
 *   warp must call it together with the same arguments' shape; otherwise the
 *   launch stops with a message naming the kernel and block. The pointer must
 *   be 32-byte aligned and ldm a multiple of 16 bytes, as CUDA requires.
 *
 * Arithmetic. Inputs are used as the tensor core uses them: a tf32 element is
 * the float with its low 13 mantissa bits dropped (kernels round first with
 * __float_to_tf32, which is cvt.rna.tf32.f32: nearest, ties away from zero;
 * the truncation of unrounded inputs is how Ampere/Hopper are reported to
 * behave, which the PTX manual does not specify); a bfloat16 element is exact
 * in float. Products of two tf32 or two bf16 values are exact in float; the
 * accumulator adds them in k order with FP32 rounding (a tensor core adds the
 * products of one instruction with its own internal alignment, which is why
 * the kernels' tolerances are stated against float64 references, not this
 * order).
 *
 * Counting (libd4j_cudasim_prof.so): loads and stores are recorded as the
 * accesses of the layout NVIDIA's mma.sync instructions document (one 32-bit
 * register per element, adjacent bf16 pairs as one access), so shared-memory
 * bank conflicts and coalescing of a kernel's tiles show as on a GPU; each
 * mma_sync adds 2*m*n*k tensor-core operations.
 */
#ifndef D4J_CUDASIM_MMA_H
#define D4J_CUDASIM_MMA_H

#include "cuda_runtime.h"
#include "cuda_bf16.h"

#include <cstdint>

namespace d4j_sim {
namespace wmma_impl {

enum Use : uint8_t { UseA = 0, UseB = 1, UseAcc = 2 };
enum Elem : uint8_t { ElemF32 = 0, ElemTF32 = 1, ElemBF16 = 2 };

// A fragment type: its role, element format, the memory layout it is loaded
// with (matrix_a / matrix_b: the type's layout; accumulator: given per call)
// and its shape.
struct Desc {
    Use use;
    Elem elem;
    bool col_major;
    uint8_t m, n, k;
    uint8_t per_lane;  // elements per lane
};

// The warp-collective operations (cudasim_wmma.cpp). x: this lane's elements.
void load(const Desc &d, void *x, const void *p, unsigned ldm, bool mem_col_major);
void store(const Desc &d, const void *x, void *p, unsigned ldm, bool mem_col_major);
void mma(const Desc &da, const Desc &db, const Desc &dc, void *dx, const void *ax, const void *bx, const void *cx);

}  // namespace wmma_impl
}  // namespace d4j_sim

namespace nvcuda {
namespace wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

// cvt.rna.tf32.f32: round to nearest with ties away from zero, keep 10
// mantissa bits (the low 13 of the float are zero); a NaN stays a NaN.
inline float __float_to_tf32(float in) {
    uint32_t u;
    std::memcpy(&u, &in, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        u = 0x7fffffffu;
    } else {
        u = (u + 0x1000u) & 0xffffe000u;  // sign-magnitude: adding half an ulp rounds ties away from zero
    }
    float r;
    std::memcpy(&r, &u, sizeof r);
    return r;
}

namespace detail {
template <class T> struct elem_of;
template <> struct elem_of<float> {
    static constexpr ::d4j_sim::wmma_impl::Elem value = ::d4j_sim::wmma_impl::ElemF32;
    typedef float storage;
};
template <> struct elem_of<precision::tf32> {
    static constexpr ::d4j_sim::wmma_impl::Elem value = ::d4j_sim::wmma_impl::ElemTF32;
    typedef float storage;
};
template <> struct elem_of<__nv_bfloat16> {
    static constexpr ::d4j_sim::wmma_impl::Elem value = ::d4j_sim::wmma_impl::ElemBF16;
    typedef __nv_bfloat16 storage;
};
template <class U> struct use_of;
template <> struct use_of<matrix_a> { static constexpr ::d4j_sim::wmma_impl::Use value = ::d4j_sim::wmma_impl::UseA; };
template <> struct use_of<matrix_b> { static constexpr ::d4j_sim::wmma_impl::Use value = ::d4j_sim::wmma_impl::UseB; };
template <> struct use_of<accumulator> {
    static constexpr ::d4j_sim::wmma_impl::Use value = ::d4j_sim::wmma_impl::UseAcc;
};
template <class L> struct is_col;
template <> struct is_col<void> { static constexpr bool value = false; };
template <> struct is_col<row_major> { static constexpr bool value = false; };
template <> struct is_col<col_major> { static constexpr bool value = true; };

template <class Use, int M, int N, int K, class T>
constexpr bool supported() {
    return M == 16 && N == 16 &&
           ((K == 8 && (std::is_same<T, precision::tf32>::value || std::is_same<T, float>::value)) ||
            (K == 16 && (std::is_same<T, __nv_bfloat16>::value || std::is_same<T, float>::value)));
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
    static_assert(detail::supported<Use, M, N, K, T>(),
                  "the simulator implements m16n16k8 tf32 and m16n16k16 bf16 fragments with float accumulators");
    static_assert(std::is_same<Use, accumulator>::value == std::is_same<Layout, void>::value,
                  "matrix_a / matrix_b fragments name a layout; accumulators do not");

public:
    typedef T element_type;
    typedef typename detail::elem_of<T>::storage storage_element_type;
    enum {
        num_elements = (std::is_same<Use, matrix_a>::value   ? M * K
                        : std::is_same<Use, matrix_b>::value ? K * N
                                                             : M * N) /
                       32
    };
    enum { num_storage_elements = num_elements };
    storage_element_type x[num_elements];

    static constexpr ::d4j_sim::wmma_impl::Desc desc(bool mem_col_major = detail::is_col<Layout>::value) {
        return ::d4j_sim::wmma_impl::Desc{detail::use_of<Use>::value, detail::elem_of<T>::value, mem_col_major,
                                          (uint8_t)M, (uint8_t)N, (uint8_t)K, (uint8_t)num_elements};
    }
};

template <class Use, int M, int N, int K, class T, class Layout, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, const V &v) {
    typedef typename fragment<Use, M, N, K, T, Layout>::storage_element_type S;
    const S s = (S)v;
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = s;
}

template <class Use, int M, int N, int K, class T, class Layout, class P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const P *p, unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "an accumulator load names its layout");
    static_assert(std::is_same<P, typename fragment<Use, M, N, K, T, Layout>::storage_element_type>::value,
                  "the pointer's element type must be the fragment's storage type");
    ::d4j_sim::wmma_impl::load(f.desc(), f.x, p, ldm, detail::is_col<Layout>::value);
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l) {
    ::d4j_sim::wmma_impl::load(f.desc(l == mem_col_major), f.x, p, ldm, l == mem_col_major);
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l) {
    ::d4j_sim::wmma_impl::store(f.desc(l == mem_col_major), f.x, p, ldm, l == mem_col_major);
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    ::d4j_sim::wmma_impl::mma(a.desc(), b.desc(), c.desc(false), d.x, a.x, b.x, c.x);
}

}  // namespace wmma
}  // namespace nvcuda

#endif
