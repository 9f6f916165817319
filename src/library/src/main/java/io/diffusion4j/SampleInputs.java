package io.diffusion4j;

import java.util.Objects;

/**
 * What a {@link DiffusionPipeline#sample(SamplerConfig, int, SampleInputs, SamplingProgress)} call is steered by,
 * besides its {@link SamplerConfig}: class labels (a class-conditional model), and an init image with an optional
 * mask. Immutable; every {@code with...} method returns new inputs.
 *
 * <ul>
 *   <li>Class labels: one per image, or one for all; without labels a class-conditional model samples with its
 *       null class (unconditionally). {@link SamplerConfig#withGuidanceScale} sets classifier-free guidance.</li>
 *   <li>Init image alone: image-to-image (SDEdit) with {@link SamplerConfig#withStrength}.</li>
 *   <li>Init image and mask: inpainting (RePaint) with {@link SamplerConfig#withJumps}. The mask follows diffusers'
 *       RePaintPipeline: 1 (white) keeps the init image's pixel, 0 (black) generates it; values are binarised at
 *       0.5. The pixels kept are exactly the init image's in the result.</li>
 * </ul>
 * Images are float32 NCHW in [-1, 1] (the layout of {@link Samples#toFloatArray()}), one image for all or one per
 * image; a mask has 1 channel (applied to every channel) or the image's channels, values in [0, 1].
 *
 * <pre>{@code
 * SampleInputs shoes = SampleInputs.none().withClassLabels(7);          // every image a sneaker
 * SampleInputs repaint = SampleInputs.none().withInitImage(img).withMask(keepTopHalf);
 * }</pre>
 */
public final class SampleInputs {
    private static final SampleInputs NONE = new SampleInputs(null, null, null);

    private final int[] classLabels;
    private final float[] initImage;
    private final float[] mask;

    private SampleInputs(int[] classLabels, float[] initImage, float[] mask) {
        this.classLabels = classLabels;
        this.initImage = initImage;
        this.mask = mask;
    }

    /**
     * No labels, no image.
     *
     * @return the empty inputs
     */
    public static SampleInputs none() {
        return NONE;
    }

    /**
     * With class labels.
     *
     * @param labels one label per image, or one for every image; each in {@code [0, num_classes)}
     * @return the new inputs
     * @throws IllegalArgumentException if no label is given
     */
    public SampleInputs withClassLabels(int... labels) {
        Objects.requireNonNull(labels, "labels");
        if (labels.length == 0) throw new IllegalArgumentException("give at least one class label");
        return new SampleInputs(labels.clone(), initImage, mask);
    }

    /**
     * With an init image: image-to-image, or inpainting with a mask.
     *
     * @param nchw float32 NCHW in [-1, 1]: one image for every sample, or one per sample
     * @return the new inputs
     */
    public SampleInputs withInitImage(float[] nchw) {
        Objects.requireNonNull(nchw, "initImage");
        return new SampleInputs(classLabels, nchw.clone(), mask);
    }

    /**
     * With an inpainting mask (needs an init image when sampling).
     *
     * @param nchw float32 NCHW in [0, 1] with 1 or C channels: one mask for every sample, or one per sample;
     *     1 keeps the init image's pixel, 0 generates it
     * @return the new inputs
     */
    public SampleInputs withMask(float[] nchw) {
        Objects.requireNonNull(nchw, "mask");
        return new SampleInputs(classLabels, initImage, nchw.clone());
    }

    /**
     * The class labels.
     *
     * @return a copy, or null when none were given
     */
    public int[] classLabels() {
        return classLabels == null ? null : classLabels.clone();
    }

    /**
     * The init image.
     *
     * @return a copy, or null
     */
    public float[] initImage() {
        return initImage == null ? null : initImage.clone();
    }

    /**
     * The mask.
     *
     * @return a copy, or null
     */
    public float[] mask() {
        return mask == null ? null : mask.clone();
    }

    int[] labelsRef() {
        return classLabels;
    }

    float[] imageRef() {
        return initImage;
    }

    float[] maskRef() {
        return mask;
    }
}
