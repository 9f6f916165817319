package io.diffusion4j.schedule;

/**
 * Variance of the DDPM reverse step, as diffusers' {@code variance_type}.
 *
 * <p>The ordinal order is part of the native ABI ({@code d4j_variance_type}) and must not change.
 */
public enum VarianceType {
    /** {@code "fixed_small"}: the posterior variance beta~_t = beta_t (1 - ab_{t-1}) / (1 - ab_t). */
    FIXED_SMALL("fixed_small"),
    /** {@code "fixed_large"}: beta_t. */
    FIXED_LARGE("fixed_large");

    private final String configName;

    VarianceType(String configName) {
        this.configName = configName;
    }

    /** {@return the diffusers config string, e.g. {@code "fixed_small"}} */
    public String configName() {
        return configName;
    }

    /**
     * Parses a diffusers {@code variance_type} string (exact, case-sensitive).
     *
     * @param name a diffusers {@code variance_type} value
     * @return the matching constant
     * @throws IllegalArgumentException if {@code name} is null or unknown; the message names the
     *     bad value and lists the valid ones
     */
    public static VarianceType fromConfigName(String name) {
        return ConfigNames.parse(VarianceType.class, "variance_type", name, VarianceType::configName);
    }
}
