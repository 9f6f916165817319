package io.diffusion4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.io.Json;
import io.diffusion4j.io.Npy;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.testutil.TinyUNet;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The command line on hostile model folders and inputs: every refusal is one line on stderr naming the file and
 * exit code 1, never a stack trace, an ArithmeticException or an OutOfMemoryError, and nothing large is allocated
 * before the sizes are checked.
 */
class HostileInputTest {
    @TempDir
    Path dir;

    Path checkpoint(UNet2DConfig cfg, UNet2DConfig weightsOf) throws IOException {
        Path ck = dir.resolve("ck");
        Files.createDirectories(ck);
        Files.writeString(ck.resolve(Checkpoint.CONFIG), cfg.toJson());
        TinyUNet.writeWeights(ck.resolve(Checkpoint.WEIGHTS), weightsOf, 1);
        Files.writeString(ck.resolve(Checkpoint.SCHEDULER), Json.write(Checkpoint.schedulerConfig(
                NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02), PredictionType.EPSILON)));
        return ck;
    }

    static UNet2DConfig withChanges(UNet2DConfig c, String key, Object value) {
        LinkedHashMap<String, Object> m = c.toMap();
        m.put(key, value);
        return UNet2DConfig.fromMap(m);
    }

    static void assertOneLineFailure(CliRun r, String... expect) {
        assertEquals(1, r.exit(), r.toString());
        String err = r.err().strip();
        assertFalse(err.contains("\n\tat ") || err.contains("Exception:") || err.contains("Error:"), "a stack trace: " + r);
        for (String e : expect) assertTrue(err.contains(e), "'" + e + "' missing: " + r);
    }

    /** config.json of a huge model beside a small weights file: refused at start-up, sample and serve. */
    @Test
    void hugeConfigIsRefusedBeforeAllocating() throws IOException {
        UNet2DConfig tiny = TinyUNet.config(3);
        for (long c : new long[] {3072, 2048}) {
            LinkedHashMap<String, Object> m = tiny.toMap();
            m.put("block_out_channels", List.of(c, c, c));
            m.put("down_block_types", List.of("DownBlock2D", "DownBlock2D", "DownBlock2D"));
            m.put("up_block_types", List.of("UpBlock2D", "UpBlock2D", "UpBlock2D"));
            m.put("layers_per_block", 2L);
            UNet2DConfig huge = UNet2DConfig.fromMap(m);
            Path ck = checkpoint(huge, tiny);
            assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--out", dir.resolve("o").toString(),
                    "--backend", "cpu", "--n", "1", "--max-memory", "100000"), ck.resolve(Checkpoint.WEIGHTS).toString(),
                    "above the limit");
            assertOneLineFailure(CliRun.of("serve", "--model", "m=" + ck, "--port", "0", "--backend", "cpu",
                    "--max-memory", "100000"), "above the limit");
        }
    }

    /** A large sample_size is refused from the estimate with both numbers and the option that raises the limit. */
    @Test
    void activationMemoryIsEstimatedBeforeTheRun() throws IOException {
        UNet2DConfig big = withChanges(TinyUNet.config(1), "sample_size", 4096L);
        Path ck = checkpoint(big, TinyUNet.config(1));
        assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--out", dir.resolve("o").toString(),
                "--backend", "cpu", "--max-memory", "4"), "needs about", "limit 4.0 GiB", "--max-memory");
        assertOneLineFailure(CliRun.of("serve", "--model", "m=" + ck, "--port", "0", "--backend", "cpu", "--max-memory",
                "4"), "needs about", "--max-memory");
        Path cfg = dir.resolve("big.json");
        Files.writeString(cfg, big.toJson());
        assertOneLineFailure(CliRun.of("train", "--config", cfg.toString(), "--steps", "1", "--out",
                dir.resolve("t").toString(), "--backend", "cpu", "--max-memory", "4"), "needs about", "--max-memory");
    }

    /** --init-noise: the header before the data, non-finite values refused with their index. */
    @Test
    void initNoiseIsCheckedBeforeAndAfterReading() throws IOException {
        Path ck = checkpoint(TinyUNet.config(1), TinyUNet.config(1));
        Path noise = dir.resolve("x.npy");
        float[] x = new float[2 * 64];
        x[64 + 9] = Float.NaN;
        Npy.write(noise, new long[] {2, 1, 8, 8}, x);
        String out = dir.resolve("o").toString();
        assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--init-noise", noise.toString(), "--out",
                out, "--backend", "cpu"), noise.toString(), "[1, 0, 1, 1]", "NaN", "finite");
        x[64 + 9] = Float.POSITIVE_INFINITY;
        Npy.write(noise, new long[] {2, 1, 8, 8}, x);
        assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--init-noise", noise.toString(), "--out",
                out, "--backend", "cpu"), "Infinity");
        Files.write(noise, NpyLimitsHeader.npy("1099511627776, 1099511627776, 1, 1"));
        assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--init-noise", noise.toString(), "--out",
                out, "--backend", "cpu"), noise.toString(), "more elements");
        assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--init-noise", dir.toString(), "--out",
                out, "--backend", "cpu"), dir.toString(), "directory");
    }

    /** ema/ present but unusable: an error naming it; --no-ema uses the raw weights. */
    @Test
    void unusableEmaIsAnErrorNotAFallback() throws IOException {
        Path ck = checkpoint(TinyUNet.config(1), TinyUNet.config(1));
        Files.createDirectories(ck.resolve("ema"));
        String out = dir.resolve("o").toString();
        assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--out", out, "--backend", "cpu", "--n",
                "1", "--steps", "2"), ck.resolve("ema").toString(), "--no-ema");
        assertOneLineFailure(CliRun.of("serve", "--model", "m=" + ck, "--port", "0", "--backend", "cpu"), "--no-ema");
        CliRun ok = CliRun.of("sample", "--checkpoint", ck.toString(), "--out", out, "--backend", "cpu", "--n", "1",
                "--steps", "2", "--no-ema");
        assertEquals(0, ok.exit(), ok.toString());
    }

    /** A config.json that is a directory: the message names it (it said only "Is a directory"). */
    @Test
    void ioErrorsNameThePath() throws IOException {
        Path ck = checkpoint(TinyUNet.config(1), TinyUNet.config(1));
        Files.delete(ck.resolve(Checkpoint.CONFIG));
        Files.createDirectories(ck.resolve(Checkpoint.CONFIG));
        assertOneLineFailure(CliRun.of("sample", "--checkpoint", ck.toString(), "--out", dir.resolve("o").toString(),
                "--backend", "cpu"), ck.resolve(Checkpoint.CONFIG).toString(), "directory");
    }

    /** Builds .npy bytes with an arbitrary header shape and no data. */
    static final class NpyLimitsHeader {
        static byte[] npy(String shape) {
            String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
            String header = dict + " ".repeat((64 - (10 + dict.length() + 1) % 64) % 64) + "\n";
            byte[] h = header.getBytes(java.nio.charset.StandardCharsets.ISO_8859_1);
            byte[] out = new byte[10 + h.length];
            byte[] magic = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (byte) h.length, (byte) (h.length >> 8)};
            System.arraycopy(magic, 0, out, 0, 10);
            System.arraycopy(h, 0, out, 10, h.length);
            return out;
        }
    }
}
