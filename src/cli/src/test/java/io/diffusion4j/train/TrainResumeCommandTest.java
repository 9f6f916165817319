package io.diffusion4j.train;

import static io.diffusion4j.train.TrainCommandTest.run;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.cli.CliRun;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.testutil.TestRandom;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code train --resume}, {@code --init-from} and {@code --data images} through the command line, CPU, tiny config. */
class TrainResumeCommandTest {
    static Path tinyConfig(Path dir) throws IOException {
        Path config = dir.resolve("tiny.json");
        Files.writeString(config, TrainerTest.tiny().toJson());
        return config;
    }

    static String[] args(String... a) {
        return a;
    }

    static String[] concat(String[] a, String... b) {
        List<String> l = new ArrayList<>(List.of(a));
        l.addAll(List.of(b));
        return l.toArray(String[]::new);
    }

    static void assertSameTensors(Path a, Path b, String what) throws IOException {
        LinkedHashMap<String, SafeTensors.Entry> x = SafeTensors.readAll(a), y = SafeTensors.readAll(b);
        assertEquals(x.keySet(), y.keySet(), what + " tensor names");
        for (String k : x.keySet()) {
            TrainerTest.assertBitEqual(x.get(k).data(), y.get(k).data(), what + " " + k);
        }
    }

    /**
     * train 2N in one go equals train N, then --resume to 2N: weights, EMA, AdamW moments, history,
     * loss.csv bit/byte identical (v_prediction with min-SNR-gamma, so the weighting is resumed too).
     */
    @Test
    void resumeContinuesBitForBit(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        String seed = Long.toString(rnd.nextLong());
        Path config = tinyConfig(dir);
        String[] common = args("train", "--config", config.toString(), "--batch-size", "3", "--seed", seed, "--backend",
                "cpu", "--prediction-type", "v_prediction", "--min-snr-gamma", "5", "--lr", "2e-3", "--warmup", "2",
                "--log-every", "1", "--threads", "2");
        Path straight = dir.resolve("straight"), split = dir.resolve("split");
        CliRun a = run(concat(common, "--steps", "6", "--out", straight.toString()));
        assertEquals(0, a.exit(), a.toString());
        CliRun b = run(concat(common, "--steps", "3", "--save-every", "2", "--out", split.toString()));
        assertEquals(0, b.exit(), b.toString());
        assertTrue(b.out().contains("saved: step 2 to") && !b.out().contains("saved: step 3"), b.out());
        // resumed with only --resume and --steps (+ free options): everything else from the checkpoint
        CliRun c = run("train", "--resume", split.toString(), "--steps", "6", "--backend", "cpu",
                "--log-every", "1", "--threads", "1");
        assertEquals(0, c.exit(), c.toString());
        assertTrue(c.out().contains("at step 3 of 6") && c.out().contains("step      4/6") && !c.out().contains("step      3/6"),
                c.out());
        String ctx = "seed " + seed + " " + rnd.describe();
        for (String f : List.of(Checkpoint.WEIGHTS, "ema/" + Checkpoint.WEIGHTS, Checkpoint.TRAINING_STATE)) {
            assertSameTensors(straight.resolve(f), split.resolve(f), f + " " + ctx);
        }
        Map<String, String> ma = Checkpoint.readStateMetadata(straight), mb = Checkpoint.readStateMetadata(split);
        assertEquals(ma, mb, "training-state metadata " + ctx);
        assertEquals("6", mb.get("step"));
        assertEquals(Files.readString(straight.resolve(TrainingDefaults.LOSS_CSV)), Files.readString(split.resolve(TrainingDefaults.LOSS_CSV)),
                "loss.csv " + ctx);
        assertEquals(7, Files.readAllLines(split.resolve(TrainingDefaults.LOSS_CSV)).size(), "header + 6 steps");
        BufferedImage png = ImageIO.read(split.resolve(TrainingDefaults.LOSS_CURVE).toFile());
        assertEquals(LossCurve.WIDTH, png.getWidth());

        // a finished run: nothing to do
        CliRun d = run("train", "--resume", split.toString(), "--backend", "cpu");
        assertEquals(0, d.exit(), d.toString());
        assertTrue(d.out().contains("nothing to train"), d.out());

        // options that would change the run are refused, equal ones accepted
        Path other = dir.resolve("other.json");
        Files.writeString(other, TrainerTest.tiny().toJson().replace("\"layers_per_block\": 1", "\"layers_per_block\": 2"));
        for (String[] bad : List.of(args("--lr", "1e-3"), args("--batch-size", "4"), args("--min-snr-gamma", "4"),
                args("--prediction-type", "epsilon"), args("--seed", "1"), args("--data", "fashion-mnist"),
                args("--beta-schedule", "scaled_linear"), args("--timesteps", "999"), args("--warmup", "3"),
                args("--ema-decay", "0.5"), args("--weight-decay", "0.1"), args("--config", other.toString()))) {
            CliRun r = run(concat(args("train", "--resume", split.toString(), "--steps", "8", "--backend", "cpu"), bad));
            assertEquals(2, r.exit(), String.join(" ", bad) + ": " + r);
            assertTrue(r.err().contains(bad[0]) && r.err().contains("would not continue the same run"), r.err());
        }
        CliRun lower = run("train", "--resume", split.toString(), "--steps", "2", "--backend", "cpu");
        assertEquals(2, lower.exit(), lower.toString());
        assertTrue(lower.err().contains("below the checkpoint's step 6"), lower.err());
        CliRun both = run("train", "--resume", split.toString(), "--init-from", straight.toString());
        assertEquals(2, both.exit(), both.toString());
        CliRun none = run("train", "--resume", dir.resolve("nothing").toString(), "--backend", "cpu");
        assertEquals(1, none.exit(), none.toString());
        CliRun same = run("train", "--resume", split.toString(), "--steps", "7", "--backend", "cpu", "--lr", "2e-3",
                "--batch-size", "3", "--config", config.toString(), "--min-snr-gamma", "5", "--seed", seed,
                "--out", dir.resolve("seven").toString());
        assertEquals(0, same.exit(), same.toString());
        assertEquals(8, Files.readAllLines(dir.resolve("seven").resolve(TrainingDefaults.LOSS_CSV)).size());
        assertEquals(Files.readString(split.resolve(TrainingDefaults.LOSS_CSV)),
                String.join("\n", Files.readAllLines(dir.resolve("seven").resolve(TrainingDefaults.LOSS_CSV)).subList(0, 7)) + "\n",
                "the first 6 steps of the history are carried into the new --out");
    }

