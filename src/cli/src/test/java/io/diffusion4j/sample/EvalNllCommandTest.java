package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.cli.CliRun;
import io.diffusion4j.io.Json;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.testutil.TinyUNet;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.FashionMnist;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The eval-nll command end to end on a tiny 1-channel checkpoint with T = 12: output, determinism, errors. */
class EvalNllCommandTest {
    @TempDir
    Path dir;

    Path checkpoint() throws IOException {
        Path ck = dir.resolve("ck");
        Files.createDirectories(ck.resolve("ema"));
        Files.writeString(ck.resolve(Checkpoint.CONFIG), SampleCommandTest.config().toJson());
        TinyUNet.writeWeights(ck.resolve(Checkpoint.WEIGHTS), SampleCommandTest.config(), 1);
        TinyUNet.writeWeights(ck.resolve("ema").resolve(Checkpoint.WEIGHTS), SampleCommandTest.config(), 2);
        Files.writeString(ck.resolve(Checkpoint.SCHEDULER), Json.write(Checkpoint.schedulerConfig(
                NoiseSchedule.of(BetaSchedule.LINEAR, 12, 1e-3, 0.2), PredictionType.EPSILON)));
        return ck;
    }

    static double total(String out) {
        Matcher m = Pattern.compile("total ([0-9.]+) ± ([0-9.]+) bits/dim").matcher(out);
        assertTrue(m.find(), out);
        return Double.parseDouble(m.group(1));
    }

    @Test
    void printsTheBoundDeterministically() throws IOException {
        Path ck = checkpoint();
        String[] args = {"eval-nll", "--checkpoint", ck.toString(), "--data", "procedural", "--n", "3", "--batch-size",
                "2", "--seed", "7", "--backend", "cpu"};
        CliRun a = SampleCommandTest.run(args), b = SampleCommandTest.run(args);
        assertEquals(0, a.exit(), a.err() + a.out());
        assertTrue(a.out().contains("EMA weights"), a.out());
        assertTrue(a.out().contains("exact bound (all 12 terms)"), a.out());
        for (String s : new String[] {"prior L_T", "vb (sum of terms)", "decoder L_0", "KL L_1..L_{T-1}", "s per image"}) {
            assertTrue(a.out().contains(s), s + " missing: " + a.out());
        }
        assertTrue(a.err().contains("100%") && a.err().contains("24/24 model calls"), a.err());
        assertEquals(a.out().replaceAll("load .*", ""), b.out().replaceAll("load .*", ""), "same seed, same numbers");
        double t = total(a.out());
        assertTrue(t > 0 && Double.isFinite(t), a.out());
        CliRun raw = SampleCommandTest.run("eval-nll", "--checkpoint", ck.toString(), "--data",
                "procedural", "--n", "2", "--no-ema", "--timestep-stride", "5", "--backend", "cpu");
        assertEquals(0, raw.exit(), raw.err() + raw.out());
        assertTrue(raw.out().contains("raw weights") && raw.out().contains("ESTIMATE: 3 of 11 KL terms (stride 5)"), raw.out());
        assertTrue(raw.out().contains("(estimate, stride 5)"), raw.out());
    }

    @Test
    void refusesBadOptions() throws IOException {
        CliRun r = SampleCommandTest.run("eval-nll", "--data", "procedural");
        assertEquals(2, r.exit());
        assertTrue(r.err().contains("--checkpoint DIR is required"), r.err());
        r = SampleCommandTest.run("eval-nll", "--checkpoint", "x", "--data", "cifar");
        assertEquals(2, r.exit());
        assertTrue(r.err().contains("--data must be fashion-mnist or procedural"), r.err());
        r = SampleCommandTest.run("eval-nll", "--checkpoint", "x", "--timestep-stride", "0");
        assertTrue(r.err().contains("--timestep-stride must be >= 1"), r.err());
        r = SampleCommandTest.run("eval-nll", "--checkpoint", dir.resolve("none").toString(), "--data", "procedural");
        assertEquals(1, r.exit());
        assertTrue(r.err().contains("no such checkpoint directory"), r.err());
        // Fashion-MNIST is 28x28: the 8x8 model does not fit it
        if (Files.exists(FashionMnist.DEFAULT_DIRECTORY.resolve(FashionMnist.TEST_IMAGES))) {
            r = SampleCommandTest.run("eval-nll", "--checkpoint", checkpoint().toString(), "--backend", "cpu");
            assertEquals(1, r.exit());
            assertTrue(r.err().contains("do not fit the model"), r.err());
        }
        r = SampleCommandTest.run("eval-nll", "--help");
        assertEquals(0, r.exit());
        assertTrue(r.out().contains("T model calls") && r.out().contains("ESTIMATE"), r.out());
    }
}
