package io.diffusion4j.train;

/**
 * The SplitMix64 generator (Steele, Lea, Flood 2014) with its whole state in one {@code long}, so a
 * training run can save and restore it exactly (java.util.SplittableRandom hides its state).
 * Not thread-safe.
 */
public final class SplitMix64 {
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private long state;

    public SplitMix64(long state) {
        this.state = state;
    }

    /** The state to hand to {@link #SplitMix64(long)} to continue the same sequence. */
    public long state() {
        return state;
    }

    public long nextLong() {
        state += GOLDEN;
        return mix(state);
    }

    /** Uniform in [0, bound): 31 random bits with rejection of the biased top range (as java.util.Random). */
    public int nextInt(int bound) {
        if (bound <= 0) throw new IllegalArgumentException("bound must be > 0, got " + bound);
        int bits, val;
        do {
            bits = (int) (nextLong() >>> 33);
            val = bits % bound;
        } while (bits - val + (bound - 1) < 0); // overflow: bits is in the last, incomplete block
        return val;
    }

    /** Uniform in [0, 1) with 53 random bits. */
    public double nextDouble() {
        return (nextLong() >>> 11) * 0x1.0p-53;
    }

    public boolean nextBoolean() {
        return nextLong() < 0;
    }

    /** The SplitMix64 finaliser; also used to derive independent seeds from (seed, index). */
    public static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
