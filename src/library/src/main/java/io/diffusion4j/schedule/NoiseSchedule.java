package io.diffusion4j.schedule;

import java.util.Objects;

/**
 * Immutable float64 noise schedule of a discrete-time diffusion model: the betas and every
 * per-timestep quantity diffusers' {@code DDPMScheduler} (and improved-diffusion's
 * {@code GaussianDiffusion}) derives from them. Array accessors return defensive copies of length
 * {@code T = numTrainTimesteps()}, indexed by timestep t in [0, T); {@code ab} below abbreviates
 * {@code alphas_cumprod}.
 *
 * <p>Construction guarantees that every beta is finite and in (0, 1) and that alphas_cumprod is
 * strictly decreasing and inside [{@link Double#MIN_NORMAL}, 1) (no underflow to zero or to
 * subnormals), so all derived quantities are finite.
 */
public final class NoiseSchedule {
    /** Floor applied to the posterior variance before the log when T = 1 (as diffusers' clamp). */
    static final double MIN_POSTERIOR_VARIANCE = 1e-20;

    private final BetaSchedule betaSchedule;
    private final double betaStart;
    private final double betaEnd;

    private final double[] betas;
    private final double[] alphas;
    private final double[] alphasCumprod;
    private final double[] alphasCumprodPrev;
    private final double[] sqrtAlphasCumprod;
    private final double[] sqrtOneMinusAlphasCumprod;
    private final double[] logOneMinusAlphasCumprod;
    private final double[] sqrtRecipAlphasCumprod;
    private final double[] sqrtRecipm1AlphasCumprod;
    private final double[] posteriorVariance;
    private final double[] posteriorLogVarianceClipped;
    private final double[] posteriorMeanCoef1;
    private final double[] posteriorMeanCoef2;

    private NoiseSchedule(BetaSchedule betaSchedule, double betaStart, double betaEnd, double[] betas) {
        this.betaSchedule = betaSchedule;
        this.betaStart = betaStart;
        this.betaEnd = betaEnd;
        int n = betas.length;
        Checks.timesteps(n);
        for (int t = 0; t < n; t++) {
            Checks.openUnit("betas[" + t + "]", betas[t]);
        }
        this.betas = betas;

        alphas = new double[n];
        alphasCumprod = new double[n];
        double prod = 1.0;
        for (int t = 0; t < n; t++) {
            alphas[t] = 1.0 - betas[t];
            prod *= alphas[t];
            alphasCumprod[t] = prod;
        }
        checkAlphasCumprod(alphasCumprod);

        alphasCumprodPrev = new double[n];
        sqrtAlphasCumprod = new double[n];
        sqrtOneMinusAlphasCumprod = new double[n];
        logOneMinusAlphasCumprod = new double[n];
        sqrtRecipAlphasCumprod = new double[n];
        sqrtRecipm1AlphasCumprod = new double[n];
        posteriorVariance = new double[n];
        posteriorLogVarianceClipped = new double[n];
        posteriorMeanCoef1 = new double[n];
        posteriorMeanCoef2 = new double[n];
        for (int t = 0; t < n; t++) {
            double ab = alphasCumprod[t];
            double abPrev = t == 0 ? 1.0 : alphasCumprod[t - 1];
            double oneMinusAb = 1.0 - ab;
            alphasCumprodPrev[t] = abPrev;
            sqrtAlphasCumprod[t] = Math.sqrt(ab);
            sqrtOneMinusAlphasCumprod[t] = Math.sqrt(oneMinusAb);
            logOneMinusAlphasCumprod[t] = Math.log(oneMinusAb);
            sqrtRecipAlphasCumprod[t] = Math.sqrt(1.0 / ab);
            sqrtRecipm1AlphasCumprod[t] = Math.sqrt(1.0 / ab - 1.0);
            posteriorVariance[t] = betas[t] * (1.0 - abPrev) / oneMinusAb;
            posteriorMeanCoef1[t] = betas[t] * Math.sqrt(abPrev) / oneMinusAb;
            posteriorMeanCoef2[t] = (1.0 - abPrev) * Math.sqrt(alphas[t]) / oneMinusAb;
        }
        if (n == 1) {
            posteriorLogVarianceClipped[0] = Math.log(Math.max(posteriorVariance[0], MIN_POSTERIOR_VARIANCE));
        } else {
            posteriorLogVarianceClipped[0] = Math.log(posteriorVariance[1]);
            for (int t = 1; t < n; t++) {
                posteriorLogVarianceClipped[t] = Math.log(posteriorVariance[t]);
            }
        }
        checkFinite("sqrtRecipAlphasCumprod", sqrtRecipAlphasCumprod);
        checkFinite("sqrtRecipm1AlphasCumprod", sqrtRecipm1AlphasCumprod);
        checkFinite("logOneMinusAlphasCumprod", logOneMinusAlphasCumprod);
        checkFinite("posteriorVariance", posteriorVariance);
        checkFinite("posteriorLogVarianceClipped", posteriorLogVarianceClipped);
        checkFinite("posteriorMeanCoef1", posteriorMeanCoef1);
        checkFinite("posteriorMeanCoef2", posteriorMeanCoef2);
    }

