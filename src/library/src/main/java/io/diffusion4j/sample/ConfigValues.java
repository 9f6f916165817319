package io.diffusion4j.sample;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.io.JsonFields;
import io.diffusion4j.schedule.PredictionType;
import java.util.Map;

/** The scheduler_config.json values the three schedulers share, with diffusers' defaults for absent keys. */
final class ConfigValues {
    private ConfigValues() {}

    /** Typed reads of a scheduler config; messages start "scheduler config: ". */
    static JsonFields fields(Map<String, Object> m) {
        return JsonFields.of(m, "scheduler config");
    }

    static PredictionType prediction(JsonFields f) {
        return PredictionType.fromConfigName(f.optString("prediction_type", "epsilon"));
    }

    static Thresholding thresholding(JsonFields f) {
        if (!f.optBoolean("thresholding", false)) return null;
        return new Thresholding(f.optDouble("dynamic_thresholding_ratio", 0.995),
                (float) f.optDouble("sample_max_value", 1.0));
    }

    static TimestepSpacing spacing(JsonFields f, TimestepSpacing def) {
        if (f.isAbsent("timestep_spacing")) return def;
        return TimestepSpacing.fromConfigName(f.requireString("timestep_spacing"));
    }
}
