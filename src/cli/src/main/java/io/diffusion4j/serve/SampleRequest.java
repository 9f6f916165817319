package io.diffusion4j.serve;

import io.diffusion4j.io.Json;
import io.diffusion4j.io.JsonException;
import io.diffusion4j.io.JsonFieldException;
import io.diffusion4j.io.JsonFields;
import io.diffusion4j.sample.RunPlan;
import io.diffusion4j.sample.SamplerScheduler;
import io.diffusion4j.sample.SamplerStep;
import io.diffusion4j.TimestepSpacing;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A validated {@code POST /v1/samples} request: the model, the scheduler built from the model's
 * scheduler_config.json exactly as {@code sample} builds it (with {@code timestep_spacing} overriding the
 * config's when given), the plan, the seed (drawn when absent) and the output form. Parsing and validation are
 * pure Java: they never touch native code.
 *
 * <p>Fields (all optional except {@code model} when the server has more than one model):
 * <pre>
 *   model             string, a served model name                        (unknown: 404)
 *   sampler           "ddpm" | "ddim" | "dpmsolver++"                    default "ddim"
 *   steps             integer in [1, min(max_steps, num_train_timesteps)] default: as sample (ddpm T, ddim 50, dpmsolver++ 20)
 *   eta               number in [0, 1], ddim only                         default 0
 *   seed              integer (64-bit; Philox takes it unsigned)          default: drawn at random, returned
 *   n                 integer in [1, max_n]                               default 1
 *   timestep_spacing  "leading" | "trailing" | "linspace"                 default: the scheduler config's
 *   output            "png" (n = 1 only) | "json"                         default png for n = 1, else json
 *   deadline_ms       integer in [1, max_deadline_ms]                     default: the server's deadline
 *   use_clipped_model_output  boolean, ddim only                          default false
 * </pre>
 * and the conditioning fields of {@link RequestConditioning} (class labels, guidance, init image, mask, strength,
 * RePaint's jumps).
 *
 * @param plan the scheduler's steps
 * @param conditioning the run's inputs (labels, guidance, images) and its ops (image-to-image's start, inpainting's
 *     merges and jumps)
 */
public record SampleRequest(ServedModel model, String sampler, SamplerScheduler scheduler, List<SamplerStep> plan,
                            int steps, float eta, long seed, int n, String spacing, boolean json, long deadlineMillis,
                            RequestConditioning conditioning) {

    /** The server's limits on requests. */
    public record Limits(int maxN, int maxSteps, int maxBodyBytes, long defaultDeadlineMillis, long maxDeadlineMillis) {
        public Limits {
            if (maxN < 1) throw new IllegalArgumentException("max n must be >= 1, got " + maxN);
            if (maxSteps < 1) throw new IllegalArgumentException("max steps must be >= 1, got " + maxSteps);
            if (maxBodyBytes < 64) throw new IllegalArgumentException("max body must be >= 64 bytes, got " + maxBodyBytes);
            if (defaultDeadlineMillis < 1 || maxDeadlineMillis < defaultDeadlineMillis) {
                throw new IllegalArgumentException("deadlines must satisfy 1 <= default (" + defaultDeadlineMillis
                        + ") <= max (" + maxDeadlineMillis + ")");
            }
        }
    }

    static final List<String> FIELDS;

    static {
        List<String> f = new ArrayList<>(List.of("model", "sampler", "steps", "eta", "seed", "n", "timestep_spacing", "output",
                "deadline_ms", "use_clipped_model_output"));
        f.addAll(RequestConditioning.FIELDS);
        FIELDS = List.copyOf(f);
    }

    /** The run's inputs as {@link io.diffusion4j.sample.Sampler#run} takes them. */
    public io.diffusion4j.sample.Sampler.Inputs inputs() {
        return conditioning.inputs();
    }

    /** The ops of the run. */
    public RunPlan runPlan() {
        return conditioning.runPlan();
    }

    /**
     * Parses and validates a request body (UTF-8 JSON object).
     *
     * @throws RequestException 400 naming the field (or "body"), 404 for an unknown model
     */
    public static SampleRequest parse(byte[] body, Map<String, ServedModel> models, Limits limits) throws RequestException {
        if (body.length > limits.maxBodyBytes()) {
            throw RequestException.bad("body", "larger than the limit of " + limits.maxBodyBytes() + " bytes");
        }
        Object doc;
        try {
            doc = Json.parse(body);
        } catch (JsonException e) {
            throw RequestException.bad("body", "not valid JSON: " + e.getMessage());
        }
        if (!(doc instanceof Map<?, ?> raw)) throw RequestException.bad("body", "must be a JSON object, got " + Json.typeName(doc));
        Map<String, Object> m = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : raw.entrySet()) m.put((String) e.getKey(), e.getValue());
        try {
            return parse(JsonFields.of(m, null), models, limits);
        } catch (JsonFieldException e) {
            throw RequestException.bad(e.key(), e.problem());
        }
    }

    private static SampleRequest parse(JsonFields m, Map<String, ServedModel> models, Limits limits)
            throws RequestException {
        for (String k : m.keys()) {
            if (!FIELDS.contains(k)) {
                throw RequestException.bad(k, "unknown field (accepted: " + String.join(", ", FIELDS) + ")");
            }
        }
        // model
        ServedModel model;
        String name = m.has("model") ? m.requireString("model") : null;
        if (name == null) {
            if (models.size() != 1) throw RequestException.bad("model", "required (served: " + String.join(", ", models.keySet()) + ")");
            model = models.values().iterator().next();
        } else {
            model = models.get(name);
            if (model == null) {
                throw new RequestException(404, "model", "model: '" + name + "' is not served here (served: "
                        + String.join(", ", models.keySet()) + ")");
            }
        }
        String sampler = m.has("sampler") ? m.requireString("sampler") : "ddim";
        if (!sampler.equals("ddpm") && !sampler.equals("ddim") && !sampler.equals("dpmsolver++")) {
            throw RequestException.bad("sampler", "must be ddpm, ddim or dpmsolver++, got '" + sampler + "'");
        }
        int T = model.schedule().numTrainTimesteps();
        int maxSteps = Math.min(limits.maxSteps(), T);
        int steps;
        if (m.has("steps")) {
            steps = m.requireInt("steps", 1, Integer.MAX_VALUE);
            if (steps > maxSteps) {
                throw RequestException.bad("steps", "must be <= " + maxSteps + (maxSteps == T
                        ? " (the model's num_train_timesteps)" : " (the server's limit)") + ", got " + steps);
            }
        } else {
            steps = switch (sampler) {
                case "ddpm" -> T;
                case "ddim" -> Math.min(50, T);
                default -> Math.min(20, T);
            };
            if (steps > maxSteps) {
                throw RequestException.bad("steps", "the default for " + sampler + " (" + steps + ") is above the server's"
                        + " limit of " + maxSteps + "; pass steps");
            }
        }
        float eta = 0f;
        if (m.has("eta")) {
            double d = m.requireDouble("eta");
            if (!(d >= 0 && d <= 1)) throw RequestException.bad("eta", "must be in [0, 1], got " + m.get("eta"));
            eta = (float) d;
            if (eta != 0 && !sampler.equals("ddim")) throw RequestException.bad("eta", "applies to ddim only");
        }
        long seed;
        if (m.has("seed")) {
            seed = m.requireLong("seed");
        } else {
            seed = ThreadLocalRandom.current().nextLong(Long.MAX_VALUE);
        }
        int n = m.has("n") ? m.requireInt("n", 1, limits.maxN()) : 1;
        Map<String, Object> cfg = model.schedulerConfig();
        String spacing = null;
        if (m.has("timestep_spacing")) {
            spacing = m.requireString("timestep_spacing");
            try {
                TimestepSpacing.fromConfigName(spacing);
            } catch (IllegalArgumentException e) {
                throw RequestException.bad("timestep_spacing", "must be leading, trailing or linspace, got '" + spacing + "'");
            }
            cfg = new LinkedHashMap<>(cfg);
            cfg.put("timestep_spacing", spacing);
        }
        boolean json;
        String output = m.has("output") ? m.requireString("output") : null;
        if (output == null) {
            json = n > 1;
        } else if (output.equals("json")) {
            json = true;
        } else if (output.equals("png")) {
            if (n > 1) throw RequestException.bad("output", "png returns one image; use json for n > 1");
            json = false;
        } else {
            throw RequestException.bad("output", "must be png or json, got '" + output + "'");
        }
        long deadline = m.has("deadline_ms")
                ? m.requireLong("deadline_ms", 1, limits.maxDeadlineMillis()) : limits.defaultDeadlineMillis();
        SamplerScheduler scheduler;
        try {
            scheduler = SamplerScheduler.fromConfig(sampler, eta, cfg);
        } catch (IllegalArgumentException e) {
            throw RequestException.bad("sampler", sampler + " cannot be built from model '" + model.name()
                    + "''s scheduler_config.json: " + e.getMessage());
        }
        if (m.has("use_clipped_model_output") && m.requireBoolean("use_clipped_model_output")) {
            if (!(scheduler instanceof io.diffusion4j.sample.DdimScheduler d)) {
                throw RequestException.bad("use_clipped_model_output", "applies to ddim only");
            }
            scheduler = d.withUseClippedModelOutput(true);
        }
        List<SamplerStep> plan;
        try {
            plan = scheduler.plan(T, steps);
        } catch (IllegalArgumentException e) {
            throw RequestException.bad(spacing != null ? "timestep_spacing" : "steps", e.getMessage());
        }
        RequestConditioning conditioning = RequestConditioning.parse(m, model, n, plan, limits);
        String usedSpacing = spacing != null ? spacing : switch (scheduler) {
            case io.diffusion4j.sample.DdpmScheduler d -> d.spacing().configName();
            case io.diffusion4j.sample.DdimScheduler d -> d.spacing().configName();
            case io.diffusion4j.sample.DpmSolverScheduler d -> d.spacing().configName();
        };
        return new SampleRequest(model, sampler, scheduler, plan, steps, eta, seed, n, usedSpacing, json, deadline,
                conditioning);
    }
}
