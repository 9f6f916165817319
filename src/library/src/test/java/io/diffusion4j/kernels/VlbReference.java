package io.diffusion4j.kernels;

import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;

/**
 * A float64 transcription of improved-diffusion's bound terms (gaussian_diffusion.py q_posterior_mean_variance,
 * p_mean_variance with fixed variances, _vb_terms_bpd, _prior_bpd; losses.py normal_kl,
 * discretized_gaussian_log_likelihood, approx_standard_normal_cdf), written from their formulas as they
 * stand (means subtracted as whole means, normal_kl term by term), with every schedule quantity from
 * {@link NoiseSchedule} (independent of the front's coefficient derivation). Results in nats summed over
 * each sample's elements.
 */
public final class VlbReference {
    private VlbReference() {}

    /** x0 prediction of improved-diffusion / diffusers for each prediction type. */
    static double predictX0(PredictionType p, double ab, double xt, double o) {
        return switch (p) {
            case EPSILON -> Math.sqrt(1.0 / ab) * xt - Math.sqrt(1.0 / ab - 1.0) * o; // _predict_xstart_from_eps
            case SAMPLE -> o;
            case V_PREDICTION -> Math.sqrt(ab) * xt - Math.sqrt(1.0 - ab) * o;
        };
    }

    static double normalKl(double mean1, double logvar1, double mean2, double logvar2) {
        return 0.5 * (-1.0 + logvar2 - logvar1 + Math.exp(logvar1 - logvar2)
                + (mean1 - mean2) * (mean1 - mean2) * Math.exp(-logvar2));
    }

    static double approxStandardNormalCdf(double x) {
        return 0.5 * (1.0 + Math.tanh(Math.sqrt(2.0 / Math.PI) * (x + 0.044715 * Math.pow(x, 3))));
    }

    /**
     * The probability discretized_gaussian_log_likelihood takes the log of (before its 1e-12 floor): the open
     * edge bin's cdf+ or 1 - cdf-, or an interior bin's cdf+ - cdf-.
     */
    static double binProbability(double x, double mean, double logScale) {
        double centered = x - mean;
        double invStdv = Math.exp(-logScale);
        double cdfPlus = approxStandardNormalCdf(invStdv * (centered + 1.0 / 255.0));
        double cdfMin = approxStandardNormalCdf(invStdv * (centered - 1.0 / 255.0));
        return x < -0.999 ? cdfPlus : x > 0.999 ? 1.0 - cdfMin : cdfPlus - cdfMin;
    }

    static double discretizedGaussianLogLikelihood(double x, double mean, double logScale) {
        return Math.log(Math.max(binProbability(x, mean, logScale), 1e-12));
    }

    /** The model's log variance at t (p_mean_variance, FIXED_SMALL / FIXED_LARGE). */
    static double modelLogVariance(NoiseSchedule s, VarianceType v, int t) {
        // FIXED_SMALL: posterior_log_variance_clipped = log(append(pv[1], pv[1:]));
        // FIXED_LARGE: log(append(pv[1], betas[1:]))
        if (t == 0) return Math.log(s.posteriorVariance()[1]);
        return v == VarianceType.FIXED_SMALL ? Math.log(s.posteriorVariance()[t]) : Math.log(s.betas()[t]);
    }

    /** The term of one sample at timestep t (KL for t &gt; 0, decoder NLL for t = 0), nats summed over n elements. */
    public static double term(NoiseSchedule s, PredictionType p, VarianceType v, boolean clip, double r, float[] x0,
                              float[] xt, float[] o, int off, int n, int t) {
        double c1 = s.posteriorMeanCoef1()[t], c2 = s.posteriorMeanCoef2()[t];
        double trueLogVar = s.posteriorLogVarianceClipped()[t];
        double modelLogVar = modelLogVariance(s, v, t);
        double sum = 0;
        for (int i = off; i < off + n; i++) {
            double modelMean = modelMean(s, p, clip, r, xt[i], o[i], t);
            if (t == 0) {
                sum += -discretizedGaussianLogLikelihood(x0[i], modelMean, 0.5 * modelLogVar);
            } else {
                double trueMean = c1 * x0[i] + c2 * xt[i];
                sum += normalKl(trueMean, trueLogVar, modelMean, modelLogVar);
            }
        }
        return sum;
    }

    /** The model mean (p_mean_variance): the posterior mean around the (clipped) x0 prediction. */
    static double modelMean(NoiseSchedule s, PredictionType p, boolean clip, double r, float xt, float o, int t) {
        double pred = predictX0(p, s.alphasCumprod()[t], xt, o);
        if (clip) pred = Math.max(-r, Math.min(r, pred));
        return s.posteriorMeanCoef1()[t] * pred + s.posteriorMeanCoef2()[t] * xt;
    }

    /**
     * The decoder's bin probability for element i (the P of {@link #term} at t = 0, whose -log(max(P, 1e-12)) is
     * the element's term); the decoder variance is pv[1] for both variance types.
     */
    public static double decoderBinProbability(NoiseSchedule s, PredictionType p, boolean clip, double r, float[] x0,
                                               float[] xt, float[] o, int i) {
        double logScale = 0.5 * modelLogVariance(s, VarianceType.FIXED_SMALL, 0);
        return binProbability(x0[i], modelMean(s, p, clip, r, xt[i], o[i], 0), logScale);
    }

    /** The prior term of one sample (_prior_bpd before the division by n ln 2). */
    public static double prior(NoiseSchedule s, float[] x0, int off, int n) {
        int last = s.numTrainTimesteps() - 1;
        double sab = s.sqrtAlphasCumprod()[last], logVar = s.logOneMinusAlphasCumprod()[last];
        double sum = 0;
        for (int i = off; i < off + n; i++) sum += normalKl(sab * x0[i], logVar, 0.0, 0.0);
        return sum;
    }
}
