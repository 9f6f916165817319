package io.diffusion4j.sample;

/**
 * diffusers' {@code timestep_spacing} (Table 2 of Lin et al., "Common Diffusion Noise Schedules and Sample
 * Steps are Flawed"): how {@code set_timesteps(n)} picks n of the T training timesteps. Each scheduler applies
 * its own formula (see {@link DdpmScheduler}, {@link DdimScheduler}, {@link DpmSolverScheduler}).
 */
public enum TimestepSpacing {
    LEADING("leading"),
    TRAILING("trailing"),
    LINSPACE("linspace");

    private final String configName;

    TimestepSpacing(String configName) {
        this.configName = configName;
    }

    /** The name in a scheduler_config.json. */
    public String configName() {
        return configName;
    }

    /** Parses a scheduler_config.json value; throws naming the accepted values. */
    public static TimestepSpacing fromConfigName(String name) {
        for (TimestepSpacing s : values()) if (s.configName.equals(name)) return s;
        throw new IllegalArgumentException("timestep_spacing '" + name + "' is not one of leading, trailing, linspace");
    }
}
