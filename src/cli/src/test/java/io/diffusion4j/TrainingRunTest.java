package io.diffusion4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.cli.Main;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.train.Checkpoint;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Training from Java: the API run equals the train command's run with the same settings bit for bit (weights,
 * EMA, optimiser state), the progress callback sees every step, checkpoints load as pipelines and resume from
 * the command line, and in-memory data trains.
 */
class TrainingRunTest {
    @TempDir
    Path dir;

    static int cli(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        int rc = Main.run(args, new PrintStream(o, true, StandardCharsets.UTF_8), new PrintStream(o, true, StandardCharsets.UTF_8));
        if (rc != 0) throw new AssertionError("exit " + rc + ": " + o.toString(StandardCharsets.UTF_8));
        return rc;
    }

    static void assertSameFile(Path a, Path b) throws IOException {
        assertArrayEquals(Files.readAllBytes(a), Files.readAllBytes(b), a + " vs " + b);
    }

    @Test
    void equalsTheTrainCommandBitForBitAndReportsEveryStep() throws IOException {
        long seed = TestRandom.fresh().nextLong();
        Path config = dir.resolve("config.json");
        Files.writeString(config, ApiTestSupport.tinyConfigJson(1));
        Path viaCli = dir.resolve("cli");
        cli("train", "--config", config.toString(), "--steps", "5", "--batch-size", "3", "--lr", "2e-3", "--warmup", "2",
                "--ema-decay", "0.99", "--prediction-type", "v_prediction", "--min-snr-gamma", "5", "--seed",
                Long.toString(seed), "--out", viaCli.toString(), "--backend", "cpu");
        Path viaApi = dir.resolve("api");
        List<TrainingStep> seen = new ArrayList<>();
        try (Diffusion4j d4j = Diffusion4j.open(Device.CPU);
             TrainingRun run = d4j.newTrainingRun().modelConfigJson(Files.readString(config)).steps(5).batchSize(3)
                     .learningRate(2e-3).warmupSteps(2).emaDecay(0.99).predictionType("v_prediction").minSnrGamma(5)
                     .seed(seed).progress(seen::add).build()) {
            assertEquals(0, run.completedSteps());
            TrainingStep last = run.train();
            assertEquals(5, run.completedSteps());
            assertEquals(last, seen.get(4));
            assertNull(run.train(), "nothing left to train");
            run.save(viaApi);
        }
        assertEquals(5, seen.size());
        for (int i = 0; i < 5; i++) {
            TrainingStep s = seen.get(i);
            assertEquals(i + 1, s.step());
            assertEquals(5, s.totalSteps());
            assertTrue(Double.isFinite(s.loss()) && s.loss() > 0, s.toString());
            assertTrue(s.gradNorm() > 0, s.toString());
            assertEquals(2e-3 * Math.min(1.0, (i + 1) / 2.0), s.learningRate(), 1e-15);
            if (i > 0) assertTrue(s.elapsedSeconds() >= seen.get(i - 1).elapsedSeconds());
        }
        for (String f : new String[] {Checkpoint.CONFIG, Checkpoint.WEIGHTS, "ema/" + Checkpoint.WEIGHTS, Checkpoint.SCHEDULER,
            Checkpoint.TRAINING_STATE, "loss.csv"}) {
            assertSameFile(viaCli.resolve(f), viaApi.resolve(f));
        }
        assertTrue(Files.size(viaApi.resolve("loss_curve.png")) > 0);
        // and the command line resumes an API checkpoint: 5 + 2 steps via API+CLI equal 7 via the API
        cli("train", "--resume", viaApi.toString(), "--steps", "7", "--backend", "cpu");
        Path seven = dir.resolve("seven");
        try (Diffusion4j d4j = Diffusion4j.open(Device.CPU);
             TrainingRun run = d4j.newTrainingRun().modelConfigJson(Files.readString(config)).steps(7).batchSize(3)
                     .learningRate(2e-3).warmupSteps(2).emaDecay(0.99).predictionType("v_prediction").minSnrGamma(5)
                     .seed(seed).build()) {
            run.train();
            run.save(seven);
        }
        assertSameFile(seven.resolve(Checkpoint.WEIGHTS), viaApi.resolve(Checkpoint.WEIGHTS));
        assertSameFile(seven.resolve("ema/" + Checkpoint.WEIGHTS), viaApi.resolve("ema/" + Checkpoint.WEIGHTS));
    }

