package io.diffusion4j.kernels;

import java.util.Objects;

/**
 * The EMA decay schedule of diffusers' EMAModel.get_decay, computed on the host in float64:
 *
 * <pre>
 *   step = max(0, optimization_step - update_after_step - 1)
 *   if step &lt;= 0: decay = 0            (the first update copies the parameters)
 *   else: value = POWER: 1 - (1 + step / inv_gamma) ^ -power   (use_ema_warmup=True)
 *                 RATIO: (1 + step) / (10 + step)               (use_ema_warmup=False in diffusers up to
 *                                                                 the 0.2x releases, and timm-style EMA)
 *                 NONE:  decay                                  (use_ema_warmup=False in current diffusers)
 *         decay = max(min(value, max_decay), min_decay)
 * </pre>
 *
 * diffusers' EMAModel.step increments optimization_step before calling get_decay, so pass 1 for
 * the first update, 2 for the second, and so on. With inv_gamma = 1, power = 2/3 the decay reaches
 * 0.999 after about 31.6k steps; with power = 3/4 after about 10k steps (diffusers' notes).
 */
public final class EmaSchedule {
    /** How the decay ramps up before reaching {@code maxDecay}. */
    public enum Warmup { NONE, RATIO, POWER }

    private final double maxDecay;
    private final double minDecay;
    private final long updateAfterStep;
    private final Warmup warmup;
    private final double invGamma;
    private final double power;

    private EmaSchedule(double maxDecay, double minDecay, long updateAfterStep, Warmup warmup, double invGamma,
                        double power) {
        if (!(maxDecay >= 0 && maxDecay <= 1)) throw new IllegalArgumentException("maxDecay must be in [0, 1], got " + maxDecay);
        if (!(minDecay >= 0 && minDecay <= maxDecay)) {
            throw new IllegalArgumentException("minDecay must be in [0, maxDecay = " + maxDecay + "], got " + minDecay);
        }
        if (updateAfterStep < 0) throw new IllegalArgumentException("updateAfterStep must be >= 0, got " + updateAfterStep);
        if (!(Double.isFinite(invGamma) && invGamma > 0)) throw new IllegalArgumentException("invGamma must be finite and > 0, got " + invGamma);
        if (!(Double.isFinite(power) && power > 0)) throw new IllegalArgumentException("power must be finite and > 0, got " + power);
        this.maxDecay = maxDecay;
        this.minDecay = minDecay;
        this.updateAfterStep = updateAfterStep;
        this.warmup = Objects.requireNonNull(warmup, "warmup");
        this.invGamma = invGamma;
        this.power = power;
    }

    /** use_ema_warmup=True: {@code 1 - (1 + step / invGamma)^-power}, clamped to [minDecay, maxDecay]. */
    public static EmaSchedule power(double maxDecay, double minDecay, long updateAfterStep, double invGamma, double power) {
        return new EmaSchedule(maxDecay, minDecay, updateAfterStep, Warmup.POWER, invGamma, power);
    }

    /** {@code (1 + step) / (10 + step)}, clamped to [minDecay, maxDecay] (earlier diffusers without warmup). */
    public static EmaSchedule ratio(double maxDecay, double minDecay, long updateAfterStep) {
        return new EmaSchedule(maxDecay, minDecay, updateAfterStep, Warmup.RATIO, 1.0, 2.0 / 3.0);
    }

    /** A constant {@code maxDecay} after the first update (current diffusers without warmup). */
    public static EmaSchedule constant(double maxDecay, double minDecay, long updateAfterStep) {
        return new EmaSchedule(maxDecay, minDecay, updateAfterStep, Warmup.NONE, 1.0, 2.0 / 3.0);
    }

    /** diffusers' EMAModel defaults: decay 0.9999, min_decay 0, update_after_step 0, no warmup. */
    public static EmaSchedule diffusersDefaults() {
        return constant(0.9999, 0.0, 0);
    }

    /** The decay for the update with (1-based) {@code optimizationStep}, as EMAModel.get_decay. */
    public double decay(long optimizationStep) {
        long step = Math.max(0, optimizationStep - updateAfterStep - 1);
        if (step <= 0) return 0.0;
        double value = switch (warmup) {
            case POWER -> 1.0 - Math.pow(1.0 + step / invGamma, -power);
            case RATIO -> (1.0 + step) / (10.0 + step);
            case NONE -> maxDecay;
        };
        value = Math.min(value, maxDecay);
        return Math.max(value, minDecay);
    }

    public double maxDecay() {
        return maxDecay;
    }

    public double minDecay() {
        return minDecay;
    }

    public long updateAfterStep() {
        return updateAfterStep;
    }

    public Warmup warmup() {
        return warmup;
    }

    public double invGamma() {
        return invGamma;
    }

    public double power() {
        return power;
    }

    @Override
    public String toString() {
        return "EmaSchedule[" + warmup + ", maxDecay=" + maxDecay + ", minDecay=" + minDecay + ", updateAfterStep="
                + updateAfterStep + (warmup == Warmup.POWER ? ", invGamma=" + invGamma + ", power=" + power : "") + "]";
    }
}
