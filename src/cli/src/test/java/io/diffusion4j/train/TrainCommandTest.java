package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.cli.CliRun;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.model.UNet2DLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code java -jar diffusion4j.jar train} end to end with a tiny config in a temporary directory. */
class TrainCommandTest {
    static CliRun run(String... args) {
        return CliRun.of(args);
    }

    @Test
    void trainWritesACheckpoint(@TempDir Path dir) throws Exception {
        Path config = dir.resolve("tiny.json");
        Files.writeString(config, TrainerTest.tiny().toJson());
        Path out = dir.resolve("out");
        CliRun r = run("train", "--config", config.toString(), "--steps", "4", "--batch-size", "3", "--log-every", "2",
                "--out", out.toString(), "--seed", "7", "--backend", "cpu", "--prediction-type", "v_prediction",
                "--beta-schedule", "scaled_linear", "--lr", "1e-3", "--warmup", "2", "--ema-decay", "0.99");
        assertEquals(0, r.exit(), r.toString());
        Matcher m = Pattern.compile("(?m)^step +(\\d+)/4 +loss (\\S+) .* it/s .* img/s +ETA \\S+$").matcher(r.out());
        int lines = 0;
        while (m.find()) {
            lines++;
            assertTrue(Double.isFinite(Double.parseDouble(m.group(2))), m.group());
        }
        assertEquals(2, lines, "progress lines in:\n" + r.out());
        assertTrue(r.out().contains("checkpoint written to"), r.out());
        List<String> csv = Files.readAllLines(out.resolve(TrainingDefaults.LOSS_CSV));
        assertEquals(List.of(LossHistory.CSV_HEADER), csv.subList(0, 1));
        assertEquals(5, csv.size(), "header and one line per step: " + csv);
        for (int i = 1; i <= 4; i++) {
            String[] f = csv.get(i).split(",");
            assertEquals(Integer.toString(i), f[0]);
            assertTrue(Float.isFinite(Float.parseFloat(f[1])) && Float.parseFloat(f[1]) > 0, csv.get(i));
        }
        java.awt.image.BufferedImage png = javax.imageio.ImageIO.read(out.resolve(TrainingDefaults.LOSS_CURVE).toFile());
        assertEquals(LossCurve.WIDTH, png.getWidth());
        assertEquals(LossCurve.HEIGHT, png.getHeight());
        for (String f : new String[] {"config.json", "diffusion_pytorch_model.safetensors", "ema/config.json",
                "ema/diffusion_pytorch_model.safetensors", "scheduler_config.json", "training_state.safetensors"}) {
            assertTrue(Files.isRegularFile(out.resolve(f)), "missing " + f + " in " + out);
        }
        assertEquals(TrainerTest.tiny(), Checkpoint.readConfig(out));
        UNet2DLayout layout = UNet2DLayout.of(TrainerTest.tiny());
        Checkpoint.readWeights(out.resolve("diffusion_pytorch_model.safetensors"), layout);
        Checkpoint.readWeights(out.resolve("ema/diffusion_pytorch_model.safetensors"), layout);
        String sched = Files.readString(out.resolve("scheduler_config.json"));
        assertTrue(sched.contains("\"v_prediction\"") && sched.contains("\"scaled_linear\""), sched);
        try (SafeTensors.Reader rd = SafeTensors.open(out.resolve("training_state.safetensors"))) {
            assertEquals("4", rd.metadata().get("step"));
            assertEquals("7", rd.metadata().get("noise_seed"));
            assertEquals("3", rd.metadata().get("batch_size"));
        }
    }

    @Test
    void badOptionsAreRefused() {
        for (String[] args : new String[][] {{"train", "--steps", "0"}, {"train", "--data", "imagenet"},
                {"train", "--lr", "abc"}, {"train", "--prediction-type", "noise"}, {"train", "--bogus", "1"},
                {"train", "--steps"}, {"train", "--ema-decay", "1.5"}}) {
            CliRun r = run(args);
            assertEquals(2, r.exit(), String.join(" ", args) + ": " + r);
            assertTrue(r.err().startsWith("error: train") || r.err().startsWith("error: "), r.err());
        }
        CliRun missing = run("train", "--data", "fashion-mnist", "--data-dir", "/nonexistent-d4j", "--backend", "cpu");
        assertEquals(1, missing.exit(), missing.toString());
        assertTrue(missing.err().contains("no Fashion-MNIST images"), missing.err());
        CliRun help = run("train", "--help");
        assertEquals(0, help.exit());
        assertTrue(help.out().contains("--prediction-type"), help.out());
        assertTrue(help.out().startsWith("usage: diffusion4j train ") && help.out().contains("[--data=KIND]"), help.out());
        CliRun usage = run("help");
        assertTrue(usage.out().contains("\n  train "), usage.out());
    }

