package io.diffusion4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.diffusion4j.Device;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.testutil.DeviceBackends;
import io.diffusion4j.testutil.TinyUNet;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code --precision} of the commands that compute (DeviceOptions): accepted by each, applied to the backend they
 * open, recorded in a training run's state, refused for tf32 and bf16 on cpu as a command-line error, and shown by
 * {@code info}.
 */
class PrecisionOptionTest {
    static final String[] COMMANDS = {"train", "sample", "serve", "eval-nll"};

    /** The arguments a command needs besides --precision and --backend (a checkpoint that does not exist). */
    static String[] required(String command, Path dir) {
        String missing = dir.resolve("missing").toString();
        return switch (command) {
            case "sample", "eval-nll" -> new String[] {"--checkpoint", missing};
            case "serve" -> new String[] {"--model", "a=" + missing};
            default -> new String[] {"--data", "fashion-mnist", "--data-dir", missing};
        };
    }

    static CliRun run(String command, Path dir, String... args) {
        String[] req = required(command, dir);
        String[] all = new String[1 + req.length + args.length];
        all[0] = command;
        System.arraycopy(req, 0, all, 1, req.length);
        System.arraycopy(args, 0, all, 1 + req.length, args.length);
        return CliRun.of(all);
    }

    @Test
    void tf32AndBf16OnCpuAreCommandLineErrors(@TempDir Path dir) {
        for (String c : COMMANDS) {
            for (String p : new String[] {"tf32", "bf16", "BF16"}) {
                CliRun r = run(c, dir, "--precision", p, "--backend", "cpu");
                assertEquals(Main.USAGE_ERROR, r.exit(), c + " " + p + ": " + r);
                assertTrue(r.err().startsWith("error: " + c + ": --precision " + p.toLowerCase()
                        + ": the cpu backend computes fp32 only"), r.toString());
                assertTrue(r.err().contains("usage: diffusion4j " + c), r.toString());
            }
        }
        // the demo picks its device itself (no GPU here: cpu) and sets the precision through the Java API
        CliRun demo = CliRun.of("demo", "--precision", "bf16", "--out", dir.resolve("demo").toString());
        assertEquals(Main.USAGE_ERROR, demo.exit(), demo.toString());
        assertTrue(demo.err().contains("--precision bf16: the cpu backend computes fp32 only"), demo.toString());
    }

    @Test
    void anUnknownPrecisionIsACommandLineError(@TempDir Path dir) {
        for (String c : COMMANDS) {
            CliRun r = run(c, dir, "--precision", "fp16");
            assertEquals(Main.USAGE_ERROR, r.exit(), c + ": " + r);
            assertTrue(r.err().contains("--precision: unknown precision 'fp16': expected fp32, tf32 or bf16"), r.toString());
        }
    }

    /** Each command takes the option and goes on to its own work (here: a checkpoint or data that is missing). */
    @Test
    void everyCommandAcceptsTheOption(@TempDir Path dir) {
        for (String c : COMMANDS) {
            for (String[] args : new String[][] {{"--precision", "fp32", "--backend", "cpu"},
                {"--precision", "bf16", "--backend", "cuda-sim"}, {"--precision", "TF32", "--backend", "cuda-sim"}}) {
                CliRun r = run(c, dir, args);
                assertEquals(Main.FAILED, r.exit(), c + " " + String.join(" ", args) + ": " + r);
                assertTrue(!r.err().contains("usage:") && !r.err().contains("precision"), r.toString());
            }
        }
        CliRun help = CliRun.of("train", "--help");
        String text = help.out().replaceAll("\\s+", " ");
        assertTrue(text.contains("--precision=P") && text.contains("(default: tf32 on the GPU backends cuda and cuda-sim, "
                + "fp32 on cpu, which computes fp32 only)"), help.out());
    }

    /** Without --backend the automatic choice may open cpu: tf32 asked for there is refused the same way. */
    @Test
    void tf32WithTheAutomaticChoiceOnCpuIsRefused(@TempDir Path dir) throws Exception {
        assumeFalse(DeviceBackends.usable(Device.CUDA), "a CUDA device is usable here: the automatic choice is cuda");
        Path config = dir.resolve("tiny.json");
        Files.writeString(config, TinyUNet.config(1).toJson());
        CliRun r = CliRun.of("train", "--config", config.toString(), "--steps", "1", "--batch-size", "2", "--out",
                dir.resolve("o").toString(), "--precision", "tf32");
        assertEquals(Main.USAGE_ERROR, r.exit(), r.toString());
        assertTrue(r.err().contains("error: --precision tf32: the cpu backend computes fp32 only"), r.toString());
    }

    static String statePrecision(Path checkpoint) throws Exception {
        try (SafeTensors.Reader rd = SafeTensors.open(checkpoint.resolve("training_state.safetensors"))) {
            return rd.metadata().get("precision");
        }
    }

    /**
     * The precision a training run used is in its training state: the default of each backend (tf32 on cuda-sim,
     * fp32 on cpu) or the one asked for; a resumed run keeps its checkpoint's where the backend computes in it.
     */
    @Test
    void trainRecordsThePrecisionAndSampleReportsIt(@TempDir Path dir) throws Exception {
        Path config = dir.resolve("tiny.json");
        Files.writeString(config, TinyUNet.config(1).toJson());
        Path sim = dir.resolve("sim");
        CliRun a = CliRun.of("train", "--config", config.toString(), "--steps", "1", "--batch-size", "2", "--out",
                sim.toString(), "--backend", "cuda-sim", "--seed", "3");
        assertEquals(0, a.exit(), a.toString());
        assertTrue(Pattern.compile("(?m)^train: .* on cuda-sim \\(.*\\), precision tf32$").matcher(a.out()).find(), a.out());
        assertEquals("tf32", statePrecision(sim));

        // resumed on cpu, which cannot compute tf32: the cpu's fp32, recorded as such
        CliRun b = CliRun.of("train", "--resume", sim.toString(), "--steps", "2", "--backend", "cpu");
        assertEquals(0, b.exit(), b.toString());
        assertTrue(b.out().contains("precision fp32"), b.out());
        assertEquals("fp32", statePrecision(sim));

        Path cpu = dir.resolve("cpu");
        CliRun c = CliRun.of("train", "--config", config.toString(), "--steps", "1", "--batch-size", "2", "--out",
                cpu.toString(), "--backend", "cpu", "--precision", "fp32");
        assertEquals(0, c.exit(), c.toString());
        assertEquals("fp32", statePrecision(cpu));

        CliRun s = CliRun.of("sample", "--checkpoint", cpu.toString(), "--n", "1", "--steps", "2", "--out",
                dir.resolve("samples").toString(), "--backend", "cuda-sim", "--precision", "bf16");
        assertEquals(0, s.exit(), s.toString());
        Matcher m = Pattern.compile("(?m)^sample: .* on cuda-sim \\(.*\\), precision (\\S+)$").matcher(s.out());
        assertTrue(m.find(), s.out());
        assertEquals("bf16", m.group(1));
    }

    @Test
    void infoShowsEachBackendsPrecisions() {
        CliRun r = CliRun.of("info");
        assertEquals(0, r.exit(), r.toString());
        assertTrue(Pattern.compile("(?m)^  cpu +available .*\\n.*library.*\\n +precision +fp32 \\(cpu computes fp32 only\\)$")
                .matcher(r.out()).find(), r.out());
        assertTrue(Pattern.compile("(?m)^  cuda-sim +available .*\\n.*library.*\\n +precision +tf32 default, supports "
                + "fp32,tf32,bf16$").matcher(r.out()).find(), r.out());
    }
}