    private static void checkAlphasCumprod(double[] ab) {
        for (int t = 0; t < ab.length; t++) {
            if (!(ab[t] >= Double.MIN_NORMAL)) {
                throw new IllegalArgumentException("alphasCumprod[" + t + "] = " + ab[t]
                        + " underflowed (below the smallest normal float64 " + Double.MIN_NORMAL
                        + "): the betas are too large for this many timesteps");
            }
            if (!(ab[t] < 1.0)) {
                throw new IllegalArgumentException("alphasCumprod[" + t + "] = " + ab[t]
                        + " is not below 1: betas[" + t + "] is too small for 1 - beta to differ from 1"
                        + " in float64");
            }
            if (t > 0 && !(ab[t] < ab[t - 1])) {
                throw new IllegalArgumentException("alphasCumprod is not strictly decreasing at t=" + t
                        + " (" + ab[t - 1] + " -> " + ab[t] + "): betas[" + t
                        + "] is too small for 1 - beta to differ from 1 in float64");
            }
        }
    }

    private static void checkFinite(String name, double[] values) {
        for (int t = 0; t < values.length; t++) {
            if (!Double.isFinite(values[t])) {
                throw new IllegalArgumentException(name + "[" + t + "] = " + values[t]
                        + " is not finite: alphasCumprod[" + t + "] is too close to 0 or 1");
            }
        }
    }

    /**
     * Builds the schedule diffusers' {@code DDPMScheduler(num_train_timesteps, beta_start, beta_end,
     * beta_schedule)} would use, in float64 (see {@link BetaSchedule#betas}).
     *
     * @param betaSchedule the beta generator, not null
     * @param numTrainTimesteps T, in [1, 100000]
     * @param betaStart {@code beta_start}, finite and in (0, 1) (unused by squaredcos_cap_v2)
     * @param betaEnd {@code beta_end}, finite and in (0, 1) (unused by squaredcos_cap_v2)
     * @return the schedule
     * @throws IllegalArgumentException naming the offending parameter and value, or if the
     *     resulting alphas_cumprod is not finite, strictly decreasing and inside (0, 1)
     */
    public static NoiseSchedule of(BetaSchedule betaSchedule, int numTrainTimesteps, double betaStart, double betaEnd) {
        Objects.requireNonNull(betaSchedule, "betaSchedule");
        double[] betas = betaSchedule.betas(numTrainTimesteps, betaStart, betaEnd);
        return new NoiseSchedule(betaSchedule, betaStart, betaEnd, betas);
    }

