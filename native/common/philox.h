/*
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11) and a Box-Muller transform, written once for host and device.
 *
 * Why a counter-based generator: element i of a call is a pure function of
 * (seed, offset, i), so every thread computes its own numbers with no shared
 * state and the result is independent of thread count or launch geometry.
 *
 * Why our own log/sin/cos: libm and CUDA's math library round differently,
 * so Box-Muller written with logf/sinf would give different bits on the CPU
 * and the GPU. Here the transform uses only +, -, *, / and sqrt, each
 * correctly rounded by IEEE 754 on both sides, in a fixed order: on the
 * device through the __f*_rn intrinsics (which nvcc never contracts into
 * FMAs), on the host in translation units compiled with -ffp-contract=off.
 * Same operations, same order, same bits.
 *
 * The CUDA simulator build (D4J_CUDA_SIM) uses the intrinsics too, from
 * native/cudasim/cuda_runtime.h, where they are fenced against contraction:
 * the profiling simulator compiles the kernels with -ffp-contract=fast, as
 * nvcc contracts, and the parity suite run on it then shows any expression of
 * a bit-exact family that a GPU would fuse.
 */
#ifndef D4J_PHILOX_H
#define D4J_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__) && !defined(D4J_CUDA_SIM)
#define D4J_HD __host__ __device__ __forceinline__
#else
#define D4J_HD static inline
#endif

/* Correctly rounded float32 and float64 operations that are never fused into
 * an FMA, for expressions whose result must be bit-identical on every backend. */
#if defined(D4J_CUDA_SIM)
#include <cuda_runtime.h> /* the simulator's, with the fenced intrinsics */
#endif
#if defined(__CUDA_ARCH__) || defined(D4J_CUDA_SIM)
#define D4J_FADD(a, b) __fadd_rn((a), (b))
#define D4J_FSUB(a, b) __fsub_rn((a), (b))
#define D4J_FMUL(a, b) __fmul_rn((a), (b))
#define D4J_FDIV(a, b) __fdiv_rn((a), (b))
#define D4J_FSQRT(a) __fsqrt_rn(a)
#define D4J_DADD(a, b) __dadd_rn((a), (b))
#define D4J_DSUB(a, b) __dsub_rn((a), (b))
#define D4J_DMUL(a, b) __dmul_rn((a), (b))
#else
/* Host: the including translation unit must be compiled with -ffp-contract=off. */
#define D4J_FADD(a, b) ((a) + (b))
#define D4J_FSUB(a, b) ((a) - (b))
#define D4J_FMUL(a, b) ((a) * (b))
#define D4J_FDIV(a, b) ((a) / (b))
#define D4J_FSQRT(a) __builtin_sqrtf(a)
#define D4J_DADD(a, b) ((a) + (b))
#define D4J_DSUB(a, b) ((a) - (b))
#define D4J_DMUL(a, b) ((a) * (b))
#endif

typedef struct d4j_u32x4 {
    uint32_t v[4];
} d4j_u32x4;

D4J_HD uint32_t d4j_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Philox4x32 with 10 rounds; constants from Random123. */
D4J_HD d4j_u32x4 d4j_philox4x32_10(d4j_u32x4 ctr, uint32_t k0, uint32_t k1) {
    /* fully unrolled, so loops over many blocks vectorise on the host */
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif !defined(__CUDACC__)
#pragma GCC unroll 10
#endif
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint32_t hi0, hi1;
        uint32_t lo0 = d4j_mulhilo32(0xD2511F53u, ctr.v[0], &hi0);
        uint32_t lo1 = d4j_mulhilo32(0xCD9E8D57u, ctr.v[2], &hi1);
        d4j_u32x4 n;
        n.v[0] = hi1 ^ ctr.v[1] ^ k0;
        n.v[1] = lo1;
        n.v[2] = hi0 ^ ctr.v[3] ^ k1;
        n.v[3] = lo0;
        ctr = n;
    }
    return ctr;
}

/* Block j of the stream (seed, offset): four 32-bit words. */
D4J_HD d4j_u32x4 d4j_philox_block(uint64_t seed, uint64_t offset, uint64_t j) {
    d4j_u32x4 c;
    c.v[0] = (uint32_t)j;
    c.v[1] = (uint32_t)(j >> 32);
    c.v[2] = (uint32_t)offset;
    c.v[3] = (uint32_t)(offset >> 32);
    return d4j_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

D4J_HD uint32_t d4j_f2u(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
#endif
}

D4J_HD float d4j_u2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
#endif
}

/* ln(u) for u in (0, 1], normal float input. u = m * 2^e with m in
 * [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716,
 * summed to s^13 (next term < 2e-12 relative). Error: a few float ulps. */
