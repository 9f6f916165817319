/*
 * Element math of the conditioning kernel families (class embedding,
 * classifier-free guidance, renoising for image-to-image and inpainting),
 * shared verbatim by the CPU backend and the CUDA backend (and its simulator
 * build). Every operation is rounded once (D4J_FMUL/D4J_FADD: never fused
 * into an FMA on a device), so the backends agree bit for bit.
 */
#ifndef D4J_CONDITIONING_MATH_H
#define D4J_CONDITIONING_MATH_H

#include "philox.h"

/* x' = a * src + s * z(seed, offset, i); with a mask m:
 * x' = m * (a * src + s * z) + (1 - m) * x. s = 0 draws no noise. */
typedef struct d4j_renoise_coef {
    float a, s;
    uint64_t seed, offset;
} d4j_renoise_coef;

D4J_HD float d4j_renoise_elem(const d4j_renoise_coef *c, float src, float z) {
    return D4J_FADD(D4J_FMUL(c->a, src), D4J_FMUL(c->s, z));
}

D4J_HD float d4j_mask_blend(float m, float inside, float outside) {
    return D4J_FADD(D4J_FMUL(m, inside), D4J_FMUL(D4J_FSUB(1.0f, m), outside));
}

/* uncond + scale * (cond - uncond) */
D4J_HD float d4j_guidance_elem(float cond, float uncond, float scale) {
    return D4J_FADD(uncond, D4J_FMUL(scale, D4J_FSUB(cond, uncond)));
}

#endif
