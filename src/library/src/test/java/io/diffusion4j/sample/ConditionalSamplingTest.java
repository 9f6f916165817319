package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.TinyUNet;
import io.diffusion4j.testutil.Tolerance;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Sampling with class labels and classifier-free guidance, image-to-image and inpainting on the CPU backend, on a
 * tiny class-conditional model (4 classes and the null class 4): a guided step equals the model's two predictions
 * mixed by hand; an image depends on (seed, index, its label) only, not on its batch; inpainting keeps the known
 * pixels exactly with every sampler; bad inputs are refused naming the input.
 */
class ConditionalSamplingTest {
    static final int C = 2, H = 8, W = 8, CLASSES = 5, NULL = 4;
    static Backend cpu;
    static NoiseSchedule schedule;
    static UNet2DModel model;

    static UNet2DConfig conditional() {
        java.util.LinkedHashMap<String, Object> m = TinyUNet.config(C).toMap();
        m.put("num_class_embeds", (long) CLASSES);
        return UNet2DConfig.fromMap(m);
    }

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        schedule = NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);
        model = new UNet2DModel(cpu, conditional(), TestRandom.fresh().nextLong());
    }

    @AfterAll
    static void close() {
        model.close();
        cpu.close();
    }

    static List<SamplerScheduler> schedulers() {
        return List.of(DdpmScheduler.defaults(PredictionType.EPSILON), DdimScheduler.defaults(PredictionType.EPSILON, 0.5f),
                new DpmSolverScheduler(PredictionType.EPSILON, null, TimestepSpacing.LINSPACE, 0, true, false,
                        DpmSolverScheduler.FinalSigmas.ZERO));
    }

    static Sampler.Inputs guided(int[] labels, float scale) {
        return new Sampler.Inputs(labels, NULL, scale, null, null, 1.0, 1, 1);
    }

    /**
     * One DDIM step (eta 0) from a given x_T with guidance 3: the sampler's batched call over the rows and their
     * null-class copies, mixed in place, equals the model run on each prediction alone, mixed and stepped by hand,
     * bit for bit (every layer computes a sample alone, whatever the batch).
     */
    @Test
    void aGuidedStepIsTheTwoPredictionsMixed() {
        TestRandom r = TestRandom.fresh();
        float[] xT = r.gaussians(2 * C * H * W, 1);
        int[] labels = {1, 3};
        SamplerScheduler s = DdimScheduler.defaults(PredictionType.EPSILON, 0f);
        float[] got;
        try (Sampler sm = new Sampler(model, schedule, s, 1, 2, H, W)) {
            got = sm.run(r.nextLong(), 0, 2, xT, guided(labels, 3f), null);
        }
        SamplerStep step = s.plan(1000, 1).get(0);
        float[] expected;
        try (UNet2DModel m = model.sharingParameters(); NativeSchedule ns = NativeSchedule.of(schedule);
             Tensor x = Tensor.of(cpu, ImageLayout.nchwToNhwc(xT, 2, C, H, W), 2, H, W, C)) {
            float[] t = {step.timestep(), step.timestep()};
            float[] cond = m.forward(x, t, labels).toFloatArray();
            float[] uncond = m.forward(x, t, new int[] {NULL, NULL}).toFloatArray();
            try (Tensor tc = Tensor.of(cpu, cond, 2, H, W, C); Tensor tu = Tensor.of(cpu, uncond, 2, H, W, C)) {
                ConditioningKernels.classifierFreeGuidance(tc, tu, 3f, tc);
                int[] ts = {step.timestep(), step.timestep()}, prev = {step.prevTimestep(), step.prevTimestep()};
                DiffusionKernels.ddimStep(ns, PredictionType.EPSILON, 0f, true, 1f, false, 1.0, x, tc, ts, prev,
                        new DiffusionKernels.SampleNoise(new long[2], new long[2]), x);
                expected = ImageLayout.nhwcToNchw(x.toFloatArray(), 2, C, H, W);
            }
        }
        Tolerance.assertBitIdentical("guided DDIM step", expected, got, r.describe());
    }

    /** Guided images alone and in a batch with other labels: bit for bit the same, for every sampler. */
    @Test
    void aGuidedImageDependsOnItsSeedIndexAndLabelOnly() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong();
        for (SamplerScheduler s : schedulers()) {
            float[] batch, alone, unguided;
            try (Sampler sm = new Sampler(model, schedule, s, 3, 3, H, W)) {
                batch = sm.run(seed, 5, 3, null, guided(new int[] {0, 2, 1}, 2.5f), null);
                alone = sm.run(seed, 6, 1, null, guided(new int[] {2}, 2.5f), null);
                unguided = sm.run(seed, 6, 1, null, guided(new int[] {2}, 1f), null);
            }
            int per = C * H * W;
            String ctx = s.name() + " " + r.describe();
            Tolerance.assertBitIdentical("image 6 alone vs in a batch", Arrays.copyOfRange(batch, per, 2 * per), alone, ctx);
            assertTrue(UnetDiffers.differ(alone, unguided), "guidance changed nothing; " + ctx);
        }
    }

    /** Inpainting keeps the known pixels exactly (mask 1) with every sampler, with and without jumps. */
    @Test
    void inpaintingKeepsTheKnownPixelsExactly() {
        TestRandom r = TestRandom.fresh();
        int per = C * H * W;
        float[] image = r.uniforms(2 * per, -1, 1), mask = new float[2 * per];
        for (int i = 0; i < mask.length; i++) mask[i] = (i / W) % H < H / 2 ? 1f : 0f; // top half known
        for (SamplerScheduler s : schedulers()) {
            for (int[] jumps : new int[][] {{1, 1}, {2, 3}}) {
                float[] out;
                try (Sampler sm = new Sampler(model, schedule, s, 6, 2, H, W)) {
                    out = sm.run(r.nextLong(), 0, 2, null,
                            new Sampler.Inputs(new int[] {0, 3}, NULL, 2f, image, mask, 1.0, jumps[0], jumps[1]), null);
                }
                String ctx = s.name() + " jumps " + Arrays.toString(jumps) + " " + r.describe();
                int kept = 0, changed = 0;
                for (int i = 0; i < out.length; i++) {
                    if (mask[i] == 1f) {
                        assertEquals(Float.floatToRawIntBits(image[i]), Float.floatToRawIntBits(out[i]), ctx + " element " + i);
                        kept++;
                    } else if (out[i] != image[i]) {
                        changed++;
                    }
                }
                assertEquals(out.length / 2, kept, ctx);
                assertTrue(changed > out.length / 4, "the masked region was not generated; " + ctx);
            }
        }
    }

    /** Image-to-image: deterministic, differs from the image and from plain sampling; strength 1 starts at the plan's top. */
    @Test
    void imageToImageStartsFromTheNoisedImage() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong();
        float[] image = r.uniforms(C * H * W, -1, 1);
        SamplerScheduler s = DdimScheduler.defaults(PredictionType.EPSILON, 0f);
        try (Sampler sm = new Sampler(model, schedule, s, 10, 1, H, W)) {
            Sampler.Inputs in = new Sampler.Inputs(new int[] {2}, NULL, 1f, image, null, 0.3, 1, 1);
            assertEquals(3, sm.runPlan(in).ops().size());
            float[] a = sm.run(seed, 0, 1, null, in, null), b = sm.run(seed, 0, 1, null, in, null);
            Tolerance.assertBitIdentical("repeat", a, b, r.describe());
            float[] plain = sm.run(seed, 0, 1, null, guided(new int[] {2}, 1f), null);
            assertTrue(UnetDiffers.differ(a, plain) && UnetDiffers.differ(a, image), r.describe());
            // weak strength stays near the image: mean |out - image| well below plain sampling's
            assertTrue(meanAbs(a, image) < meanAbs(plain, image), r.describe());
        }
    }

    static double meanAbs(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
        return s / a.length;
    }

    @Test
    void badInputsAreRefusedNamingTheInput() {
        SamplerScheduler s = DdimScheduler.defaults(PredictionType.EPSILON, 0f);
        int per = C * H * W;
        try (Sampler sm = new Sampler(model, schedule, s, 2, 2, H, W);
             UNet2DModel plain = new UNet2DModel(cpu, TinyUNet.config(C), 1L);
             Sampler unc = new Sampler(plain, schedule, s, 2, 2, H, W)) {
            assertMessage("class label 5 (image 1) is outside [0, 5)",
                    () -> sm.run(1, 0, 2, null, guided(new int[] {0, 5}, 1f), null));
            assertMessage("class labels has 1 entries for 2 images", () -> sm.run(1, 0, 2, null, guided(new int[] {0}, 1f), null));
            assertMessage("guidance needs the model's null class", () -> sm.run(1, 0, 2, null,
                    new Sampler.Inputs(new int[] {0, 1}, -1, 2f, null, null, 1.0, 1, 1), null));
            assertMessage("model is unconditional", () -> unc.run(1, 0, 2, null, guided(new int[] {0, 1}, 1f), null));
            assertMessage("needs a class-conditional model", () -> unc.run(1, 0, 2, null,
                    new Sampler.Inputs(null, -1, 2f, null, null, 1.0, 1, 1), null));
            assertMessage("image has 3 floats", () -> sm.run(1, 0, 2, null,
                    new Sampler.Inputs(null, NULL, 1f, new float[3], null, 0.5, 1, 1), null));
            float[] nan = new float[2 * per];
            nan[7] = Float.NaN;
            assertMessage("mask[7] = NaN is not finite", () -> sm.run(1, 0, 2, null,
                    new Sampler.Inputs(null, NULL, 1f, new float[2 * per], nan, 0.5, 1, 1), null));
            assertMessage("a mask needs an image", () -> new Sampler.Inputs(null, NULL, 1f, null, new float[1], 1, 1, 1));
            assertMessage("guidance scale must be finite and >= 0", () -> new Sampler.Inputs(null, NULL, Float.NaN, null, null, 1, 1, 1));
            assertMessage("guidance scale must be finite and >= 0", () -> new Sampler.Inputs(null, NULL, -1f, null, null, 1, 1, 1));
            assertMessage("strength must be in (0, 1]", () -> sm.run(1, 0, 2, null,
                    new Sampler.Inputs(null, NULL, 1f, new float[2 * per], null, 0, 1, 1), null));
        }
    }

    static void assertMessage(String fragment, org.junit.jupiter.api.function.Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(fragment), "'" + e.getMessage() + "' does not contain '" + fragment + "'");
    }

    /** Bitwise difference of two arrays. */
    static final class UnetDiffers {
        static boolean differ(float[] a, float[] b) {
            for (int i = 0; i < a.length; i++) if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) return true;
            return false;
        }
    }
}
