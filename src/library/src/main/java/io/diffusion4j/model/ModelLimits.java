package io.diffusion4j.model;

/**
 * How large a model this library agrees to build or load. A {@code config.json} whose every value is in range can
 * still describe a network of billions of parameters; the parameter count is computed from the config in checked
 * long arithmetic ({@link UNet2DLayout#bufferFloats()}) and refused above the limit before any parameter array is
 * allocated, so a small file that lies about its model costs nothing.
 */
public final class ModelLimits {
    /** The system property that replaces {@link #DEFAULT_MAX_PARAMETERS} (a parameter count, e.g. {@code 3000000000}). */
    public static final String MAX_PARAMETERS_PROPERTY = "diffusion4j.maxParameters";

    /**
     * 2^30 parameters, 4 GiB of float32. The largest diffusers UNet2DModel checkpoints (256x256 LSUN/CelebA-HQ models)
     * have about 114 million parameters, so this leaves a factor of nine, while a model at the limit already needs
     * 20 GiB to train (weights, gradients, two AdamW moments, the EMA copy).
     */
    public static final long DEFAULT_MAX_PARAMETERS = 1L << 30;

    /**
     * The hard ceiling whatever the property says: the parameters travel through one Java float array on load and
     * save (diffusers' on-disk layout), whose length is an int (less the few words a JVM reserves).
     */
    public static final long ARRAY_MAX_FLOATS = Integer.MAX_VALUE - 16;

    private ModelLimits() {}

    /** The parameter limit in effect: {@value #MAX_PARAMETERS_PROPERTY} when set to a positive count, else the default. */
    public static long maxParameters() {
        return positiveLimit(MAX_PARAMETERS_PROPERTY, DEFAULT_MAX_PARAMETERS, "parameter count");
    }

    /**
     * A limit a system property may raise: its value when set to a positive count (underscores allowed), else
     * {@code dflt}; any other value is an IllegalArgumentException naming the property and {@code what} it counts.
     */
    public static long positiveLimit(String property, long dflt, String what) {
        String v = System.getProperty(property);
        if (v == null || v.isBlank()) return dflt;
        try {
            long n = Long.parseLong(v.strip().replace("_", ""));
            if (n > 0) return n;
        } catch (NumberFormatException e) {
            // falls through to the message below
        }
        throw new IllegalArgumentException("-D" + property + "=" + v + " is not a positive " + what);
    }

    /**
     * Refuses a layout whose flat parameter buffer exceeds {@link #maxParameters()} or one Java array.
     *
     * @throws IllegalArgumentException saying how many parameters the config describes, the limit and how to raise it
     */
    public static void checkParameters(UNet2DLayout layout) {
        long floats = layout.bufferFloats();
        long max = maxParameters();
        if (floats > max) {
            throw new IllegalArgumentException("the config describes a model of " + floats + " parameter floats ("
                    + gib(floats * 4) + " GiB), above the limit of " + max + " (" + gib(max * 4) + " GiB; raise it with -D"
                    + MAX_PARAMETERS_PROPERTY + "=N)");
        }
        if (floats > ARRAY_MAX_FLOATS) {
            throw new IllegalArgumentException("the config describes a model of " + floats + " parameter floats; at most "
                    + ARRAY_MAX_FLOATS + " are supported (one Java array)");
        }
    }

    /** Bytes in GiB with one decimal, for messages. */
    public static String gib(long bytes) {
        return String.format(java.util.Locale.ROOT, "%.1f", bytes / (double) (1L << 30));
    }
}
