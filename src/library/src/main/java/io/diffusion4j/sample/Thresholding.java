package io.diffusion4j.sample;

/**
 * Dynamic thresholding of the x0 prediction (Saharia et al. 2022, diffusers {@code thresholding=True}): per
 * sample, {@code s = clamp(quantile(|x0|, ratio), 1, sampleMaxValue)} and {@code x0 = clamp(x0, -s, s) / s}.
 * It replaces {@code clip_sample} when enabled (diffusers checks thresholding first).
 *
 * @param ratio {@code dynamic_thresholding_ratio}, in [0, 1] (diffusers default 0.995)
 * @param sampleMaxValue {@code sample_max_value}, finite and > 0 (diffusers default 1.0)
 */
public record Thresholding(double ratio, float sampleMaxValue) {
    public Thresholding {
        if (!(ratio >= 0 && ratio <= 1)) {
            throw new IllegalArgumentException("dynamic_thresholding_ratio must be in [0, 1], got " + ratio);
        }
        if (!(Float.isFinite(sampleMaxValue) && sampleMaxValue > 0)) {
            throw new IllegalArgumentException("sample_max_value must be finite and > 0, got " + sampleMaxValue);
        }
    }

    /** diffusers' defaults: ratio 0.995, sample_max_value 1.0. */
    public static Thresholding defaults() {
        return new Thresholding(0.995, 1.0f);
    }
}
