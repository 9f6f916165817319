package io.diffusion4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.io.Json;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.sample.DdimScheduler;
import io.diffusion4j.sample.DdpmScheduler;
import io.diffusion4j.sample.DpmSolverScheduler;
import io.diffusion4j.sample.Images;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.sample.SamplerScheduler;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import io.diffusion4j.train.Checkpoint;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The pipeline facade on a tiny checkpoint trained through the API: it passes every setting through to the
 * internal sampler (results bit-identical to a hand-built Sampler with the same scheduler), is deterministic,
 * batch-independent and safe for concurrent calls, prefers EMA weights, reads diffusers pipeline folders, and
 * closes deterministically.
 */
class DiffusionPipelineTest {
    @TempDir
    static Path dir;
    static Diffusion4j d4j;
    static Path ck;
    static TestRandom rnd;

    @BeforeAll
    static void train() throws IOException {
        rnd = TestRandom.fresh();
        d4j = Diffusion4j.open(Device.CPU);
        ck = ApiTestSupport.trainTiny(d4j, dir.resolve("ck"), rnd.nextLong(), 4);
    }

    @AfterAll
    static void close() {
        d4j.close();
    }

    /** The same run through the internal classes: model + EMA weights + scheduler from the config. */
    static float[] direct(SamplerScheduler s, int steps, int batch, long seed, int count) throws IOException {
        UNet2DConfig cfg = Checkpoint.readConfig(ck);
        float[] w = Checkpoint.readModelFolder(ck.resolve("ema")).weights();
        NoiseSchedule schedule = Checkpoint.readSchedule(ck.resolve(Checkpoint.SCHEDULER));
        try (UNet2DModel m = new UNet2DModel(d4j.backend(), cfg, 0)) {
            m.loadFlat(w);
            try (Sampler sm = new Sampler(m, schedule, s, steps, batch, 8, 8)) {
                float[] all = new float[count * 64];
                for (int first = 0; first < count; first += batch) {
                    int n = Math.min(batch, count - first);
                    System.arraycopy(sm.run(seed, first, n, null, null), 0, all, first * 64, n * 64);
                }
                return all;
            }
        }
    }

    static Map<String, Object> schedulerConfig() throws IOException {
        return Json.parseObject(Files.readString(ck.resolve(Checkpoint.SCHEDULER), StandardCharsets.UTF_8));
    }

