package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.tensor.Tensor;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The trainer's side of data parallelism without MPI: ranks are threads of this JVM and the exchange a barrier that
 * adds the gradients in rank order (what DataParallel does across processes). n ranks at batch B must hold the same
 * bits after every step and follow one trainer at batch n * B: the same samples, timesteps and noise, gradients summed
 * in another order.
 */
class DataParallelTrainerTest {
    /**
     * ||ranks - one|| / ||one - start||: the difference relative to how far training moved the weights. Not an
     * elementwise bound: where a gradient is near zero, AdamW's m / sqrt(v) turns a rounding difference into an
     * update of up to lr of either sign.
     */
    static final double REL_L2 = 1e-3;
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    /** n threads: each deposits its gradients, then every rank takes the rank-order sum / n. */
    static final class ThreadExchange {
        final int n;
        final float[][] grads;
        final double[] values;
        final CyclicBarrier in, out;

        ThreadExchange(int n) {
            this.n = n;
            this.grads = new float[n][];
            this.values = new double[n];
            this.in = new CyclicBarrier(n);
            this.out = new CyclicBarrier(n);
        }

        GradientExchange rank(int r) {
            return new GradientExchange() {
                @Override
                public int rank() {
                    return r;
                }

                @Override
                public int worldSize() {
                    return n;
                }

                @Override
                public void allReduceMean(Tensor gradients, long step) {
                    grads[r] = gradients.toFloatArray();
                    await(in);
                    float[] mean = new float[grads[0].length];
                    for (int j = 0; j < mean.length; j++) {
                        float s = grads[0][j];
                        for (int i = 1; i < n; i++) s += grads[i][j];
                        mean[j] = s / n;
                    }
                    await(out);
                    gradients.copyFrom(mean);
                }

                @Override
                public double mean(double value, long step) {
                    values[r] = value;
                    await(in);
                    double s = 0;
                    for (double v : values) s += v;
                    await(out);
                    return s / n;
                }
            };
        }

        private static void await(CyclicBarrier b) {
            try {
                b.await();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
    }

    @Test
    void ranksStayIdenticalAndFollowOneTrainerAtTheGlobalBatch() throws Exception {
        long seed = TestRandom.fresh().nextLong();
        int n = 3, b = 2, steps = 4; // odd world size and batch: the rows of rank r start at r * b
        Trainer.Options local = withBatch(TrainerTest.options(seed, PredictionType.EPSILON), b);
        Trainer.Options global = withBatch(local, n * b);

        float[] single, start;
        double[] singleLoss = new double[steps];
        try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), global)) {
            start = model.parameters().toFloatArray();
            for (int s = 0; s < steps; s++) singleLoss[s] = t.step().loss();
            single = model.parameters().toFloatArray();
        }

        ThreadExchange ex = new ThreadExchange(n);
        float[][] ranks = new float[n][];
        double[][] losses = new double[n][steps];
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            Future<?>[] f = new Future<?>[n];
            for (int r = 0; r < n; r++) {
                int rank = r;
                f[r] = pool.submit(() -> {
                    try (UNet2DModel model = new UNet2DModel(cpu, TrainerTest.tiny(), seed);
                            Trainer t = new Trainer(model, TrainerTest.schedule(), TrainerTest.data(seed), local,
                                    ex.rank(rank))) {
                        assertEquals(n, t.worldSize());
                        for (int s = 0; s < steps; s++) losses[rank][s] = t.step().loss();
                        ranks[rank] = model.parameters().toFloatArray();
                    }
                    return null;
                });
            }
            for (Future<?> x : f) x.get();
        } finally {
            pool.shutdownNow();
        }
        for (int r = 1; r < n; r++) {
            assertArrayEquals(ranks[0], ranks[r], "rank " + r + " differs from rank 0");
            assertArrayEquals(losses[0], losses[r], "rank " + r + "'s reported losses");
        }
        double rel = relativeL2(start, single, ranks[0]);
        System.out.printf("data parallel: ||ranks - one|| / ||one - start|| = %.3g%n", rel);
        assertTrue(rel <= REL_L2, "||ranks - one|| / ||one - start|| = " + rel);
        assertTrue(rel > 0, "the ranks reproduced the one-trainer bits exactly: did each train on its own rows?");
        for (int s = 0; s < steps; s++) {
            assertEquals(singleLoss[s], losses[0][s], 1e-5 * Math.abs(singleLoss[s]), "loss of step " + (s + 1));
        }
    }

    @Test
    void aSamplerKeepingSomeRowsDrawsLikeOneKeepingAll() {
        ProceduralDataset data = TrainerTest.data(5);
        BatchSampler all = new BatchSampler(data, 99, true), part = new BatchSampler(data, 99, true);
        int n = data.imageFloats();
        float[] a = new float[5 * n], p = new float[5 * n];
        int[] la = new int[5], lp = new int[5];
        java.util.Arrays.fill(p, Float.NaN);
        all.next(a, 5, null);
        part.next(p, 5, null, 2, 2);
        assertEquals(all.state(), part.state(), "the same draws");
        for (int i = 0; i < 5 * n; i++) {
            int row = i / n;
            if (row == 2 || row == 3) assertEquals(a[i], p[i], "row " + row);
            else assertTrue(Float.isNaN(p[i]), "row " + row + " was written");
        }
    }

    /** ||b - a|| / ||a - start|| in float64. */
    static double relativeL2(float[] start, float[] a, float[] b) {
        double d = 0, moved = 0;
        for (int i = 0; i < a.length; i++) {
            d += ((double) b[i] - a[i]) * ((double) b[i] - a[i]);
            moved += ((double) a[i] - start[i]) * ((double) a[i] - start[i]);
        }
        return Math.sqrt(d / moved);
    }

    private static Trainer.Options withBatch(Trainer.Options o, int batch) {
        return new Trainer.Options(batch, o.learningRate(), o.warmupSteps(), o.adamw(), o.maxGradNorm(), o.ema(),
                o.prediction(), o.seed(), o.flips(), o.minSnrGamma(), o.condDropProb());
    }
}
