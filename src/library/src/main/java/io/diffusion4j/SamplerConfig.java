package io.diffusion4j;

import java.util.Locale;
import java.util.Objects;
import java.util.Optional;

/**
 * How a {@link DiffusionPipeline} samples: the sampler and its step count, DDIM's eta, the timestep spacing,
 * the seed, the batch size and (for a model without a fixed {@code sample_size}) the image size. Immutable:
 * every {@code with...} method returns a new configuration.
 *
 * <p>The sampler's other settings ({@code clip_sample}, thresholding, {@code steps_offset},
 * {@code prediction_type}, DDPM's {@code variance_type}, DPM-Solver++'s {@code lower_order_final} and
 * {@code final_sigmas_type}) come from the checkpoint's {@code scheduler_config.json}, as diffusers'
 * {@code Scheduler.from_config(pipeline.scheduler.config)} takes them.
 *
 * <pre>{@code
 * SamplerConfig ddim = SamplerConfig.ddim(50).withEta(0.0).withSeed(42);
 * SamplerConfig ddpm = SamplerConfig.ddpm();                  // all 1000 training timesteps
 * SamplerConfig dpm  = SamplerConfig.dpmSolver(20).withTimestepSpacing(TimestepSpacing.TRAILING);
 * }</pre>
 */
public final class SamplerConfig {
    /** The batch size of the factory methods. */
    public static final int DEFAULT_BATCH_SIZE = 16;

    private final SamplerType type;
    private final int steps; // 0: all training timesteps
    private final double eta;
    private final TimestepSpacing spacing; // null: the checkpoint's
    private final long seed;
    private final int batchSize;
    private final int height, width; // 0: the model's sample_size

    private SamplerConfig(SamplerType type, int steps, double eta, TimestepSpacing spacing, long seed, int batchSize,
                          int height, int width) {
        this.type = type;
        this.steps = steps;
        this.eta = eta;
        this.spacing = spacing;
        this.seed = seed;
        this.batchSize = batchSize;
        this.height = height;
        this.width = width;
    }

    private static int checkSteps(int steps) {
        if (steps < 1) throw new IllegalArgumentException("steps must be >= 1, got " + steps);
        return steps;
    }

    /**
     * DDPM over all training timesteps (1000 for the usual schedule), seed 0, batch 16.
     *
     * @return the configuration
     */
    public static SamplerConfig ddpm() {
        return new SamplerConfig(SamplerType.DDPM, 0, 0, null, 0, DEFAULT_BATCH_SIZE, 0, 0);
    }

    /**
     * DDPM respaced to {@code steps} timesteps, seed 0, batch 16.
     *
     * @param steps sampling steps, at least 1 and at most the training timesteps
     * @return the configuration
     * @throws IllegalArgumentException if {@code steps < 1}
     */
    public static SamplerConfig ddpm(int steps) {
        return new SamplerConfig(SamplerType.DDPM, checkSteps(steps), 0, null, 0, DEFAULT_BATCH_SIZE, 0, 0);
    }

    /**
     * DDIM with {@code steps} steps, eta 0 (deterministic), seed 0, batch 16.
     *
     * @param steps sampling steps, at least 1 and at most the training timesteps
     * @return the configuration
     * @throws IllegalArgumentException if {@code steps < 1}
     */
    public static SamplerConfig ddim(int steps) {
        return new SamplerConfig(SamplerType.DDIM, checkSteps(steps), 0, null, 0, DEFAULT_BATCH_SIZE, 0, 0);
    }

    /**
     * DPM-Solver++ 2M with {@code steps} steps (20 is diffusers' usual choice), seed 0, batch 16.
     *
     * @param steps sampling steps, at least 1 and at most the training timesteps
     * @return the configuration
     * @throws IllegalArgumentException if {@code steps < 1}
     */
    public static SamplerConfig dpmSolver(int steps) {
        return new SamplerConfig(SamplerType.DPM_SOLVER_PLUS_PLUS, checkSteps(steps), 0, null, 0, DEFAULT_BATCH_SIZE, 0, 0);
    }

    /**
     * The same configuration with another step count.
     *
     * @param newSteps sampling steps, at least 1 and at most the training timesteps
     * @return the new configuration
     * @throws IllegalArgumentException if {@code newSteps < 1}
     */
    public SamplerConfig withSteps(int newSteps) {
        return new SamplerConfig(type, checkSteps(newSteps), eta, spacing, seed, batchSize, height, width);
    }

    /**
     * The same DDIM configuration with another eta: 0 is deterministic DDIM, 1 has DDPM's noise level.
     *
     * @param newEta finite and {@code >= 0}
     * @return the new configuration
     * @throws IllegalArgumentException if eta is negative or not finite, or is non-zero for a sampler other
     *     than DDIM
     */
    public SamplerConfig withEta(double newEta) {
        if (!(Double.isFinite(newEta) && newEta >= 0)) {
            throw new IllegalArgumentException("eta must be finite and >= 0, got " + newEta);
        }
        if (newEta != 0 && type != SamplerType.DDIM) {
            throw new IllegalArgumentException("eta applies to DDIM only, this is " + type.cliName());
        }
        return new SamplerConfig(type, steps, newEta, spacing, seed, batchSize, height, width);
    }

