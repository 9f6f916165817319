package io.diffusion4j.testutil;

import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Fresh random inputs for every run, reproducible from a printed seed. The seed comes from
 * System.nanoTime() (mixed with a per-JVM counter so tests started in the same nanosecond differ),
 * or from the system property {@value #SEED_PROPERTY} (decimal or 0x-hex) to replay a failure. Every
 * assertion message of the kernel tests carries {@link #describe()}.
 */
public final class TestRandom {
    /** System property that fixes the seed of every TestRandom, to reproduce a failure. */
    public static final String SEED_PROPERTY = "d4j.test.seed";
    private static final AtomicLong COUNTER = new AtomicLong();

    private final long seed;
    private final SplittableRandom random;

    private TestRandom(long seed) {
        this.seed = seed;
        this.random = new SplittableRandom(seed);
    }

    /** A generator with a fresh seed (or the one given by -Dd4j.test.seed). */
    public static TestRandom fresh() {
        String p = System.getProperty(SEED_PROPERTY);
        if (p != null && !p.isBlank()) {
            String s = p.trim();
            long v = s.startsWith("0x") || s.startsWith("0X")
                    ? Long.parseUnsignedLong(s.substring(2), 16)
                    : Long.parseLong(s);
            return new TestRandom(v);
        }
        return new TestRandom(mix64(System.nanoTime() + 0x9E3779B97F4A7C15L * COUNTER.incrementAndGet()));
    }

    /** A generator with a given seed. */
    public static TestRandom of(long seed) {
        return new TestRandom(seed);
    }

    private static long mix64(long z) { // SplitMix64 finaliser
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    public long seed() {
        return seed;
    }

    /** "test seed 0x... (replay with -Dd4j.test.seed=0x...)", for assertion messages. */
    public String describe() {
        return String.format("test seed 0x%016x (replay with -D%s=0x%016x)", seed, SEED_PROPERTY, seed);
    }

    /** Any 64-bit value, used as an RNG seed or offset (covers the unsigned range). */
    public long nextLong() {
        return random.nextLong();
    }

    public int nextInt(int bound) {
        return random.nextInt(bound);
    }

    public int nextInt(int origin, int bound) {
        return random.nextInt(origin, bound);
    }

    public double nextDouble() {
        return random.nextDouble();
    }

    /** count standard normal floats times scale. */
    public float[] gaussians(int count, double scale) {
        float[] v = new float[count];
        for (int i = 0; i < count; i++) v[i] = (float) (scale * random.nextGaussian());
        return v;
    }

    /** count uniform floats in [lo, hi). */
    public float[] uniforms(int count, double lo, double hi) {
        float[] v = new float[count];
        for (int i = 0; i < count; i++) v[i] = (float) (lo + (hi - lo) * random.nextDouble());
        return v;
    }

    /** count timesteps uniform in [0, t), with 0 and t-1 forced in (when count allows). */
    public int[] timesteps(int count, int t) {
        int[] v = new int[count];
        for (int i = 0; i < count; i++) v[i] = random.nextInt(t);
        if (count >= 2) { // two distinct positions get the extreme timesteps
            int a = random.nextInt(count);
            int b = (a + 1 + random.nextInt(count - 1)) % count;
            v[a] = t - 1;
            v[b] = 0;
        }
        return v;
    }

    /** count arbitrary 64-bit values. */
    public long[] longs(int count) {
        long[] v = new long[count];
        for (int i = 0; i < count; i++) v[i] = random.nextLong();
        return v;
    }
}
