package io.diffusion4j.backend;

import io.diffusion4j.Precision;
import java.util.Objects;

/**
 * One way to run a kernel family: a variant at a precision. A SIMT variant runs at {@link Precision#FP32} (it
 * computes FP32 at every setting); a tensor-core variant runs at {@link Precision#TF32} or {@link Precision#BF16},
 * the formats its products' inputs are rounded to. {@link Backend#variantRuns} lists them; {@link Backend#use}
 * applies one.
 *
 * @param family    the kernel family
 * @param variant   the variant's name, as {@link Backend#kernelVariants} lists it
 * @param precision the precision it runs at
 */
public record VariantRun(String family, String variant, Precision precision) {
    public VariantRun {
        Objects.requireNonNull(family, "family");
        Objects.requireNonNull(variant, "variant");
        Objects.requireNonNull(precision, "precision");
    }

    /** The name reports use: the variant, followed by {@code /tf32} or {@code /bf16} at a reduced precision. */
    public String label() {
        return precision == Precision.FP32 ? variant : variant + "/" + precision.cliName();
    }

    @Override
    public String toString() {
        return family + " " + label();
    }
}
