package io.diffusion4j.train;

import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import java.util.Objects;

/**
 * Min-SNR-gamma loss weighting (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
 * Weighting Strategy"), as diffusers' training scripts (train_text_to_image.py, {@code --snr_gamma})
 * compute it. With {@code snr(t) = alphas_cumprod[t] / (1 - alphas_cumprod[t])}, the per-sample
 * mean squared error is multiplied by
 * <pre>
 *   epsilon:       min(snr, gamma) / snr
 *   sample:        min(snr, gamma)
 *   v_prediction:  min(snr, gamma) / (snr + 1)
 * </pre>
 * (the paper's {@code min(snr, gamma)} weight for x0-prediction, carried over to the epsilon and
 * v objectives, whose MSE equal the x0 MSE times {@code snr} and {@code snr + 1}). The weight depends
 * on the sample only through its timestep, so it is computed once per timestep in float64 (diffusers
 * computes it in float32 on the device) and rounded once to the float32 table the native loss kernel
 * takes ({@code d4j_diffusion_loss(..., loss_weights, ...)}: {@code loss[b] = w[t_b] * mean(...)}).
 *
 * <p>Limits where the ratio is 0/0 or inf/inf: {@code alphas_cumprod = 0} (snr 0, zero-terminal-SNR
 * schedules) gives epsilon 1 (the limit of {@code min(snr, gamma) / snr}), sample and v 0;
 * {@code alphas_cumprod = 1} (snr infinite) gives epsilon and v 0, sample gamma.
 */
public final class MinSnrWeights {
    private MinSnrWeights() {}

    /** The weight of a sample whose timestep has {@code alphaCumprod}, in float64. */
    public static double weight(double alphaCumprod, PredictionType prediction, double gamma) {
        Objects.requireNonNull(prediction, "prediction");
        checkGamma(gamma);
        if (!(alphaCumprod >= 0 && alphaCumprod <= 1)) {
            throw new IllegalArgumentException("alphaCumprod must be in [0, 1], got " + alphaCumprod);
        }
        double snr = alphaCumprod / (1.0 - alphaCumprod); // +inf at alphaCumprod = 1
        double m = Math.min(snr, gamma);
        return switch (prediction) {
            case EPSILON -> snr == 0 ? 1.0 : m / snr;
            case SAMPLE -> m;
            case V_PREDICTION -> m / (snr + 1.0);
        };
    }

    /** The weights of every timestep {@code 0 .. T-1} of {@code schedule}, float64. */
    public static double[] weights(NoiseSchedule schedule, PredictionType prediction, double gamma) {
        double[] acp = Objects.requireNonNull(schedule, "schedule").alphasCumprod();
        double[] w = new double[acp.length];
        for (int t = 0; t < acp.length; t++) w[t] = weight(acp[t], prediction, gamma);
        return w;
    }

    /** {@link #weights} rounded to the float32 per-timestep table of the native loss kernel. */
    public static float[] table(NoiseSchedule schedule, PredictionType prediction, double gamma) {
        double[] w = weights(schedule, prediction, gamma);
        float[] f = new float[w.length];
        for (int t = 0; t < w.length; t++) f[t] = (float) w[t];
        return f;
    }

    static void checkGamma(double gamma) {
        if (!(Double.isFinite(gamma) && gamma > 0)) {
            throw new IllegalArgumentException("min-SNR gamma must be finite and > 0, got " + gamma);
        }
    }
}
