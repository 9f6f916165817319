package io.diffusion4j.serve;

import com.code_intelligence.jazzer.junit.DictionaryEntries;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.fuzz.FuzzChecks;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DModel;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The validation of a {@code POST /v1/samples} body ({@link SampleRequest#parse}) on arbitrary bytes, against an
 * unconditional model, a thresholded one and a class-conditional one with named classes and a null class: a
 * validated request or a {@link RequestException} with a 4xx status (400 naming the field, 404 for an unknown
 * model); never another throwable, which the server would answer with a 500. An accepted request must be
 * consistent (n, steps and labels within the limits), and validation allocates no more than a multiple of the body,
 * plus, for a body with images, a multiple of the pixels the server accepts per image.
 */
class SampleRequestJazzerTest {
    static final String TARGET = "sample-request";
    static final SampleRequest.Limits LIMITS = new SampleRequest.Limits(4, 200, 1 << 16, 60_000, 120_000);
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(16L << 20, 256);
    /** Decoding an accepted image: ARGB raster, float planes and the resize, per pixel. */
    static final long BYTES_PER_IMAGE_PIXEL = 128;

    static Backend cpu;
    static Map<String, ServedModel> models;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        models = new LinkedHashMap<>();
        models.put("plain", ServeTestSupport.model(cpu, "plain", 1, ServeTestSupport.plainConfig()));
        models.put("thr", ServeTestSupport.model(cpu, "thr", 2, ServeTestSupport.thresholdedConfig()));
        models.put("cond", ServeTestSupport.conditionalModel(cpu, "cond", 3, new ClassLabels(List.of("cat", "dog"), 2)));
    }

    @AfterAll
    static void close() {
        FuzzChecks.report(TARGET);
        if (models != null) models.values().forEach(ServedModel::close);
        if (cpu != null) cpu.close();
    }

    @FuzzTest(maxDuration = "30s")
    @DictionaryEntries({"\"model\"", "\"plain\"", "\"cond\"", "\"thr\"", "\"sampler\"", "\"ddpm\"", "\"ddim\"",
            "\"dpmsolver++\"", "\"steps\"", "\"eta\"", "\"seed\"", "\"n\"", "\"timestep_spacing\"", "\"leading\"",
            "\"trailing\"", "\"linspace\"", "\"output\"", "\"png\"", "\"json\"", "\"deadline_ms\"",
            "\"use_clipped_model_output\"", "\"class_labels\"", "\"guidance_scale\"", "\"init_image\"", "\"mask_image\"",
            "\"strength\"", "\"jump_length\"", "\"jump_n_sample\"", "\"cat\"", "\"dog\"", "data:image/png;base64,",
            "iVBORw0KGgo", "true", "null", "-1", "1e9", "9223372036854775807"})
    void parse(byte[] body) {
        String text = new String(body, StandardCharsets.ISO_8859_1);
        boolean images = text.contains("init_image") || text.contains("mask_image");
        FuzzChecks.Budget budget = images
                ? new FuzzChecks.Budget(BUDGET.fixedBytes() + BYTES_PER_IMAGE_PIXEL * RequestConditioning.MAX_IMAGE_PIXELS,
                        BUDGET.bytesPerInputByte())
                : BUDGET;
        FuzzChecks.check(TARGET, body.length, budget, SampleRequestJazzerTest::clientError, () -> {
            SampleRequest r = SampleRequest.parse(body, models, LIMITS);
            if (r.n() < 1 || r.n() > LIMITS.maxN()) throw new AssertionError("accepted n = " + r.n());
            if (r.steps() < 1 || r.steps() > LIMITS.maxSteps()) throw new AssertionError("accepted steps = " + r.steps());
            if (r.plan().isEmpty()) throw new AssertionError("accepted an empty plan");
            int[] rows = r.conditioning().rowLabels();
            if (rows != null && rows.length != r.n()) throw new AssertionError(rows.length + " labels for n = " + r.n());
        });
    }

    private static boolean clientError(Throwable t) {
        return t instanceof RequestException e && (e.status() == 400 || e.status() == 404) && e.field() != null;
    }
}
