// Per-sample schedule coefficients, derived in float64 from alphas_cumprod and
// rounded once to the records the backends apply element by element
// (native/common/diffusion_math.h, sampler_math.h, vlb_math.h).
#include <cmath>
#include <cstring>

#include "front_internal.h"

namespace d4j::front {
namespace {

// eps = a x_t + b model_output for a prediction type at alphas_cumprod ab.
void predict_eps(int32_t prediction, double ab, double *a, double *b) {
    double sab = std::sqrt(ab), sbp = std::sqrt(1.0 - ab);
    switch (prediction) {
        case D4J_PREDICTION_EPSILON: *a = 0.0; *b = 1.0; break;
        case D4J_PREDICTION_SAMPLE: *a = 1.0 / sbp; *b = -sab / sbp; break;
        default: *a = sbp; *b = sab; break;  // v: eps = sqrt(ab) v + sqrt(1-ab) x
    }
}

// lambda = log(alpha) - log(sigma) of a schedule entry (alpha^2 = ab, sigma^2 = 1 - ab).
double dpm_lambda(double ab) { return 0.5 * (std::log(ab) - std::log1p(-ab)); }

// Posterior variance beta_t (1 - ab_prev) / (1 - ab_t) at t >= 1.
double vlb_posterior_variance(const std::vector<double> &ac, int32_t t) {
    const double ab = ac[t], ab_prev = ac[t - 1];
    const double beta = 1.0 - ab / ab_prev;
    return beta * (1.0 - ab_prev) / (1.0 - ab);
}

// A zero-filled record (padding included), so records compare and hash by bytes.
template <class T>
T zeroed() {
    T c;
    std::memset(&c, 0, sizeof c);
    return c;
}

}  // namespace

void predict_x0(int32_t prediction, double ab, double *a, double *b) {
    double sab = std::sqrt(ab), sbp = std::sqrt(1.0 - ab);
    switch (prediction) {
        case D4J_PREDICTION_EPSILON: *a = 1.0 / sab; *b = -sbp / sab; break;
        case D4J_PREDICTION_SAMPLE: *a = 0.0; *b = 1.0; break;
        default: *a = sab; *b = -sbp; break;  // v
    }
}

d4j_noise_coef noise_coef(double ab) {
    d4j_noise_coef c{};
    c.a = (float)std::sqrt(ab);
    c.s = (float)std::sqrt(1.0 - ab);
    return c;
}

d4j_loss_coef loss_coef(int32_t prediction, double ab, double w, int32_t batch, int64_t n) {
    d4j_loss_coef c{};
    switch (prediction) {
        case D4J_PREDICTION_EPSILON: c.c_eps = 1.0f; c.c_x0 = 0.0f; break;
        case D4J_PREDICTION_SAMPLE: c.c_eps = 0.0f; c.c_x0 = 1.0f; break;
        default:
            c.c_eps = (float)std::sqrt(ab);
            c.c_x0 = (float)-std::sqrt(1.0 - ab);
            break;
    }
    c.lw = (float)(w / (double)n);
    c.g = (float)(2.0 * w / ((double)batch * (double)n));
    return c;
}

d4j_step_coef ddpm_coef(const std::vector<double> &ac, int32_t prediction, int32_t variance, int32_t t, int32_t prev,
                        uint64_t seed, uint64_t offset) {
    double ab = ac[t];
    double ab_prev = prev >= 0 ? ac[prev] : 1.0;
    double bp = 1.0 - ab, bp_prev = 1.0 - ab_prev;
    double alpha = ab / ab_prev, beta = 1.0 - alpha;
    double x0a, x0b;
    predict_x0(prediction, ab, &x0a, &x0b);
    d4j_step_coef c = zeroed<d4j_step_coef>();
    c.x0_a = (float)x0a;
    c.x0_b = (float)x0b;
    c.c_x0 = (float)(std::sqrt(ab_prev) * beta / bp);
    c.c_xt = (float)(std::sqrt(alpha) * bp_prev / bp);
    double var = 0.0;
    if (t > 0) {
        var = variance == D4J_VARIANCE_FIXED_SMALL ? std::fmax(bp_prev / bp * beta, 1e-20) : beta;
    }
    c.sigma = (float)std::sqrt(var);
    c.seed = seed;
    c.offset = offset;
    return c;
}

d4j_step_coef ddim_coef(const std::vector<double> &ac, int32_t prediction, float eta, int32_t use_clipped_model_output,
                        double final_alpha_cumprod, int32_t t, int32_t prev, uint64_t seed, uint64_t offset) {
    double ab = ac[t];
    double ab_prev = prev >= 0 ? ac[prev] : final_alpha_cumprod;
    double bp = 1.0 - ab, bp_prev = 1.0 - ab_prev;
    double x0a, x0b, ea, eb;
    predict_x0(prediction, ab, &x0a, &x0b);
    predict_eps(prediction, ab, &ea, &eb);
    double variance = bp_prev / bp * (1.0 - ab / ab_prev);
    double std_dev = (double)eta * std::sqrt(std::fmax(variance, 0.0));
    double dir = std::sqrt(std::fmax(bp_prev - std_dev * std_dev, 0.0));
    d4j_step_coef c = zeroed<d4j_step_coef>();
    c.x0_a = (float)x0a;
    c.x0_b = (float)x0b;
    if (use_clipped_model_output) {
        // eps re-derived from the (clipped) x0: (x - sqrt(ab) x0) / sqrt(1 - ab)
        c.eps_a = (float)(1.0 / std::sqrt(bp));
        c.eps_c = (float)(-std::sqrt(ab) / std::sqrt(bp));
    } else {
        c.eps_a = (float)ea;
        c.eps_b = (float)eb;
    }
    c.c_x0 = (float)std::sqrt(ab_prev);
    c.c_eps = (float)dir;
    c.sigma = eta > 0.0f ? (float)std_dev : 0.0f;
    c.seed = seed;
    c.offset = offset;
    return c;
}

d4j_sampler_coef x0_coef(int32_t prediction, double ab) {
    d4j_sampler_coef c = zeroed<d4j_sampler_coef>();
    double a, b;
    predict_x0(prediction, ab, &a, &b);
    c.step.x0_a = (float)a;
    c.step.x0_b = (float)b;
    return c;
}

d4j_sampler_coef widen(const d4j_step_coef &step) {
    d4j_sampler_coef c = zeroed<d4j_sampler_coef>();
    c.step = step;
    return c;
}

d4j_sampler_coef dpmsolver_coef(const std::vector<double> &ac, int32_t prediction, int32_t t, int32_t prev,
                                int32_t last) {
    d4j_sampler_coef c = zeroed<d4j_sampler_coef>();
    const double ab_s0 = ac[t];
    double x0a, x0b;
    predict_x0(prediction, ab_s0, &x0a, &x0b);
    c.step.x0_a = (float)x0a;
    c.step.x0_b = (float)x0b;
    if (prev < 0) {
        // sigma_t = 0, alpha_t = 1, h = +inf: x_prev = m0
        c.step.c_x0 = 1.0f;
        return c;
    }
    const double ab_t = ac[prev];
    const double alpha_t = std::sqrt(ab_t), sigma_t = std::sqrt(1.0 - ab_t), sigma_s0 = std::sqrt(1.0 - ab_s0);
    const double h = dpm_lambda(ab_t) - dpm_lambda(ab_s0);
    const double cm0 = alpha_t * -std::expm1(-h);  // -alpha_t (e^-h - 1)
    c.step.c_xt = (float)(sigma_t / sigma_s0);
    if (last < 0) {
        c.step.c_x0 = (float)cm0;
    } else {
        const double r0 = (dpm_lambda(ab_s0) - dpm_lambda(ac[last])) / h;
        c.step.c_x0 = (float)(cm0 * (1.0 + 0.5 / r0));
        c.c_m1 = (float)(-0.5 * cm0 / r0);
    }
    return c;
}

// The coefficients of the bound's term at timestep t (d4j.h, section "vlb"):
// improved-diffusion's posterior_log_variance_clipped (log pv[1] at t = 0) as
// the true log variance, and as the model's: the same (fixed_small) or
// log(beta_t) with log pv[1] at t = 0 (fixed_large).
d4j_vlb_coef vlb_coef(const std::vector<double> &ac, int32_t prediction, int32_t variance, int32_t t) {
    d4j_vlb_coef c = zeroed<d4j_vlb_coef>();
    const double ab = ac[t], ab_prev = t > 0 ? ac[t - 1] : 1.0;
    const double beta = t > 0 ? 1.0 - ab / ab_prev : 1.0 - ab;
    predict_x0(prediction, ab, &c.x0_a, &c.x0_b);
    c.c1 = beta * std::sqrt(ab_prev) / (1.0 - ab);
    c.c2 = (1.0 - ab_prev) * std::sqrt(1.0 - beta) / (1.0 - ab);
    const double lv_clipped = std::log(vlb_posterior_variance(ac, t > 0 ? t : 1));
    const double lv_model = (variance == D4J_VARIANCE_FIXED_LARGE && t > 0) ? std::log(beta) : lv_clipped;
    if (t == 0) {
        c.decoder = 1;
        c.inv_stdv = std::exp(-0.5 * lv_model);
        return c;
    }
    // 0.5 (-1 + lv_p - lv_q + exp(lv_q - lv_p)) with d = lv_q - lv_p: 0.5 (expm1(d) - d), exactly 0 at d = 0
    const double d = lv_clipped - lv_model;
    c.k = 0.5 * (std::expm1(d) - d);
    c.q = 0.5 * std::exp(-lv_model);
    return c;
}

d4j_vlb_coef vlb_prior_coef(double ab) {
    // KL(N(sqrt(ab) x0, 1 - ab) || N(0, 1)): the KL element with x0_hat = 0, c1 = sqrt(ab),
    // lv_q = log(1 - ab), lv_p = 0: k = 0.5 (expm1(lv_q) - lv_q) = 0.5 (-ab - log1p(-ab)), q = 0.5
    d4j_vlb_coef c = zeroed<d4j_vlb_coef>();
    c.c1 = std::sqrt(ab);
    c.k = 0.5 * (-ab - std::log1p(-ab));
    c.q = 0.5;
    return c;
}

}  // namespace d4j::front
