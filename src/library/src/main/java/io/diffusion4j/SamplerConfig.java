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
    private final double guidanceScale;
    private final double strength;
    private final int jumpLength, jumpNSample;
    private final boolean useClippedModelOutput;

    /** diffusers' img2img default strength. */
    public static final double DEFAULT_STRENGTH = 0.8;
    /** diffusers' RePaintPipeline defaults. */
    public static final int DEFAULT_JUMP_LENGTH = 10, DEFAULT_JUMP_N_SAMPLE = 10;

    private SamplerConfig(SamplerType type, int steps, double eta, TimestepSpacing spacing, long seed, int batchSize,
                          int height, int width) {
        this(type, steps, eta, spacing, seed, batchSize, height, width, 1.0, DEFAULT_STRENGTH, DEFAULT_JUMP_LENGTH,
                DEFAULT_JUMP_N_SAMPLE, false);
    }

    private SamplerConfig(SamplerType type, int steps, double eta, TimestepSpacing spacing, long seed, int batchSize,
                          int height, int width, double guidanceScale, double strength, int jumpLength, int jumpNSample,
                          boolean useClippedModelOutput) {
        this.type = type;
        this.steps = steps;
        this.eta = eta;
        this.spacing = spacing;
        this.seed = seed;
        this.batchSize = batchSize;
        this.height = height;
        this.width = width;
        this.guidanceScale = guidanceScale;
        this.strength = strength;
        this.jumpLength = jumpLength;
        this.jumpNSample = jumpNSample;
        this.useClippedModelOutput = useClippedModelOutput;
    }

    /** A copy with the first eight settings replaced and the others kept. */
    private SamplerConfig copy(SamplerType type, int steps, double eta, TimestepSpacing spacing, long seed, int batchSize,
                               int height, int width) {
        return new SamplerConfig(type, steps, eta, spacing, seed, batchSize, height, width, guidanceScale, strength,
                jumpLength, jumpNSample, useClippedModelOutput);
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
        return copy(type, checkSteps(newSteps), eta, spacing, seed, batchSize, height, width);
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
        return copy(type, steps, newEta, spacing, seed, batchSize, height, width);
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
        return copy(type, steps, eta, newSpacing, seed, batchSize, height, width);
    }

    /**
     * The same configuration with another seed. Image i of a call depends only on (seed, i): the same seed
     * gives the same images, whatever the batch size.
     *
     * @param newSeed any value
     * @return the new configuration
     */
    public SamplerConfig withSeed(long newSeed) {
        return copy(type, steps, eta, spacing, newSeed, batchSize, height, width);
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
        return copy(type, steps, eta, spacing, seed, newBatchSize, height, width);
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
        return copy(type, steps, eta, spacing, seed, batchSize, newHeight, newWidth);
    }

    /**
     * The same configuration with a classifier-free guidance scale (a class-conditional model trained with a null
     * class): 1 samples from the conditional prediction alone; s &gt; 1 follows
     * {@code uncond + s (cond - uncond)}, computed in one batched model call per step.
     *
     * @param scale finite and {@code >= 0}
     * @return the new configuration
     * @throws IllegalArgumentException if the scale is negative or not finite
     */
    public SamplerConfig withGuidanceScale(double scale) {
        if (!(Double.isFinite(scale) && scale >= 0 && scale <= Float.MAX_VALUE)) {
            throw new IllegalArgumentException("guidance scale must be finite and >= 0, got " + scale);
        }
        return new SamplerConfig(type, steps, eta, spacing, seed, batchSize, height, width, scale, strength, jumpLength,
                jumpNSample, useClippedModelOutput);
    }

    /**
     * The same configuration with image-to-image's strength (SDEdit): the init image is noised to the timestep
     * {@code strength} of the way up the plan and only the last {@code floor(steps * strength)} steps run.
     *
     * @param newStrength in (0, 1]
     * @return the new configuration
     * @throws IllegalArgumentException if the strength is outside (0, 1]
     */
    public SamplerConfig withStrength(double newStrength) {
        if (!(newStrength > 0 && newStrength <= 1)) {
            throw new IllegalArgumentException("strength must be in (0, 1], got " + newStrength);
        }
        return new SamplerConfig(type, steps, eta, spacing, seed, batchSize, height, width, guidanceScale, newStrength,
                jumpLength, jumpNSample, useClippedModelOutput);
    }

    /**
     * The same configuration with inpainting's resampling (RePaint): after every {@code length} steps the sample is
     * renoised {@code length} steps back and denoised again, {@code nSample - 1} times (diffusers' jump_length and
     * jump_n_sample; {@code nSample} 1 turns resampling off).
     *
     * @param length at least 1
     * @param nSample at least 1
     * @return the new configuration
     * @throws IllegalArgumentException if either is below 1
     */
    public SamplerConfig withJumps(int length, int nSample) {
        if (length < 1 || nSample < 1) {
            throw new IllegalArgumentException("jump length and jump_n_sample must be >= 1, got " + length + " and " + nSample);
        }
        return new SamplerConfig(type, steps, eta, spacing, seed, batchSize, height, width, guidanceScale, strength,
                length, nSample, useClippedModelOutput);
    }

    /**
     * The same DDIM configuration with diffusers' {@code use_clipped_model_output}: when the x0 prediction is clipped
     * (clip_sample) or thresholded, the noise used for the step is re-derived from the processed x0 instead of kept
     * from the model.
     *
     * @param use whether to re-derive the noise
     * @return the new configuration
     * @throws IllegalArgumentException if set for a sampler other than DDIM
     */
    public SamplerConfig withUseClippedModelOutput(boolean use) {
        if (use && type != SamplerType.DDIM) {
            throw new IllegalArgumentException("use_clipped_model_output applies to DDIM only, this is " + type.cliName());
        }
        return new SamplerConfig(type, steps, eta, spacing, seed, batchSize, height, width, guidanceScale, strength,
                jumpLength, jumpNSample, use);
    }

    /**
     * The classifier-free guidance scale.
     *
     * @return the scale (1: none)
     */
    public double guidanceScale() {
        return guidanceScale;
    }

    /**
     * Image-to-image's strength (used when the inputs have an init image and no mask).
     *
     * @return the strength in (0, 1]
     */
    public double strength() {
        return strength;
    }

    /**
     * Inpainting's jump length.
     *
     * @return the jump length
     */
    public int jumpLength() {
        return jumpLength;
    }

    /**
     * Inpainting's jump_n_sample.
     *
     * @return jump_n_sample (1: no resampling)
     */
    public int jumpNSample() {
        return jumpNSample;
    }

    /**
     * DDIM's use_clipped_model_output.
     *
     * @return whether the noise is re-derived from the clipped x0
     */
    public boolean useClippedModelOutput() {
        return useClippedModelOutput;
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
                && c.width == width && Double.compare(c.guidanceScale, guidanceScale) == 0
                && Double.compare(c.strength, strength) == 0 && c.jumpLength == jumpLength && c.jumpNSample == jumpNSample
                && c.useClippedModelOutput == useClippedModelOutput;
    }

    /**
     * A hash of every setting.
     *
     * @return the hash code
     */
    @Override
    public int hashCode() {
        return Objects.hash(type, steps, eta, spacing, seed, batchSize, height, width, guidanceScale, strength, jumpLength,
                jumpNSample, useClippedModelOutput);
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
                height == 0 ? "" : ", " + height + "x" + width)
                + (guidanceScale != 1 ? " guidance " + guidanceScale : "") + (useClippedModelOutput ? " clipped model output" : "");
    }
}
