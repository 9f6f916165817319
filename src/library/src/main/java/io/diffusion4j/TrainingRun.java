package io.diffusion4j;

import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.kernels.EmaSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.Dataset;
import io.diffusion4j.train.LossCurve;
import io.diffusion4j.train.LossHistory;
import io.diffusion4j.train.Trainer;
import io.diffusion4j.train.TrainingDefaults;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;

/**
 * A training run from Java: the denoising loop of diffusers' {@code train_unconditional.py} (AdamW, linear
 * warmup, gradient clipping at norm 1, EMA of the weights) on one device, as the {@code train} command runs it.
 * Built by {@link Diffusion4j#newTrainingRun()}:
 *
 * <pre>{@code
 * try (Diffusion4j d4j = Diffusion4j.open();
 *      TrainingRun run = d4j.newTrainingRun().data(TrainingData.procedural()).steps(300).batchSize(16)
 *              .progress(s -> System.out.println(s.step() + " " + s.loss())).build()) {
 *     run.train();
 *     run.save(Path.of("checkpoints/mine"));   // then d4j.loadPipeline(Path.of("checkpoints/mine"))
 * }
 * }</pre>
 *
 * <p>A run is a pure function of its settings and seed: the same run gives the same weights bit for bit on
 * the CPU, whatever the thread count. Not thread-safe: use a run from one thread at a time.
 */
public final class TrainingRun implements AutoCloseable {
    /**
     * The settings of a run, with the {@code train} command's defaults: procedural data, the 28x28 UNet with
     * block_out_channels 32/64/64, 300 steps of batch 16, lr 1e-3 with 50 warmup steps, weight decay 1e-6,
     * EMA decay 0.999, epsilon prediction, linear betas over 1000 timesteps, seed 0.
     */
    public static final class Builder {
        private final Diffusion4j owner;
        private TrainingData data = TrainingData.procedural();
        private UNet2DConfig config; // null: the default model
        private Path initFrom;
        private int steps = 300, batchSize = 16, warmupSteps = 50, timesteps = 1000;
        private double learningRate = 1e-3, weightDecay = 1e-6, emaDecay = 0.999, minSnrGamma = 0;
        private PredictionType prediction = PredictionType.EPSILON;
        private BetaSchedule betas = BetaSchedule.LINEAR;
        private long seed;
        private TrainingProgress progress;
        private boolean classConditional;
        private double condDropProb = Trainer.Options.DEFAULT_COND_DROP_PROB;

        Builder(Diffusion4j owner) {
            this.owner = owner;
        }

        /**
         * The images to train on (default {@link TrainingData#procedural()}).
         *
         * @param source the data source
         * @return this builder
         */
        public Builder data(TrainingData source) {
            this.data = Objects.requireNonNull(source, "data");
            return this;
        }

        /**
         * The model, as the text of a diffusers {@code UNet2DModel} {@code config.json} (default: the 28x28x1
         * model with block_out_channels 32/64/64, attention at the lowest resolution, 1,112,801 parameters).
         *
         * @param configJson the config.json text
         * @return this builder
         * @throws IllegalArgumentException if the text is not a valid UNet2DModel config (the message says why)
         */
        public Builder modelConfigJson(String configJson) {
            Objects.requireNonNull(configJson, "configJson");
            this.config = UNet2DConfig.fromJson(configJson);
            return this;
        }

        /**
         * Starts from the weights of a diffusers {@code UNet2DModel} folder (its config is the model's; the
         * optimiser starts fresh at step 0).
         *
         * @param modelDir a folder with {@code config.json} and {@code diffusion_pytorch_model.safetensors}
         * @return this builder
         */
        public Builder initFrom(Path modelDir) {
            this.initFrom = Objects.requireNonNull(modelDir, "modelDir");
            return this;
        }

        /**
         * The number of optimisation steps {@link TrainingRun#train()} runs (default 300).
         *
         * @param n at least 1
         * @return this builder
         * @throws IllegalArgumentException if {@code n < 1}
         */
        public Builder steps(int n) {
            if (n < 1) throw new IllegalArgumentException("steps must be >= 1, got " + n);
            this.steps = n;
            return this;
        }