D4J_HD float d4j_ln_unit(float u) {
    uint32_t bits = d4j_f2u(u);
    int e = (int)((bits >> 23) & 0xFFu) - 127;
    float m = d4j_u2f((bits & 0x007FFFFFu) | 0x3F800000u); /* m in [1, 2) */
    /* branch-free (selects), so host loops vectorise and warps do not diverge */
    int big = m > 1.41421356f;
    float m_half = D4J_FMUL(m, 0.5f); /* exact; computed unconditionally so the select is trap-free */
    m = big ? m_half : m;
    e += big;
    float f = D4J_FSUB(m, 1.0f); /* exact (Sterbenz) */
    float s = D4J_FDIV(f, D4J_FADD(2.0f, f));
    float s2 = D4J_FMUL(s, s);
    float p = 1.0f / 13.0f;
    p = D4J_FADD(D4J_FMUL(p, s2), 1.0f / 11.0f);
    p = D4J_FADD(D4J_FMUL(p, s2), 1.0f / 9.0f);
    p = D4J_FADD(D4J_FMUL(p, s2), 1.0f / 7.0f);
    p = D4J_FADD(D4J_FMUL(p, s2), 1.0f / 5.0f);
    p = D4J_FADD(D4J_FMUL(p, s2), 1.0f / 3.0f);
    /* ln m = 2s + 2 s^3 p; ln2 split so e*ln2_hi is exact for |e| < 2^8 */
    float lnm = D4J_FADD(D4J_FMUL(2.0f, s), D4J_FMUL(D4J_FMUL(2.0f, s), D4J_FMUL(s2, p)));
    float fe = (float)e;
    const float ln2_hi = 0.693145752f; /* 0x3f317200: 16 significant bits */
    const float ln2_lo = 1.42860677e-06f;
    return D4J_FADD(D4J_FMUL(fe, ln2_hi), D4J_FADD(D4J_FMUL(fe, ln2_lo), lnm));
}

/* sin and cos of x in [0, pi/4] by Taylor polynomials (terms below 2e-9 dropped). */
D4J_HD void d4j_sincos_small(float x, float *s, float *c) {
    float x2 = D4J_FMUL(x, x);
    float ps = -1.0f / 39916800.0f;                  /* -1/11! */
    ps = D4J_FADD(D4J_FMUL(ps, x2), 1.0f / 362880.0f); /* 1/9! */
    ps = D4J_FADD(D4J_FMUL(ps, x2), -1.0f / 5040.0f);
    ps = D4J_FADD(D4J_FMUL(ps, x2), 1.0f / 120.0f);
    ps = D4J_FADD(D4J_FMUL(ps, x2), -1.0f / 6.0f);
    *s = D4J_FADD(x, D4J_FMUL(D4J_FMUL(x, x2), ps));
    float pc = 1.0f / 3628800.0f;                      /* 1/10! */
    pc = D4J_FADD(D4J_FMUL(pc, x2), -1.0f / 40320.0f); /* -1/8! */
    pc = D4J_FADD(D4J_FMUL(pc, x2), 1.0f / 720.0f);
    pc = D4J_FADD(D4J_FMUL(pc, x2), -1.0f / 24.0f);
    pc = D4J_FADD(D4J_FMUL(pc, x2), 0.5f);
    *c = D4J_FSUB(1.0f, D4J_FMUL(x2, pc));
}

/* Two standard normals from two uniform words (Box-Muller).
 * u1 = (2k+1) 2^-24 with k the top 23 bits of a: in (0, 1), exact, never 0.
 * The angle 2 pi u2 is reduced exactly on u2 itself (a 24-bit fraction):
 * quadrant q = floor(4 u2), r = frac(4 u2); r > 1/2 uses the complement. */
D4J_HD void d4j_box_muller(uint32_t a, uint32_t b, float *z0, float *z1) {
    float u1 = (float)((a >> 9) * 2u + 1u) * 5.9604644775390625e-08f; /* 2^-24 */
    float radius = D4J_FSQRT(D4J_FMUL(-2.0f, d4j_ln_unit(u1)));
    uint32_t k = b >> 8;           /* u2 = k 2^-24 */
    uint32_t q = k >> 22;          /* quadrant */
    uint32_t rk = k & 0x3FFFFFu;   /* r = rk 2^-22 in [0, 1) */
    int complement = rk > 0x200000u;
    rk = complement ? 0x400000u - rk : rk;
    float x = D4J_FMUL((float)rk * 2.384185791015625e-07f, 1.57079632679489662f); /* r * pi/2 */
    float s0, c0;
    d4j_sincos_small(x, &s0, &c0);
    float s = complement ? c0 : s0;
    float c = complement ? s0 : c0;
    /* rotate by q quarter turns: (sin, cos) of q pi/2 + phi */
    float sn = (q & 1) ? c : s;
    float cs = (q & 1) ? s : c;
    sn = (q & 2) ? -sn : sn;
    cs = ((q + 1) & 2) ? -cs : cs;
    *z0 = D4J_FMUL(radius, cs);
    *z1 = D4J_FMUL(radius, sn);
}

/* Normals 4j..4j+3 of the stream (seed, offset). */
D4J_HD void d4j_normal4(uint64_t seed, uint64_t offset, uint64_t j, float out[4]) {
    d4j_u32x4 w = d4j_philox_block(seed, offset, j);
    d4j_box_muller(w.v[0], w.v[1], &out[0], &out[1]);
    d4j_box_muller(w.v[2], w.v[3], &out[2], &out[3]);
}

/* Normal element i of the stream (seed, offset). */
D4J_HD float d4j_normal_at(uint64_t seed, uint64_t offset, uint64_t i) {
    float z[4];
    d4j_normal4(seed, offset, i >> 2, z);
    return z[i & 3];
}

#endif
