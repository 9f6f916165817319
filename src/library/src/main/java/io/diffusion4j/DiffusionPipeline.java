package io.diffusion4j;

import io.diffusion4j.io.Json;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.sample.DdimScheduler;
import io.diffusion4j.sample.DdpmScheduler;
import io.diffusion4j.sample.DpmSolverScheduler;
import io.diffusion4j.sample.ImageInputs;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.sample.SamplerScheduler;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A loaded denoising model with its noise schedule and scheduler configuration, as diffusers'
 * {@code DDPMPipeline} owns a {@code UNet2DModel} and a scheduler: {@link #sample} turns seeds into images
 * with DDPM, DDIM or DPM-Solver++. Made by {@link Diffusion4j#loadPipeline}.
 *
 * <p><b>Threads.</b> Many threads may call {@link #sample} on one pipeline at once: the weights are loaded once
 * and only read, and every call has its own buffers, workspace and random streams, so a call's images equal
 * those of the same call made alone, bit for bit. {@link #close()} waits for running calls to return; calls
 * after it throw {@link IllegalStateException}.
 *
 * <p><b>Determinism.</b> Image i of a call is a function of (weights, sampler configuration, seed, i) only: its
 * initial noise and its per-step noise come from its own counter-based random stream. The same call gives the
 * same images on every run, and the random numbers are bit-identical on every device.
 */
public final class DiffusionPipeline implements AutoCloseable {
    private final Diffusion4j owner;
    private final UNet2DModel model;
    private final NoiseSchedule schedule;
    private final Map<String, Object> schedulerConfig;
    private final Path source;
    private final boolean ema;
    private final ClassLabels classes; // null for an unconditional model
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private boolean closed; // guarded by lock

    private DiffusionPipeline(Diffusion4j owner, UNet2DModel model, NoiseSchedule schedule,
                              Map<String, Object> schedulerConfig, Path source, boolean ema, ClassLabels classes) {
        this.owner = owner;
        this.classes = classes;
        this.model = model;
        this.schedule = schedule;
        this.schedulerConfig = schedulerConfig;
        this.source = source;
        this.ema = ema;
    }

    static DiffusionPipeline load(Diffusion4j owner, Path dir, boolean useEma) throws IOException {
        if (!Files.isDirectory(dir)) throw new IOException(dir + ": no such directory");
        // a training run may be committing a save there: read the files of one step
        io.diffusion4j.io.AtomicFiles.awaitCommitted(dir, io.diffusion4j.train.CheckpointFiles.COMMIT_WAIT_MILLIS);
        Path modelDir = dir, sched = dir.resolve(Checkpoint.SCHEDULER);
        if (!Files.exists(dir.resolve(Checkpoint.CONFIG)) && Files.isRegularFile(dir.resolve("unet").resolve(Checkpoint.CONFIG))) {
            modelDir = dir.resolve("unet"); // a diffusers pipeline folder
            sched = dir.resolve("scheduler").resolve(Checkpoint.SCHEDULER);
        }
        if (!Files.isRegularFile(sched)) {
            throw new IOException(dir + ": no " + Checkpoint.SCHEDULER + " (needed for the noise schedule; a diffusers"
                    + " pipeline keeps it in scheduler/)");
        }
        Checkpoint.ModelFolder folder = Checkpoint.readModelFolder(modelDir);
        UNet2DConfig config = folder.config();
        float[] weights = folder.weights();
        Path emaWeights = useEma ? io.diffusion4j.train.CheckpointFiles.emaWeights(folder.dir()) : null;
        boolean ema = emaWeights != null;
        if (ema) weights = Checkpoint.readWeights(emaWeights, UNet2DLayout.of(config));
        NoiseSchedule schedule = Checkpoint.readSchedule(sched);
        Map<String, Object> schedCfg;
        try {
            schedCfg = Json.parseObject(io.diffusion4j.io.SmallFiles.readText(sched));
            for (SamplerType t : SamplerType.values()) scheduler(t, 0, null, schedCfg); // refuse unusable configs now
        } catch (RuntimeException e) {
            throw new IOException(sched + ": " + e.getMessage(), e);
        }
        if (config.inChannels() != config.outChannels()) {
            throw new IOException(folder.dir().resolve(Checkpoint.CONFIG) + ": in_channels " + config.inChannels()
                    + " != out_channels " + config.outChannels() + " (learned variance is not supported for sampling)");
        }
        ClassLabels classes = ClassLabels.forModel(config, folder.dir());
        UNet2DModel model = new UNet2DModel(owner.backend(), config, 0L);
        try {
            model.loadFlat(weights);
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
        return new DiffusionPipeline(owner, model, schedule, Map.copyOf(nullFree(schedCfg)), dir, ema, classes);
    }

    private static Map<String, Object> nullFree(Map<String, Object> m) {
        Map<String, Object> out = new java.util.LinkedHashMap<>();
        m.forEach((k, v) -> {
            if (v != null) out.put(k, v);
        });
        return out;
    }

    static SamplerScheduler scheduler(SamplerType type, double eta, TimestepSpacing spacing, Map<String, Object> cfg) {
        SamplerScheduler s = switch (type) {
            case DDPM -> {
                DdpmScheduler d = DdpmScheduler.fromConfig(cfg);
                yield spacing == null ? d : new DdpmScheduler(d.prediction(), d.variance(), d.clipSample(),
                        d.clipSampleRange(), d.thresholding(), spacing, d.stepsOffset());
            }
            case DDIM -> {
                DdimScheduler d = DdimScheduler.fromConfig(cfg, (float) eta);
                yield spacing == null ? d : new DdimScheduler(d.prediction(), d.eta(), d.clipSample(), d.clipSampleRange(),
                        d.thresholding(), spacing, d.stepsOffset(), d.setAlphaToOne(), d.useClippedModelOutput());
            }
            case DPM_SOLVER_PLUS_PLUS -> {
                DpmSolverScheduler d = DpmSolverScheduler.fromConfig(cfg);
                yield spacing == null ? d : new DpmSolverScheduler(d.prediction(), d.thresholding(), spacing,
                        d.stepsOffset(), d.lowerOrderFinal(), d.eulerAtFinal(), d.finalSigmas());
            }
        };
        return s;
    }

    /**
     * Samples {@code count} images from noise drawn from the configuration's seed.
     *
     * @param config sampler, steps, seed, batch size
     * @param count number of images, at least 1
     * @return the samples
     * @throws IllegalArgumentException if count is below 1, or the configuration does not fit the model (steps
     *     above the training timesteps, an image size the model cannot take)
     * @throws IllegalStateException if the pipeline is closed
     */
    public Samples sample(SamplerConfig config, int count) {
        return sample(config, count, null);
    }

    /**
     * Samples {@code count} images from noise drawn from the configuration's seed, reporting progress.
     *
     * @param config sampler, steps, seed, batch size
     * @param count number of images, at least 1
     * @param progress called after every step, or null
     * @return the samples
     * @throws IllegalArgumentException if count is below 1, or the configuration does not fit the model
     * @throws IllegalStateException if the pipeline is closed
     */
    public Samples sample(SamplerConfig config, int count, SamplingProgress progress) {
        return sample(config, count, SampleInputs.none(), progress);
    }

    /**
     * Samples {@code count} images steered by class labels and classifier-free guidance, image-to-image or inpainting
     * ({@link SampleInputs}, with the guidance scale, strength and jumps of the configuration).
     *
     * @param config sampler, steps, seed, batch size, guidance scale, strength, jumps
     * @param count number of images, at least 1
     * @param inputs labels, init image, mask
     * @param progress called after every step (a step: a denoising step or one of inpainting's jumps back), or null
     * @return the samples
     * @throws IllegalArgumentException naming the input, if a label is outside the model's classes, labels are given
     *     to an unconditional model, guidance is asked of a model without a null class, an image or mask has the
     *     wrong size, or a mask is given without an image
     * @throws IllegalStateException if the pipeline is closed
     */
    public Samples sample(SamplerConfig config, int count, SampleInputs inputs, SamplingProgress progress) {
        if (count < 1) throw new IllegalArgumentException("count must be >= 1, got " + count);
        Objects.requireNonNull(inputs, "inputs");
        return run(config, count, null, inputs, progress);
    }

    /**
     * Samples from a given initial noise x_T instead of drawn noise (diffusers' {@code latents} argument), e.g.
     * to compare with another implementation: with a deterministic sampler (DDIM with eta 0, DPM-Solver++) the
     * result depends on x_T and the weights only.
     *
     * @param config sampler, steps, seed (for samplers that add noise), batch size
     * @param initialNoise x_T, float32 NCHW {@code [n, channels, height, width]} for some n &gt;= 1
     * @param progress called after every step, or null
     * @return the n samples
     * @throws IllegalArgumentException if the array is empty or not a whole number of images
     * @throws IllegalStateException if the pipeline is closed
     */
    public Samples sample(SamplerConfig config, float[] initialNoise, SamplingProgress progress) {
        Objects.requireNonNull(initialNoise, "initialNoise");
        return run(config, -1, initialNoise, SampleInputs.none(), progress);
    }

    private Samples run(SamplerConfig config, int count, float[] init, SampleInputs inputs, SamplingProgress progress) {
        Objects.requireNonNull(config, "config");
        ReentrantReadWriteLock.ReadLock r = lock.readLock();
        r.lock();
        try {
            if (closed) throw new IllegalStateException("the pipeline is closed");
            UNet2DConfig cfg = model.config();
            int h = config.imageHeight() > 0 ? config.imageHeight() : cfg.sampleHeight();
            int w = config.imageWidth() > 0 ? config.imageWidth() : cfg.sampleWidth();
            if (h < 1 || w < 1) {
                throw new IllegalArgumentException("the model's config has no sample_size: give one with"
                        + " SamplerConfig.withImageSize");
            }
            int f = 1 << (cfg.numBlocks() - 1);
            if (h % f != 0 || w % f != 0) {
                throw new IllegalArgumentException("image size " + h + "x" + w + " is not a multiple of the model's"
                        + " downsampling factor " + f);
            }
            int c = cfg.inChannels();
            int per = c * h * w;
            if (init != null) {
                if (init.length == 0 || init.length % per != 0) {
                    throw new IllegalArgumentException("initialNoise has " + init.length + " floats, not a positive"
                            + " multiple of one image (" + c + "x" + h + "x" + w + " = " + per + ")");
                }
                count = init.length / per;
                for (int i = 0; i < init.length; i++) {
                    if (!Float.isFinite(init[i])) {
                        throw new IllegalArgumentException("initialNoise[" + i + "] = " + init[i] + ": the initial noise"
                                + " must be finite (NaN or infinite noise gives black images)");
                    }
                }
            }
            SamplerScheduler scheduler = scheduler(config.type(), config.eta(), config.timestepSpacing().orElse(null),
                    schedulerConfig);
            if (config.useClippedModelOutput() && scheduler instanceof DdimScheduler d) {
                scheduler = d.withUseClippedModelOutput(true);
            }
            int[] labels = perImageLabels(inputs.labelsRef(), count);
            float[] image = ImageInputs.perImage("init image", inputs.imageRef(), count, h, w, c, false);
            float[] mask = inputs.maskRef() == null ? null : ImageInputs.perImage("mask", inputs.maskRef(), count, h, w, c, true);
            if (mask != null && image == null) {
                throw new IllegalArgumentException("mask: inpainting needs an init image too");
            }
            float scale = (float) config.guidanceScale();
            if (scale != 1f && classes == null) {
                throw new IllegalArgumentException("guidance scale " + config.guidanceScale() + " needs a class-conditional"
                        + " model; this one is unconditional");
            }
            int steps = config.steps() == 0 ? schedule.numTrainTimesteps() : config.steps();
            int batch = Math.min(config.batchSize(), count);
            float[] all = new float[Math.multiplyExact(count, per)];
            try (Sampler sampler = new Sampler(model, schedule, scheduler, steps, batch, h, w)) {
                int batches = (count + batch - 1) / batch;
                Sampler.Inputs every = new Sampler.Inputs(labels, classes == null ? -1 : classes.nullClass(), scale, image,
                        mask, config.strength(), config.jumpLength(), config.jumpNSample());
                int perBatch = sampler.runPlan(every).ops().size();
                int total = batches * perBatch;
                for (int k = 0; k < batches; k++) {
                    int first = k * batch;
                    int n = Math.min(batch, count - first);
                    float[] x = init == null ? null : Arrays.copyOfRange(init, first * per, (first + n) * per);
                    int done = k * perBatch;
                    Sampler.Progress p = progress == null ? null : (d, t) -> progress.onStep(done + d, total);
                    float[] out = sampler.run(config.seed(), first, n, x, every.slice(first, n, per), p);
                    System.arraycopy(out, 0, all, first * per, n * per);
                }
            }
            return new Samples(all, count, c, h, w);
        } finally {
            r.unlock();
        }
    }

    /** One label per image: the given ones, one repeated for all, or null. */
    private int[] perImageLabels(int[] given, int count) {
        if (given == null) return null;
        if (classes == null) {
            throw new IllegalArgumentException("class labels: the model is unconditional (its config has no num_class_embeds)");
        }
        if (given.length != 1 && given.length != count) {
            throw new IllegalArgumentException("class labels: give one label or one per image (" + count + "), got "
                    + given.length);
        }
        int[] out = new int[count];
        for (int i = 0; i < count; i++) {
            int v = given[given.length == 1 ? 0 : i];
            if (v < 0 || v >= classes.names().size()) {
                throw new IllegalArgumentException("class labels: " + v + " is not a class of this model (0 to "
                        + (classes.names().size() - 1) + ")");
            }
            out[i] = v;
        }
        return out;
    }

    /**
     * Whether the model takes class labels.
     *
     * @return true for a class-conditional model (num_class_embeds)
     */
    public boolean isClassConditional() {
        return classes != null;
    }

    /**
     * The class names of a class-conditional model, by label (from the checkpoint's class_labels.json, or the labels'
     * numbers when it has none).
     *
     * @return the names, empty for an unconditional model
     */
    public java.util.List<String> classNames() {
        return classes == null ? java.util.List.of() : classes.names();
    }

    /**
     * The label of a class given by number or name (case-insensitive).
     *
     * @param name a label number or a class name
     * @return the label
     * @throws IllegalArgumentException if it names no class of this model (or the model is unconditional)
     */
    public int classLabel(String name) {
        Objects.requireNonNull(name, "name");
        int v = classes == null ? -1 : classes.parse(name);
        if (v < 0) {
            throw new IllegalArgumentException("'" + name + "' is not a class of this model"
                    + (classes == null ? " (it is unconditional)" : " (classes: " + String.join(", ", classes.names()) + ")"));
        }
        return v;
    }

    /**
     * Whether classifier-free guidance is available: a class-conditional model trained with a null class.
     *
     * @return true when guidance scales other than 1 can be used
     */
    public boolean supportsGuidance() {
        return classes != null && classes.hasNullClass();
    }

    /**
     * Channels of an image (the model's {@code in_channels}).
     *
     * @return the channels
     */
    public int channels() {
        return model.config().inChannels();
    }

    /**
     * The image height of the model's {@code sample_size}.
     *
     * @return the height, or -1 when the config has no {@code sample_size}
     */
    public int height() {
        return model.config().sampleHeight();
    }

    /**
     * The image width of the model's {@code sample_size}.
     *
     * @return the width, or -1 when the config has no {@code sample_size}
     */
    public int width() {
        return model.config().sampleWidth();
    }

    /**
     * The number of training timesteps T of the noise schedule ({@code num_train_timesteps}).
     *
     * @return T
     */
    public int numTrainTimesteps() {
        return schedule.numTrainTimesteps();
    }

    /**
     * What the model predicts, diffusers' {@code prediction_type}.
     *
     * @return {@code "epsilon"}, {@code "sample"} or {@code "v_prediction"}
     */
    public String predictionType() {
        return DdpmScheduler.fromConfig(schedulerConfig).prediction().configName();
    }

    /**
     * The number of model parameters.
     *
     * @return the parameter count
     */
    public long parameterCount() {
        return model.layout().params().stream().mapToLong(UNet2DLayout.Param::size).sum();
    }

    /**
     * Whether the EMA weights were loaded.
     *
     * @return true for the checkpoint's {@code ema/} weights, false for its model weights
     */
    public boolean usesEmaWeights() {
        return ema;
    }

    /**
     * The folder the pipeline was loaded from.
     *
     * @return the folder as given to {@link Diffusion4j#loadPipeline}
     */
    public Path source() {
        return source;
    }

    /**
     * The model's configuration as diffusers' {@code config.json} text.
     *
     * @return the JSON text
     */
    public String modelConfigJson() {
        return model.config().toJson();
    }

    /**
     * Releases the weights and the model's device memory, after waiting for running {@link #sample} calls to
     * return. Idempotent.
     */
    @Override
    public void close() {
        ReentrantReadWriteLock.WriteLock wl = lock.writeLock();
        wl.lock();
        try {
            if (closed) return;
            closed = true;
            model.close();
        } finally {
            wl.unlock();
            owner.unregister(this);
        }
    }

    /**
     * A one-line description: source folder, size, weights.
     *
     * @return the description
     */
    @Override
    public String toString() {
        return "DiffusionPipeline[" + source + ", " + channels() + "x" + height() + "x" + width() + ", "
                + (ema ? "EMA" : "model") + " weights]";
    }
}