    /**
     * The same configuration with a timestep spacing instead of the checkpoint's.
     *
     * @param newSpacing the spacing
     * @return the new configuration
     * @throws NullPointerException if {@code newSpacing} is null
     */
    public SamplerConfig withTimestepSpacing(TimestepSpacing newSpacing) {
        Objects.requireNonNull(newSpacing, "timestepSpacing");
        return new SamplerConfig(type, steps, eta, newSpacing, seed, batchSize, height, width);
    }

    /**
     * The same configuration with another seed. Image i of a call depends only on (seed, i): the same seed
     * gives the same images, whatever the batch size.
     *
     * @param newSeed any value
     * @return the new configuration
     */
    public SamplerConfig withSeed(long newSeed) {
        return new SamplerConfig(type, steps, eta, spacing, newSeed, batchSize, height, width);
    }

    /**
     * The same configuration with another batch size: how many images one model call denoises at once.
     *
     * @param newBatchSize at least 1
     * @return the new configuration
     * @throws IllegalArgumentException if {@code newBatchSize < 1}
     */
    public SamplerConfig withBatchSize(int newBatchSize) {
        if (newBatchSize < 1) throw new IllegalArgumentException("batchSize must be >= 1, got " + newBatchSize);
        return new SamplerConfig(type, steps, eta, spacing, seed, newBatchSize, height, width);
    }

    /**
     * The same configuration with an explicit image size (needed when the model's config has no
     * {@code sample_size}; otherwise the model's size is used).
     *
     * @param newHeight height in pixels, a positive multiple of the model's downsampling factor
     * @param newWidth width in pixels, likewise
     * @return the new configuration
     * @throws IllegalArgumentException if a size is not positive
     */
    public SamplerConfig withImageSize(int newHeight, int newWidth) {
        if (newHeight < 1 || newWidth < 1) {
            throw new IllegalArgumentException("image size must be positive, got " + newHeight + "x" + newWidth);
        }
        return new SamplerConfig(type, steps, eta, spacing, seed, batchSize, newHeight, newWidth);
    }

    /**
     * The sampler.
     *
     * @return the sampler type
     */
    public SamplerType type() {
        return type;
    }

    /**
     * The number of sampling steps.
     *
     * @return the steps, or 0 for "all training timesteps" ({@link #ddpm()})
     */
    public int steps() {
        return steps;
    }

    /**
     * DDIM's eta.
     *
     * @return eta (0 for the other samplers)
     */
    public double eta() {
        return eta;
    }

    /**
     * The timestep spacing, when it overrides the checkpoint's.
     *
     * @return the spacing, or empty for the checkpoint's {@code timestep_spacing}
     */
    public Optional<TimestepSpacing> timestepSpacing() {
        return Optional.ofNullable(spacing);
    }

    /**
     * The seed of the initial noise and of the samplers' per-step noise.
     *
     * @return the seed
     */
    public long seed() {
        return seed;
    }

    /**
     * Images per model call.
     *
     * @return the batch size
     */
    public int batchSize() {
        return batchSize;
    }

    /**
     * The image height.
     *
     * @return the height, or 0 for the model's {@code sample_size}
     */
    public int imageHeight() {
        return height;
    }

    /**
     * The image width.
     *
     * @return the width, or 0 for the model's {@code sample_size}
     */
    public int imageWidth() {
        return width;
    }

    /**
     * Equal when every setting is equal.
     *
     * @param o another object
     * @return whether o is an equal configuration
     */
    @Override
    public boolean equals(Object o) {
        return o instanceof SamplerConfig c && c.type == type && c.steps == steps && Double.compare(c.eta, eta) == 0
                && c.spacing == spacing && c.seed == seed && c.batchSize == batchSize && c.height == height
                && c.width == width;
    }

    /**
     * A hash of every setting.
     *
     * @return the hash code
     */
    @Override
    public int hashCode() {
        return Objects.hash(type, steps, eta, spacing, seed, batchSize, height, width);
    }

    /**
     * A one-line description, e.g. {@code ddim-50 (eta 0.0, checkpoint spacing, seed 42, batch 16)}.
     *
     * @return the description
     */
    @Override
    public String toString() {
        return String.format(Locale.ROOT, "%s-%s (%s%s, seed %d, batch %d%s)", type.cliName(),
                steps == 0 ? "all" : Integer.toString(steps), type == SamplerType.DDIM ? "eta " + eta + ", " : "",
                spacing == null ? "checkpoint spacing" : spacing.configName() + " spacing", seed, batchSize,
                height == 0 ? "" : ", " + height + "x" + width);
    }
}