    @Test
    void trainsOnArraysAndTheCheckpointSamples() throws IOException {
        TestRandom r = TestRandom.fresh();
        int n = 6;
        float[] images = new float[n * 2 * 8 * 8];
        for (int i = 0; i < images.length; i++) images[i] = (float) Math.tanh(r.gaussians(1, 1.0)[0]);
        TrainingData data = TrainingData.fromArray(images, n, 2, 8, 8);
        images[0] = Float.NaN; // copied: later changes do not matter
        try (Diffusion4j d4j = Diffusion4j.open(Device.CPU)) {
            Path ck = dir.resolve("arrays");
            try (TrainingRun run = d4j.newTrainingRun().data(data).modelConfigJson(ApiTestSupport.tinyConfigJson(2))
                    .steps(3).batchSize(2).seed(r.nextLong()).build()) {
                assertTrue(run.dataDescription().contains("6 images"), run.dataDescription());
                run.step();
                assertEquals(1, run.completedSteps());
                run.train();
                assertEquals(3, run.completedSteps());
                run.save(ck);
            }
            try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
                Samples s = pipe.sample(SamplerConfig.ddim(3), 2);
                assertEquals(2, s.channels());
                for (float v : s.toFloatArray()) assertTrue(Float.isFinite(v));
                assertThrows(IllegalStateException.class, s::images, "2 channels have no image form");
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> d4j.newTrainingRun().data(data).modelConfigJson(ApiTestSupport.tinyConfigJson(1)).build());
            assertTrue(e.getMessage().contains("channels"), e.getMessage());
            // resuming an in-memory run from the command line is refused (the data cannot be found again)
            ByteArrayOutputStream o = new ByteArrayOutputStream();
            int rc = Main.run(new String[] {"train", "--resume", ck.toString(), "--steps", "4"}, new PrintStream(o, true,
                    StandardCharsets.UTF_8), new PrintStream(o, true, StandardCharsets.UTF_8));
            assertEquals(1, rc, o.toString(StandardCharsets.UTF_8));
        }
        assertThrows(IllegalArgumentException.class, () -> TrainingData.fromArray(new float[10], 1, 1, 3, 3));
        assertThrows(IllegalArgumentException.class, () -> TrainingData.fromArray(new float[] {Float.NaN}, 1, 1, 1, 1));
    }

    @Test
    void closedRunsRefuseWorkAndBuilderChecksArguments() throws IOException {
        try (Diffusion4j d4j = Diffusion4j.open(Device.CPU)) {
            TrainingRun run = d4j.newTrainingRun().modelConfigJson(ApiTestSupport.tinyConfigJson(1)).steps(2).batchSize(2).build();
            run.close();
            assertThrows(IllegalStateException.class, run::step);
            assertThrows(IllegalStateException.class, () -> run.save(dir.resolve("x")));
            assertFalse(Files.exists(dir.resolve("x")));
            TrainingRun.Builder b = d4j.newTrainingRun();
            assertThrows(IllegalArgumentException.class, () -> b.steps(0));
            assertThrows(IllegalArgumentException.class, () -> b.batchSize(0));
            assertThrows(IllegalArgumentException.class, () -> b.learningRate(Double.NaN));
            assertThrows(IllegalArgumentException.class, () -> b.emaDecay(1.5));
            assertThrows(IllegalArgumentException.class, () -> b.predictionType("noise"));
            assertThrows(IllegalArgumentException.class, () -> b.betaSchedule("cosine"));
            assertThrows(IllegalArgumentException.class, () -> b.modelConfigJson("{\"block_out_channels\": 3}"));
            IOException e = assertThrows(IOException.class, () -> b.initFrom(dir.resolve("none")).build());
            assertTrue(e.getMessage().contains("none"), e.getMessage());
        }
    }
}