        /**
         * Images per step (default 16).
         *
         * @param n at least 1
         * @return this builder
         * @throws IllegalArgumentException if {@code n < 1}
         */
        public Builder batchSize(int n) {
            if (n < 1) throw new IllegalArgumentException("batchSize must be >= 1, got " + n);
            this.batchSize = n;
            return this;
        }

        /**
         * The peak learning rate of AdamW (default 1e-3).
         *
         * @param lr finite and {@code >= 0}
         * @return this builder
         * @throws IllegalArgumentException if lr is negative or not finite
         */
        public Builder learningRate(double lr) {
            if (!(Double.isFinite(lr) && lr >= 0)) throw new IllegalArgumentException("learningRate must be finite and >= 0, got " + lr);
            this.learningRate = lr;
            return this;
        }

        /**
         * Linear learning-rate warmup over the first n steps (default 50; 0 = none).
         *
         * @param n at least 0
         * @return this builder
         * @throws IllegalArgumentException if {@code n < 0}
         */
        public Builder warmupSteps(int n) {
            if (n < 0) throw new IllegalArgumentException("warmupSteps must be >= 0, got " + n);
            this.warmupSteps = n;
            return this;
        }

        /**
         * AdamW's decoupled weight decay (default 1e-6).
         *
         * @param wd finite and {@code >= 0}
         * @return this builder
         * @throws IllegalArgumentException if wd is negative or not finite
         */
        public Builder weightDecay(double wd) {
            if (!(Double.isFinite(wd) && wd >= 0)) throw new IllegalArgumentException("weightDecay must be finite and >= 0, got " + wd);
            this.weightDecay = wd;
            return this;
        }

        /**
         * The maximum EMA decay (default 0.999), reached through diffusers' EMA warmup
         * ({@code 1 - (1 + step)^-0.75}).
         *
         * @param decay in [0, 1]
         * @return this builder
         * @throws IllegalArgumentException if decay is outside [0, 1]
         */
        public Builder emaDecay(double decay) {
            if (!(decay >= 0 && decay <= 1)) throw new IllegalArgumentException("emaDecay must be in [0, 1], got " + decay);
            this.emaDecay = decay;
            return this;
        }

        /**
         * What the model learns to predict, diffusers' {@code prediction_type} (default {@code "epsilon"}).
         *
         * @param type {@code "epsilon"}, {@code "sample"} or {@code "v_prediction"}
         * @return this builder
         * @throws IllegalArgumentException if the name is unknown
         */
        public Builder predictionType(String type) {
            this.prediction = PredictionType.fromConfigName(type);
            return this;
        }

        /**
         * The noise schedule: diffusers' {@code beta_schedule} (default {@code "linear"}, beta 1e-4 to 0.02).
         *
         * @param name {@code "linear"}, {@code "scaled_linear"}, {@code "squaredcos_cap_v2"} or {@code "sigmoid"}
         * @return this builder
         * @throws IllegalArgumentException if the name is unknown
         */
        public Builder betaSchedule(String name) {
            this.betas = BetaSchedule.fromConfigName(name);
            return this;
        }

        /**
         * The number of training timesteps T (default 1000).
         *
         * @param t in [1, 100000]
         * @return this builder
         * @throws IllegalArgumentException if t is outside [1, 100000]
         */
        public Builder numTrainTimesteps(int t) {
            if (t < 1 || t > 100_000) throw new IllegalArgumentException("numTrainTimesteps must be in [1, 100000], got " + t);
            this.timesteps = t;
            return this;
        }

        /**
         * Min-SNR-gamma loss weighting (Hang et al. 2023; 5 is the paper's choice); 0 turns it off (default).
         *
         * @param gamma 0, or finite and &gt; 0
         * @return this builder
         * @throws IllegalArgumentException if gamma is negative or not finite
         */
        public Builder minSnrGamma(double gamma) {
            if (!(Double.isFinite(gamma) && gamma >= 0)) throw new IllegalArgumentException("minSnrGamma must be finite and >= 0, got " + gamma);
            this.minSnrGamma = gamma;
            return this;
        }

        /**
         * The seed of the initial weights, the batches, the timesteps and the noise (default 0).
         *
         * @param s any value
         * @return this builder
         */
        public Builder seed(long s) {
            this.seed = s;
            return this;
        }

