package io.diffusion4j.sample;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.io.JsonFields;
import io.diffusion4j.schedule.NumpyMath;
import io.diffusion4j.schedule.PredictionType;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * diffusers' {@code DPMSolverMultistepScheduler} with {@code algorithm_type "dpmsolver++"}, {@code solver_order 2},
 * {@code solver_type "midpoint"}, no Karras / Lu / exponential / beta sigmas, {@code lambda_min_clipped} -inf.
 *
 * <p>{@code set_timesteps(n)} (T = num_train_timesteps = last_timestep):
 * <ul>
 *   <li>linspace (its default): {@code round(np.linspace(0, T - 1, n + 1))} reversed, the last (0) dropped</li>
 *   <li>leading: {@code r = T // (n + 1)}; {@code (n - i) * r + steps_offset} for i in [0, n)</li>
 *   <li>trailing: {@code round(np.arange(T, 0, -T / n)) - 1}</li>
 * </ul>
 * Step i goes to the next timestep, the last one to the final sigma: 0 ({@code final_sigmas_type "zero"},
 * the default; {@link SamplerStep#prevTimestep()} -1) or sigma_min (that of timestep 0). The first step is
 * first order, every other second order except the last when {@code lower_order_final} applies: the last step
 * is first order if {@code euler_at_final}, or {@code lower_order_final} with fewer than 15 steps, or the final
 * sigma is 0.
 */
public record DpmSolverScheduler(PredictionType prediction, Thresholding thresholding, TimestepSpacing spacing,
                                 int stepsOffset, boolean lowerOrderFinal, boolean eulerAtFinal,
                                 FinalSigmas finalSigmas) implements SamplerScheduler {
    /** diffusers' {@code final_sigmas_type}. */
    public enum FinalSigmas {
        ZERO("zero"),
        SIGMA_MIN("sigma_min");

        private final String configName;

        FinalSigmas(String configName) {
            this.configName = configName;
        }

        public String configName() {
            return configName;
        }

        static FinalSigmas fromConfigName(String s) {
            for (FinalSigmas f : values()) if (f.configName.equals(s)) return f;
            throw new IllegalArgumentException("final_sigmas_type '" + s + "' is not zero or sigma_min");
        }
    }

    public DpmSolverScheduler {
        Objects.requireNonNull(prediction, "prediction");
        Objects.requireNonNull(spacing, "spacing");
        Objects.requireNonNull(finalSigmas, "finalSigmas");
    }

    /** diffusers' defaults: linspace, offset 0, lower_order_final, no euler_at_final, final sigma 0. */
    public static DpmSolverScheduler defaults(PredictionType prediction) {
        return new DpmSolverScheduler(prediction, null, TimestepSpacing.LINSPACE, 0, true, false, FinalSigmas.ZERO);
    }

    /**
     * {@code DPMSolverMultistepScheduler.from_config(config)}: keys present in the map (a DDPM config's
     * timestep_spacing too, as diffusers does), defaults for the rest; options this implementation lacks are
     * refused with a message.
     */
    public static DpmSolverScheduler fromConfig(Map<String, Object> m) {
        JsonFields f = ConfigValues.fields(m);
        String algo = f.optString("algorithm_type", "dpmsolver++");
        if (!algo.equals("dpmsolver++")) throw unsupported("algorithm_type", algo);
        int order = f.optInt("solver_order", 2);
        if (order != 2) throw unsupported("solver_order", Integer.toString(order));
        String solverType = f.optString("solver_type", "midpoint");
        if (!solverType.equals("midpoint")) throw unsupported("solver_type", solverType);
        for (String k : new String[] {"use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas",
            "use_beta_sigmas", "use_flow_sigmas"}) {
            if (f.optBoolean(k, false)) throw unsupported(k, "true");
        }
        // diffusers writes its default as -Infinity (Python's json.dumps)
        Object lmcValue = f.get("lambda_min_clipped");
        double lmc = lmcValue == null || (lmcValue instanceof Double dv && dv == Double.NEGATIVE_INFINITY)
                ? Double.NEGATIVE_INFINITY : f.optDouble("lambda_min_clipped", 0);
        if (lmc != Double.NEGATIVE_INFINITY) throw unsupported("lambda_min_clipped", Double.toString(lmc));
        return new DpmSolverScheduler(ConfigValues.prediction(f), ConfigValues.thresholding(f),
                ConfigValues.spacing(f, TimestepSpacing.LINSPACE), f.optInt("steps_offset", 0),
                f.optBoolean("lower_order_final", true), f.optBoolean("euler_at_final", false),
                FinalSigmas.fromConfigName(f.optString("final_sigmas_type", "zero")));
    }

    private static IllegalArgumentException unsupported(String key, String value) {
        return new IllegalArgumentException("DPM-Solver++: " + key + " = " + value + " is not supported (this"
                + " implementation is dpmsolver++, solver_order 2, midpoint, plain sigmas)");
    }

    @Override
    public String name() {
        return "dpmsolver++";
    }

    @Override
    public int[] timesteps(int numTrainTimesteps, int n) {
        SamplerScheduler.checkSteps("DPM-Solver++", numTrainTimesteps, n);
        int T = numTrainTimesteps;
        int[] ts = new int[n];
        switch (spacing) {
            case LINSPACE -> {
                double[] a = NumpyMath.linspace(0, T - 1, n + 1);
                for (int i = 0; i < n; i++) ts[i] = (int) NumpyMath.round(a[n - i]);
            }
            case LEADING -> {
                int r = T / (n + 1);
                for (int i = 0; i < n; i++) ts[i] = (n - i) * r + stepsOffset;
            }
            case TRAILING -> {
                double[] a = NumpyMath.arange(T, 0, -((double) T / n));
                ts = new int[a.length];
                for (int i = 0; i < a.length; i++) ts[i] = (int) NumpyMath.round(a[i]) - 1;
            }
        }
        return SamplerScheduler.checked("DPM-Solver++", ts, T, n);
    }

    @Override
    public List<SamplerStep> plan(int numTrainTimesteps, int n) {
        int[] ts = timesteps(numTrainTimesteps, n);
        int len = ts.length;
        int finalTarget = finalSigmas == FinalSigmas.ZERO ? -1 : 0;
        List<SamplerStep> plan = new ArrayList<>(len);
        for (int i = 0; i < len; i++) {
            boolean last = i == len - 1;
            int target = last ? finalTarget : ts[i + 1];
            if (target >= ts[i]) {
                throw new IllegalArgumentException("DPM-Solver++: the last timestep is 0, so final_sigmas_type"
                        + " sigma_min would step from sigma_min to itself; use final_sigmas_type zero or fewer steps");
            }
            boolean lowerOrderFinalNow = last
                    && (eulerAtFinal || (lowerOrderFinal && len < 15) || finalSigmas == FinalSigmas.ZERO);
            boolean firstOrder = i == 0 || lowerOrderFinalNow;
            plan.add(new SamplerStep(ts[i], target, firstOrder ? -1 : ts[i - 1]));
        }
        return List.copyOf(plan);
    }
}
