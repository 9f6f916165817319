package io.diffusion4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The public API of conditional generation: a class-conditional model trained through {@link TrainingRun} (labelled
 * arrays, null class), sampled through {@link DiffusionPipeline} with labels and guidance, image-to-image and
 * inpainting; an image of a call equals that image sampled alone; inputs that do not fit are refused naming them.
 */
class ConditionalPipelineTest {
    @TempDir
    static Path dir;
    static Diffusion4j d4j;
    static Path ck, plain;
    static TestRandom rnd;

    @BeforeAll
    static void train() throws IOException {
        rnd = TestRandom.fresh();
        d4j = Diffusion4j.open(Device.CPU);
        int n = 12;
        float[] images = rnd.uniforms(n * 64, -1, 1);
        int[] labels = new int[n];
        for (int i = 0; i < n; i++) labels[i] = i % 3;
        try (TrainingRun run = d4j.newTrainingRun().modelConfigJson(ApiTestSupport.tinyConfigJson(1)).steps(3).batchSize(4)
                .data(TrainingData.fromArray(images, n, 1, 8, 8).withClassLabels(labels, 3)).classConditional(true)
                .seed(rnd.nextLong()).build()) {
            run.train();
            run.save(dir.resolve("cond"));
        }
        ck = dir.resolve("cond");
        plain = ApiTestSupport.trainTiny(d4j, dir.resolve("plain"), rnd.nextLong(), 2);
    }

    @AfterAll
    static void close() {
        d4j.close();
    }

    @Test
    void aClassConditionalCheckpointKnowsItsClasses() throws IOException {
        assertEquals(new ClassLabels(List.of("0", "1", "2"), 3), ClassLabels.read(ck));
        try (DiffusionPipeline p = d4j.loadPipeline(ck); DiffusionPipeline u = d4j.loadPipeline(plain)) {
            assertTrue(p.isClassConditional() && p.supportsGuidance());
            assertEquals(List.of("0", "1", "2"), p.classNames());
            assertEquals(2, p.classLabel("2"));
            assertFalse(u.isClassConditional() || u.supportsGuidance());
            assertEquals(List.of(), u.classNames());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> p.classLabel("3"));
            assertTrue(e.getMessage().contains("'3' is not a class"), e.getMessage());
        }
    }

    /** Guided samples: the same image alone or in a call of several, whatever the batch size; guidance acts. */
    @Test
    void guidedImagesDependOnSeedIndexAndLabel() throws IOException {
        SamplerConfig cfg = SamplerConfig.ddim(4).withSeed(rnd.nextLong()).withGuidanceScale(3).withBatchSize(2);
        try (DiffusionPipeline p = d4j.loadPipeline(ck)) {
            Samples all = p.sample(cfg, 3, SampleInputs.none().withClassLabels(2, 0, 1), null);
            Samples batched = p.sample(cfg.withBatchSize(3), 3, SampleInputs.none().withClassLabels(2, 0, 1), null);
            Samples oneLabel = p.sample(cfg, 3, SampleInputs.none().withClassLabels(0), null);
            Samples unguided = p.sample(cfg.withGuidanceScale(1), 3, SampleInputs.none().withClassLabels(2, 0, 1), null);
            String ctx = rnd.describe();
            Tolerance.assertBitIdentical("batch 2 vs 3", all.toFloatArray(), batched.toFloatArray(), ctx);
            Tolerance.assertBitIdentical("image 1 (label 0)", all.toFloatArray(1), oneLabel.toFloatArray(1), ctx);
            assertFalse(Arrays.equals(all.toFloatArray(), unguided.toFloatArray()), "guidance changed nothing; " + ctx);
            // without labels: the null class, unconditional
            assertEquals(3, p.sample(cfg, 3, SampleInputs.none(), null).count());
        }
    }

    @Test
    void inpaintingKeepsTheImageWhereTheMaskIsWhite() throws IOException {
        float[] image = rnd.uniforms(64, -1, 1), mask = new float[64];
        for (int i = 0; i < 64; i++) mask[i] = i < 32 ? 0.9f : 0.2f; // binarised at 0.5: the top half kept
        try (DiffusionPipeline p = d4j.loadPipeline(plain)) {
            SamplerConfig cfg = SamplerConfig.ddpm(5).withSeed(rnd.nextLong()).withJumps(2, 2);
            float[] out = p.sample(cfg, 2, SampleInputs.none().withInitImage(image).withMask(mask), null).toFloatArray();
            for (int k = 0; k < 2; k++) {
                for (int i = 0; i < 32; i++) {
                    assertEquals(Float.floatToRawIntBits(image[i]), Float.floatToRawIntBits(out[k * 64 + i]), "pixel " + i);
                }
            }
            float[] i2i = p.sample(cfg.withStrength(0.5), 1, SampleInputs.none().withInitImage(image), null).toFloatArray();
            assertFalse(Arrays.equals(i2i, image));
        }
    }

    @Test
    void inputsThatDoNotFitAreRefusedNamingThem() throws IOException {
        try (DiffusionPipeline p = d4j.loadPipeline(ck); DiffusionPipeline u = d4j.loadPipeline(plain)) {
            SamplerConfig cfg = SamplerConfig.ddim(2);
            refused("class labels: 3 is not a class", () -> p.sample(cfg, 2, SampleInputs.none().withClassLabels(3), null));
            refused("give one label or one per image (2)", () -> p.sample(cfg, 2, SampleInputs.none().withClassLabels(0, 1, 2), null));
            refused("class labels: the model is unconditional", () -> u.sample(cfg, 1, SampleInputs.none().withClassLabels(0), null));
            refused("needs a class-conditional model", () -> u.sample(cfg.withGuidanceScale(2), 1, SampleInputs.none(), null));
            refused("mask: inpainting needs an init image", () -> u.sample(cfg, 1, SampleInputs.none().withMask(new float[64]), null));
            refused("init image: 63 floats", () -> u.sample(cfg, 1, SampleInputs.none().withInitImage(new float[63]), null));
            refused("mask: 65 floats", () -> u.sample(cfg, 1, SampleInputs.none().withInitImage(new float[64]).withMask(new float[65]), null));
            float[] nan = new float[64];
            nan[3] = Float.NaN;
            refused("init image: a value is not finite", () -> u.sample(cfg, 1, SampleInputs.none().withInitImage(nan), null));
            refused("guidance scale must be finite and >= 0", () -> cfg.withGuidanceScale(Double.NaN));
            refused("guidance scale must be finite and >= 0", () -> cfg.withGuidanceScale(-1));
            refused("strength must be in (0, 1]", () -> cfg.withStrength(0));
            refused("applies to DDIM only", () -> SamplerConfig.ddpm(3).withUseClippedModelOutput(true));
        }
    }

    static void refused(String fragment, org.junit.jupiter.api.function.Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(fragment), "'" + e.getMessage() + "' does not contain '" + fragment + "'");
    }
}
