// Sinusoidal timestep embedding on the CPU. Arguments and sin/cos are float64
// (a timestep of 999 times a frequency of 1 is where float32 arguments lose
// ~1e-4), then rounded once to float32.
#include <cmath>

#include "cpu_kernels.h"

namespace d4j::cpu {

d4j_status timestep_embedding(void *, const float *t, int32_t batch, int32_t dim, const double *freqs, int32_t half,
                              int32_t flip, float *out) {
    for (int32_t b = 0; b < batch; ++b) {
        float *row = out + (int64_t)b * dim;
        for (int32_t j = 0; j < half; ++j) {
            double arg = (double)t[b] * freqs[j];
            float s = (float)std::sin(arg), c = (float)std::cos(arg);
            row[j] = flip ? c : s;
            row[half + j] = flip ? s : c;
        }
        if (dim & 1) row[dim - 1] = 0.0f;
    }
    return D4J_OK;
}

}  // namespace d4j::cpu
