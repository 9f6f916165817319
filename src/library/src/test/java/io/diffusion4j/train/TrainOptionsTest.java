package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Min-SNR-gamma weights against hand-derived float64 forms and through the loss kernel and the trainer;
 * the options and the per-step history a checkpoint stores, and their refusal when they differ.
 */
class TrainOptionsTest {
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    /**
     * The weights, rewritten by hand without the SNR (snr = a / (1 - a), a = alphas_cumprod[t]):
     * epsilon min(snr, g) / snr = min(1, g (1 - a) / a); sample min(a / (1 - a), g);
     * v_prediction min(snr, g) / (snr + 1) = min(a, g (1 - a)). Every schedule, odd T, fresh gamma;
     * relative error <= 4e-16 (a few float64 roundings).
     */
    @Test
    void weightsMatchHandDerivedFormulas() {
        TestRandom rnd = TestRandom.fresh();
        for (BetaSchedule bs : BetaSchedule.values()) {
            int T = 37 + rnd.nextInt(980);
            NoiseSchedule s = NoiseSchedule.of(bs, T, 0.0001, 0.02);
            double gamma = 0.05 + 20 * rnd.nextDouble();
            double[] acp = s.alphasCumprod();
            double worst = 0;
            for (PredictionType p : PredictionType.values()) {
                double[] w = MinSnrWeights.weights(s, p, gamma);
                float[] table = MinSnrWeights.table(s, p, gamma);
                assertEquals(T, w.length);
                for (int t = 0; t < T; t++) {
                    double a = acp[t];
                    double ref = switch (p) {
                        case EPSILON -> Math.min(1.0, gamma * (1 - a) / a);
                        case SAMPLE -> Math.min(a / (1 - a), gamma);
                        case V_PREDICTION -> Math.min(a, gamma * (1 - a));
                    };
                    double err = Math.abs(w[t] - ref) / ref;
                    worst = Math.max(worst, err);
                    assertTrue(err <= 4e-16, String.format(Locale.ROOT, "%s %s T=%d t=%d gamma=%.6g: %.17g vs hand %.17g (%s)",
                            bs, p, T, t, gamma, w[t], ref, rnd.describe()));
                    assertEquals((float) w[t], table[t], "table = float32 of the float64 weight");
                }
            }
            System.out.printf(Locale.ROOT, "TrainOptionsTest min-SNR %s T=%d gamma=%.3f: max rel err vs hand form %.2e%n",
                    bs, T, gamma, worst);
        }
        // the limits and the clamp point
        assertEquals(1.0, MinSnrWeights.weight(0.0, PredictionType.EPSILON, 5), 0);
        assertEquals(0.0, MinSnrWeights.weight(0.0, PredictionType.SAMPLE, 5), 0);
        assertEquals(0.0, MinSnrWeights.weight(0.0, PredictionType.V_PREDICTION, 5), 0);
        assertEquals(0.0, MinSnrWeights.weight(1.0, PredictionType.EPSILON, 5), 0);
        assertEquals(5.0, MinSnrWeights.weight(1.0, PredictionType.SAMPLE, 5), 0);
        assertEquals(0.0, MinSnrWeights.weight(1.0, PredictionType.V_PREDICTION, 5), 0);
        // snr = 4 < gamma = 5: unclamped (1, 4, 0.8); snr = 9 > 5: clamped (5/9, 5, 0.5)
        assertEquals(1.0, MinSnrWeights.weight(0.8, PredictionType.EPSILON, 5), 1e-15);
        assertEquals(4.0, MinSnrWeights.weight(0.8, PredictionType.SAMPLE, 5), 1e-14);
        assertEquals(0.8, MinSnrWeights.weight(0.8, PredictionType.V_PREDICTION, 5), 1e-15);
        assertEquals(5.0 / 9, MinSnrWeights.weight(0.9, PredictionType.EPSILON, 5), 1e-15);
        assertEquals(5.0, MinSnrWeights.weight(0.9, PredictionType.SAMPLE, 5), 0);
        assertEquals(0.5, MinSnrWeights.weight(0.9, PredictionType.V_PREDICTION, 5), 1e-15);
        for (double g : new double[] {0, -1, Double.NaN, Double.POSITIVE_INFINITY}) {
            assertThrows(IllegalArgumentException.class, () -> MinSnrWeights.weight(0.5, PredictionType.EPSILON, g));
        }
        assertThrows(IllegalArgumentException.class, () -> MinSnrWeights.weight(1.5, PredictionType.EPSILON, 5));
        assertThrows(IllegalArgumentException.class, () -> TrainerTest.options(1, PredictionType.EPSILON).withMinSnrGamma(-2));
    }

