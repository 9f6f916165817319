package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.cli.CliRun;
import io.diffusion4j.io.Json;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.testutil.TinyUNet;
import io.diffusion4j.train.Checkpoint;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The sample command's conditional options on a tiny class-conditional 1-channel model (classes "cat", "dog" and
 * the null class): labels by number or name with guidance, inpainting keeping the known pixels of the PNG exactly,
 * image-to-image, DDIM's clipped model output, and the refusals of options that do not fit.
 */
class ConditionalSampleCommandTest {
    @TempDir
    Path dir;

    Path checkpoint() throws IOException {
        Path ck = dir.resolve("ck");
        Files.createDirectories(ck);
        java.util.LinkedHashMap<String, Object> m = TinyUNet.config(1).toMap();
        m.put("num_class_embeds", 3L);
        UNet2DConfig cfg = UNet2DConfig.fromMap(m);
        Files.writeString(ck.resolve(Checkpoint.CONFIG), cfg.toJson());
        TinyUNet.writeWeights(ck.resolve(Checkpoint.WEIGHTS), cfg, 1);
        Files.writeString(ck.resolve(Checkpoint.SCHEDULER), Json.write(Checkpoint.schedulerConfig(
                NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02), PredictionType.EPSILON)));
        new ClassLabels(List.of("cat", "dog"), 2).write(ck);
        return ck;
    }

    static CliRun run(String... args) {
        return CliRun.of(args);
    }

    Path png(String name, int[] gray) throws IOException {
        BufferedImage img = new BufferedImage(8, 8, BufferedImage.TYPE_BYTE_GRAY);
        for (int i = 0; i < 64; i++) img.getRaster().setSample(i % 8, i / 8, 0, gray[i]);
        Path p = dir.resolve(name);
        ImageIO.write(img, "png", p.toFile());
        return p;
    }

    static int[] pixels(Path png) throws IOException {
        BufferedImage img = ImageIO.read(png.toFile());
        int[] out = new int[64];
        for (int i = 0; i < 64; i++) out[i] = img.getRaster().getSample(i % 8, i / 8, 0);
        return out;
    }

    @Test
    void labelsByNumberOrNameWithGuidance() throws IOException {
        Path ck = checkpoint();
        String[] common = {"sample", "--checkpoint", ck.toString(), "--steps", "3", "--n", "2", "--backend", "cpu",
            "--guidance-scale", "3", "--save-npy"};
        CliRun byName = run(concat(common, "--class-labels", "dog,cat", "--out", dir.resolve("a").toString()));
        assertEquals(0, byName.exit(), byName.err());
        CliRun byNumber = run(concat(common, "--class-labels", "1, 0", "--out", dir.resolve("b").toString()));
        assertEquals(0, byNumber.exit(), byNumber.err());
        assertTrue(Arrays.equals(Files.readAllBytes(dir.resolve("a/samples.npy")), Files.readAllBytes(dir.resolve("b/samples.npy"))));
        CliRun other = run(concat(common, "--class-labels", "cat", "--out", dir.resolve("c").toString()));
        assertEquals(0, other.exit(), other.err());
        assertFalse(Arrays.equals(Files.readAllBytes(dir.resolve("a/samples.npy")), Files.readAllBytes(dir.resolve("c/samples.npy"))));
        // image 1 is "cat" in both calls: the same image
        assertTrue(Arrays.equals(Files.readAllBytes(dir.resolve("a/sample_00001.png")), Files.readAllBytes(dir.resolve("c/sample_00001.png"))));
        // k labels for n = 2k images: each for two consecutive images ("dog,cat" with --n 4 = dog, dog, cat, cat)
        CliRun runs = run("sample", "--checkpoint", ck.toString(), "--steps", "3", "--n", "4", "--backend", "cpu",
                "--guidance-scale", "3", "--class-labels", "dog,cat", "--out", dir.resolve("d").toString());
        assertEquals(0, runs.exit(), runs.err());
        CliRun perImage = run("sample", "--checkpoint", ck.toString(), "--steps", "3", "--n", "4", "--backend", "cpu",
                "--guidance-scale", "3", "--class-labels", "1,1,0,0", "--out", dir.resolve("e").toString());
        assertEquals(0, perImage.exit(), perImage.err());
        for (int i = 0; i < 4; i++) {
            String f = String.format("sample_%05d.png", i);
            assertTrue(Arrays.equals(Files.readAllBytes(dir.resolve("d").resolve(f)), Files.readAllBytes(dir.resolve("e").resolve(f))), f);
        }
    }

    @Test
    void inpaintingKeepsTheKnownPixelsOfThePngAndImageToImageRuns() throws IOException {
        Path ck = checkpoint();
        int[] gray = new int[64], mask = new int[64];
        for (int i = 0; i < 64; i++) {
            gray[i] = (i * 37) % 256;
            mask[i] = i < 32 ? 255 : 0; // top half white: kept
        }
        Path image = png("init.png", gray), maskPng = png("mask.png", mask);
        CliRun r = run("sample", "--checkpoint", ck.toString(), "--sampler", "ddpm", "--steps", "4", "--n", "2",
                "--init-image", image.toString(), "--mask-image", maskPng.toString(), "--jump-length", "2",
                "--jump-n-sample", "2", "--class-labels", "cat", "--out", dir.resolve("inp").toString(), "--backend", "cpu");
        assertEquals(0, r.exit(), r.err());
        for (int k = 0; k < 2; k++) {
            int[] got = pixels(dir.resolve("inp").resolve(String.format("sample_%05d.png", k)));
            assertTrue(Arrays.equals(Arrays.copyOf(gray, 32), Arrays.copyOf(got, 32)), "known pixels of image " + k);
            assertFalse(Arrays.equals(Arrays.copyOfRange(gray, 32, 64), Arrays.copyOfRange(got, 32, 64)));
        }
        r = run("sample", "--checkpoint", ck.toString(), "--steps", "5", "--n", "1", "--init-image", image.toString(),
                "--strength", "0.4", "--use-clipped-model-output", "--out", dir.resolve("i2i").toString(), "--backend", "cpu");
        assertEquals(0, r.exit(), r.err());
        assertTrue(r.err().contains("2/2"), r.err()); // int(5 * 0.4) = 2 steps run
    }

    @Test
    void optionsThatDoNotFitAreRefused() throws IOException {
        Path ck = checkpoint();
        Path img = png("i.png", new int[64]);
        String c = ck.toString();
        expect(1, "'bird' is not a class of this model (0 to 1, or a name: cat, dog)", "--checkpoint", c, "--class-labels", "bird");
        expect(1, "a list whose length divides --n (16), got 3", "--checkpoint", c, "--class-labels", "0,1,0");
        expect(2, "--guidance-scale must be finite and >= 0", "--checkpoint", c, "--guidance-scale", "-1");
        expect(2, "--guidance-scale must be finite and >= 0", "--checkpoint", c, "--guidance-scale", "NaN");
        expect(2, "--mask-image needs --init-image", "--checkpoint", c, "--mask-image", img.toString());
        expect(2, "--strength must be in (0, 1]", "--checkpoint", c, "--init-image", img.toString(), "--strength", "1.5");
        expect(2, "--strength applies to image-to-image", "--checkpoint", c, "--strength", "0.5");
        expect(2, "--jump-length and --jump-n-sample apply to inpainting", "--checkpoint", c, "--jump-length", "3");
        expect(2, "--use-clipped-model-output applies to ddim only", "--checkpoint", c, "--sampler", "ddpm",
                "--use-clipped-model-output");
        expect(1, "no such image file", "--checkpoint", c, "--init-image", dir.resolve("missing.png").toString());
        Path notPng = dir.resolve("x.png");
        Files.writeString(notPng, "not an image");
        expect(1, notPng + ": not a readable PNG or JPEG image", "--checkpoint", c, "--init-image", notPng.toString());
        // an unconditional model: labels and guidance refused
        Files.writeString(ck.resolve(Checkpoint.CONFIG), TinyUNet.config(1).toJson());
        TinyUNet.writeWeights(ck.resolve(Checkpoint.WEIGHTS), TinyUNet.config(1), 1);
        expect(1, "is an unconditional model", "--checkpoint", c, "--class-labels", "0");
        expect(1, "needs a class-conditional model", "--checkpoint", c, "--guidance-scale", "2");
    }

    void expect(int exit, String fragment, String... args) {
        CliRun r = run(concat(concat(new String[] {"sample"}, args), "--steps", "2", "--backend", "cpu", "--out",
                dir.resolve("o").toString()));
        assertEquals(exit, r.exit(), r.err());
        assertTrue(r.err().contains(fragment), "'" + r.err() + "' does not contain '" + fragment + "'");
    }

    static String[] concat(String[] a, String... b) {
        String[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
