package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.train.CheckpointFiles;
import io.diffusion4j.cli.CliRun;
import io.diffusion4j.io.Json;
import io.diffusion4j.io.Npy;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.TinyUNet;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The sample command on a diffusers-style folder of a tiny 1-channel model: PNGs and grid written, .npy of
 * the right shape, same seed same files, --init-noise of a saved x_T, EMA weights preferred, errors.
 */
class SampleCommandTest {
    @TempDir
    Path dir;

    static UNet2DConfig config() {
        return TinyUNet.config(1);
    }

    Path checkpoint(boolean ema) throws IOException {
        Path ck = dir.resolve("ck");
        Files.createDirectories(ck);
        if (ema) Files.createDirectories(ck.resolve("ema")); // a present ema/ must hold the weights
        UNet2DConfig cfg = config();
        Files.writeString(ck.resolve(Checkpoint.CONFIG), cfg.toJson());
        TinyUNet.writeWeights(ck.resolve(Checkpoint.WEIGHTS), cfg, 1);
        if (ema) TinyUNet.writeWeights(ck.resolve("ema").resolve(Checkpoint.WEIGHTS), cfg, 2);
        Files.writeString(ck.resolve(Checkpoint.SCHEDULER), Json.write(Checkpoint.schedulerConfig(
                NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02), PredictionType.EPSILON)));
        return ck;
    }

    static CliRun run(String... args) {
        return CliRun.of(args);
    }

    @Test
    void writesImagesGridAndNpyDeterministically() throws IOException {
        Path ck = checkpoint(true);
        long seed = TestRandom.fresh().nextLong();
        for (String sampler : new String[] {"ddim", "dpmsolver++", "ddpm"}) {
            Path a = dir.resolve(sampler + "-a"), b = dir.resolve(sampler + "-b");
            for (Path outDir : new Path[] {a, b}) {
                CliRun r = run("sample", "--checkpoint", ck.toString(), "--sampler", sampler, "--steps", "3", "--n", "5",
                        "--batch-size", "2", "--seed", Long.toString(seed), "--out", outDir.toString(), "--save-npy",
                        "--backend", "cpu");
                assertEquals(0, r.exit(), r.err() + r.out());
                assertTrue(r.out().contains("EMA weights"), r.out());
                assertTrue(r.err().contains("100%"), r.err());
            }
            for (int i = 0; i < 5; i++) {
                Path png = a.resolve(String.format("sample_%05d.png", i));
                BufferedImage img = ImageIO.read(png.toFile());
                assertEquals(8, img.getWidth());
                assertArrayEquals(Files.readAllBytes(png), Files.readAllBytes(b.resolve(png.getFileName())));
            }
            BufferedImage grid = ImageIO.read(a.resolve("grid.png").toFile());
            assertEquals(3 * 10 + 2, grid.getWidth()); // ceil(sqrt(5)) = 3 columns of 8 + 2 px gaps
            Npy.Array arr = Npy.read(a.resolve("samples.npy"));
            assertArrayEquals(new long[] {5, 1, 8, 8}, arr.shape());
            assertArrayEquals(arr.data(), Npy.read(b.resolve("samples.npy")).data());
            try (var files = Files.list(a)) {
                assertFalse(files.anyMatch(p -> p.getFileName().toString().endsWith(".tmp")), "temporary files left");
            }
        }
    }

    /** --grid-scale K repeats every grid pixel K x K times; the per-image PNGs stay at the model's size. */
    @Test
    void gridScaleEnlargesTheGridByPixelRepetition() throws IOException {
        Path ck = checkpoint(true);
        int k = 2 + TestRandom.fresh().nextInt(3);
        Path one = dir.resolve("scale-1"), big = dir.resolve("scale-k");
        for (Path outDir : new Path[] {one, big}) {
            CliRun r = run("sample", "--checkpoint", ck.toString(), "--sampler", "ddim", "--steps", "2", "--n", "3",
                    "--out", outDir.toString(), "--backend", "cpu", "--grid-scale", outDir == one ? "1" : Integer.toString(k));
            assertEquals(0, r.exit(), r.err() + r.out());
        }
        BufferedImage g1 = ImageIO.read(one.resolve("grid.png").toFile()), gk = ImageIO.read(big.resolve("grid.png").toFile());
        assertEquals(k * g1.getWidth(), gk.getWidth());
        assertEquals(k * g1.getHeight(), gk.getHeight());
        for (int y = 0; y < gk.getHeight(); y++) {
            for (int x = 0; x < gk.getWidth(); x++) {
                assertEquals(g1.getRaster().getSample(x / k, y / k, 0), gk.getRaster().getSample(x, y, 0), "pixel " + x + "," + y);
            }
        }
        assertEquals(8, ImageIO.read(big.resolve("sample_00000.png").toFile()).getWidth());
        for (String bad : new String[] {"0", "17"}) {
            CliRun r = run("sample", "--checkpoint", ck.toString(), "--grid-scale", bad);
            assertEquals(2, r.exit(), r.out());
            assertTrue(r.err().contains("--grid-scale"), r.err());
        }
    }

    /** n = 5 in batches of 2 (the last one of 1 image, run at that size) gives the images of one batch of 5. */
    @Test
    void imagesDoNotDependOnTheBatchSize() throws IOException {
        Path ck = checkpoint(false);
        long seed = TestRandom.fresh().nextLong();
        for (String[] sampler : new String[][] {{"ddpm"}, {"ddim", "--eta", "1"}, {"dpmsolver++"}}) {
            float[][] got = new float[2][];
            for (int k = 0; k < 2; k++) {
                Path out = dir.resolve(sampler[0] + "-batch" + k);
                List<String> args = new ArrayList<>(List.of("sample", "--checkpoint", ck.toString(), "--steps", "3",
                        "--n", "5", "--batch-size", k == 0 ? "2" : "5", "--seed", Long.toString(seed), "--out",
                        out.toString(), "--save-npy", "--backend", "cpu", "--sampler"));
                args.addAll(List.of(sampler));
                CliRun res = run(args.toArray(String[]::new));
                assertEquals(0, res.exit(), res.err() + res.out());
                got[k] = Npy.read(out.resolve("samples.npy")).data();
            }
            assertEquals(5 * 64, got[0].length);
            assertArrayEquals(got[1], got[0], sampler[0] + ": batch 2 vs 5, seed " + seed);
        }
    }

    @Test
    void initNoiseStartsTheChainFromTheGivenXT() throws IOException {
        Path ck = checkpoint(false);
        TestRandom r = TestRandom.fresh();
        float[] xT = r.gaussians(3 * 64, 1.0);
        Path noise = dir.resolve("xT.npy");
        Npy.write(noise, new long[] {3, 1, 8, 8}, xT);
        float[][] got = new float[2][];
        for (int k = 0; k < 2; k++) {
            Path out = dir.resolve("init" + k);
            CliRun res = run("sample", "--checkpoint", ck.toString(), "--sampler", "ddim", "--steps", "4",
                    "--init-noise", noise.toString(), "--batch-size", k == 0 ? "3" : "2", "--seed",
                    Long.toString(r.nextLong()), "--out", out.toString(), "--save-npy", "--backend", "cpu");
            assertEquals(0, res.exit(), res.err() + res.out());
            assertTrue(res.out().contains("raw weights"), res.out());
            got[k] = Npy.read(out.resolve("samples.npy")).data();
        }
        // DDIM eta 0 from a given x_T ignores the seed; the batch split does not change the images beyond
        // the model's per-batch summation order (bit-identical on the CPU backend)
        assertArrayEquals(got[0], got[1]);
        // a wrong shape is refused with the expected one named
        Npy.write(noise, new long[] {3, 2, 8, 8}, new float[3 * 2 * 64]);
        CliRun bad = run("sample", "--checkpoint", ck.toString(), "--init-noise", noise.toString(), "--out",
                dir.resolve("bad").toString(), "--backend", "cpu");
        assertEquals(1, bad.exit());
        assertTrue(bad.err().contains("is not [n, 1, 8, 8]"), bad.err());
    }

    @Test
    void badOptionsAreRefused() throws IOException {
        CliRun r = run("sample", "--checkpoint", dir.resolve("missing").toString(), "--backend", "cpu");
        assertEquals(1, r.exit());
        assertTrue(r.err().contains("no such checkpoint"), r.err());
        r = run("sample", "--sampler", "euler", "--checkpoint", "x");
        assertEquals(2, r.exit());
        assertTrue(r.err().contains("ddpm, ddim or dpmsolver++"), r.err());
        r = run("sample", "--checkpoint", "x", "--sampler", "ddpm", "--eta", "1");
        assertEquals(2, r.exit());
        r = run("sample");
        assertEquals(2, r.exit());
        assertTrue(r.err().contains("--checkpoint DIR is required"), r.err());
        Path ck = checkpoint(false);
        Path sched = ck.resolve(Checkpoint.SCHEDULER);
        Files.writeString(sched, "{\"num_train_timesteps\": 1000,");
        r = run("sample", "--checkpoint", ck.toString(), "--out", dir.resolve("out").toString(), "--backend", "cpu");
        assertEquals(1, r.exit());
        assertTrue(r.err().contains(sched + ": "), r.err());
        CheckpointFiles loc = CheckpointFiles.locate(ck, false);
        IOException e = assertThrows(IOException.class, loc::readSchedulerConfig);
        assertTrue(e.getMessage().startsWith(sched + ": "), e.getMessage());
        Files.writeString(sched, "{\"lambda_min_clipped\": -Infinity, \"x\": NaN}");
        Map<String, Object> cfg = loc.readSchedulerConfig();
        assertEquals(Double.NEGATIVE_INFINITY, cfg.get("lambda_min_clipped"));
        assertTrue(Double.isNaN((Double) cfg.get("x")), cfg.toString());
    }
}
