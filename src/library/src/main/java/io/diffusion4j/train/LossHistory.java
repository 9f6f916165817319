package io.diffusion4j.train;

import java.util.Arrays;
import java.util.Locale;

/**
 * The per-step record of a training run: for consecutive 1-based steps {@code firstStep ..
 * lastStep()}, the batch loss, the learning rate and the gradient norm before clipping, stored as
 * float32 (what the checkpoint keeps, {@link Checkpoint}: the tensors {@code history.loss},
 * {@code history.lr}, {@code history.grad_norm} of the training state). Values are rounded to float32
 * when added, so a history read back from a checkpoint is identical to the one that was saved and the
 * {@code loss.csv} written from either is byte for byte the same.
 *
 * <p>A history normally starts at step 1; one resumed from a checkpoint written without history
 * starts after the checkpoint's step.
 */
public final class LossHistory {
    /** Header of {@link #toCsv()}. */
    public static final String CSV_HEADER = "step,loss,lr,grad_norm";

    private final long firstStep;
    private int size;
    private float[] loss = new float[64];
    private float[] lr = new float[64];
    private float[] gradNorm = new float[64];

    /** An empty history whose first entry will be step {@code firstStep} (>= 1). */
    public LossHistory(long firstStep) {
        if (firstStep < 1) throw new IllegalArgumentException("firstStep must be >= 1, got " + firstStep);
        this.firstStep = firstStep;
    }

    /** An empty history from step 1. */
    public LossHistory() {
        this(1);
    }

    /** A history from stored arrays (equal lengths); the arrays are copied. */
    static LossHistory of(long firstStep, float[] loss, float[] lr, float[] gradNorm) {
        if (loss.length != lr.length || loss.length != gradNorm.length) {
            throw new IllegalArgumentException("history arrays of lengths " + loss.length + ", " + lr.length + ", "
                    + gradNorm.length + " (must be equal)");
        }
        LossHistory h = new LossHistory(firstStep);
        h.loss = Arrays.copyOf(loss, Math.max(64, loss.length));
        h.lr = Arrays.copyOf(lr, Math.max(64, lr.length));
        h.gradNorm = Arrays.copyOf(gradNorm, Math.max(64, gradNorm.length));
        h.size = loss.length;
        return h;
    }

    /** Appends step {@code step}, which must be {@code lastStep() + 1}. */
    public void add(long step, double lossValue, double learningRate, double gradientNorm) {
        if (step != firstStep + size) {
            throw new IllegalArgumentException("step " + step + " does not follow the history's last step " + lastStep());
        }
        if (size == loss.length) {
            int n = Math.multiplyExact(2, size);
            loss = Arrays.copyOf(loss, n);
            lr = Arrays.copyOf(lr, n);
            gradNorm = Arrays.copyOf(gradNorm, n);
        }
        loss[size] = (float) lossValue;
        lr[size] = (float) learningRate;
        gradNorm[size] = (float) gradientNorm;
        size++;
    }

    /** Appends a trainer's step result. */
    public void add(Trainer.StepResult r) {
        add(r.step(), r.loss(), r.learningRate(), r.gradNorm());
    }

    public int size() {
        return size;
    }

    public long firstStep() {
        return firstStep;
    }

    /** The last recorded step, {@code firstStep - 1} when empty. */
    public long lastStep() {
        return firstStep + size - 1;
    }

    /** The step of entry {@code i}. */
    public long step(int i) {
        return firstStep + java.util.Objects.checkIndex(i, size);
    }

    public float loss(int i) {
        return loss[java.util.Objects.checkIndex(i, size)];
    }

    public float learningRate(int i) {
        return lr[java.util.Objects.checkIndex(i, size)];
    }

    public float gradNorm(int i) {
        return gradNorm[java.util.Objects.checkIndex(i, size)];
    }

    /** The losses as an array (a copy). */
    public float[] losses() {
        return Arrays.copyOf(loss, size);
    }

    public float[] learningRates() {
        return Arrays.copyOf(lr, size);
    }

    public float[] gradNorms() {
        return Arrays.copyOf(gradNorm, size);
    }

    /**
     * {@code step,loss,lr,grad_norm} with one line per step; the float32 values in Java's shortest
     * round-trip form ({@link Float#toString}), so parsing a field as float gives back the stored value.
     */
    public String toCsv() {
        StringBuilder sb = new StringBuilder(32 + 40 * size).append(CSV_HEADER).append('\n');
        for (int i = 0; i < size; i++) {
            sb.append(firstStep + i).append(',').append(fmt(loss[i])).append(',').append(fmt(lr[i])).append(',')
                    .append(fmt(gradNorm[i])).append('\n');
        }
        return sb.toString();
    }

    private static String fmt(float f) {
        return Float.isFinite(f) ? Float.toString(f) : Float.isNaN(f) ? "nan" : f > 0 ? "inf" : "-inf";
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "LossHistory[steps %d..%d]", firstStep, lastStep());
    }
}
