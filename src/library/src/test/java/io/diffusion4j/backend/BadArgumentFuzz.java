package io.diffusion4j.backend;

import io.diffusion4j.Device;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * The fixture and harness of {@link BadArgumentFuzzTest}: the backends, schedules and host memory every
 * generator uses (set up once per run), the per-case {@link Scope}, the assertions on exceptions and
 * native statuses (each message must be fresh and name the offending value), and random building blocks.
 */
final class BadArgumentFuzz {
    private BadArgumentFuzz() {}

    static final int OK = 0, INVALID_ARGUMENT = 1, INVALID_HANDLE = 2, UNAVAILABLE = 4, UNSUPPORTED = 7;

    static Backend a;       // the main backend
    static Backend b;       // a second CPU backend instance
    static Backend closed;  // opened and closed
    static Tensor sentinel; // keeps `a` busy so closing it must fail
    static NativeSchedule big;   // T = 1000
    static NativeSchedule closedSchedule;
    static Arena arena;
    static MemorySegment scratchOut; // d4j_buffer** / d4j_schedule** / int64_t* out parameter
    static MemorySegment scratchOut2;
    static MemorySegment host;       // 4 KiB host memory for raw copies
    static Path frontLibrary, cpuLibrary;
    static long markerCounter = 1_000_000_000L;

    /** The native handle of a closed backend, captured from a fresh instance right before the fuzz. */
    static MemorySegment closedHandleCache;

    static void setUp() {
        a = Backend.open(Device.CPU);
        b = Backend.open(Device.CPU);
        closed = Backend.open(Device.CPU);
        closed.close();
        sentinel = Tensor.allocate(a, DType.FLOAT32, 3);
        big = NativeSchedule.of(NoiseSchedule.defaults());
        closedSchedule = NativeSchedule.of(NoiseSchedule.defaults());
        closedSchedule.close();
        arena = Arena.ofShared();
        scratchOut = arena.allocate(ValueLayout.JAVA_LONG);
        scratchOut2 = arena.allocate(ValueLayout.JAVA_LONG);
        host = arena.allocate(4096, 64);
        NativeLibraries libs = NativeLibraries.load();
        frontLibrary = libs.directory().resolve("libd4j.so");
        cpuLibrary = libs.library(Device.CPU).orElseThrow();
    }

    static void tearDown() {
        if (sentinel != null) sentinel.close();
        if (big != null) big.close();
        if (a != null) a.close();
        if (b != null) b.close();
        if (arena != null) arena.close();
    }

    /** Resources of one case, released after it. */
    static final class Scope implements AutoCloseable {
        final List<AutoCloseable> items = new ArrayList<>();

        <T extends AutoCloseable> T add(T t) {
            items.add(t);
            return t;
        }

        @Override
        public void close() {
            for (int i = items.size() - 1; i >= 0; i--) {
                try {
                    items.get(i).close();
                } catch (RuntimeException | Error e) {
                    throw e;
                } catch (Exception e) {
                    throw new IllegalStateException("releasing a case's resource failed", e);
                }
            }
        }
    }

    interface Gen {
        void run(Random r, Scope s) throws Exception;
    }

    record Named(String name, Gen gen) {}

    static String lastError() {
        return d4j_h.d4j_last_error().reinterpret(1024).getString(0);
    }

    static String currentMarker;

    /** Leaves a distinctive message in the thread's last error, so a stale message cannot pass for a new one. */
    static void setMarker() {
        long v = -(markerCounter++);
        assertEquals(INVALID_ARGUMENT, d4j_h.d4j_buffer_alloc(a.handle(), v, scratchOut));
        currentMarker = lastError();
        assertTrue(currentMarker.contains(Long.toString(v)), currentMarker);
    }

    /** The Java call must throw {@code type} with a message containing every token (case-insensitive). */
    static void expectThrows(Class<? extends RuntimeException> type, Runnable call, String... tokens) {
        try {
            call.run();
        } catch (IllegalArgumentException | IllegalStateException | D4jException e) {
            if (!type.isInstance(e)) {
                throw new AssertionError("expected " + type.getName() + " but got " + e, e);
            }
            checkMessage(e.getMessage(), tokens, e);
            return;
        } catch (RuntimeException e) {
            throw new AssertionError("expected " + type.getName() + " but got an exception of an unexpected kind: " + e, e);
        }
        fail("expected " + type.getSimpleName() + " mentioning " + Arrays.toString(tokens) + ", but the call succeeded");
    }

    /** A raw native call must return {@code expected} with a fresh message containing every token. */
    static void expectStatus(int expected, int actual, String... tokens) {
        String msg = lastError();
        assertEquals(expected, actual, "status (message: '" + msg + "')");
        assertNotEquals(currentMarker, msg, "the native call failed but left no message of its own");
        checkMessage(msg, tokens, null);
    }

    static void checkMessage(String msg, String[] tokens, Throwable cause) {
        if (msg == null || msg.isBlank() || msg.length() < 8) throw new AssertionError("useless message '" + msg + "'", cause);
        String lower = msg.toLowerCase(Locale.ROOT);
        for (String t : tokens) {
            if (!lower.contains(t.toLowerCase(Locale.ROOT))) {
                throw new AssertionError("message '" + msg + "' does not mention '" + t + "'", cause);
            }
        }
    }

