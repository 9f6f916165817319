package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.UNet2DConfig;
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
                public double allReduceMean(Tensor gradients, double loss, long step) {
                    grads[r] = gradients.toFloatArray();
                    values[r] = loss;
                    await(in);
                    float[] mean = new float[grads[0].length];
                    for (int j = 0; j < mean.length; j++) {
                        float s = grads[0][j];
                        for (int i = 1; i < n; i++) s += grads[i][j];
                        mean[j] = s / n;
                    }
                    double l = 0;
                    for (double v : values) l += v;
                    await(out);
                    gradients.copyFrom(mean);
                    return l / n;
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

    /** What a run leaves: the starting and final parameters of each rank and the losses it reported. */
    private record Run(float[] start, float[][] params, double[][] losses) {}

    /** {@code n} ranks (threads) at batch {@code b}, or one trainer at batch b when {@code n} is 0. */
    private static Run run(UNet2DConfig cfg, java.util.function.LongFunction<Dataset> data, Trainer.Options o, long seed,
                           int n, int b, int steps) throws Exception {
        int ranks = Math.max(n, 1);
        ThreadExchange ex = n == 0 ? null : new ThreadExchange(n);
        float[][] params = new float[ranks][];
        float[][] start = new float[1][];
        double[][] losses = new double[ranks][steps];
        ExecutorService pool = Executors.newFixedThreadPool(ranks);
        try {
            Future<?>[] f = new Future<?>[ranks];
            for (int r = 0; r < ranks; r++) {
                int rank = r;
                f[r] = pool.submit(() -> {
                    try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed);
                            Trainer t = new Trainer(model, TrainerTest.schedule(), data.apply(seed), withBatch(o, b),
                                    ex == null ? null : ex.rank(rank))) {
                        assertEquals(ranks, t.worldSize());
                        if (rank == 0) start[0] = model.parameters().toFloatArray();
                        for (int s = 0; s < steps; s++) losses[rank][s] = t.step().loss();
                        params[rank] = model.parameters().toFloatArray();
                    }
                    return null;
                });
            }
            for (Future<?> x : f) x.get();
        } finally {
            pool.shutdownNow();
        }
        for (int r = 1; r < ranks; r++) {
            assertArrayEquals(params[0], params[r], "rank " + r + " differs from rank 0");
            assertArrayEquals(losses[0], losses[r], "rank " + r + "'s reported losses");
        }
        return new Run(start[0], params, losses);
    }

    private static void assertFollows(Run one, Run ranks, int steps) {
        double rel = relativeL2(one.start(), one.params()[0], ranks.params()[0]);
        System.out.printf("data parallel: ||ranks - one|| / ||one - start|| = %.3g%n", rel);
        assertTrue(rel <= REL_L2, "||ranks - one|| / ||one - start|| = " + rel);
        assertTrue(rel > 0, "the ranks reproduced the one-trainer bits exactly: did each train on its own rows?");
        for (int s = 0; s < steps; s++) {
            assertEquals(one.losses()[0][s], ranks.losses()[0][s], 1e-5 * Math.abs(one.losses()[0][s]),
                    "loss of step " + (s + 1));
        }
    }

    @Test
    void ranksStayIdenticalAndFollowOneTrainerAtTheGlobalBatch() throws Exception {
        long seed = TestRandom.fresh().nextLong();
        int n = 3, b = 2, steps = 4; // odd world size and batch: the rows of rank r start at r * b
        Trainer.Options o = TrainerTest.options(seed, PredictionType.EPSILON);
        Run one = run(TrainerTest.tiny(), TrainerTest::data, o, seed, 0, n * b, steps);
        Run ranks = run(TrainerTest.tiny(), TrainerTest::data, o, seed, n, b, steps);
        assertFollows(one, ranks, steps);
    }

    /**
     * Class-conditional with label drops: each rank takes its slice of the global batch's labels and drops, so the
     * ranks still follow one trainer (wrong labels would move the class embeddings elsewhere).
     */
    @Test
    void classLabelsAndTheirDropsAreSlicedFromTheGlobalBatch() throws Exception {
        long seed = TestRandom.fresh().nextLong();
        int n = 2, b = 3, steps = 3;
        UNet2DConfig cfg = conditional(0.0);
        Trainer.Options o = TrainerTest.options(seed, PredictionType.EPSILON).withCondDropProb(0.3);
        Run one = run(cfg, TrainerTest::labelled, o, seed, 0, n * b, steps);
        Run ranks = run(cfg, TrainerTest::labelled, o, seed, n, b, steps);
        assertFollows(one, ranks, steps);
    }

    /** With dropout the ranks draw their own masks (so no one-trainer comparison) and still stay identical. */
    @Test
    void withDropoutTheRanksStayIdentical() throws Exception {
        long seed = TestRandom.fresh().nextLong();
        Trainer.Options o = TrainerTest.options(seed, PredictionType.EPSILON);
        Run ranks = run(conditional(0.1), TrainerTest::labelled, o, seed, 2, 2, 3); // identical: checked by run
        Run one = run(conditional(0.1), TrainerTest::labelled, o, seed, 0, 4, 3);
        assertTrue(relativeL2(one.start(), one.params()[0], ranks.params()[0]) > REL_L2,
                "masks of step * n + rank: not the one-trainer masks");
    }

    private static UNet2DConfig conditional(double dropout) {
        return UNet2DConfig.builder().sampleSize(12).inChannels(1).outChannels(1).blockOutChannels(8, 16)
                .layersPerBlock(1).normNumGroups(4).attentionHeadDim(8)
                .downBlockTypes(java.util.List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(java.util.List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).numClassEmbeds(4)
                .dropout(dropout).build();
    }

    @Test
    void aSamplerKeepingSomeRowsDrawsLikeOneKeepingAll() {
        ProceduralDataset data = TrainerTest.data(5);
        BatchSampler all = new BatchSampler(data, 99, true), part = new BatchSampler(data, 99, true);
        int n = data.imageFloats();
        float[] a = new float[5 * n], p = new float[5 * n];
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