    /**
     * Builds a schedule from explicit betas, as diffusers' {@code trained_betas}. The array is
     * copied. {@link #betaSchedule()} is then null and {@link #betaStart()}/{@link #betaEnd()} are
     * the first and last beta.
     *
     * @param betas T values, 1 &lt;= T &lt;= 100000, each finite and in (0, 1)
     * @return the schedule
     * @throws IllegalArgumentException naming the offending element, or if the resulting
     *     alphas_cumprod is not finite, strictly decreasing and inside (0, 1)
     */
    public static NoiseSchedule fromBetas(double[] betas) {
        Objects.requireNonNull(betas, "betas");
        Checks.timesteps(betas.length);
        double[] copy = betas.clone();
        return new NoiseSchedule(null, copy[0], copy[copy.length - 1], copy);
    }

    /**
     * {@return diffusers' {@code DDPMScheduler} default: linear betas from 0.0001 to 0.02 over 1000
     * steps}
     */
    public static NoiseSchedule defaults() {
        return of(BetaSchedule.LINEAR, 1000, 0.0001, 0.02);
    }

    /** {@return T, diffusers' {@code num_train_timesteps}} */
    public int numTrainTimesteps() {
        return betas.length;
    }

    /** {@return the generator used ({@code beta_schedule}), or null when built by {@link #fromBetas}} */
    public BetaSchedule betaSchedule() {
        return betaSchedule;
    }

    /** {@return {@code beta_start} as given to {@link #of}; betas[0] when built by {@link #fromBetas}} */
    public double betaStart() {
        return betaStart;
    }

    /** {@return {@code beta_end} as given to {@link #of}; betas[T-1] when built by {@link #fromBetas}} */
    public double betaEnd() {
        return betaEnd;
    }

    /** {@return {@code betas}: beta_t, the forward-process variance of step t} */
    public double[] betas() {
        return betas.clone();
    }

    /** {@return {@code alphas}: alpha_t = 1 - beta_t} */
    public double[] alphas() {
        return alphas.clone();
    }

    /** {@return {@code alphas_cumprod}: ab_t = alpha_0 * ... * alpha_t (running float64 product)} */
    public double[] alphasCumprod() {
        return alphasCumprod.clone();
    }

    /** {@return {@code alphas_cumprod_prev}: ab_{t-1}, with 1.0 at t = 0 (length T)} */
    public double[] alphasCumprodPrev() {
        return alphasCumprodPrev.clone();
    }

    /** {@return {@code sqrt_alphas_cumprod}: sqrt(ab_t)} */
    public double[] sqrtAlphasCumprod() {
        return sqrtAlphasCumprod.clone();
    }

    /** {@return {@code sqrt_one_minus_alphas_cumprod}: sqrt(1 - ab_t)} */
    public double[] sqrtOneMinusAlphasCumprod() {
        return sqrtOneMinusAlphasCumprod.clone();
    }

    /** {@return {@code log_one_minus_alphas_cumprod}: log(1 - ab_t)} */
    public double[] logOneMinusAlphasCumprod() {
        return logOneMinusAlphasCumprod.clone();
    }

    /** {@return {@code sqrt_recip_alphas_cumprod}: sqrt(1 / ab_t)} */
    public double[] sqrtRecipAlphasCumprod() {
        return sqrtRecipAlphasCumprod.clone();
    }

    /** {@return {@code sqrt_recipm1_alphas_cumprod}: sqrt(1 / ab_t - 1)} */
    public double[] sqrtRecipm1AlphasCumprod() {
        return sqrtRecipm1AlphasCumprod.clone();
    }

    /**
     * {@return {@code posterior_variance}: variance of q(x_{t-1} | x_t, x0),
     * beta_t (1 - ab_{t-1}) / (1 - ab_t); element 0 is 0.}
     */
    public double[] posteriorVariance() {
        return posteriorVariance.clone();
    }

    /**
     * {@return {@code posterior_log_variance_clipped}: log(posterior_variance) with element 0 replaced by
     * element 1 (improved-diffusion); when T = 1, log(max(posterior_variance[0], 1e-20)).}
     */
    public double[] posteriorLogVarianceClipped() {
        return posteriorLogVarianceClipped.clone();
    }

