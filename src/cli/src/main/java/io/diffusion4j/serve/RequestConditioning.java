package io.diffusion4j.serve;

import io.diffusion4j.SamplerConfig;
import io.diffusion4j.io.JsonFields;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.sample.ImageInputs;
import io.diffusion4j.sample.RunPlan;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.sample.SamplerStep;
import java.io.IOException;
import java.util.Base64;
import java.util.List;

/**
 * The conditioning fields of a {@code POST /v1/samples} request, validated as {@code sample} validates its options
 * and turned into what {@link Sampler#run} takes ({@link Sampler.Inputs}) and the ops the run performs
 * ({@link RunPlan}, built by {@link Sampler#runPlan(List, Sampler.Inputs)} as {@code sample} builds it):
 * <pre>
 *   class_labels      int | string | array of them (1 or n): class numbers or names     default: the null class
 *   guidance_scale    number >= 0 (class-conditional model with a null class unless 1)  default 1
 *   init_image        base64 PNG or JPEG, resized as sample --init-image resizes         default: none
 *   mask_image        base64 PNG or JPEG (needs init_image): white keeps, black is generated
 *   strength          (0, 1], init_image without mask_image                              default 0.8
 *   jump_length       integer >= 1, with mask_image                                      default 10
 *   jump_n_sample     integer >= 1, with mask_image                                      default 10
 * </pre>
 * Images are decoded here, on the handler's thread; nothing touches the device.
 *
 * @param inputs the run's inputs, one entry per image of the request
 * @param rowLabels the label of every image's model row (the null class when none was given), or null for an
 *     unconditional model
 * @param runPlan the ops of the run
 */
public record RequestConditioning(Sampler.Inputs inputs, int[] rowLabels, RunPlan runPlan) {
    /** Images declaring more than this many pixels a side are refused from their header, before decoding. */
    static final int MAX_IMAGE_SIDE = 4096;
    /** Images declaring more pixels than this (2048 x 2048) are refused from their header, before decoding. */
    static final long MAX_IMAGE_PIXELS = 2048L * 2048;

    static final List<String> FIELDS = List.of("class_labels", "guidance_scale", "init_image", "mask_image", "strength",
            "jump_length", "jump_n_sample");

    /** Model calls a request may make: RePaint's resampling multiplies the steps' calls up to this bound. */
    static long maxModelCalls(SampleRequest.Limits limits) {
        return 10L * limits.maxSteps();
    }

    static RequestConditioning parse(JsonFields m, ServedModel model, int n, List<SamplerStep> plan,
                                     SampleRequest.Limits limits) throws RequestException {
        ClassLabels classes = model.classes();
        int[] given = labels(m, model, n);
        float scale = 1f;
        if (m.has("guidance_scale")) {
            double d = m.requireDouble("guidance_scale");
            if (!(d >= 0) || !Float.isFinite((float) d)) {
                throw RequestException.bad("guidance_scale", "must be a finite number >= 0, got " + m.get("guidance_scale"));
            }
            scale = (float) d;
            if (scale != 1f && classes == null) {
                throw RequestException.bad("guidance_scale", "needs a class-conditional model; '" + model.name()
                        + "' is unconditional (use 1)");
            }
            if (scale != 1f && !classes.hasNullClass()) {
                throw RequestException.bad("guidance_scale", "needs the model's null class (the unconditional"
                        + " prediction); '" + model.name() + "' has none (its class_labels.json says null_class -1; use 1)");
            }
        }
        if (classes != null && given == null && !classes.hasNullClass()) {
            throw RequestException.bad("class_labels", "required: '" + model.name() + "' is class-conditional without a"
                    + " null class (classes 0 to " + (classes.names().size() - 1) + ")");
        }
        int[] rowLabels = null;
        if (classes != null) {
            rowLabels = new int[n];
            for (int i = 0; i < n; i++) rowLabels[i] = given != null ? given[i] : classes.nullClass();
        }

        boolean hasImage = m.has("init_image"), hasMask = m.has("mask_image");
        if (hasMask && !hasImage) throw RequestException.bad("mask_image", "needs init_image (the image to inpaint)");
        if (m.has("strength") && (!hasImage || hasMask)) {
            throw RequestException.bad("strength", "applies to image-to-image: init_image without mask_image");
        }
        for (String k : List.of("jump_length", "jump_n_sample")) {
            if (m.has(k) && !hasMask) throw RequestException.bad(k, "applies to inpainting (mask_image)");
        }
        double strength = SamplerConfig.DEFAULT_STRENGTH;
        if (m.has("strength")) {
            strength = m.requireDouble("strength");
            if (!(strength > 0 && strength <= 1)) throw RequestException.bad("strength", "must be in (0, 1], got " + m.get("strength"));
        }
        int jumpLength = m.has("jump_length") ? m.requireInt("jump_length", 1, Integer.MAX_VALUE) : SamplerConfig.DEFAULT_JUMP_LENGTH;
        int jumpNSample = m.has("jump_n_sample") ? m.requireInt("jump_n_sample", 1, Integer.MAX_VALUE) : SamplerConfig.DEFAULT_JUMP_N_SAMPLE;
        if (hasMask) {
            long calls = RunPlan.inpaintingModelCalls(plan.size(), jumpLength, jumpNSample);
            if (calls > maxModelCalls(limits)) {
                String k = m.has("jump_n_sample") || !m.has("jump_length") ? "jump_n_sample" : "jump_length";
                throw RequestException.bad(k, "jump_length " + jumpLength + " and jump_n_sample " + jumpNSample + " over "
                        + plan.size() + " steps make " + calls + " model calls; the server's limit is "
                        + maxModelCalls(limits) + " (10 x its max steps)");
            }
        }
        int h = model.height(), w = model.width(), c = model.channels();
        float[] image = null, mask = null;
        if (hasImage) {
            float[] one = decode(m, "init_image", false, h, w, c);
            image = ImageInputs.perImage("init_image", one, n, h, w, c, false);
        }
        if (hasMask) {
            float[] one = decode(m, "mask_image", true, h, w, c);
            mask = ImageInputs.perImage("mask_image", one, n, h, w, c, true);
        }
        Sampler.Inputs inputs = new Sampler.Inputs(given, classes == null ? -1 : classes.nullClass(), scale, image, mask,
                strength, jumpLength, jumpNSample);
        RunPlan runPlan;
        try {
            runPlan = Sampler.runPlan(plan, inputs);
        } catch (IllegalArgumentException e) {
            throw RequestException.bad(hasMask ? "jump_n_sample" : "strength", e.getMessage());
        }
        return new RequestConditioning(inputs, rowLabels, runPlan);
    }

