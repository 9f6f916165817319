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

    static double discretizedGaussianLogLikelihood(double x, double mean, double logScale) {
        double centered = x - mean;
        double invStdv = Math.exp(-logScale);
        double cdfPlus = approxStandardNormalCdf(invStdv * (centered + 1.0 / 255.0));
        double cdfMin = approxStandardNormalCdf(invStdv * (centered - 1.0 / 255.0));
        double logCdfPlus = Math.log(Math.max(cdfPlus, 1e-12));
        double logOneMinusCdfMin = Math.log(Math.max(1.0 - cdfMin, 1e-12));
        double cdfDelta = cdfPlus - cdfMin;
        return x < -0.999 ? logCdfPlus : x > 0.999 ? logOneMinusCdfMin : Math.log(Math.max(cdfDelta, 1e-12));
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
        double ab = s.alphasCumprod()[t];
        double c1 = s.posteriorMeanCoef1()[t], c2 = s.posteriorMeanCoef2()[t];
        double trueLogVar = s.posteriorLogVarianceClipped()[t];
        double modelLogVar = modelLogVariance(s, v, t);
        double sum = 0;
        for (int i = off; i < off + n; i++) {
            double pred = predictX0(p, ab, xt[i], o[i]);
            if (clip) pred = Math.max(-r, Math.min(r, pred));
            double modelMean = c1 * pred + c2 * xt[i];
            if (t == 0) {
                sum += -discretizedGaussianLogLikelihood(x0[i], modelMean, 0.5 * modelLogVar);
            } else {
                double trueMean = c1 * x0[i] + c2 * xt[i];
                sum += normalKl(trueMean, trueLogVar, modelMean, modelLogVar);
            }
        }
        return sum;
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