    @Test
    void settingsReachTheSamplerUnchanged() throws IOException {
        long seed = rnd.nextLong();
        Map<String, Object> cfg = schedulerConfig();
        DdimScheduler ddim = DdimScheduler.fromConfig(cfg, 0.5f);
        DdpmScheduler ddpm = DdpmScheduler.fromConfig(cfg);
        DpmSolverScheduler dpm = DpmSolverScheduler.fromConfig(cfg);
        try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
            assertTrue(pipe.usesEmaWeights());
            assertEquals(1, pipe.channels());
            assertEquals(8, pipe.height());
            assertEquals(1000, pipe.numTrainTimesteps());
            assertEquals("epsilon", pipe.predictionType());
            record Case(SamplerConfig api, SamplerScheduler internal, int steps) {}
            List<Case> cases = List.of(
                    new Case(SamplerConfig.ddim(7).withEta(0.5).withSeed(seed).withBatchSize(2), ddim, 7),
                    new Case(SamplerConfig.ddim(7).withEta(0.5).withSeed(seed).withBatchSize(2)
                            .withTimestepSpacing(TimestepSpacing.TRAILING),
                            new DdimScheduler(ddim.prediction(), 0.5f, ddim.clipSample(), ddim.clipSampleRange(), null,
                                    TimestepSpacing.TRAILING, 0, ddim.setAlphaToOne(), false), 7),
                    new Case(SamplerConfig.ddpm(5).withSeed(seed).withBatchSize(2), ddpm, 5),
                    new Case(SamplerConfig.dpmSolver(6).withSeed(seed).withBatchSize(2)
                            .withTimestepSpacing(TimestepSpacing.LEADING),
                            new DpmSolverScheduler(dpm.prediction(), null, TimestepSpacing.LEADING, 0,
                                    dpm.lowerOrderFinal(), dpm.eulerAtFinal(), dpm.finalSigmas()), 6));
            List<float[]> results = new ArrayList<>();
            for (Case c : cases) {
                float[] got = pipe.sample(c.api(), 3).toFloatArray();
                Tolerance.assertBitIdentical(c.api().toString(), direct(c.internal(), c.steps(), 2, seed, 3), got,
                        rnd.describe());
                for (float[] other : results) assertFalse(java.util.Arrays.equals(other, got), "settings had no effect: " + c);
                results.add(got);
            }
        }
    }

    @Test
    void sameSeedSameImagesWhateverTheBatchOtherSeedOtherImages() throws IOException {
        long seed = rnd.nextLong();
        try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
            SamplerConfig c = SamplerConfig.ddim(4).withEta(1.0).withSeed(seed);
            float[] a = pipe.sample(c.withBatchSize(2), 5).toFloatArray();
            Tolerance.assertBitIdentical("batch 2 vs 5", a, pipe.sample(c.withBatchSize(5), 5).toFloatArray(), rnd.describe());
            Tolerance.assertBitIdentical("again", a, pipe.sample(c.withBatchSize(3), 5).toFloatArray(), rnd.describe());
            assertFalse(java.util.Arrays.equals(a, pipe.sample(c.withSeed(seed + 1), 5).toFloatArray()));
            // the first 2 images of a call of 5 are the images of a call of 2
            float[] two = pipe.sample(c, 2).toFloatArray();
            Tolerance.assertBitIdentical("prefix", java.util.Arrays.copyOf(a, 128), two, rnd.describe());
        }
    }

    @Test
    void initialNoiseIsUsed() throws IOException {
        float[] x = rnd.gaussians(2 * 64, 1.0);
        try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
            SamplerConfig c = SamplerConfig.dpmSolver(5);
            Samples s = pipe.sample(c, x, null);
            assertEquals(2, s.count());
            Tolerance.assertBitIdentical("same x_T", s.toFloatArray(), pipe.sample(c.withSeed(77), x, null).toFloatArray(),
                    "a deterministic sampler does not use the seed with a given x_T");
            x[5] += 1f;
            assertFalse(java.util.Arrays.equals(s.toFloatArray(), pipe.sample(c, x, null).toFloatArray()));
            assertThrows(IllegalArgumentException.class, () -> pipe.sample(c, new float[65], null));
            assertThrows(IllegalArgumentException.class, () -> pipe.sample(c, new float[0], null));
        }
    }

    @Test
    void concurrentCallsEqualSingleThreadedCalls() throws Exception {
        long seed = rnd.nextLong();
        List<SamplerConfig> configs = List.of(SamplerConfig.ddim(5).withEta(1.0), SamplerConfig.ddpm(4),
                SamplerConfig.dpmSolver(5), SamplerConfig.ddim(6).withTimestepSpacing(TimestepSpacing.LINSPACE));
        try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
            List<float[]> single = new ArrayList<>();
            for (int k = 0; k < configs.size(); k++) {
                single.add(pipe.sample(configs.get(k).withSeed(seed + k).withBatchSize(2), 3).toFloatArray());
            }
            ExecutorService pool = Executors.newFixedThreadPool(configs.size());
            try {
                for (int round = 0; round < 2; round++) {
                    CountDownLatch start = new CountDownLatch(1);
                    List<Future<float[]>> fs = new ArrayList<>();
                    for (int k = 0; k < configs.size(); k++) {
                        int kk = k;
                        fs.add(pool.submit(() -> {
                            start.await();
                            return pipe.sample(configs.get(kk).withSeed(seed + kk).withBatchSize(2), 3).toFloatArray();
                        }));
                    }
                    start.countDown();
                    for (int k = 0; k < configs.size(); k++) {
                        Tolerance.assertBitIdentical("concurrent " + configs.get(k), single.get(k), fs.get(k).get(),
                                "round " + round + ", " + rnd.describe());
                    }
                }
            } finally {
                pool.shutdownNow();
            }
        }
    }

    @Test
    void closeWaitsForRunningCallsAndLaterCallsFail() throws Exception {
        DiffusionPipeline pipe = d4j.loadPipeline(ck);
        CountDownLatch inside = new CountDownLatch(1), release = new CountDownLatch(1);
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            Future<Samples> running = pool.submit(() -> pipe.sample(SamplerConfig.ddim(3), 1, (d, t) -> {
                inside.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    throw new IllegalStateException(e);
                }
            }));
            assertTrue(inside.await(30, TimeUnit.SECONDS));
            Thread closer = Thread.ofPlatform().start(pipe::close);
            closer.join(300);
            assertTrue(closer.isAlive(), "close() returned while a sample call was running");
            release.countDown();
            closer.join(30_000);
            assertFalse(closer.isAlive());
            assertEquals(1, running.get().count());
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> pipe.sample(SamplerConfig.ddim(3), 1));
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
            pipe.close(); // idempotent
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void closingDiffusion4jClosesItsPipelinesAndFreesTheDevice() throws IOException {
        DiffusionPipeline p;
        try (Diffusion4j own = Diffusion4j.open(Device.CPU)) {
            p = own.loadPipeline(ck);
            own.loadPipeline(ck, false);
            assertTrue(own.backend().liveBuffers() > 0);
        }
        assertThrows(IllegalStateException.class, () -> p.sample(SamplerConfig.ddim(2), 1));
        Diffusion4j closed = Diffusion4j.open(Device.CPU);
        closed.close();
        assertThrows(IllegalStateException.class, () -> closed.loadPipeline(ck));
        assertThrows(IllegalStateException.class, closed::newTrainingRun);
    }

    @Test
    void emaByDefaultModelWeightsOnRequest() throws IOException {
        SamplerConfig c = SamplerConfig.ddim(3).withSeed(rnd.nextLong());
        try (DiffusionPipeline ema = d4j.loadPipeline(ck); DiffusionPipeline raw = d4j.loadPipeline(ck, false)) {
            assertTrue(ema.usesEmaWeights());
            assertFalse(raw.usesEmaWeights());
            assertFalse(java.util.Arrays.equals(ema.sample(c, 1).toFloatArray(), raw.sample(c, 1).toFloatArray()));
        }
    }

    @Test
    void loadsADiffusersPipelineFolder() throws IOException {
        Path p = dir.resolve("pipeline");
        Files.createDirectories(p.resolve("unet"));
        Files.createDirectories(p.resolve("scheduler"));
        Files.copy(ck.resolve("ema").resolve(Checkpoint.CONFIG), p.resolve("unet").resolve(Checkpoint.CONFIG));
        Files.copy(ck.resolve("ema").resolve(Checkpoint.WEIGHTS), p.resolve("unet").resolve(Checkpoint.WEIGHTS));
        Map<String, Object> sc = new LinkedHashMap<>(schedulerConfig());
        sc.put("_class_name", "DDIMScheduler");
        Files.writeString(p.resolve("scheduler").resolve(Checkpoint.SCHEDULER), Json.write(sc));
        Files.writeString(p.resolve("model_index.json"), "{\"_class_name\": \"DDPMPipeline\"}");
        SamplerConfig c = SamplerConfig.ddim(4).withSeed(rnd.nextLong());
        try (DiffusionPipeline fromPipeline = d4j.loadPipeline(p); DiffusionPipeline fromCk = d4j.loadPipeline(ck)) {
            assertFalse(fromPipeline.usesEmaWeights());
            Tolerance.assertBitIdentical("pipeline folder", fromCk.sample(c, 2).toFloatArray(),
                    fromPipeline.sample(c, 2).toFloatArray(), rnd.describe());
        }
    }

    @Test
    void samplesRenderAsDiffusersDoes() throws IOException {
        try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
            Samples s = pipe.sample(SamplerConfig.ddpm(3).withSeed(rnd.nextLong()), 3);
            float[] x = s.toFloatArray();
            assertEquals(3 * 64, x.length);
            List<BufferedImage> images = s.images();
            assertEquals(3, images.size());
            for (int i = 0; i < 3; i++) {
                BufferedImage im = images.get(i);
                assertEquals(BufferedImage.TYPE_BYTE_GRAY, im.getType());
                assertArrayEquals(s.toFloatArray(i), java.util.Arrays.copyOfRange(x, i * 64, (i + 1) * 64));
                for (int y = 0; y < 8; y++) {
                    for (int xx = 0; xx < 8; xx++) {
                        double v = Math.min(1, Math.max(0, x[i * 64 + y * 8 + xx] / 2.0 + 0.5));
                        assertEquals(Math.rint(v * 255), im.getRaster().getSample(xx, y, 0), 0.0, "pixel " + i + "," + y + "," + xx);
                    }
                }
            }
            BufferedImage grid = s.grid();
            assertEquals(2 * 10 + 2, grid.getWidth()); // 2 columns of 8 + 2-pixel gaps
            Path out = dir.resolve("pngs");
            List<Path> files = s.writePngs(out);
            assertEquals(3, files.size());
            for (Path f : files) assertEquals(8, ImageIO.read(f.toFile()).getWidth());
            s.writeGridPng(out.resolve("grid.png"));
            assertEquals(22, ImageIO.read(out.resolve("grid.png").toFile()).getWidth());
            x[0] = 1e9f; // the samples are immutable
            assertTrue(s.toFloatArray()[0] != 1e9f);
            assertEquals(Images.toByte(s.toFloatArray()[0]), s.image(0).getRaster().getSample(0, 0, 0));
            assertThrows(IndexOutOfBoundsException.class, () -> s.image(3));
        }
    }

    @Test
    void badInputsAreRefusedWithMessages() throws IOException {
        try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> pipe.sample(SamplerConfig.ddim(1001), 1));
            assertTrue(e.getMessage().contains("1000"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> pipe.sample(SamplerConfig.ddim(2), 0));
            e = assertThrows(IllegalArgumentException.class, () -> pipe.sample(SamplerConfig.ddim(2).withImageSize(5, 8), 1));
            assertTrue(e.getMessage().contains("multiple"), e.getMessage());
            Samples small = pipe.sample(SamplerConfig.ddim(2).withImageSize(4, 6), 2);
            assertEquals(4, small.height());
            assertEquals(6, small.width());
            assertEquals(2 * 4 * 6, small.toFloatArray().length);
        }
        assertThrows(IllegalArgumentException.class, () -> SamplerConfig.ddim(0));
        assertThrows(IllegalArgumentException.class, () -> SamplerConfig.ddpm().withEta(0.5));
        assertThrows(IllegalArgumentException.class, () -> SamplerConfig.ddim(3).withEta(Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> SamplerConfig.ddim(3).withBatchSize(0));
        Path noSched = dir.resolve("nosched");
        Files.createDirectories(noSched);
        Files.copy(ck.resolve(Checkpoint.CONFIG), noSched.resolve(Checkpoint.CONFIG));
        Files.copy(ck.resolve(Checkpoint.WEIGHTS), noSched.resolve(Checkpoint.WEIGHTS));
        IOException io = assertThrows(IOException.class, () -> d4j.loadPipeline(noSched));
        assertTrue(io.getMessage().contains("scheduler_config.json"), io.getMessage());
        io = assertThrows(IOException.class, () -> d4j.loadPipeline(dir.resolve("missing")));
        assertTrue(io.getMessage().contains("missing"), io.getMessage());
        DeviceUnavailableException du = null;
        try (Diffusion4j cuda = Diffusion4j.open(Device.CUDA)) {
            assertEquals(Device.CUDA, cuda.device()); // a machine with a GPU
        } catch (DeviceUnavailableException ex) {
            du = ex;
        }
        if (du != null) {
            assertEquals(Device.CUDA, du.device());
            assertFalse(du.getMessage().isBlank());
        }
        assertEquals(Device.CUDA_SIM, Device.fromName("CUDA-SIM"));
        assertThrows(IllegalArgumentException.class, () -> Device.fromName("tpu"));
    }
}
