package io.diffusion4j.testutil;

import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;

/**
 * Float64 references of the fused diffusion kernels, written from diffusers' Python formulas
 * (DDPMScheduler.add_noise / step / _get_variance, DDIMScheduler.step / _get_variance,
 * training_utils / the train_text_to_image loss with min-SNR weights, embeddings.get_timestep_embedding),
 * not from the native code. Inputs are the float32 arrays the kernels receive, widened to double;
 * noise for the reverse steps is the Java emulation of the native normals ({@link BoxMuller}), so the
 * reference sees the very same z as the kernel.
 *
 * <p>Besides the value, each reference returns a per-element <em>scale</em>: the sum of the
 * absolute values of the terms that a float32 evaluation adds up (through the chain of derived
 * quantities). A float32 kernel whose coefficients and operations each round once has an error of
 * a small multiple of u = 2^-24 times this scale, whatever cancellation happens between terms, so
 * tolerances are stated as k u scale.
 */
public final class KernelReference {
    private KernelReference() {}

    /** Reference values and per-element error scales. */
    public record Ref(double[] value, double[] scale) {}

    /** Reference loss per sample and gradient per element, each with its scale. */
    public record LossRef(double[] loss, double[] lossScale, double[] grad, double[] gradScale) {}

    // ---- add_noise --------------------------------------------------------------------------

    /**
     * diffusers add_noise: noisy = sqrt(alphas_cumprod[t]) * original + sqrt(1 - alphas_cumprod[t]) * noise.
     */
    public static Ref addNoise(double[] alphasCumprod, float[] x0, float[] noise, int[] timesteps, int n) {
        double[] v = new double[x0.length], s = new double[x0.length];
        for (int b = 0; b < timesteps.length; b++) {
            double sqrtAlphaProd = Math.sqrt(alphasCumprod[timesteps[b]]);
            double sqrtOneMinusAlphaProd = Math.sqrt(1.0 - alphasCumprod[timesteps[b]]);
            for (int i = b * n; i < (b + 1) * n; i++) {
                double p = sqrtAlphaProd * x0[i], q = sqrtOneMinusAlphaProd * noise[i];
                v[i] = p + q;
                s[i] = Math.abs(p) + Math.abs(q);
            }
        }
        return new Ref(v, s);
    }

    // ---- training loss ----------------------------------------------------------------------

    /**
     * The training target of diffusers' train scripts: noise (epsilon), the clean sample (sample),
     * or get_velocity = sqrt(ab) * noise - sqrt(1 - ab) * sample (v_prediction); the loss is
     * F.mse_loss(model_pred, target, reduction="none").mean(over the sample) * weight[t], and the
     * batch loss their mean over the batch, whose gradient w.r.t. model_pred is
     * 2 w (pred - target) / (batch * n).
     *
     * @param weights per-timestep weights (float32 as handed to the kernel) or null for 1
     */
    public static LossRef loss(double[] alphasCumprod, PredictionType prediction, float[] pred, float[] x0,
                               float[] noise, int[] timesteps, float[] weights, int n) {
        int batch = timesteps.length;
        double[] loss = new double[batch], lossScale = new double[batch];
        double[] grad = new double[pred.length], gradScale = new double[pred.length];
        for (int b = 0; b < batch; b++) {
            double ab = alphasCumprod[timesteps[b]];
            double w = weights == null ? 1.0 : weights[timesteps[b]];
            double sum = 0, sumScale = 0;
            for (int i = b * n; i < (b + 1) * n; i++) {
                double target, targetScale;
                switch (prediction) {
                    case EPSILON -> {
                        target = noise[i];
                        targetScale = Math.abs(target);
                    }
                    case SAMPLE -> {
                        target = x0[i];
                        targetScale = Math.abs(target);
                    }
                    default -> {
                        double p = Math.sqrt(ab) * noise[i], q = Math.sqrt(1.0 - ab) * x0[i];
                        target = p - q;
                        targetScale = Math.abs(p) + Math.abs(q);
                    }
                }
                double d = pred[i] - target;
                double sd = Math.abs(pred[i]) + targetScale; // scale of d
                sum += d * d;
                // d^2 has error 2 |d| (error of d) + the rounding of the square.
                sumScale += 2 * Math.abs(d) * sd + d * d;
                double g = 2.0 * w / ((double) batch * n);
                grad[i] = g * d;
                gradScale[i] = g * (sd + Math.abs(d));
            }
            loss[b] = w * sum / n;
            lossScale[b] = w * sumScale / n + loss[b];
        }
        return new LossRef(loss, lossScale, grad, gradScale);
    }