    @Test
    void commandReleasesNativeMemory(@TempDir Path dir) throws Exception {
        Path config = dir.resolve("tiny.json");
        Files.writeString(config, TrainerTest.tiny().toJson());
        try (Backend probe = Backend.open(Device.CPU)) {
            long before = probe.liveBytes();
            CliRun r = run("train", "--config", config.toString(), "--steps", "2", "--batch-size", "2", "--out",
                    dir.resolve("o").toString(), "--backend", "cpu");
            assertEquals(0, r.exit(), r.toString());
            assertEquals(before, probe.liveBytes(), "native bytes after the command");
        }
    }

    /**
     * --class-conditional on an image folder with one sub-folder per class: num_class_embeds = classes + 1, the
     * sorted folder names and the null class in class_labels.json (also beside ema/config.json); the run resumes; the
     * options that do not fit are refused.
     */
    @Test
    void classConditionalTrainingOnSubfolders(@TempDir Path dir) throws Exception {
        Path data = dir.resolve("data");
        for (String cls : new String[] {"zebra", "ant"}) {
            Files.createDirectories(data.resolve(cls));
            for (int k = 0; k < 3; k++) {
                java.awt.image.BufferedImage img = new java.awt.image.BufferedImage(12, 12,
                        java.awt.image.BufferedImage.TYPE_BYTE_GRAY);
                img.getRaster().setSample(k, k, 0, cls.equals("ant") ? 255 : 90);
                javax.imageio.ImageIO.write(img, "png", data.resolve(cls).resolve(k + ".png").toFile());
            }
        }
        Path config = dir.resolve("tiny.json");
        Files.writeString(config, TrainerTest.tiny().toJson());
        Path out = dir.resolve("out");
        CliRun r = run("train", "--config", config.toString(), "--data", "images", "--data-dir", data.toString(),
                "--class-conditional", "--cond-drop-prob", "0.25", "--steps", "2", "--batch-size", "2", "--out",
                out.toString(), "--backend", "cpu");
        assertEquals(0, r.exit(), r.toString());
        assertTrue(r.out().contains("2 classes by sub-folder"), r.out());
        assertEquals(3, Checkpoint.readConfig(out).numClassEmbeds());
        io.diffusion4j.model.ClassLabels classes = io.diffusion4j.model.ClassLabels.read(out);
        assertEquals(new io.diffusion4j.model.ClassLabels(List.of("ant", "zebra"), 2), classes);
        assertEquals(classes, io.diffusion4j.model.ClassLabels.read(out.resolve("ema")));
        assertEquals(0.25, Checkpoint.readOptions(out).condDropProb());
        CliRun resumed = run("train", "--resume", out.toString(), "--steps", "3", "--backend", "cpu");
        assertEquals(0, resumed.exit(), resumed.toString());
        CliRun changed = run("train", "--resume", out.toString(), "--steps", "4", "--cond-drop-prob", "0.5", "--backend", "cpu");
        assertEquals(2, changed.exit(), changed.toString());
        assertTrue(changed.err().contains("was trained with --cond-drop-prob 0.25"), changed.err());

        CliRun procedural = run("train", "--class-conditional", "--backend", "cpu");
        assertEquals(2, procedural.exit());
        assertTrue(procedural.err().contains("--class-conditional needs labelled data"), procedural.err());
        CliRun noFlag = run("train", "--cond-drop-prob", "0.2", "--backend", "cpu");
        assertEquals(2, noFlag.exit());
        assertTrue(noFlag.err().contains("--cond-drop-prob applies to class-conditional training"), noFlag.err());
        CliRun badP = run("train", "--class-conditional", "--data", "fashion-mnist", "--cond-drop-prob", "1", "--backend", "cpu");
        assertEquals(2, badP.exit());
        assertTrue(badP.err().contains("--cond-drop-prob must be in [0, 1)"), badP.err());
        javax.imageio.ImageIO.write(new java.awt.image.BufferedImage(12, 12, java.awt.image.BufferedImage.TYPE_BYTE_GRAY),
                "png", data.resolve("loose.png").toFile());
        CliRun loose = run("train", "--config", config.toString(), "--data", "images", "--data-dir", data.toString(),
                "--class-conditional", "--steps", "1", "--out", dir.resolve("o2").toString(), "--backend", "cpu");
        assertEquals(1, loose.exit(), loose.toString());
        assertTrue(loose.err().contains("one sub-folder per class"), loose.err());
    }
}