        /**
         * Trains a class-conditional model (default false): diffusers' {@code num_class_embeds} set to the data's
         * classes plus a null class (unless the model config already sets it), labels from the data (Fashion-MNIST's
         * label files; an image folder's sub-folders, sorted; {@link TrainingData#withClassLabels} for arrays), each
         * replaced by the null class with probability {@link #condDropProb} so that classifier-free guidance works.
         * The checkpoint gets {@code class_labels.json} (class names and the null class).
         *
         * @param on whether to train class-conditionally
         * @return this builder
         */
        public Builder classConditional(boolean on) {
            this.classConditional = on;
            return this;
        }

        /**
         * The probability that a class-conditional sample's label is replaced by the null class (default 0.1).
         *
         * @param p in [0, 1)
         * @return this builder
         * @throws IllegalArgumentException if p is outside [0, 1)
         */
        public Builder condDropProb(double p) {
            if (!(p >= 0 && p < 1)) throw new IllegalArgumentException("condDropProb must be in [0, 1), got " + p);
            this.condDropProb = p;
            return this;
        }

        /**
         * Called after every step (default: none).
         *
         * @param callback the callback, or null for none
         * @return this builder
         */
        public Builder progress(TrainingProgress callback) {
            this.progress = callback;
            return this;
        }

        /**
         * Creates the run: reads the data and the initial weights, builds the model and the optimiser state on
         * the device.
         *
         * @return the run, open until closed or until its {@link Diffusion4j} is closed
         * @throws IOException if the data or the initial weights cannot be read (the message names the file)
         * @throws IllegalArgumentException if the data does not fit the model (channels, size)
         */
        public TrainingRun build() throws IOException {
            owner.checkOpen();
            UNet2DConfig cfg = config == null ? TrainingDefaults.config() : config;
            float[] init = null;
            if (initFrom != null) {
                Checkpoint.ModelFolder f = Checkpoint.readModelFolder(initFrom);
                if (config != null && !config.equals(f.config())) {
                    throw new IllegalArgumentException("modelConfigJson differs from the config.json of initFrom "
                            + f.dir() + " (leave it out: the folder's config is used)");
                }
                cfg = f.config();
                init = f.weights();
            }
            Trainer.Options options = new Trainer.Options(batchSize, learningRate, warmupSteps,
                    new OptimKernels.AdamW(learningRate, 0.95, 0.999, 1e-8, weightDecay), 1.0,
                    EmaSchedule.power(emaDecay, 0.0, 0, 1.0, 0.75), prediction, seed, true, minSnrGamma, condDropProb);
            NoiseSchedule schedule = NoiseSchedule.of(betas, timesteps, 0.0001, 0.02);
            boolean labelled = classConditional || cfg.isClassConditional();
            Dataset dataset = data.open(cfg, seed, labelled);
            if (labelled && !cfg.isClassConditional()) {
                if (init != null) {
                    throw new IllegalArgumentException("initFrom " + initFrom + " is an unconditional model: it cannot be"
                            + " trained class-conditionally");
                }
                java.util.LinkedHashMap<String, Object> m = cfg.toMap();
                m.put("num_class_embeds", (long) dataset.numClasses() + 1); // the classes and the null class
                cfg = UNet2DConfig.fromMap(m);
            }
            Map<String, String> meta = new LinkedHashMap<>();
            if (data.commandName() != null) { // lets `train --resume` continue the run from the command line
                meta.put("data", data.commandName());
                if (data.directory() != null) meta.put("data_dir", data.directory().toAbsolutePath().toString());
                meta.put("data_images", Integer.toString(dataset.size()));
            }
            meta.put("run_steps", Integer.toString(steps));
            if (initFrom != null) meta.put("init_from", initFrom.toAbsolutePath().toString());
            UNet2DModel model = new UNet2DModel(owner.backend(), cfg, seed);
            Trainer trainer;
            try {
                if (init != null) model.loadFlat(init);
                trainer = new Trainer(model, schedule, dataset, options);
            } catch (RuntimeException e) {
                model.close();
                throw e;
            }
            TrainingRun run = new TrainingRun(owner, model, trainer, dataset, steps, meta, progress);
            owner.register(run);
            return run;
        }
    }