    /**
     * {@return {@code posterior_mean_coef1}: coefficient of x0 in the posterior mean,
     * beta_t sqrt(ab_{t-1}) / (1 - ab_t).}
     */
    public double[] posteriorMeanCoef1() {
        return posteriorMeanCoef1.clone();
    }

    /**
     * {@return {@code posterior_mean_coef2}: coefficient of x_t in the posterior mean,
     * (1 - ab_{t-1}) sqrt(alpha_t) / (1 - ab_t).}
     */
    public double[] posteriorMeanCoef2() {
        return posteriorMeanCoef2.clone();
    }

    /** {@return the signal-to-noise ratio per timestep, SNR_t = ab_t / (1 - ab_t)} */
    public double[] snr() {
        double[] r = new double[alphasCumprod.length];
        for (int t = 0; t < r.length; t++) {
            r[t] = alphasCumprod[t] / (1.0 - alphasCumprod[t]);
        }
        return r;
    }

    /**
     * Min-SNR-gamma loss weights per timestep (Hang et al. 2023; diffusers {@code train_text_to_image}
     * {@code --snr_gamma}): with m = min(SNR_t, gamma), epsilon: m / SNR_t; sample: m;
     * v_prediction: m / (SNR_t + 1).
     *
     * @param gamma the clamp, finite and &gt; 0 (5.0 is the paper's recommendation)
     * @param predictionType what the model predicts, not null
     * @return a fresh array of T weights
     * @throws IllegalArgumentException if gamma is not finite and positive
     */
    public double[] minSnrWeights(double gamma, PredictionType predictionType) {
        if (!(gamma > 0.0) || gamma == Double.POSITIVE_INFINITY) {
            throw new IllegalArgumentException("gamma must be finite and > 0, got " + gamma);
        }
        Objects.requireNonNull(predictionType, "predictionType");
        double[] snr = snr();
        double[] w = new double[snr.length];
        for (int t = 0; t < w.length; t++) {
            double m = Math.min(snr[t], gamma);
            w[t] = switch (predictionType) {
                case EPSILON -> m / snr[t];
                case SAMPLE -> m;
                case V_PREDICTION -> m / (snr[t] + 1.0);
            };
        }
        return w;
    }

    /**
     * beta_t of {@link #betas()}.
     *
     * @param t timestep index
     * @return the value at t
     * @throws IllegalArgumentException unless 0 &lt;= t &lt; T; the message names t and T
     */
    public double beta(int t) {
        return betas[index(t)];
    }

    /**
     * alpha_t = 1 - beta_t.
     *
     * @param t timestep index
     * @return the value at t
     * @throws IllegalArgumentException unless 0 &lt;= t &lt; T; the message names t and T
     */
    public double alpha(int t) {
        return alphas[index(t)];
    }

    /**
     * ab_t of {@link #alphasCumprod()}.
     *
     * @param t timestep index
     * @return the value at t
     * @throws IllegalArgumentException unless 0 &lt;= t &lt; T; the message names t and T
     */
    public double alphaCumprod(int t) {
        return alphasCumprod[index(t)];
    }

    /**
     * ab_{t-1}, 1.0 at t = 0.
     *
     * @param t timestep index
     * @return the value at t
     * @throws IllegalArgumentException unless 0 &lt;= t &lt; T; the message names t and T
     */
    public double alphaCumprodPrev(int t) {
        return alphasCumprodPrev[index(t)];
    }

    private int index(int t) {
        if (t < 0 || t >= betas.length) {
            throw new IllegalArgumentException(
                    "timestep t must be in [0, T) with T=" + betas.length + ", got t=" + t);
        }
        return t;
    }

    /** Short description: schedule name, T, beta range and the final alphas_cumprod. */
    @Override
    public String toString() {
        String name = betaSchedule == null ? "trained_betas" : betaSchedule.configName();
        return "NoiseSchedule[" + name + ", T=" + betas.length + ", betaStart=" + betaStart
                + ", betaEnd=" + betaEnd + ", alphasCumprod[T-1]=" + alphasCumprod[betas.length - 1] + "]";
    }
}
