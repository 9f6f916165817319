package io.diffusion4j.train;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.EmaSchedule;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The denoising training loop of diffusers' train_unconditional.py on one backend. One
 * {@link #step()}:
 * <ol>
 *   <li>draws a batch x0 ({@link BatchSampler}: random images, random horizontal flips) and one
 *       timestep per sample uniformly in [0, T) from the same host generator;</li>
 *   <li>noises it with {@link DiffusionKernels#addNoise}: eps from the counter-based RNG stream
 *       (seed, offset = noise offset), the offset advancing by 1 per step;</li>
 *   <li>runs the model's training forward (NHWC, timesteps as float; dropout when the config has
 *       p &gt; 0, masks from the step count, see {@link UNet2DModel#forwardTraining}), the fused loss of
 *       the prediction type with its gradient as dOut, and the backward pass into zeroed gradients;</li>
 *   <li>clips by the global gradient norm (torch's clip_grad_norm_ scale), applies AdamW to the whole
 *       flat parameter buffer with learning rate {@code lr * min(1, step / warmup)} (step 1-based), and
 *       updates the EMA copy of the parameters with the {@link EmaSchedule}'s decay.</li>
 * </ol>
 * <p><b>Class-conditional models</b> (num_class_embeds): each sample's class label comes from the dataset, and with
 * probability {@link Options#condDropProb()} (drawn from the same host generator, after the batch) it is replaced
 * by the null class {@code num_class_embeds - 1}, so that the one model also learns the unconditional prediction
 * that classifier-free guidance needs (Ho and Salimans 2022). The data's classes must number
 * {@code num_class_embeds - 1} (or {@code num_class_embeds} with drop probability 0: no null class).
 *
 * <p>The state that determines the future — step count, noise seed and offset, the sampler's generator
 * state, the parameters, AdamW's m and v and the EMA — is exactly what {@link Checkpoint} saves, so
 * a run is a pure function of its seeds and a resumed run continues bit for bit on the same backend.
 *
 * <p><b>Data-parallel runs</b> ({@link GradientExchange}, n ranks of batchSize each): every rank draws the same
 * global batch of {@code n * batchSize} samples, timesteps and label drops from the same host generator and noises
 * all of it (the noise of row b is the same as in one process at batch {@code n * batchSize}), then runs the model
 * on its own rows {@code [rank * batchSize, (rank + 1) * batchSize)} only; only those rows' images are read. The
 * exchange averages the gradients before clipping, so the ranks step identically and follow one process at the
 * global batch up to the order of the gradient sums. Dropout masks take the offsets of step * n + rank, so ranks do
 * not share masks (and differ from the one-process run's).
 *
 * <p>Owns its buffers (m, v, EMA, batch tensors), not the model. Not thread-safe.
 */
public final class Trainer implements AutoCloseable {
    /**
     * Hyper-parameters.
     *
     * @param batchSize images per step
     * @param learningRate peak learning rate after warmup
     * @param warmupSteps linear warmup steps (0: none)
     * @param adamw AdamW betas, eps and weight decay (its lr is ignored; the schedule sets it)
     * @param maxGradNorm clip the global gradient norm to this (diffusers' default 1.0)
     * @param ema the EMA decay schedule
     * @param prediction what the model predicts (epsilon, sample, v_prediction)
     * @param seed seed of the noise stream and the sampler
     * @param flips random horizontal flips
     * @param minSnrGamma min-SNR-gamma loss weighting ({@link MinSnrWeights}) with this gamma; 0 = off (every
     *     sample weighs 1)
     * @param condDropProb for a class-conditional model, the probability that a sample's label is replaced by the
     *     null class (classifier-free guidance's training); in [0, 1)
     */
    public record Options(int batchSize, double learningRate, int warmupSteps, OptimKernels.AdamW adamw,
                          double maxGradNorm, EmaSchedule ema, PredictionType prediction, long seed, boolean flips,
                          double minSnrGamma, double condDropProb) {
        /** The default label drop probability of class-conditional training (as in Ho and Salimans' experiments). */
        public static final double DEFAULT_COND_DROP_PROB = 0.1;

        public Options {
            if (batchSize < 1) throw new IllegalArgumentException("batchSize must be >= 1, got " + batchSize);
            if (!(Double.isFinite(learningRate) && learningRate >= 0)) {
                throw new IllegalArgumentException("learningRate must be finite and >= 0, got " + learningRate);
            }
            if (warmupSteps < 0) throw new IllegalArgumentException("warmupSteps must be >= 0, got " + warmupSteps);
            Objects.requireNonNull(adamw, "adamw");
            if (!(Double.isFinite(maxGradNorm) && maxGradNorm > 0)) {
                throw new IllegalArgumentException("maxGradNorm must be finite and > 0, got " + maxGradNorm);
            }
            Objects.requireNonNull(ema, "ema");
            Objects.requireNonNull(prediction, "prediction");
            if (minSnrGamma != 0) MinSnrWeights.checkGamma(minSnrGamma);
            if (!(condDropProb >= 0 && condDropProb < 1)) {
                throw new IllegalArgumentException("condDropProb must be in [0, 1), got " + condDropProb);
            }
        }

        /** With the default label drop probability. */
        public Options(int batchSize, double learningRate, int warmupSteps, OptimKernels.AdamW adamw, double maxGradNorm,
                       EmaSchedule ema, PredictionType prediction, long seed, boolean flips, double minSnrGamma) {
            this(batchSize, learningRate, warmupSteps, adamw, maxGradNorm, ema, prediction, seed, flips, minSnrGamma,
                    DEFAULT_COND_DROP_PROB);
        }

        /** Without loss weighting (minSnrGamma 0). */
        public Options(int batchSize, double learningRate, int warmupSteps, OptimKernels.AdamW adamw, double maxGradNorm,
                       EmaSchedule ema, PredictionType prediction, long seed, boolean flips) {
            this(batchSize, learningRate, warmupSteps, adamw, maxGradNorm, ema, prediction, seed, flips, 0.0);
        }

        /**
         * diffusers train_unconditional.py defaults scaled down: lr 1e-4, warmup 500, AdamW (0.95, 0.999, 1e-8,
         * weight decay 1e-6), clip 1.0, EMA with warmup (inv_gamma 1, power 3/4, max 0.9999), epsilon.
         */
        public static Options defaults(int batchSize, long seed) {
            return new Options(batchSize, 1e-4, 500, new OptimKernels.AdamW(1e-4, 0.95, 0.999, 1e-8, 1e-6), 1.0,
                    EmaSchedule.power(0.9999, 0.0, 0, 1.0, 0.75), PredictionType.EPSILON, seed, true);
        }

        public Options withLearningRate(double lr, int warmup) {
            return new Options(batchSize, lr, warmup, adamw, maxGradNorm, ema, prediction, seed, flips, minSnrGamma,
                    condDropProb);
        }

        public Options withPrediction(PredictionType p) {
            return new Options(batchSize, learningRate, warmupSteps, adamw, maxGradNorm, ema, p, seed, flips, minSnrGamma,
                    condDropProb);
        }

        public Options withEma(EmaSchedule e) {
            return new Options(batchSize, learningRate, warmupSteps, adamw, maxGradNorm, e, prediction, seed, flips, minSnrGamma,
                    condDropProb);
        }

        /** With min-SNR-gamma loss weighting ({@code gamma > 0}) or without ({@code 0}). */
        public Options withMinSnrGamma(double gamma) {
            return new Options(batchSize, learningRate, warmupSteps, adamw, maxGradNorm, ema, prediction, seed, flips, gamma,
                    condDropProb);
        }

        /** With the class-label drop probability of class-conditional training. */
        public Options withCondDropProb(double p) {
            return new Options(batchSize, learningRate, warmupSteps, adamw, maxGradNorm, ema, prediction, seed, flips,
                    minSnrGamma, p);
        }
    }

    /** What one step measured: the batch mean loss, the gradient norm before clipping, the lr used. */
    public record StepResult(long step, double loss, double gradNorm, double learningRate, double emaDecay) {}

    /** The host state a checkpoint stores besides tensors. */
    public record State(long step, long noiseSeed, long noiseOffset, long samplerState) {}

    /**
     * Dropout masks use the Philox key {@code mix(seed ^ DROPOUT_SEED_SALT)}, not the noise stream's key
     * {@code seed}, so their offsets never meet the noise offsets.
     */
    private static final long DROPOUT_SEED_SALT = 0x3C6EF372FE94F82BL;

    private final UNet2DModel model;
    private final NoiseSchedule schedule;
    private final NativeSchedule nativeSchedule;
    private final Options options;
    private BatchSampler sampler;
    private final int[] shape; // N, H, W, C of this rank's rows
    private final GradientExchange exchange; // null: one process
    private final int rank, world, globalRows;
    private final float[] hostBatch; // all ranks' rows; only this rank's are read from the data
    private final int[] globalTimesteps;
    private final int[] timesteps;
    private final float[] timestepsF;
    private final float[] lossWeights; // per timestep (min-SNR-gamma), or null
    private final int[] labels; // per sample of this rank, class-conditional models only (else null)
    private final int[] globalLabels; // per sample of the global batch (same condition)
    private final int nullClass; // the label that stands for "no class", or -1
    private final List<Tensor> owned = new ArrayList<>();
    private final Tensor m, v, ema, x0, xT, eps, loss, dOut;
    private final Tensor globalX0, globalXT, globalEps; // == x0, xT, eps in one process
    private long step;
    private long noiseOffset;
    private boolean closed;

    /**
     * @param model the network (its parameters are trained in place; not closed by the trainer)
     * @param schedule the noise schedule (T, betas)
     * @param data the images; their size and channels must fit the model
     * @param options hyper-parameters and seed
     */
    public Trainer(UNet2DModel model, NoiseSchedule schedule, Dataset data, Options options) {
        this(model, schedule, data, options, null);
    }

    /**
     * A trainer that is one rank of a data-parallel run ({@code exchange} not null; see the class comment) or the
     * only process ({@code exchange} null).
     *
     * @param options hyper-parameters; {@code batchSize} is the batch of this rank (the global batch is
     *     {@code worldSize} times that)
     */
    public Trainer(UNet2DModel model, NoiseSchedule schedule, Dataset data, Options options, GradientExchange exchange) {
        this.exchange = exchange;
        this.rank = exchange == null ? 0 : exchange.rank();
        this.world = exchange == null ? 1 : exchange.worldSize();
        if (world < 1 || rank < 0 || rank >= world) {
            throw new IllegalArgumentException("rank " + rank + " of " + world + " ranks");
        }
        this.globalRows = Math.multiplyExact(Objects.requireNonNull(options, "options").batchSize(), world);
        this.model = Objects.requireNonNull(model, "model");
        this.schedule = Objects.requireNonNull(schedule, "schedule");
        Objects.requireNonNull(data, "data");
        this.options = Objects.requireNonNull(options, "options");
        if (data.channels() != model.config().inChannels() || data.channels() != model.config().outChannels()) {
            throw new IllegalArgumentException("the data has " + data.channels() + " channels, the model in_channels "
                    + model.config().inChannels() + " and out_channels " + model.config().outChannels()
                    + " (both must match the data)");
        }
        int f = 1 << (model.config().numBlocks() - 1);
        if (data.height() % f != 0 || data.width() % f != 0) {
            throw new IllegalArgumentException("images of " + data.height() + "x" + data.width()
                    + " do not fit the model: height and width must be multiples of " + f);
        }
        Integer classes = model.config().numClassEmbeds();
        if (classes == null) {
            this.labels = null;
            this.globalLabels = null;
            this.nullClass = -1;
        } else {
            int k = data.numClasses();
            if (k == 0) {
                throw new IllegalArgumentException("the model is class-conditional (num_class_embeds " + classes
                        + ") but " + data.describe() + " has no class labels");
            }
            if (k == classes - 1) {
                this.nullClass = classes - 1;
            } else if (k == classes && options.condDropProb() == 0) {
                this.nullClass = -1;
            } else {
                throw new IllegalArgumentException("the data has " + k + " classes; the model's num_class_embeds "
                        + classes + " must be " + (k + 1) + " (the classes and the null class)"
                        + (options.condDropProb() == 0 ? " or " + k : ""));
            }
            this.labels = new int[options.batchSize()];
            this.globalLabels = new int[globalRows];
        }
        this.sampler = new BatchSampler(data, SplitMix64.mix(options.seed() ^ 0x6A09E667F3BCC909L), options.flips());
        this.shape = new int[] {options.batchSize(), data.height(), data.width(), data.channels()};
        long batchFloats = (long) globalRows * data.imageFloats();
        if (batchFloats > Integer.MAX_VALUE - 16) throw new IllegalArgumentException("batch of " + batchFloats + " floats is too large");
        this.hostBatch = new float[(int) batchFloats];
        this.globalTimesteps = new int[globalRows];
        this.timesteps = new int[options.batchSize()];
        this.timestepsF = new float[options.batchSize()];
        this.lossWeights = options.minSnrGamma() > 0
                ? MinSnrWeights.table(schedule, options.prediction(), options.minSnrGamma()) : null;
        NativeSchedule ns = NativeSchedule.of(schedule);
        this.nativeSchedule = ns;
        try {
            long p = model.parameters().elementCount();
            m = own(Tensor.allocate(model.backend(), DType.FLOAT32, p));
            v = own(Tensor.allocate(model.backend(), DType.FLOAT32, p));
            ema = own(Tensor.allocate(model.backend(), DType.FLOAT32, p));
            m.fill(0f);
            v.fill(0f);
            ema.copyFrom(model.parameters().toFloatArray());
            long[] s = {shape[0], shape[1], shape[2], shape[3]};
            if (world == 1) {
                x0 = globalX0 = own(Tensor.allocate(model.backend(), DType.FLOAT32, s));
                xT = globalXT = own(Tensor.allocate(model.backend(), DType.FLOAT32, s));
                eps = globalEps = own(Tensor.allocate(model.backend(), DType.FLOAT32, s));
            } else {
                long[] g = {globalRows, shape[1], shape[2], shape[3]};
                long first = (long) rank * shape[0] * data.imageFloats();
                globalX0 = own(Tensor.allocate(model.backend(), DType.FLOAT32, g));
                globalXT = own(Tensor.allocate(model.backend(), DType.FLOAT32, g));
                globalEps = own(Tensor.allocate(model.backend(), DType.FLOAT32, g));
                x0 = own(globalX0.view(first, s)); // views close before their tensors (reverse order)
                xT = own(globalXT.view(first, s));
                eps = own(globalEps.view(first, s));
            }
            dOut = own(Tensor.allocate(model.backend(), DType.FLOAT32, s));
            loss = own(Tensor.allocate(model.backend(), DType.FLOAT32, shape[0]));
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    private Tensor own(Tensor t) {
        owned.add(t);
        return t;
    }

    public UNet2DModel model() {
        return model;
    }

    public NoiseSchedule schedule() {
        return schedule;
    }

    public Options options() {
        return options;
    }

    /** Optimisation steps done so far. */
    public long stepCount() {
        return step;
    }

    /** Images per second would be {@code batchSize * steps / seconds}; this rank's batch in a data-parallel run. */
    public int batchSize() {
        return options.batchSize();
    }

    /** The number of ranks of the run (1: one process). */
    public int worldSize() {
        return world;
    }

    /** This trainer's rank (0 in one process). */
    public int rank() {
        return rank;
    }

    /** AdamW's first moments, flat, in the device layout of {@link UNet2DModel#parameters()}. */
    public Tensor adamM() {
        checkOpen();
        return m;
    }

    /** AdamW's second moments, flat, device layout. */
    public Tensor adamV() {
        checkOpen();
        return v;
    }

    /** The EMA of the parameters, flat, device layout. */
    public Tensor emaParameters() {
        checkOpen();
        return ema;
    }

    /** The learning rate of (1-based) step {@code s}: linear warmup to the peak over warmupSteps. */
    public double learningRate(long s) {
        if (options.warmupSteps() == 0 || s >= options.warmupSteps()) return options.learningRate();
        return options.learningRate() * s / options.warmupSteps();
    }

    /** The per-timestep loss weights passed to the loss kernel (a copy), or null when unweighted. */
    float[] lossWeights() {
        return lossWeights == null ? null : lossWeights.clone();
    }

    /** The label that stands for "no class" in class-conditional training, or -1 (unconditional, or no null class). */
    public int nullClass() {
        return nullClass;
    }

    /** The training data's class names by label (empty for an unconditional model). */
    public java.util.List<String> classNames() {
        return labels == null ? java.util.List.of() : sampler.dataset().classNames();
    }

    public State state() {
        return new State(step, options.seed(), noiseOffset, sampler.state());
    }

    /**
     * Restores a saved position: the host state here, the tensors (parameters, m, v, EMA) by the
     * caller ({@link Checkpoint#load}). The noise seed must be this trainer's.
     */
    void restoreState(State s) {
        checkOpen();
        if (s.noiseSeed() != options.seed()) {
            throw new IllegalArgumentException("the checkpoint was trained with seed " + s.noiseSeed()
                    + ", this trainer has seed " + options.seed());
        }
        if (s.step() < 0 || s.noiseOffset() < 0) throw new IllegalArgumentException("negative step or offset in " + s);
        step = s.step();
        noiseOffset = s.noiseOffset();
        sampler = new BatchSampler(sampler.dataset(), s.samplerState(), options.flips());
    }

    /** One optimisation step (see the class comment). */
    public StepResult step() {
        checkOpen();
        int B = shape[0], first = rank * B;
        sampler.next(hostBatch, globalRows, globalLabels, first, B);
        int T = schedule.numTrainTimesteps();
        for (int b = 0; b < globalRows; b++) {
            globalTimesteps[b] = sampler.nextInt(T); // same stream: one saved long restores both
        }
        if (globalLabels != null && nullClass >= 0 && options.condDropProb() > 0) {
            for (int b = 0; b < globalRows; b++) {
                if (sampler.nextDouble() < options.condDropProb()) globalLabels[b] = nullClass;
            }
        }
        System.arraycopy(globalTimesteps, first, timesteps, 0, B);
        for (int b = 0; b < B; b++) timestepsF[b] = timesteps[b];
        if (labels != null) System.arraycopy(globalLabels, first, labels, 0, B);

        // the whole global batch is noised (cheap next to the model) so that row b's noise is the one-process run's
        globalX0.copyFrom(hostBatch);
        DiffusionKernels.addNoise(nativeSchedule, globalX0, globalTimesteps, options.seed(), noiseOffset, globalXT, globalEps);
        // training forward: dropout (when the config has p > 0) with the seed derived from the trainer's
        // and the offsets [(step * n + rank) * R, ... + R), R = one per resnet: restored with the step count
        Tensor out = model.forwardTraining(xT, timestepsF, labels, SplitMix64.mix(options.seed() ^ DROPOUT_SEED_SALT),
                Math.multiplyExact(Math.addExact(Math.multiplyExact(step, (long) world), rank),
                        (long) model.dropoutStreams()));
        DiffusionKernels.diffusionLoss(nativeSchedule, options.prediction(), out, x0, eps, timesteps, lossWeights, loss, dOut);
        model.zeroGradients();
        model.backwardParameters(dOut);

        float[] l = loss.toFloatArray();
        double mean = 0;
        for (float x : l) mean += x;
        mean /= l.length;
        long s = step + 1;
        if (exchange != null) mean = exchange.allReduceMean(model.gradients(), mean, s);
        double norm = OptimKernels.gradNorm(model.gradients());
        double scale = OptimKernels.clipScale(norm, options.maxGradNorm());
        double lr = learningRate(s);
        OptimKernels.AdamW hp = new OptimKernels.AdamW(lr, options.adamw().beta1(), options.adamw().beta2(),
                options.adamw().eps(), options.adamw().weightDecay());
        OptimKernels.adamw(model.parameters(), model.gradients(), m, v, hp, s, scale);
        double decay = options.ema().decay(s);
        OptimKernels.ema(ema, model.parameters(), decay);

        step = s;
        noiseOffset++;
        return new StepResult(s, mean, norm, lr, decay);
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("Trainer is closed");
    }

    /** Releases the trainer's buffers and native schedule (not the model). Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
        owned.clear();
        if (nativeSchedule != null) nativeSchedule.close();
    }
}
