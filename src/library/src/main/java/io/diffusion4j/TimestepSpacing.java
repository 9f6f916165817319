package io.diffusion4j;

/**
 * diffusers' {@code timestep_spacing}: how a run of n sampling steps picks n of the T training timesteps
 * (Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed", table 2). Each sampler applies
 * diffusers' own formula for it; by default a sampler uses the value of the checkpoint's
 * {@code scheduler_config.json}.
 */
public enum TimestepSpacing {
    /** {@code "leading"}: {@code t_i = (n - 1 - i) * (T / n) + steps_offset} (DDPM and DDIM's default). */
    LEADING("leading"),
    /** {@code "trailing"}: {@code round(arange(T, 0, -T / n)) - 1}; starts at T - 1. */
    TRAILING("trailing"),
    /** {@code "linspace"}: {@code round(linspace(0, T - 1, n))} reversed (DPM-Solver++'s default, with n + 1 points). */
    LINSPACE("linspace");

    private final String configName;

    TimestepSpacing(String configName) {
        this.configName = configName;
    }

    /**
     * The value in a {@code scheduler_config.json}.
     *
     * @return {@code "leading"}, {@code "trailing"} or {@code "linspace"}
     */
    public String configName() {
        return configName;
    }

    /**
     * Parses a {@code scheduler_config.json} value.
     *
     * @param name {@code "leading"}, {@code "trailing"} or {@code "linspace"}
     * @return the spacing
     * @throws IllegalArgumentException if the name is none of them (the message lists them)
     */
    public static TimestepSpacing fromConfigName(String name) {
        for (TimestepSpacing s : values()) {
            if (s.configName.equals(name)) return s;
        }
        throw new IllegalArgumentException("timestep_spacing '" + name + "' is not one of leading, trailing, linspace");
    }
}