    /**
     * The table goes through the native loss: with random outputs, targets and timesteps (batch 5, 3x5x7
     * images), the weighted per-sample loss and gradient are the unweighted ones times w[t_b] (rel 2e-6).
     */
    @ParameterizedTest
    @EnumSource(PredictionType.class)
    void lossKernelAppliesTheWeightOfEachSample(PredictionType p) {
        TestRandom rnd = TestRandom.fresh();
        int batch = 5, n = 3 * 5 * 7, T = 1000;
        NoiseSchedule s = NoiseSchedule.of(BetaSchedule.SCALED_LINEAR, T, 0.0001, 0.02);
        float[] w = MinSnrWeights.table(s, p, 0.5 + 9 * rnd.nextDouble());
        int[] ts = rnd.timesteps(batch, T);
        try (NativeSchedule ns = NativeSchedule.of(s);
                Tensor out = Tensor.of(cpu, rnd.gaussians(batch * n, 1), batch, 3, 5, 7);
                Tensor x0 = Tensor.of(cpu, rnd.gaussians(batch * n, 1), batch, 3, 5, 7);
                Tensor eps = Tensor.of(cpu, rnd.gaussians(batch * n, 1), batch, 3, 5, 7);
                Tensor loss = Tensor.allocate(cpu, DType.FLOAT32, batch);
                Tensor grad = Tensor.allocate(cpu, DType.FLOAT32, batch, 3, 5, 7)) {
            loss.fill(Float.NaN);
            grad.fill(Float.NaN);
            DiffusionKernels.diffusionLoss(ns, p, out, x0, eps, ts, null, loss, grad);
            float[] l0 = loss.toFloatArray(), g0 = grad.toFloatArray();
            loss.fill(Float.NaN);
            grad.fill(Float.NaN);
            DiffusionKernels.diffusionLoss(ns, p, out, x0, eps, ts, w, loss, grad);
            float[] l1 = loss.toFloatArray(), g1 = grad.toFloatArray();
            for (int b = 0; b < batch; b++) {
                double want = (double) w[ts[b]] * l0[b];
                assertEquals(want, l1[b], 2e-6 * Math.abs(want) + 1e-30, p + " loss[" + b + "] t=" + ts[b] + " " + rnd.describe());
                for (int i = 0; i < n; i++) {
                    double gw = (double) w[ts[b]] * g0[b * n + i];
                    assertEquals(gw, g1[b * n + i], 2e-6 * Math.abs(gw) + 1e-30, p + " grad " + rnd.describe());
                }
            }
        }
    }

