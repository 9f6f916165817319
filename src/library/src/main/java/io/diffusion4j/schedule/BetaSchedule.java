package io.diffusion4j.schedule;

/**
 * How the per-timestep noise variances beta_t are generated, as diffusers' {@code beta_schedule}.
 *
 * <p>All formulas are evaluated in float64; {@code linspace} has numpy semantics (endpoint
 * inclusive, a single point gives {@code [start]}).
 */
public enum BetaSchedule {
    /** {@code "linear"}: {@code betas = linspace(beta_start, beta_end, T)}. */
    LINEAR("linear"),
    /** {@code "scaled_linear"}: {@code betas = linspace(sqrt(beta_start), sqrt(beta_end), T)^2}. */
    SCALED_LINEAR("scaled_linear"),
    /**
     * {@code "squaredcos_cap_v2"}: diffusers' {@code betas_for_alpha_bar} (Nichol &amp; Dhariwal cosine
     * schedule): {@code beta_i = min(1 - f((i+1)/T) / f(i/T), 0.999)} with
     * {@code f(t) = cos((t + 0.008) / 1.008 * pi / 2)^2}; beta_start and beta_end are ignored.
     */
    SQUAREDCOS_CAP_V2("squaredcos_cap_v2"),
    /**
     * {@code "sigmoid"}: {@code betas = sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) +
     * beta_start}.
     */
    SIGMOID("sigmoid");

    /** Cap on beta used by {@code betas_for_alpha_bar} (diffusers' {@code max_beta}). */
    static final double COSINE_MAX_BETA = 0.999;

    private final String configName;

    BetaSchedule(String configName) {
        this.configName = configName;
    }

    /** {@return the diffusers config string, e.g. {@code "scaled_linear"}} */
    public String configName() {
        return configName;
    }

    /**
     * Parses a diffusers {@code beta_schedule} string (exact, case-sensitive).
     *
     * @param name a diffusers {@code beta_schedule} value
     * @return the matching constant
     * @throws IllegalArgumentException if {@code name} is null or unknown; the message names the
     *     bad value and lists the valid ones
     */
    public static BetaSchedule fromConfigName(String name) {
        return ConfigNames.parse(BetaSchedule.class, "beta_schedule", name, BetaSchedule::configName);
    }

    /**
     * Generates the {@code numTrainTimesteps} betas of this schedule (float64). The result is not
     * validated beyond the arguments; {@link NoiseSchedule#of} additionally checks every beta.
     *
     * @param numTrainTimesteps T, in [1, 100000]
     * @param betaStart diffusers' {@code beta_start}, finite and in (0, 1)
     * @param betaEnd diffusers' {@code beta_end}, finite and in (0, 1)
     * @return a fresh array of length T
     * @throws IllegalArgumentException naming the offending parameter and value
     */
    public double[] betas(int numTrainTimesteps, double betaStart, double betaEnd) {
        Checks.timesteps(numTrainTimesteps);
        Checks.openUnit("betaStart", betaStart);
        Checks.openUnit("betaEnd", betaEnd);
        int n = numTrainTimesteps;
        switch (this) {
            case LINEAR:
                return NumpyMath.linspace(betaStart, betaEnd, n);
            case SCALED_LINEAR: {
                double[] r = NumpyMath.linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), n);
                for (int i = 0; i < n; i++) {
                    r[i] = r[i] * r[i];
                }
                return r;
            }
            case SQUAREDCOS_CAP_V2: {
                double[] r = new double[n];
                for (int i = 0; i < n; i++) {
                    double t1 = (double) i / n;
                    double t2 = (double) (i + 1) / n;
                    r[i] = Math.min(1.0 - cosineAlphaBar(t2) / cosineAlphaBar(t1), COSINE_MAX_BETA);
                }
                return r;
            }
            case SIGMOID: {
                double[] r = NumpyMath.linspace(-6.0, 6.0, n);
                for (int i = 0; i < n; i++) {
                    double s = 1.0 / (1.0 + Math.exp(-r[i]));
                    r[i] = s * (betaEnd - betaStart) + betaStart;
                }
                return r;
            }
            default:
                throw new AssertionError(this);
        }
    }

    /** alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2 of {@code betas_for_alpha_bar}. */
    private static double cosineAlphaBar(double t) {
        double c = Math.cos((t + 0.008) / 1.008 * Math.PI / 2.0);
        return c * c;
    }
}
