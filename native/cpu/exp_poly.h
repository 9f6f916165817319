// The core of the CPU backend's vectorisable exponentials (kernels_norm.cpp's
// exp_nonpositive for SiLU, kernels_linear_attention.cpp's exp_vec for the
// softmax): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, and Cephes'
// degree-7 polynomial for e^r. The callers clamp x and apply 2^k their own
// way (gradual underflow, or one normal power of two). Written as plain float
// code so loops calling it vectorise (libm's expf is a scalar call).
#ifndef D4J_CPU_EXP_POLY_H
#define D4J_CPU_EXP_POLY_H

#include <cstdint>
#include <cstring>

namespace d4j::cpu {

// e^r for r = x - k ln2, k = round(x / ln2) (ties to even), read off the
// mantissa of x / ln2 + 1.5 * 2^23 rather than converted to an integer (a
// float-to-integer conversion and back cost more than the polynomial's adds
// here); valid while |x / ln2| < 2^22, far beyond the callers' clamps. A NaN x
// (a diverged activation) is computed as 0, so k stays 0 and no integer
// arithmetic sees garbage, and returned as itself.
inline __attribute__((always_inline)) float exp_poly(float x, int32_t &k) {
    const float xk = x == x ? x : 0.0f;
    const float t = xk * 1.44269504088896341f + 12582912.0f;
    const float kf = t - 12582912.0f;
    int32_t tb;
    std::memcpy(&tb, &t, sizeof tb);
    k = tb - 0x4b400000;  // the bits of 1.5 * 2^23
    float r = xk - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * (r * r) + r + 1.0f;
    return x == x ? e : x;
}

}  // namespace d4j::cpu
#endif
