package io.diffusion4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.train.Checkpoint;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The demo command, shortened to a few steps: it trains, saves, samples and writes valid PNGs, and says where. */
class DemoCommandTest {
    @TempDir
    Path dir;

    static CliRun run(String... args) {
        return CliRun.of(args);
    }

    static final byte[] PNG_SIGNATURE = {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

    static BufferedImage png(Path f) throws Exception {
        byte[] bytes = Files.readAllBytes(f);
        assertTrue(bytes.length > PNG_SIGNATURE.length && Arrays.equals(PNG_SIGNATURE, Arrays.copyOf(bytes, 8)),
                f + " is not a PNG file");
        BufferedImage img = ImageIO.read(f.toFile());
        assertTrue(img != null, f + " does not decode");
        return img;
    }

    @Test
    void shortDemoWritesCheckpointGridAndSamples() throws Exception {
        Path out = dir.resolve("demo");
        CliRun r = run("demo", "--out", out.toString(), "--steps", "3", "--samples", "5", "--sampling-steps", "2",
                "--backend", "cpu");
        assertEquals(0, r.exit(), r.out() + r.err());
        BufferedImage grid = png(out.resolve("grid.png"));
        assertEquals(4 * (3 * (28 + 2) + 2), grid.getWidth()); // ceil(sqrt(5)) = 3 columns, enlarged 4x by default
        assertEquals(4 * (2 * (28 + 2) + 2), grid.getHeight());
        BufferedImage compare = png(out.resolve("compare.png")); // training examples | 4-pixel band | samples
        assertEquals(4 * (2 * (3 * (28 + 2) + 2) + 4), compare.getWidth());
        assertEquals(grid.getHeight(), compare.getHeight());
        for (int i = 0; i < 5; i++) {
            BufferedImage img = png(out.resolve("samples").resolve(String.format("sample_%05d.png", i)));
            assertEquals(28, img.getWidth());
            assertEquals(28, img.getHeight());
        }
        assertTrue(!Files.exists(out.resolve("samples").resolve("sample_00005.png")));
        Path ck = out.resolve("checkpoint");
        for (String f : new String[] {Checkpoint.CONFIG, Checkpoint.WEIGHTS, "ema/" + Checkpoint.WEIGHTS, Checkpoint.SCHEDULER,
            Checkpoint.TRAINING_STATE, "loss.csv"}) {
            assertTrue(Files.isRegularFile(ck.resolve(f)), f + " missing");
        }
        png(ck.resolve("loss_curve.png"));
        assertEquals(4, Files.readAllLines(ck.resolve("loss.csv")).size()); // header + 3 steps
        for (String phase : new String[] {"startup", "training", "saving", "loading", "sampling", "writing"}) {
            assertTrue(r.out().matches("(?s).*\\b" + phase + "\\s+\\d+\\.\\d\\d s.*"), phase + " timing missing:\n" + r.out());
        }
        assertTrue(r.out().contains(out.resolve("grid.png").toAbsolutePath().toString()), r.out());
        assertTrue(r.out().contains("EMA weights"), r.out());
        assertTrue(r.out().contains("train: step     3/3"), r.out());
        // the same seed gives the same grid
        Path again = dir.resolve("again");
        assertEquals(0, run("demo", "--out", again.toString(), "--steps", "3", "--samples", "5", "--sampling-steps", "2",
                "--backend", "cpu").exit());
        assertTrue(Arrays.equals(Files.readAllBytes(out.resolve("grid.png")), Files.readAllBytes(again.resolve("grid.png"))));
    }

    @Test
    void badOptionsAreRefused() {
        CliRun r = run("demo", "--steps", "0");
        assertEquals(2, r.exit());
        assertTrue(r.err().contains("--steps"), r.err());
        r = run("demo", "--frobnicate", "1");
        assertEquals(2, r.exit());
        assertTrue(r.err().contains("unknown option"), r.err());
        r = run("demo", "--help");
        assertEquals(0, r.exit());
        assertTrue(r.out().contains("demo-output"), r.out());
    }
}