    /**
     * The trainer passes the table: two trainers from the same seed, batch 1, one weighted with a gamma
     * below the SNR of the drawn timestep (replayed from the sampler's stream, so the weight is not 1 for any
     * prediction type) — the step-1 losses differ by exactly that weight, rel 2e-6.
     */
    @ParameterizedTest
    @EnumSource(PredictionType.class)
    void trainerWeightsTheLossOfItsTimestep(PredictionType p) {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        // the timestep the first step draws, replayed from the sampler's stream (batch, then timesteps)
        BatchSampler replay = new BatchSampler(TrainerTest.data(seed), SplitMix64.mix(seed ^ 0x6A09E667F3BCC909L), true);
        replay.next(new float[TrainerTest.data(seed).imageFloats()], 1);
        int ts = replay.nextInt(1000);
        double a = TrainerTest.schedule().alphasCumprod()[ts];
        double gamma = (0.2 + 0.6 * rnd.nextDouble()) * a / (1 - a); // below snr(t): the weight is clamped, not 1
        Trainer.Options plain = new Trainer.Options(1, 1e-3, 0, TrainerTest.options(seed, p).adamw(), 1.0,
                TrainerTest.options(seed, p).ema(), p, seed, true);
        double l0, l1;
        try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), plain)) {
            assertNull(t.lossWeights());
            l0 = t.step().loss();
        }
        try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), plain.withMinSnrGamma(gamma))) {
            assertArrayEquals(MinSnrWeights.table(TrainerTest.schedule(), p, gamma), t.lossWeights());
            l1 = t.step().loss();
        }
        double w = MinSnrWeights.table(TrainerTest.schedule(), p, gamma)[ts];
        assertTrue(Math.abs(w - 1) > 0.05, "weight " + w);
        assertEquals(w * l0, l1, 2e-6 * w * l0, p + " t=" + ts + " w=" + w + " " + rnd.describe());
    }

    /** The history and the options round-trip through the training state; differing options are refused. */
    @Test
    void checkpointKeepsHistoryAndOptions(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        Trainer.Options o = TrainerTest.options(seed, PredictionType.SAMPLE).withMinSnrGamma(5);
        LossHistory h = new LossHistory();
        try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), o)) {
            for (int i = 0; i < 3; i++) h.add(t.step());
            assertThrows(IllegalArgumentException.class, () -> Checkpoint.save(dir, t, h, java.util.Map.of("step", "1")),
                    "reserved run metadata");
            t.step(); // step 4
            LossHistory shorter = new LossHistory();
            shorter.add(1, 1, 1, 1); // ends at step 1, the trainer is at 4
            assertThrows(IllegalArgumentException.class, () -> Checkpoint.save(dir, t, shorter, java.util.Map.of()));
            h.add(4, Double.NaN, 1e-3, Double.POSITIVE_INFINITY); // non-finite values are history too
            Checkpoint.save(dir, t, h, java.util.Map.of("data", "procedural"));
        }
        Trainer.Options back = Checkpoint.readOptions(dir);
        assertEquals(o.toString(), back.toString());
        assertEquals(Checkpoint.optionsMetadata(o), Checkpoint.optionsMetadata(back));
        assertEquals(o.seed(), back.seed());
        assertEquals(o.prediction(), back.prediction());
        assertEquals("procedural", Checkpoint.readStateMetadata(dir).get("data"));
        try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed + 1);
                Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), back)) {
            LossHistory r = Checkpoint.load(dir, t);
            assertEquals(1, r.firstStep());
            assertEquals(4, r.lastStep());
            assertEquals(h.toCsv(), r.toCsv());
            assertTrue(r.toCsv().contains("\n4,nan,0.001,inf\n"), r.toCsv());
            r.add(t.step()); // continues at step 5
            assertEquals(5, r.lastStep());
        }
        // every stored option must match the trainer's
        for (Trainer.Options other : List.of(o.withMinSnrGamma(0), o.withMinSnrGamma(4), o.withLearningRate(2e-3, 10),
                o.withLearningRate(3e-3, 11), o.withEma(io.diffusion4j.kernels.EmaSchedule.power(0.99, 0, 0, 1, 0.75)))) {
            try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                    Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), other)) {
                IOException e = assertThrows(IOException.class, () -> Checkpoint.load(dir, t), other.toString());
                assertTrue(e.getMessage().contains("resume would not be exact") && e.getMessage().contains(dir.toString()),
                        e.getMessage());
                assertEquals(0, t.stepCount());
            }
        }
        // a history that does not end at the checkpoint's step is refused
        TrainerTest.rewriteMeta(dir.resolve(Checkpoint.TRAINING_STATE), "history_first_step", "2");
        try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), back)) {
            IOException e = assertThrows(IOException.class, () -> Checkpoint.load(dir, t));
            assertTrue(e.getMessage().contains("history covers steps 2..5"), e.getMessage());
        }
        // a history tensor missing
        TrainerTest.rewriteMeta(dir.resolve(Checkpoint.TRAINING_STATE), "history_first_step", "1");
        TrainerTest.rewrite(dir.resolve(Checkpoint.TRAINING_STATE), e -> e.name().equals("history.lr") ? null : e);
        try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), back)) {
            IOException e = assertThrows(IOException.class, () -> Checkpoint.load(dir, t));
            assertTrue(e.getMessage().contains("history needs all"), e.getMessage());
        }
    }

    @Test
    void historyRecordsConsecutiveSteps() {
        LossHistory h = new LossHistory(7);
        assertEquals(6, h.lastStep());
        h.add(7, 0.5, 1e-3, 2);
        assertThrows(IllegalArgumentException.class, () -> h.add(9, 1, 1, 1));
        for (int s = 8; s < 300; s++) h.add(s, 1.0 / s, 1e-3, 1);
        assertEquals(293, h.size());
        assertEquals((float) (1.0 / 299), h.loss(292));
        String[] lines = h.toCsv().split("\n");
        assertEquals(LossHistory.CSV_HEADER, lines[0]);
        assertEquals("7,0.5,0.001,2.0", lines[1]);
        for (int i = 1; i < lines.length; i++) {
            String[] f = lines[i].split(",");
            assertEquals(h.step(i - 1), Long.parseLong(f[0]));
            assertEquals(h.loss(i - 1), Float.parseFloat(f[1]), 0f, "csv round-trips the float32 value");
        }
        assertThrows(IllegalArgumentException.class, () -> new LossHistory(0));
        assertEquals(Arrays.toString(new float[0]), Arrays.toString(new LossHistory().losses()));
    }
}
