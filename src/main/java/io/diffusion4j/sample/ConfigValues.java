package io.diffusion4j.sample;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.schedule.PredictionType;
import java.util.Map;

/** Typed reads of scheduler_config.json values with diffusers' defaults for absent keys. */
final class ConfigValues {
    private ConfigValues() {}

    static boolean bool(Map<String, Object> m, String key, boolean def) {
        Object v = m.get(key);
        if (v == null) return def;
        if (v instanceof Boolean b) return b;
        throw new IllegalArgumentException("scheduler config: " + key + " must be true or false, got " + v);
    }

    static double number(Map<String, Object> m, String key, double def) {
        Object v = m.get(key);
        if (v == null) return def;
        if (v instanceof Number n && Double.isFinite(n.doubleValue())) return n.doubleValue();
        throw new IllegalArgumentException("scheduler config: " + key + " must be a finite number, got " + v);
    }

    static int integer(Map<String, Object> m, String key, int def) {
        Object v = m.get(key);
        if (v == null) return def;
        if (v instanceof Long l && l >= Integer.MIN_VALUE && l <= Integer.MAX_VALUE) return (int) (long) l;
        throw new IllegalArgumentException("scheduler config: " + key + " must be an integer, got " + v);
    }

    static String string(Map<String, Object> m, String key, String def) {
        Object v = m.get(key);
        if (v == null) return def;
        if (v instanceof String s) return s;
        throw new IllegalArgumentException("scheduler config: " + key + " must be a string, got " + v);
    }

    static PredictionType prediction(Map<String, Object> m) {
        return PredictionType.fromConfigName(string(m, "prediction_type", "epsilon"));
    }

    static Thresholding thresholding(Map<String, Object> m) {
        if (!bool(m, "thresholding", false)) return null;
        return new Thresholding(number(m, "dynamic_thresholding_ratio", 0.995),
                (float) number(m, "sample_max_value", 1.0));
    }

    static TimestepSpacing spacing(Map<String, Object> m, TimestepSpacing def) {
        Object v = m.get("timestep_spacing");
        return v == null ? def : TimestepSpacing.fromConfigName(string(m, "timestep_spacing", def.configName()));
    }
}
