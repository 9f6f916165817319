package io.diffusion4j;

import java.util.Locale;
import java.util.Objects;

/**
 * The number format the matrix kernel families (conv2d, linear, attention) of a backend compute in; names as
 * PyTorch's. {@link #TF32} and {@link #BF16} round the <em>inputs</em> of each product to that format, as tensor
 * cores do, and accumulate in FP32; tensors stay FP32 in memory and every other kernel family computes FP32
 * whatever the setting. A variant of a family that does not use tensor cores computes FP32 at every setting: TF32
 * and BF16 permit a family to use tensor cores, as torch's {@code allow_tf32} does.
 *
 * <p>A device opens at {@link #FP32}, so the library is exact unless asked; the command
 * line starts from {@link #defaultFor(Device)}. The CPU backend computes FP32 only.
 */
public enum Precision {
    /** Full float32 products. */
    FP32("fp32"),
    /** Products of inputs rounded to TF32 (10 explicit mantissa bits), accumulated in FP32. */
    TF32("tf32"),
    /** Products of inputs rounded to bfloat16 (7 explicit mantissa bits), accumulated in FP32. */
    BF16("bf16");

    private final String cliName;

    Precision(String cliName) {
        this.cliName = cliName;
    }

    /**
     * The name the command line and the C API's documentation use.
     *
     * @return {@code "fp32"}, {@code "tf32"} or {@code "bf16"}
     */
    public String cliName() {
        return cliName;
    }

    /**
     * Parses a precision name.
     *
     * @param name {@code fp32}, {@code tf32} or {@code bf16} (case-insensitive, surrounding blanks ignored)
     * @return the precision
     * @throws IllegalArgumentException if the name is none of them (the message lists the valid names)
     */
    public static Precision parse(String name) {
        if (name == null) throw new IllegalArgumentException("precision must not be null: expected fp32, tf32 or bf16");
        String n = name.trim().toLowerCase(Locale.ROOT);
        for (Precision p : values()) {
            if (p.cliName.equals(n)) return p;
        }
        throw new IllegalArgumentException("unknown precision '" + name + "': expected fp32, tf32 or bf16");
    }

    /**
     * The precision a user gets when none is asked for: {@link #TF32} on the GPU backends ({@code cuda} and the
     * simulated GPU {@code cuda-sim}), {@link #FP32} on {@code cpu}, which computes nothing else.
     *
     * @param device the backend's device
     * @return the default precision on that device
     */
    public static Precision defaultFor(Device device) {
        Objects.requireNonNull(device, "device");
        return device == Device.CPU ? FP32 : TF32;
    }

    /**
     * The relative error bound of one product of two inputs rounded to this format before an exact
     * multiplication: {@code 2e + e^2} for the unit roundoff {@code e} of the format's significand (TF32: 11
     * bits, rounded to nearest, {@code e = 2^-11}; BF16: 8 bits, {@code e = 2^-8}); 0 for FP32, whose products
     * round only when they are summed. A tensor-core result differs from the exact sum of products by at most
     * this times the sum of their absolute values, plus the FP32 accumulation's error.
     *
     * @return the bound, relative to the product's magnitude
     */
    public double productError() {
        double e = switch (this) {
            case FP32 -> 0.0;
            case TF32 -> 0x1p-11;
            case BF16 -> 0x1p-8;
        };
        return 2 * e + e * e;
    }

    /**
     * Whether a device can compute in this precision ({@code cpu}: FP32 only).
     *
     * @param device the device
     * @return true when it can
     */
    public boolean supportedOn(Device device) {
        Objects.requireNonNull(device, "device");
        return this == FP32 || device != Device.CPU;
    }

}
