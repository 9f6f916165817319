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

    io.diffusion4j.sample.TimestepSpacing internal() {
        return io.diffusion4j.sample.TimestepSpacing.fromConfigName(configName);
    }
}