    /** class_labels as one label per image, or null when absent. */
    private static int[] labels(JsonFields m, ServedModel model, int n) throws RequestException {
        if (!m.has("class_labels")) return null;
        ClassLabels classes = model.classes();
        if (classes == null) {
            throw RequestException.bad("class_labels", "'" + model.name() + "' is an unconditional model (its config has"
                    + " no num_class_embeds)");
        }
        Object v = m.get("class_labels");
        List<?> items = v instanceof List<?> l ? l : java.util.Collections.singletonList(v);
        if (items.size() != 1 && items.size() != n) {
            throw RequestException.bad("class_labels", "give one class or one per image (" + n + "), got " + items.size());
        }
        int classCount = classes.names().size();
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            int k = items.size() == 1 ? 0 : i;
            Object e = items.get(k);
            String at = v instanceof List<?> ? "[" + k + "] " : "";
            int label;
            if (e instanceof Long x) {
                label = x >= 0 && x < classCount ? x.intValue() : -1;
            } else if (e instanceof String s) {
                label = classes.parse(s);
            } else {
                throw RequestException.bad("class_labels", at + "must be a class number or name, got " + JsonFields.describe(e));
            }
            if (label < 0) {
                String names = String.join(", ", classes.names());
                throw RequestException.bad("class_labels", at + JsonFields.describe(e) + " is not a class of '" + model.name()
                        + "' (0 to " + (classCount - 1) + (names.length() <= 400 ? ", or a name: " + names : ", or a name")
                        + ")");
            }
            out[i] = label;
        }
        return out;
    }

    /** A base64 image field decoded as sample decodes its image files (an optional data: URL prefix is skipped). */
    private static float[] decode(JsonFields m, String field, boolean isMask, int h, int w, int c) throws RequestException {
        String text = m.requireString(field);
        if (text.startsWith("data:")) {
            int comma = text.indexOf(',');
            if (comma < 0 || !text.substring(0, comma).endsWith(";base64")) {
                throw RequestException.bad(field, "a data: URL must be base64 (data:image/png;base64,...)");
            }
            text = text.substring(comma + 1);
        }
        byte[] bytes;
        try {
            bytes = Base64.getMimeDecoder().decode(text);
        } catch (IllegalArgumentException e) {
            throw RequestException.bad(field, "not valid base64: " + e.getMessage());
        }
        if (bytes.length == 0) throw RequestException.bad(field, "empty");
        try {
            return isMask ? ImageInputs.readMask(bytes, h, w, MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS)
                    : ImageInputs.readImage(bytes, h, w, c, MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS);
        } catch (IOException e) {
            throw RequestException.bad(field, e.getMessage());
        }
    }
}
