/*
 * The CUDA simulator's stand-in for <cuda_bf16.h>: the bfloat16 type and the
 * conversions the kernels use, with the hardware's rounding bit for bit.
 *
 * __float2bfloat16 (and the float constructor) is cvt.rn.bf16.f32: round to
 * nearest, ties to even, on the upper 16 bits of the float; every NaN becomes
 * the canonical NaN 0x7FFF; values past the largest bfloat16 round to
 * infinity. __bfloat162float is exact (the bits shifted up).
 */
#ifndef D4J_CUDASIM_BF16_H
#define D4J_CUDASIM_BF16_H

#include <cstdint>
#include <cstring>

namespace d4j_sim {
inline uint16_t float_to_bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
    const uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}
inline float bf16_bits_to_float(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
}  // namespace d4j_sim

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(::d4j_sim::float_to_bf16_bits(f)) {}
    operator float() const { return ::d4j_sim::bf16_bits_to_float(__x); }
};

static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
static inline float __bfloat162float(__nv_bfloat16 b) { return ::d4j_sim::bf16_bits_to_float(b.__x); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
    __nv_bfloat16 b;
    b.__x = u;
    return b;
}

#endif
