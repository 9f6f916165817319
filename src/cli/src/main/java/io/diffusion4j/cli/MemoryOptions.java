package io.diffusion4j.cli;

import io.diffusion4j.model.ModelLimits;
import io.diffusion4j.model.RunMemory;
import java.lang.management.ManagementFactory;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * {@code --max-memory}: the memory a run may plan to use, checked against {@link RunMemory}'s estimate before
 * anything large is allocated (sample, serve and train). Exceeding it is a one-line error naming both numbers.
 */
final class MemoryOptions {
    /**
     * The share of physical memory a run may plan to use by default: the CPU backend's tensors live outside the
     * Java heap, so the heap size is not the bound; the rest is left to the heap beyond the counted arrays, the
     * operating system and whatever else runs on the machine.
     */
    static final double DEFAULT_RAM_FRACTION = 0.75;

    /** The default when the physical memory cannot be read (a JVM without com.sun.management): 8 GiB. */
    static final long FALLBACK_LIMIT_BYTES = 8L << 30;

    @Option(names = "--max-memory", paramLabel = "GIB", description = "refuse to start when the estimated memory of the "
            + "run (weights, optimiser state, activations, batch buffers) exceeds GIB gibibytes (default: 3/4 of the "
            + "physical memory). Models above 2^30 parameters are refused too; raise that with -D"
            + ModelLimits.MAX_PARAMETERS_PROPERTY + "=N on the java command line")
    Double maxMemoryGib;

    /** The limit in bytes: --max-memory, or {@link #defaultLimitBytes()}. */
    long limitBytes(CommandSpec spec) {
        if (maxMemoryGib == null) return defaultLimitBytes();
        if (!(maxMemoryGib > 0) || maxMemoryGib.isInfinite()) {
            throw Main.bad(spec, "--max-memory must be a positive number of GiB, got " + maxMemoryGib);
        }
        double b = maxMemoryGib * (1L << 30);
        return b >= Long.MAX_VALUE ? Long.MAX_VALUE : (long) b;
    }

    /** {@value #DEFAULT_RAM_FRACTION} of the machine's physical memory. */
    static long defaultLimitBytes() {
        try {
            if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
                long total = os.getTotalMemorySize();
                if (total > 0) return (long) (total * DEFAULT_RAM_FRACTION);
            }
        } catch (RuntimeException | LinkageError e) {
            // no management bean: the fallback below
        }
        return FALLBACK_LIMIT_BYTES;
    }

    /** A run refused because its estimate exceeds the limit; Main prints the message and exits 1. */
    static final class TooLarge extends RuntimeException {
        TooLarge(String message) {
            super(message);
        }
    }

    /**
     * Throws {@link TooLarge} when {@code needed > limit}: "WHAT needs about N GiB (limit M GiB; raise with
     * --max-memory GIB, or HINT)".
     */
    static void check(String what, long needed, long limit, String hint) {
        if (needed <= limit) return;
        String n = needed == Long.MAX_VALUE ? "more than 8 EiB" : "about " + ModelLimits.gib(needed) + " GiB";
        throw new TooLarge(what + " needs " + n + " of memory (limit " + ModelLimits.gib(limit)
                + " GiB; raise with --max-memory GIB, or " + hint + ")");
    }
}
