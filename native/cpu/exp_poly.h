// The core of the CPU backend's vectorisable exponentials (kernels_norm.cpp's
// exp_nonpositive for SiLU, kernels_linear_attention.cpp's exp_vec for the
// softmax): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, and Cephes'
// degree-7 polynomial for e^r. The callers clamp x and apply 2^k their own
// way (gradual underflow, or one normal power of two). Written as plain float
// code so loops calling it vectorise (libm's expf is a scalar call).
#ifndef D4J_CPU_EXP_POLY_H
#define D4J_CPU_EXP_POLY_H

#include <cstdint>

namespace d4j::cpu {

// e^r for r = x - k ln2, k = round(x / ln2) computed by truncating
// x / ln2 + Offset + 0.5, which must be positive for the caller's range of x
// (cvttps2dq vectorises; the offset is part of the rounding, so each caller
// keeps its own).
template <int Offset>
inline __attribute__((always_inline)) float exp_poly(float x, int32_t &k) {
    // a NaN x (a diverged activation) takes k = 0: converting NaN to an integer is undefined behaviour, and r
    // below carries the NaN into the result anyway; finite x give the same bits as without the select
    const float xk = x == x ? x : 0.0f;
    k = (int32_t)(xk * 1.44269504088896341f + ((float)Offset + 0.5f)) - Offset;
    const float kf = (float)k;
    float r = x - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * (r * r) + r + 1.0f;
}

}  // namespace d4j::cpu
#endif