    private final Diffusion4j owner;
    private final UNet2DModel model;
    private final Trainer trainer;
    private final Dataset dataset;
    private final int steps;
    private final Map<String, String> meta;
    private final TrainingProgress progress;
    private final LossHistory history = new LossHistory();
    private long nanos;
    private boolean closed;

    private TrainingRun(Diffusion4j owner, UNet2DModel model, Trainer trainer, Dataset dataset, int steps,
                        Map<String, String> meta, TrainingProgress progress) {
        this.owner = owner;
        this.model = model;
        this.trainer = trainer;
        this.dataset = dataset;
        this.steps = steps;
        this.meta = meta;
        this.progress = progress;
    }

    /**
     * Runs one optimisation step (also past the configured step count) and reports it to the progress callback.
     *
     * @return what the step measured
     * @throws IllegalStateException if the run is closed
     */
    public TrainingStep step() {
        checkOpen();
        long t0 = System.nanoTime();
        Trainer.StepResult r = trainer.step();
        nanos += System.nanoTime() - t0;
        history.add(r);
        TrainingStep s = new TrainingStep(r.step(), steps, r.loss(), r.gradNorm(), r.learningRate(), nanos / 1e9);
        if (progress != null) progress.onStep(s);
        return s;
    }

    /**
     * Runs the steps that remain of the configured count ({@link Builder#steps}); returns at once when they are
     * done.
     *
     * @return the last step run, or null when no step remained
     * @throws IllegalStateException if the run is closed
     */
    public TrainingStep train() {
        checkOpen();
        TrainingStep last = null;
        while (trainer.stepCount() < steps) last = step();
        return last;
    }

    /**
     * Steps done so far.
     *
     * @return the step count
     */
    public long completedSteps() {
        return trainer.stepCount();
    }

    /**
     * The configured step count of {@link #train()}.
     *
     * @return the steps
     */
    public int totalSteps() {
        return steps;
    }

    /**
     * The number of model parameters.
     *
     * @return the parameter count
     */
    public long parameterCount() {
        return model.layout().params().stream().mapToLong(p -> p.size()).sum();
    }

    /**
     * The data being trained on, described in a few words.
     *
     * @return the description
     */
    public String dataDescription() {
        return dataset.describe();
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
     * Writes the checkpoint to {@code dir} (created if needed), each file atomically: {@code config.json},
     * {@code diffusion_pytorch_model.safetensors}, {@code ema/} (the EMA weights, which pipelines load by
     * default), {@code scheduler_config.json}, {@code training_state.safetensors} (optimiser state and per-step
     * history), and beside them {@code loss.csv} and {@code loss_curve.png}. {@link Diffusion4j#loadPipeline}
     * and the {@code sample} command load it; for the built-in, Fashion-MNIST and image-folder data,
     * {@code train --resume dir} continues it.
     *
     * @param dir the checkpoint folder
     * @throws IOException if a file cannot be written
     * @throws IllegalStateException if the run is closed
     */
    public void save(Path dir) throws IOException {
        checkOpen();
        Objects.requireNonNull(dir, "dir");
        Checkpoint.save(dir, trainer, history, meta);
        AtomicFiles.writeString(dir.resolve(TrainingDefaults.LOSS_CSV), history.toCsv());
        if (history.size() > 0) {
            UNet2DConfig c = model.config();
            String title = String.format(Locale.ROOT, "diffusion4j: %s, UNet2DModel %s (%,d parameters)",
                    dataset.describe(), Arrays.toString(c.blockOutChannels()), parameterCount());
            Trainer.Options o = trainer.options();
            String subtitle = String.format(Locale.ROOT, "batch %d, lr %.3g (warmup %d), EMA %.4g, %s, seed %d",
                    o.batchSize(), o.learningRate(), o.warmupSteps(), o.ema().maxDecay(), o.prediction().configName(), o.seed());
            LossCurve.write(dir.resolve(TrainingDefaults.LOSS_CURVE), history, title, subtitle);
        }
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("the training run is closed");
    }

    /** Releases the model, the optimiser state and the batch buffers. Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        try {
            trainer.close();
            model.close();
        } finally {
            owner.unregister(this);
        }
    }

    /**
     * A one-line description: data, step count.
     *
     * @return the description
     */
    @Override
    public String toString() {
        return "TrainingRun[" + dataset.describe() + ", step " + trainer.stepCount() + " of " + steps + "]";
    }
}