    // ---- x0 / epsilon predictions shared by both schedulers ----------------------------------

    /** pred_original_sample and its scale from (sample, model_output), as in both schedulers' step. */
    private static double[] predictX0(PredictionType prediction, double alphaProd, double x, double o) {
        double betaProd = 1.0 - alphaProd;
        return switch (prediction) {
            // (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
            case EPSILON -> new double[] {(x - Math.sqrt(betaProd) * o) / Math.sqrt(alphaProd),
                (Math.abs(x) + Math.sqrt(betaProd) * Math.abs(o)) / Math.sqrt(alphaProd)};
            case SAMPLE -> new double[] {o, Math.abs(o)};
            // alpha_prod_t ** 0.5 * sample - beta_prod_t ** 0.5 * model_output
            case V_PREDICTION -> new double[] {Math.sqrt(alphaProd) * x - Math.sqrt(betaProd) * o,
                Math.sqrt(alphaProd) * Math.abs(x) + Math.sqrt(betaProd) * Math.abs(o)};
        };
    }

    private static double clamp(double v, double r) {
        return Math.max(-r, Math.min(r, v));
    }

    // ---- DDPM -------------------------------------------------------------------------------

    /**
     * The per-sample coefficients of DDPMScheduler.step as diffusers computes them:
     * {pred_original_sample_coeff, current_sample_coeff, variance (before the square root)}.
     */
    public static double[] ddpmCoefficients(double[] alphasCumprod, int t, int prevT, VarianceType varianceType) {
        double alphaProdT = alphasCumprod[t];
        double alphaProdTPrev = prevT >= 0 ? alphasCumprod[prevT] : 1.0; // self.one
        double betaProdT = 1 - alphaProdT;
        double betaProdTPrev = 1 - alphaProdTPrev;
        double currentAlphaT = alphaProdT / alphaProdTPrev;
        double currentBetaT = 1 - currentAlphaT;
        double predOriginalSampleCoeff = (Math.sqrt(alphaProdTPrev) * currentBetaT) / betaProdT;
        double currentSampleCoeff = Math.sqrt(currentAlphaT) * betaProdTPrev / betaProdT;
        double variance = 0.0;
        if (t > 0) {
            // _get_variance: beta-tilde, clamped to 1e-20; fixed_large uses current_beta_t
            double v = (1 - alphaProdTPrev) / (1 - alphaProdT) * currentBetaT;
            v = Math.max(v, 1e-20);
            variance = varianceType == VarianceType.FIXED_SMALL ? v : currentBetaT;
        }
        return new double[] {predOriginalSampleCoeff, currentSampleCoeff, variance};
    }

    /**
     * DDPMScheduler.step for a batch with per-sample (t, prev_t) and per-sample noise streams:
     * noise of sample b element i is the emulated normal (seeds[b], offsets[b], i).
     */
    public static Ref ddpm(double[] alphasCumprod, PredictionType prediction, VarianceType varianceType,
                           boolean clipSample, double clipSampleRange, float[] sample, float[] modelOutput,
                           int[] timesteps, int[] prevTimesteps, long[] seeds, long[] offsets, int n) {
        double[] v = new double[sample.length], s = new double[sample.length];
        for (int b = 0; b < timesteps.length; b++) {
            int t = timesteps[b];
            double[] c = ddpmCoefficients(alphasCumprod, t, prevTimesteps[b], varianceType);
            double std = Math.sqrt(c[2]);
            float[] z = t > 0 ? BoxMuller.normals(seeds[b], offsets[b], 0, n) : null;
            for (int k = 0; k < n; k++) {
                int i = b * n + k;
                double x = sample[i];
                double[] x0 = predictX0(prediction, alphasCumprod[t], x, modelOutput[i]);
                double pred = clipSample ? clamp(x0[0], clipSampleRange) : x0[0];
                double noise = t > 0 ? std * z[k] : 0.0;
                v[i] = c[0] * pred + c[1] * x + noise;
                s[i] = c[0] * x0[1] + c[1] * Math.abs(x) + Math.abs(noise);
            }
        }
        return new Ref(v, s);
    }

    // ---- DDIM -------------------------------------------------------------------------------

