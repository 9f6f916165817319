package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.kernels.EmaSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The training loop on the CPU backend: the loss falls on the procedural shapes, a resumed run is bit
 * for bit the uninterrupted one, checkpoints round-trip and corrupt ones are refused, and every native
 * byte is released.
 */
class TrainerTest {
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    /** Two levels (plain + attention), 1 channel, 12x12 images: each step takes a few milliseconds. */
    static UNet2DConfig tiny() {
        return UNet2DConfig.builder().sampleSize(12).inChannels(1).outChannels(1).blockOutChannels(8, 16)
                .layersPerBlock(1).normNumGroups(4).attentionHeadDim(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).build();
    }

    static Trainer.Options options(long seed, PredictionType p) {
        return new Trainer.Options(8, 3e-3, 10, new OptimKernels.AdamW(3e-3, 0.9, 0.999, 1e-8, 1e-4), 1.0,
                EmaSchedule.power(0.999, 0.0, 0, 1.0, 0.75), p, seed, true);
    }

    static ProceduralDataset data(long seed) {
        return new ProceduralDataset(512, 12, 12, 1, seed);
    }

    static NoiseSchedule schedule() {
        return NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 0.0001, 0.02);
    }

    /**
     * 100 steps at lr 3e-3: the mean loss of the last 20 steps must be below 0.6 times that of the
     * first 20 (a model that does not learn stays near 1 for epsilon prediction; measured runs end
     * around 0.2-0.35 of the start). Every loss must be finite.
     */
    @Test
    void lossFallsOnTheProceduralShapes() {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        double[] losses = new double[100];
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed);
                Trainer t = new Trainer(model, schedule(), data(seed), options(seed, PredictionType.EPSILON))) {
            for (int i = 0; i < losses.length; i++) {
                Trainer.StepResult r = t.step();
                assertEquals(i + 1, r.step());
                assertTrue(Double.isFinite(r.loss()) && Double.isFinite(r.gradNorm()), "step " + (i + 1) + ": " + r + " " + rnd.describe());
                losses[i] = r.loss();
            }
        }
        double first = Arrays.stream(losses, 0, 20).average().orElseThrow();
        double last = Arrays.stream(losses, 80, 100).average().orElseThrow();
        System.out.printf(Locale.ROOT, "TrainerTest loss curve (%s): first 20 steps %.4f, last 20 steps %.4f, ratio %.3f; "
                + "every 10th: %s%n", rnd.describe(), first, last, last / first, every10(losses));
        assertTrue(last < 0.6 * first, String.format(Locale.ROOT, "loss did not fall clearly: first 20 %.4f, last 20 %.4f (%s)",
                first, last, rnd.describe()));
    }

    private static String every10(double[] l) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < l.length; i += 10) sb.append(String.format(Locale.ROOT, "%.3f ", l[i]));
        return sb.toString().trim();
    }

    record Snapshot(float[] params, float[] ema, float[] m, float[] v, List<Double> losses, Trainer.State state) {}

    static Snapshot snapshot(Trainer t, List<Double> losses) {
        return new Snapshot(t.model().flatParameters(), t.emaParameters().toFloatArray(), t.adamM().toFloatArray(),
                t.adamV().toFloatArray(), losses, t.state());
    }

    static void assertBitEqual(float[] a, float[] b, String what) {
        assertEquals(a.length, b.length, what + " length");
        for (int i = 0; i < a.length; i++) {
            if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) {
                throw new AssertionError(what + "[" + i + "]: " + a[i] + " vs " + b[i] + " (not bit-identical)");
            }
        }
    }

    /**
     * N steps, save, load into a fresh model (other initial parameters) and trainer, N more steps:
     * parameters, EMA, AdamW moments, the per-step losses and the host state equal the 2N-step run bit for bit.
     * Each prediction type once (its loss target differs).
     */
    @ParameterizedTest
    @EnumSource(PredictionType.class)
    void resumeIsExact(PredictionType prediction, @TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        int n = 3;
        Snapshot straight;
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed);
                Trainer t = new Trainer(model, schedule(), data(seed), options(seed, prediction))) {
            List<Double> l = new ArrayList<>();
            for (int i = 0; i < 2 * n; i++) l.add(t.step().loss());
            straight = snapshot(t, l);
        }
        List<Double> l = new ArrayList<>();
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed);
                Trainer t = new Trainer(model, schedule(), data(seed), options(seed, prediction))) {
            for (int i = 0; i < n; i++) l.add(t.step().loss());
            Checkpoint.save(dir, t);
        }
        Snapshot resumed;
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed + 1);
                Trainer t = new Trainer(model, schedule(), data(seed), options(seed, prediction))) {
            Checkpoint.load(dir, t);
            assertEquals(n, t.stepCount());
            for (int i = 0; i < n; i++) l.add(t.step().loss());
            resumed = snapshot(t, l);
        }
        String ctx = prediction + " " + rnd.describe();
        assertEquals(straight.losses(), resumed.losses(), "per-step losses " + ctx);
        assertEquals(straight.state(), resumed.state(), "host state " + ctx);
        assertBitEqual(straight.params(), resumed.params(), "parameters " + ctx);
        assertBitEqual(straight.ema(), resumed.ema(), "EMA " + ctx);
        assertBitEqual(straight.m(), resumed.m(), "exp_avg " + ctx);
        assertBitEqual(straight.v(), resumed.v(), "exp_avg_sq " + ctx);
        assertNotEquals(0f, straight.m()[straight.m().length / 2 - 7] + straight.m()[3], "AdamW state must be non-trivial");
    }

    /** The files hold what the trainer had, in diffusers names and OIHW shapes; the configs parse back. */
    @Test
    void checkpointRoundTrip(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed);
                Trainer t = new Trainer(model, schedule(), data(seed), options(seed, PredictionType.V_PREDICTION))) {
            t.step();
            t.step();
            Checkpoint.save(dir, t);
            UNet2DLayout layout = model.layout();
            assertEquals(model.config(), Checkpoint.readConfig(dir));
            assertEquals(model.config(), Checkpoint.readConfig(dir.resolve("ema")));
            float[] onDisk = Checkpoint.readWeights(dir.resolve(Checkpoint.WEIGHTS), layout);
            assertBitEqual(model.flatParameters(), onDisk, "weights");
            float[] ema = Checkpoint.readWeights(dir.resolve("ema").resolve(Checkpoint.WEIGHTS), layout);
            assertBitEqual(layout.deviceToDisk(t.emaParameters().toFloatArray()), ema, "EMA weights");
            // the EMA differs from the parameters after two steps (decay > 0 from the second update)
            assertFalse(Arrays.equals(onDisk, ema), "EMA equals the parameters");
            // diffusers names with OIHW shapes
            try (SafeTensors.Reader r = SafeTensors.open(dir.resolve(Checkpoint.WEIGHTS))) {
                assertEquals(List.of(8L, 1L, 3L, 3L), r.info("conv_in.weight").shape());
                assertEquals(layout.params().size(), r.tensors().size());
                assertEquals("pt", r.metadata().get("format"));
            }
            NoiseSchedule s = Checkpoint.readSchedule(dir.resolve(Checkpoint.SCHEDULER));
            assertArrayEquals(schedule().alphasCumprod(), s.alphasCumprod());
            Map<String, Object> sc = io.diffusion4j.io.Json.parseObject(Files.readString(dir.resolve(Checkpoint.SCHEDULER)));
            assertEquals("DDPMScheduler", sc.get("_class_name"));
            assertEquals("v_prediction", sc.get("prediction_type"));
            assertEquals("linear", sc.get("beta_schedule"));
            assertEquals(1000L, sc.get("num_train_timesteps"));
            assertEquals("fixed_small", sc.get("variance_type"));
            assertEquals(true, sc.get("clip_sample"));
            try (SafeTensors.Reader r = SafeTensors.open(dir.resolve(Checkpoint.TRAINING_STATE))) {
                assertEquals("2", r.metadata().get("step"));
                assertEquals(Long.toString(seed), r.metadata().get("noise_seed"));
                assertEquals("2", r.metadata().get("noise_offset"));
            }
            try (var files = Files.list(dir)) {
                assertTrue(files.noneMatch(p -> p.getFileName().toString().endsWith(".tmp")), "temporary files left");
            }
        }
    }

    /**
     * Corrupt or mismatched checkpoints are refused with a message naming the file, and a refused load
     * leaves the trainer untouched.
     */
    @Test
    void corruptCheckpointsAreRefused(@TempDir Path root) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        Path good = root.resolve("good");
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed);
                Trainer t = new Trainer(model, schedule(), data(seed), options(seed, PredictionType.EPSILON))) {
            t.step();
            Checkpoint.save(good, t);
        }
        record Case(String name, String file, String expect, Corruptor c) {}
        List<Case> cases = List.of(
                new Case("truncated weights", Checkpoint.WEIGHTS, "", p -> truncate(p, 100)),
                new Case("truncated EMA", "ema/" + Checkpoint.WEIGHTS, "", p -> truncate(p, 4)),
                new Case("truncated state", Checkpoint.TRAINING_STATE, "", p -> truncate(p, 8)),
                new Case("flipped header byte", Checkpoint.WEIGHTS, "", p -> {
                    byte[] b = Files.readAllBytes(p);
                    b[8] = '[';
                    Files.write(p, b);
                }),
                new Case("wrong shape", Checkpoint.WEIGHTS, "shape", p -> rewrite(p, e -> e.name().equals("conv_in.weight")
                        ? new SafeTensors.Entry(e.name(), new long[] {8, 1, 9}, e.data()) : e)),
                new Case("missing tensor", Checkpoint.WEIGHTS, "missing tensor", p -> rewrite(p,
                        e -> e.name().equals("conv_out.bias") ? null : e)),
                new Case("NaN weight", Checkpoint.WEIGHTS, "non-finite", p -> rewrite(p, e -> {
                    if (e.name().equals("conv_out.bias")) e.data()[0] = Float.NaN;
                    return e;
                })),
                new Case("other model config", Checkpoint.CONFIG, "config", p -> Files.writeString(p,
                        tiny().toJson().replace("\"layers_per_block\": 1", "\"layers_per_block\": 2"))),
                new Case("other prediction type", Checkpoint.SCHEDULER, "prediction_type", p -> Files.writeString(p,
                        Files.readString(p).replace("\"epsilon\"", "\"sample\""))),
                new Case("other beta schedule", Checkpoint.SCHEDULER, "schedule", p -> Files.writeString(p,
                        Files.readString(p).replace("\"linear\"", "\"scaled_linear\""))),
                new Case("state of another seed", Checkpoint.TRAINING_STATE, "seed", p -> rewriteMeta(p, "noise_seed",
                        Long.toString(seed + 1))),
                new Case("state of another batch size", Checkpoint.TRAINING_STATE, "batch size", p -> rewriteMeta(p,
                        "batch_size", "9")),
                new Case("state step not a number", Checkpoint.TRAINING_STATE, "step", p -> rewriteMeta(p, "step", "x")),
                new Case("missing scheduler", Checkpoint.SCHEDULER, "", Files::delete));
        for (Case c : cases) {
            Path dir = root.resolve(c.name().replace(' ', '_'));
            copyTree(good, dir);
            c.c().apply(dir.resolve(c.file()));
            try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed + 5);
                    Trainer t = new Trainer(model, schedule(), data(seed), options(seed, PredictionType.EPSILON))) {
                float[] before = model.flatParameters();
                IOException e = assertThrows(IOException.class, () -> Checkpoint.load(dir, t), c.name());
                assertTrue(e.getMessage().contains(dir.toString()) || e.getMessage().contains(c.file()),
                        c.name() + ": message does not name the file: " + e.getMessage());
                assertTrue(e.getMessage().contains(c.expect()), c.name() + ": message '" + e.getMessage()
                        + "' does not say '" + c.expect() + "'");
                assertBitEqual(before, model.flatParameters(), c.name() + ": parameters changed by a refused load");
                assertEquals(0, t.stepCount(), c.name());
            }
        }
        // the untouched copy loads
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed + 5);
                Trainer t = new Trainer(model, schedule(), data(seed), options(seed, PredictionType.EPSILON))) {
            Checkpoint.load(good, t);
            assertEquals(1, t.stepCount());
        }
    }

    interface Corruptor {
        void apply(Path p) throws IOException;
    }

    interface EntryMap {
        SafeTensors.Entry map(SafeTensors.Entry e);
    }

    static void truncate(Path p, int bytes) throws IOException {
        byte[] b = Files.readAllBytes(p);
        Files.write(p, Arrays.copyOf(b, b.length - bytes));
    }

    static void rewrite(Path p, EntryMap f) throws IOException {
        Map<String, String> meta;
        try (SafeTensors.Reader r = SafeTensors.open(p)) {
            meta = r.metadata();
        }
        List<SafeTensors.Entry> out = new ArrayList<>();
        for (SafeTensors.Entry e : SafeTensors.readAll(p).values()) {
            SafeTensors.Entry m = f.map(e);
            if (m != null) out.add(m);
        }
        SafeTensors.write(p, out, meta);
    }

    static void rewriteMeta(Path p, String key, String value) throws IOException {
        Map<String, String> meta;
        try (SafeTensors.Reader r = SafeTensors.open(p)) {
            meta = new LinkedHashMap<>(r.metadata());
        }
        meta.put(key, value);
        SafeTensors.write(p, new ArrayList<>(SafeTensors.readAll(p).values()), meta);
    }

    static void copyTree(Path from, Path to) throws IOException {
        try (var s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path q = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) Files.createDirectories(q);
                else Files.copy(p, q);
            }
        }
    }

    /** Options, data and model that do not fit are refused before anything is allocated. */
    @Test
    void mismatchesAreRefused() {
        long bytes = cpu.liveBytes();
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), 1)) {
            long withModel = cpu.liveBytes();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new Trainer(model, schedule(), new ProceduralDataset(4, 12, 12, 3, 1), options(1, PredictionType.EPSILON)));
            assertTrue(e.getMessage().contains("channels"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> new Trainer(model, schedule(), new ProceduralDataset(4, 11, 12, 1, 1), options(1, PredictionType.EPSILON)));
            assertTrue(e.getMessage().contains("multiples of 2"), e.getMessage());
            assertEquals(withModel, cpu.liveBytes(), "a refused trainer must not leak");
        }
        assertThrows(IllegalArgumentException.class, () -> new Trainer.Options(0, 1e-3, 0,
                OptimKernels.AdamW.defaults(1e-3), 1.0, EmaSchedule.diffusersDefaults(), PredictionType.EPSILON, 0, true));
        assertThrows(IllegalArgumentException.class, () -> new Trainer.Options(1, Double.NaN, 0,
                OptimKernels.AdamW.defaults(1e-3), 1.0, EmaSchedule.diffusersDefaults(), PredictionType.EPSILON, 0, true));
        assertThrows(IllegalArgumentException.class, () -> new Trainer.Options(1, 1e-3, -1,
                OptimKernels.AdamW.defaults(1e-3), 1.0, EmaSchedule.diffusersDefaults(), PredictionType.EPSILON, 0, true));
        assertEquals(bytes, cpu.liveBytes());
    }

    /** Linear warmup: lr * s / warmup for 1-based steps below warmup, then lr. */
    @Test
    void learningRateWarmup() {
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), 1);
                Trainer t = new Trainer(model, schedule(), data(1), options(1, PredictionType.EPSILON))) {
            assertEquals(3e-4, t.learningRate(1), 1e-15);
            assertEquals(1.5e-3, t.learningRate(5), 1e-15);
            assertEquals(3e-3, t.learningRate(10), 0);
            assertEquals(3e-3, t.learningRate(1000), 0);
            Trainer.StepResult r = t.step();
            assertEquals(3e-4, r.learningRate(), 1e-15);
            assertEquals(0.0, r.emaDecay(), "the first EMA update copies the parameters");
            assertBitEqual(t.model().parameters().toFloatArray(), t.emaParameters().toFloatArray(), "EMA after step 1");
        }
    }

    /** Training, saving and loading release every native byte when closed. */
    @Test
    void nativeMemoryIsReleased(@TempDir Path dir) throws IOException {
        long bytes = cpu.liveBytes(), buffers = cpu.liveBuffers();
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), 3);
                Trainer t = new Trainer(model, schedule(), data(3), options(3, PredictionType.EPSILON))) {
            t.step();
            long after1 = cpu.liveBytes();
            for (int i = 0; i < 50; i++) {
                t.step();
                assertEquals(after1, cpu.liveBytes(), "native bytes grew at step " + (i + 2));
            }
            Checkpoint.save(dir, t);
            Checkpoint.load(dir, t);
            assertEquals(after1, cpu.liveBytes(), "save/load must not allocate");
        }
        assertEquals(bytes, cpu.liveBytes(), "live bytes after closing model and trainer");
        assertEquals(buffers, cpu.liveBuffers(), "live buffers after closing model and trainer");
    }

    // ---- dropout ----
    /**
     * Exact resume with dropout p = 0.1 in every resnet: the masks depend only on the trainer's seed and
     * step count (restored by the checkpoint), so N steps + save + load + N steps equal 2N steps bit for
     * bit. Dropout must act: the first step's loss differs from the same run without dropout.
     */
    @Test
    void resumeIsExactWithDropout(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        UNet2DConfig cfg = UNet2DConfig.builder().sampleSize(12).inChannels(1).outChannels(1).blockOutChannels(8, 16)
                .layersPerBlock(1).normNumGroups(4).attentionHeadDim(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).dropout(0.1).build();
        Trainer.Options opt = options(seed, PredictionType.EPSILON);
        int n = 3;
        double withoutDropout;
        try (UNet2DModel model = new UNet2DModel(cpu, tiny(), seed);
                Trainer t = new Trainer(model, schedule(), data(seed), opt)) {
            withoutDropout = t.step().loss();
        }
        Snapshot straight;
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed); Trainer t = new Trainer(model, schedule(), data(seed), opt)) {
            List<Double> l = new ArrayList<>();
            for (int i = 0; i < 2 * n; i++) l.add(t.step().loss());
            straight = snapshot(t, l);
        }
        List<Double> l = new ArrayList<>();
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed); Trainer t = new Trainer(model, schedule(), data(seed), opt)) {
            for (int i = 0; i < n; i++) l.add(t.step().loss());
            Checkpoint.save(dir, t);
        }
        Snapshot resumed;
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed + 1);
                Trainer t = new Trainer(model, schedule(), data(seed), opt)) {
            Checkpoint.load(dir, t);
            assertEquals(n, t.stepCount());
            for (int i = 0; i < n; i++) l.add(t.step().loss());
            resumed = snapshot(t, l);
        }
        String ctx = "dropout 0.1 " + rnd.describe();
        assertNotEquals(withoutDropout, straight.losses().get(0), "dropout did not change the first step's loss " + ctx);
        assertEquals(straight.losses(), resumed.losses(), "per-step losses " + ctx);
        assertEquals(straight.state(), resumed.state(), "host state " + ctx);
        assertBitEqual(straight.params(), resumed.params(), "parameters " + ctx);
        assertBitEqual(straight.ema(), resumed.ema(), "EMA " + ctx);
        assertBitEqual(straight.m(), resumed.m(), "exp_avg " + ctx);
        assertBitEqual(straight.v(), resumed.v(), "exp_avg_sq " + ctx);
    }
    // ---- end dropout ----

    /** The procedural shapes labelled by index modulo 3, named "a", "b", "c". */
    static Dataset labelled(long seed) {
        ProceduralDataset d = data(seed);
        return new Dataset() {
            public int size() { return d.size(); }
            public int height() { return d.height(); }
            public int width() { return d.width(); }
            public int channels() { return d.channels(); }
            public void image(int index, float[] dst, int offset) { d.image(index, dst, offset); }
            public String describe() { return "labelled " + d.describe(); }
            public int numClasses() { return 3; }
            public int label(int index) { return index % 3; }
            public List<String> classNames() { return List.of("a", "b", "c"); }
        };
    }

    /**
     * Class-conditional training (num_class_embeds 4: three classes and the null class 3): resume is bit for bit,
     * the class names and null class are saved beside the config, the label drop acts (another first-step loss
     * than with probability 0), and mismatched data is refused.
     */
    @Test
    void classConditionalTrainingResumesExactlyAndSavesItsClasses(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        UNet2DConfig cfg = UNet2DConfig.builder().sampleSize(12).inChannels(1).outChannels(1).blockOutChannels(8, 16)
                .layersPerBlock(1).normNumGroups(4).attentionHeadDim(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).numClassEmbeds(4).build();
        Trainer.Options opt = options(seed, PredictionType.EPSILON).withCondDropProb(0.5);
        int n = 3;
        double noDrop;
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed);
                Trainer t = new Trainer(model, schedule(), labelled(seed), opt.withCondDropProb(0))) {
            noDrop = t.step().loss();
        }
        Snapshot straight;
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed); Trainer t = new Trainer(model, schedule(), labelled(seed), opt)) {
            assertEquals(3, t.nullClass());
            List<Double> l = new ArrayList<>();
            for (int i = 0; i < 2 * n; i++) l.add(t.step().loss());
            straight = snapshot(t, l);
        }
        List<Double> l = new ArrayList<>();
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed); Trainer t = new Trainer(model, schedule(), labelled(seed), opt)) {
            for (int i = 0; i < n; i++) l.add(t.step().loss());
            Checkpoint.save(dir, t);
        }
        io.diffusion4j.model.ClassLabels classes = io.diffusion4j.model.ClassLabels.read(dir);
        assertEquals(new io.diffusion4j.model.ClassLabels(List.of("a", "b", "c"), 3), classes);
        assertEquals(0.5, Checkpoint.readOptions(dir).condDropProb());
        Snapshot resumed;
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed + 1);
                Trainer t = new Trainer(model, schedule(), labelled(seed), opt)) {
            Checkpoint.load(dir, t);
            for (int i = 0; i < n; i++) l.add(t.step().loss());
            resumed = snapshot(t, l);
        }
        String ctx = rnd.describe();
        assertNotEquals(noDrop, straight.losses().get(0), "the label drop changed nothing " + ctx);
        assertEquals(straight.losses(), resumed.losses(), "per-step losses " + ctx);
        assertEquals(straight.state(), resumed.state(), "host state " + ctx);
        assertBitEqual(straight.params(), resumed.params(), "parameters " + ctx);
        assertBitEqual(straight.ema(), resumed.ema(), "EMA " + ctx);
        try (UNet2DModel model = new UNet2DModel(cpu, cfg, seed)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new Trainer(model, schedule(), data(seed), opt));
            assertTrue(e.getMessage().contains("has no class labels"), e.getMessage());
        }
        UNet2DConfig five = UNet2DConfig.fromMap(withClasses(cfg, 6));
        try (UNet2DModel model = new UNet2DModel(cpu, five, seed)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new Trainer(model, schedule(), labelled(seed), opt));
            assertTrue(e.getMessage().contains("num_class_embeds 6 must be 4"), e.getMessage());
        }
    }

    static java.util.Map<String, Object> withClasses(UNet2DConfig c, int n) {
        java.util.LinkedHashMap<String, Object> m = c.toMap();
        m.put("num_class_embeds", (long) n);
        return m;
    }
}
