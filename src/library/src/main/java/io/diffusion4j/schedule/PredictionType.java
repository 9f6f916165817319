package io.diffusion4j.schedule;

/**
 * What a denoising model predicts, as diffusers' {@code prediction_type}.
 *
 * <p>The ordinal order is part of the native ABI ({@code d4j_prediction_type}) and must not change.
 */
public enum PredictionType {
    /** {@code "epsilon"}: the model predicts the added noise eps. */
    EPSILON("epsilon"),
    /** {@code "sample"}: the model predicts the clean sample x0 directly. */
    SAMPLE("sample"),
    /** {@code "v_prediction"}: the model predicts v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0. */
    V_PREDICTION("v_prediction");

    private final String configName;

    PredictionType(String configName) {
        this.configName = configName;
    }

    /** {@return the diffusers config string, e.g. {@code "v_prediction"}} */
    public String configName() {
        return configName;
    }

    /**
     * Parses a diffusers {@code prediction_type} string (exact, case-sensitive).
     *
     * @param name a diffusers {@code prediction_type} value
     * @return the matching constant
     * @throws IllegalArgumentException if {@code name} is null or unknown; the message names the
     *     bad value and lists the valid ones
     */
    public static PredictionType fromConfigName(String name) {
        return ConfigNames.parse(PredictionType.class, "prediction_type", name, PredictionType::configName);
    }
}