    /**
     * DDIMScheduler.step for a batch with per-sample (t, prev_t); prev_t &lt; 0 uses
     * final_alpha_cumprod. Noise (eta &gt; 0) of sample b element i is the emulated normal
     * (seeds[b], offsets[b], i).
     */
    public static Ref ddim(double[] alphasCumprod, PredictionType prediction, double eta, boolean clipSample,
                           double clipSampleRange, boolean useClippedModelOutput, double finalAlphaCumprod,
                           float[] sample, float[] modelOutput, int[] timesteps, int[] prevTimesteps, long[] seeds,
                           long[] offsets, int n) {
        double[] v = new double[sample.length], s = new double[sample.length];
        for (int b = 0; b < timesteps.length; b++) {
            int t = timesteps[b], prevT = prevTimesteps[b];
            double alphaProdT = alphasCumprod[t];
            double alphaProdTPrev = prevT >= 0 ? alphasCumprod[prevT] : finalAlphaCumprod;
            double betaProdT = 1 - alphaProdT;
            double betaProdTPrev = 1 - alphaProdTPrev;
            // _get_variance
            double variance = (betaProdTPrev / betaProdT) * (1 - alphaProdT / alphaProdTPrev);
            double stdDevT = eta * Math.sqrt(variance);
            double dirCoeff = Math.sqrt(1 - alphaProdTPrev - stdDevT * stdDevT);
            float[] z = eta > 0 ? BoxMuller.normals(seeds[b], offsets[b], 0, n) : null;
            for (int k = 0; k < n; k++) {
                int i = b * n + k;
                double x = sample[i], o = modelOutput[i];
                double[] x0 = predictX0(prediction, alphaProdT, x, o);
                double predEps, predEpsScale;
                switch (prediction) {
                    case EPSILON -> {
                        predEps = o;
                        predEpsScale = Math.abs(o);
                    }
                    case SAMPLE -> { // (sample - alpha_prod_t ** 0.5 * pred_original_sample) / beta_prod_t ** 0.5
                        predEps = (x - Math.sqrt(alphaProdT) * x0[0]) / Math.sqrt(betaProdT);
                        predEpsScale = (Math.abs(x) + Math.sqrt(alphaProdT) * x0[1]) / Math.sqrt(betaProdT);
                    }
                    default -> { // alpha_prod_t ** 0.5 * model_output + beta_prod_t ** 0.5 * sample
                        predEps = Math.sqrt(alphaProdT) * o + Math.sqrt(betaProdT) * x;
                        predEpsScale = Math.sqrt(alphaProdT) * Math.abs(o) + Math.sqrt(betaProdT) * Math.abs(x);
                    }
                }
                double pred = clipSample ? clamp(x0[0], clipSampleRange) : x0[0];
                if (useClippedModelOutput) {
                    predEps = (x - Math.sqrt(alphaProdT) * pred) / Math.sqrt(betaProdT);
                    predEpsScale = (Math.abs(x) + Math.sqrt(alphaProdT) * x0[1]) / Math.sqrt(betaProdT);
                }
                double direction = dirCoeff * predEps;
                double prev = Math.sqrt(alphaProdTPrev) * pred + direction;
                double noise = eta > 0 ? stdDevT * z[k] : 0.0;
                v[i] = prev + noise;
                s[i] = Math.sqrt(alphaProdTPrev) * x0[1] + dirCoeff * predEpsScale + Math.abs(noise);
            }
        }
        return new Ref(v, s);
    }

    // ---- timestep embedding -----------------------------------------------------------------

    /**
     * get_timestep_embedding: exponent = -ln(max_period) * arange(half) / (half - downscale_freq_shift),
     * emb = scale * t[:, None] * exp(exponent)[None, :], cat(sin, cos), halves swapped if
     * flip_sin_to_cos, one zero column appended when dim is odd.
     */
    public static double[] timestepEmbedding(float[] timesteps, int dim, boolean flipSinToCos,
                                             double downscaleFreqShift, double scale, double maxPeriod) {
        int half = dim / 2;
        double[] out = new double[timesteps.length * dim];
        for (int b = 0; b < timesteps.length; b++) {
            double[] sin = new double[half], cos = new double[half];
            for (int j = 0; j < half; j++) {
                double exponent = -Math.log(maxPeriod) * j / (half - downscaleFreqShift);
                double arg = scale * (timesteps[b] * Math.exp(exponent));
                sin[j] = Math.sin(arg);
                cos[j] = Math.cos(arg);
            }
            double[] first = flipSinToCos ? cos : sin, second = flipSinToCos ? sin : cos;
            System.arraycopy(first, 0, out, b * dim, half);
            System.arraycopy(second, 0, out, b * dim + half, half);
            if (dim % 2 == 1) out[b * dim + dim - 1] = 0.0;
        }
        return out;
    }
}