    /**
     * --init-from a folder whose attention tensors carry the legacy names (query/key/value/proj_attn): the
     * weights read equal the original; one step at lr 0 writes them back unchanged (EMA too).
     */
    @Test
    void initFromLegacyAttentionNames(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        Path config = tinyConfig(dir);
        Path src = dir.resolve("src");
        CliRun a = run("train", "--config", config.toString(), "--steps", "2", "--batch-size", "2", "--out",
                src.toString(), "--backend", "cpu", "--seed", Long.toString(rnd.nextLong()));
        assertEquals(0, a.exit(), a.toString());
        Path legacy = Files.createDirectories(dir.resolve("legacy"));
        Files.copy(src.resolve(Checkpoint.CONFIG), legacy.resolve(Checkpoint.CONFIG));
        List<SafeTensors.Entry> renamed = new ArrayList<>();
        int n = 0;
        for (SafeTensors.Entry e : SafeTensors.readAll(src.resolve(Checkpoint.WEIGHTS)).values()) {
            String name = e.name().replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
                    .replace(".to_out.0.", ".proj_attn.");
            if (!name.equals(e.name())) n++;
            renamed.add(new SafeTensors.Entry(name, e.shape(), e.data()));
        }
        assertEquals(UNet2DLayout.of(TrainerTest.tiny()).attentions().size() * 8, n,
                "attention tensors renamed (4 projections x weight, bias per block)");
        assertTrue(n >= 8);
        SafeTensors.write(legacy.resolve(Checkpoint.WEIGHTS), renamed, Map.of("format", "pt"));
        UNet2DLayout layout = UNet2DLayout.of(TrainerTest.tiny());
        float[] original = Checkpoint.readWeights(src.resolve(Checkpoint.WEIGHTS), layout);
        Checkpoint.ModelFolder mf = Checkpoint.readModelFolder(legacy);
        assertEquals(TrainerTest.tiny(), mf.config());
        TrainerTest.assertBitEqual(original, mf.weights(), "legacy names mapped");

        Path out = dir.resolve("out");
        CliRun b = run("train", "--init-from", legacy.toString(), "--steps", "1", "--batch-size", "2", "--lr", "0",
                "--weight-decay", "0", "--out", out.toString(), "--backend", "cpu", "--seed", "3");
        assertEquals(0, b.exit(), b.toString());
        assertTrue(b.out().contains("init: weights from"), b.out());
        TrainerTest.assertBitEqual(original, Checkpoint.readWeights(out.resolve(Checkpoint.WEIGHTS), layout), "after a step at lr 0");
        TrainerTest.assertBitEqual(original, Checkpoint.readWeights(out.resolve("ema/" + Checkpoint.WEIGHTS), layout), "EMA");
        assertEquals("1", Checkpoint.readStateMetadata(out).get("step"), "a fresh run, not a resume");
        assertTrue(Checkpoint.readStateMetadata(out).get("init_from").endsWith("legacy"));

        // a pipeline folder with the model in unet/
        Path pipe = dir.resolve("pipe");
        TrainerTest.copyTree(legacy, pipe.resolve("unet"));
        Files.writeString(pipe.resolve("model_index.json"), "{}");
        TrainerTest.assertBitEqual(original, Checkpoint.readModelFolder(pipe).weights(), "pipeline/unet");

        // refusals: .bin only, no config, a differing --config, a corrupt tensor set
        Path bin = Files.createDirectories(dir.resolve("bin"));
        Files.copy(src.resolve(Checkpoint.CONFIG), bin.resolve(Checkpoint.CONFIG));
        Files.write(bin.resolve(Checkpoint.WEIGHTS_BIN), new byte[] {(byte) 0x80, 2});
        CliRun c = run("train", "--init-from", bin.toString(), "--backend", "cpu");
        assertEquals(1, c.exit(), c.toString());
        assertTrue(c.err().contains(Checkpoint.WEIGHTS_BIN) && c.err().contains("pickle") && c.err().contains("safetensors"),
                c.err());
        CliRun d = run("train", "--init-from", dir.resolve("nowhere").toString(), "--backend", "cpu");
        assertEquals(1, d.exit(), d.toString());
        Path other = dir.resolve("other.json");
        Files.writeString(other, TrainerTest.tiny().toJson().replace("\"layers_per_block\": 1", "\"layers_per_block\": 2"));
        CliRun e = run("train", "--init-from", legacy.toString(), "--config", other.toString(), "--backend", "cpu");
        assertEquals(2, e.exit(), e.toString());
        assertTrue(e.err().contains("differs from the config.json"), e.err());
        List<SafeTensors.Entry> doubled = new ArrayList<>(renamed);
        SafeTensors.Entry q = renamed.stream().filter(x -> x.name().contains(".query.weight")).findFirst().orElseThrow();
        doubled.add(new SafeTensors.Entry(q.name().replace(".query.", ".to_q."), q.shape(), q.data()));
        SafeTensors.write(legacy.resolve(Checkpoint.WEIGHTS), doubled, Map.of());
        IOException ex = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () -> Checkpoint.readModelFolder(legacy));
        assertTrue(ex.getMessage().contains("both map to"), ex.getMessage());
    }

    /** --data images with generated RGB files into a 1-channel model (luminance); refusals name the problem. */
    @Test
    void imagesFromAFolder(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        Path images = Files.createDirectories(dir.resolve("imgs"));
        for (int i = 0; i < 4; i++) ImageFolderDatasetTest.rgb(images, "sub" + i % 2 + "/i" + i + ".png", 9 + i, 7 + 2 * i, rnd, "png");
        Path config = tinyConfig(dir);
        Path out = dir.resolve("out");
        CliRun r = run("train", "--data", "images", "--data-dir", images.toString(), "--config", config.toString(),
                "--steps", "2", "--batch-size", "2", "--out", out.toString(), "--backend", "cpu");
        assertEquals(0, r.exit(), r.toString());
        assertTrue(r.out().contains("4 files, center-cropped and resized to 12x12x1"), r.out());
        Map<String, String> md = Checkpoint.readStateMetadata(out);
        assertEquals("images", md.get("data"));
        assertEquals("4", md.get("data_images"));
        assertEquals(images.toAbsolutePath().toString(), md.get("data_dir"));
        // resume finds the folder from the checkpoint; a changed folder is refused
        CliRun res = run("train", "--resume", out.toString(), "--steps", "3", "--backend", "cpu");
        assertEquals(0, res.exit(), res.toString());
        ImageFolderDatasetTest.rgb(images, "extra.png", 5, 5, rnd, "png");
        CliRun changed = run("train", "--resume", out.toString(), "--steps", "4", "--backend", "cpu");
        assertEquals(1, changed.exit(), changed.toString());
        assertTrue(changed.err().contains("has 5 images, the checkpoint was trained on 4"), changed.err());

        Files.write(images.resolve("sub0/broken.png"), new byte[] {(byte) 0x89, 'P', 'N', 'G', 0, 1});
        CliRun bad = run("train", "--data", "images", "--data-dir", images.toString(), "--config", config.toString(),
                "--steps", "1", "--out", dir.resolve("o2").toString(), "--backend", "cpu");
        assertEquals(1, bad.exit(), bad.toString());
        assertTrue(bad.err().contains("broken.png"), bad.err());
        CliRun noDir = run("train", "--data", "images");
        assertEquals(2, noDir.exit(), noDir.toString());
        assertTrue(noDir.err().contains("--data-dir"), noDir.err());
        Path empty = Files.createDirectories(dir.resolve("empty"));
        CliRun emptyRun = run("train", "--data", "images", "--data-dir", empty.toString(), "--config",
                config.toString(), "--backend", "cpu");
        assertEquals(1, emptyRun.exit(), emptyRun.toString());
        assertTrue(emptyRun.err().contains("no PNG or JPEG"), emptyRun.err());
        UNet2DConfig rgbModel = UNet2DConfig.fromJson(TrainerTest.tiny().toJson().replace("\"in_channels\": 1", "\"in_channels\": 3")
                .replace("\"out_channels\": 1", "\"out_channels\": 3"));
        assertEquals(3, rgbModel.inChannels());
        Files.delete(images.resolve("sub0/broken.png"));
        Path rgbConfig = dir.resolve("rgb.json");
        Files.writeString(rgbConfig, rgbModel.toJson());
        CliRun rgb = run("train", "--data", "images", "--data-dir", images.toString(), "--config", rgbConfig.toString(),
                "--steps", "1", "--batch-size", "2", "--out", dir.resolve("o3").toString(), "--backend", "cpu");
        assertEquals(0, rgb.exit(), rgb.toString());
        assertTrue(rgb.out().contains("12x12x3"), rgb.out());
        assertArrayEquals(new long[] {8, 3, 3, 3}, SafeTensors.readAll(dir.resolve("o3").resolve(Checkpoint.WEIGHTS))
                .get("conv_in.weight").shape());
    }
}
