package io.diffusion4j.fuzz;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;

/**
 * The property every fuzz target of a reader of outside data checks, and the count of executions per target.
 *
 * <p>One input must end either normally or in the reader's documented exception; anything else is a finding:
 * an {@link Error} (OutOfMemoryError, StackOverflowError), a RuntimeException the reader does not document
 * (NullPointerException, IndexOutOfBoundsException, ArithmeticException, NegativeArraySizeException...), or an
 * allocation out of proportion to the input: the bytes the calling thread allocated while reading must stay below
 * {@code fixedBytes + bytesPerInputByte * inputBytes}. A hang is caught by the fuzzer's per-input timeout
 * (libFuzzer {@code -timeout}, set in the build).
 *
 * <p>Each target records its executions; {@link #report} prints them and, when the build names a directory in
 * {@code diffusion4j.fuzz.stats.dir}, writes one line per target there ({@code <target>.txt}).
 */
public final class FuzzChecks {
    private FuzzChecks() {}

    /** What one input may do. */
    public record Budget(long fixedBytes, long bytesPerInputByte) {
        public long limit(long inputBytes) {
            return fixedBytes + bytesPerInputByte * inputBytes;
        }
    }

    /** A reading of one input. */
    @FunctionalInterface
    public interface Body {
        void run() throws Exception;
    }

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private static final Map<String, Stats> STATS = new ConcurrentHashMap<>();

    private static final class Stats {
        final AtomicLong executions = new AtomicLong();
        final AtomicLong documentedRefusals = new AtomicLong();
        final AtomicLong maxAllocated = new AtomicLong();
        final long startNanos = System.nanoTime();
    }

    /** Whether this JVM fuzzes (JAZZER_FUZZ set) rather than replays the committed inputs. */
    public static boolean fuzzing() {
        String v = System.getenv("JAZZER_FUZZ");
        return v != null && (v.equals("1") || v.equalsIgnoreCase("true") || v.equalsIgnoreCase("yes"));
    }

    /**
     * Runs {@code body} on one input of {@code inputBytes} bytes for {@code target}: a throwable that
     * {@code documented} accepts is a refusal, any other one fails, as does an allocation over {@code budget}.
     */
    public static void check(String target, long inputBytes, Budget budget, Predicate<Throwable> documented, Body body) {
        Stats s = STATS.computeIfAbsent(target, k -> new Stats());
        s.executions.incrementAndGet();
        long[] run = run(target, inputBytes, documented, body);
        long limit = budget.limit(inputBytes);
        if (run[0] > limit) {
            // The first reading of a kind of input loads and instruments classes in this thread: read it again,
            // now warm, and judge that.
            run = run(target, inputBytes, documented, body);
        }
        long used = run[0];
        if (run[1] != 0) s.documentedRefusals.incrementAndGet();
        s.maxAllocated.accumulateAndGet(used, Math::max);
        if (used > limit) {
            throw new AssertionError(target + ": reading an input of " + inputBytes + " bytes allocated " + used
                    + " bytes, more than the " + limit + " allowed (" + budget.fixedBytes() + " + "
                    + budget.bytesPerInputByte() + " per input byte)");
        }
    }

    /** One reading: {bytes it allocated in this thread, 1 if refused}; an undocumented throwable fails. */
    private static long[] run(String target, long inputBytes, Predicate<Throwable> documented, Body body) {
        long tid = Thread.currentThread().threadId();
        long before = THREADS.getThreadAllocatedBytes(tid);
        long refused = 0;
        try {
            body.run();
        } catch (Throwable t) {
            if (t instanceof Error || !documented.test(t)) {
                throw new AssertionError(target + ": undocumented " + t.getClass().getName() + " for an input of "
                        + inputBytes + " bytes: " + t.getMessage(), t);
            }
            refused = 1;
        }
        return new long[] {THREADS.getThreadAllocatedBytes(tid) - before, refused};
    }

    /** A throwable of one of {@code types} (or a subclass). */
    @SafeVarargs
    public static Predicate<Throwable> oneOf(Class<? extends Throwable>... types) {
        return t -> {
            for (Class<? extends Throwable> c : types) if (c.isInstance(t)) return true;
            return false;
        };
    }

    /** Prints the target's executions and writes them to the stats directory when the build names one. */
    public static void report(String target) {
        Stats s = STATS.get(target);
        if (s == null) return;
        double seconds = (System.nanoTime() - s.startNanos) / 1e9;
        String line = String.format(Locale.ROOT, "%s\t%s\texecutions=%d\trefused=%d\tseconds=%.1f\texec/s=%.0f\tmaxAllocatedBytes=%d",
                target, fuzzing() ? "fuzz" : "regression", s.executions.get(), s.documentedRefusals.get(), seconds,
                s.executions.get() / Math.max(seconds, 1e-9), s.maxAllocated.get());
        System.out.println("[fuzz] " + line);
        String dir = System.getProperty("diffusion4j.fuzz.stats.dir");
        if (dir == null || dir.isEmpty()) return;
        try {
            Path d = Files.createDirectories(Path.of(dir));
            Files.writeString(d.resolve(target + (fuzzing() ? "" : ".regression") + ".txt"), line + "\n",
                    StandardCharsets.UTF_8);
        } catch (IOException e) {
            System.err.println("[fuzz] could not write the stats of " + target + ": " + e);
        }
    }

    /** A scratch file for readers that take a path; one per target and thread, reused for every input. */
    public static Path scratch(String target, String name) throws IOException {
        Path dir = Path.of(System.getProperty("java.io.tmpdir"), "d4j-fuzz-" + ProcessHandle.current().pid(), target);
        Files.createDirectories(dir);
        return dir.resolve(name);
    }
}