    // ---- random building blocks ---------------------------------------------------------------------

    static long[] randomShape(Random r, int batch) {
        int rank = 1 + r.nextInt(3);
        long[] shape = new long[rank];
        shape[0] = batch;
        for (int i = 1; i < rank; i++) shape[i] = 1 + r.nextInt(5);
        return shape;
    }

    static Tensor t(Scope s, Backend be, DType dt, long... shape) {
        return s.add(Tensor.allocate(be, dt, shape));
    }

    static Tensor f(Scope s, long... shape) {
        return t(s, a, DType.FLOAT32, shape);
    }

    static int[] timesteps(Random r, int batch, int T) {
        int[] t = new int[batch];
        for (int i = 0; i < batch; i++) t[i] = r.nextInt(T);
        return t;
    }

    static int[] prevOf(Random r, int[] t) {
        int[] p = new int[t.length];
        for (int i = 0; i < t.length; i++) p[i] = r.nextInt(t[i] + 1) - 1; // in [-1, t - 1]
        return p;
    }

    static SampleNoise noise(Random r, int batch) {
        long[] seeds = new long[batch], offsets = new long[batch];
        for (int i = 0; i < batch; i++) {
            seeds[i] = r.nextLong();
            offsets[i] = r.nextLong();
        }
        return new SampleNoise(seeds, offsets);
    }

    static float badFloat(Random r, boolean allowNegative) {
        float[] c = allowNegative
                ? new float[] {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, -r.nextFloat() - 1e-3f, -Float.MIN_VALUE}
                : new float[] {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
        return c[r.nextInt(c.length)];
    }

    /** A timestep outside [0, T). */
    static int badTimestep(Random r, int T) {
        return switch (r.nextInt(4)) {
            case 0 -> T;
            case 1 -> T + 1 + r.nextInt(1_000_000);
            case 2 -> -1 - r.nextInt(1000);
            default -> r.nextBoolean() ? Integer.MIN_VALUE : Integer.MAX_VALUE;
        };
    }

    static NativeSchedule smallSchedule(Scope s, Random r) {
        int T = 2 + r.nextInt(40);
        double[] ac = new double[T];
        double v = 0.9999;
        for (int i = 0; i < T; i++) {
            v *= 0.5 + 0.49 * r.nextDouble();
            ac[i] = v;
        }
        return s.add(NativeSchedule.ofAlphasCumprod(ac));
    }

    static double[] validTable(Random r, int T) {
        double[] ac = new double[T];
        double v = 1.0;
        for (int i = 0; i < T; i++) {
            v *= 0.9 + 0.0999 * r.nextDouble();
            ac[i] = v;
        }
        return ac;
    }

    /** A live raw buffer freed at the end of the case. */
    static MemorySegment rawBuf(Scope s, Backend be, long bytes) {
        assertEquals(OK, d4j_h.d4j_buffer_alloc(be.handle(), bytes, scratchOut), lastError());
        MemorySegment h = scratchOut.get(ValueLayout.ADDRESS, 0);
        s.add(() -> assertEquals(OK, d4j_h.d4j_buffer_free(h), lastError()));
        return h;
    }

    /** A buffer handle that was real and is now freed. Call last before the call under test. */
    static MemorySegment freedBuf() {
        assertEquals(OK, d4j_h.d4j_buffer_alloc(a.handle(), 64, scratchOut), lastError());
        MemorySegment h = scratchOut.get(ValueLayout.ADDRESS, 0);
        assertEquals(OK, d4j_h.d4j_buffer_free(h), lastError());
        return h;
    }

    static MemorySegment rawSchedule(Scope s, Random r, int T) {
        MemorySegment table = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, validTable(r, T));
        assertEquals(OK, d4j_h.d4j_schedule_create(table, T, scratchOut), lastError());
        MemorySegment h = scratchOut.get(ValueLayout.ADDRESS, 0);
        s.add(() -> assertEquals(OK, d4j_h.d4j_schedule_free(h), lastError()));
        return h;
    }

    static MemorySegment freedSchedule(Random r) {
        MemorySegment table = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, validTable(r, 4));
        assertEquals(OK, d4j_h.d4j_schedule_create(table, 4, scratchOut), lastError());
        MemorySegment h = scratchOut.get(ValueLayout.ADDRESS, 0);
        assertEquals(OK, d4j_h.d4j_schedule_free(h), lastError());
        return h;
    }

    static MemorySegment ints(int... v) {
        return arena.allocateFrom(ValueLayout.JAVA_INT, v);
    }

    static MemorySegment longs(long... v) {
        return arena.allocateFrom(ValueLayout.JAVA_LONG, v);
    }

    static MemorySegment floats(float... v) {
        return arena.allocateFrom(ValueLayout.JAVA_FLOAT, v);
    }

    static MemorySegment cstr(String s) {
        return arena.allocateFrom(s);
    }
}
