package io.diffusion4j.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.Device;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
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
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Throws thousands of random bad argument combinations at the public Java API and, directly through
 * the generated bindings, at the C API. Every one must end in a typed exception or an error status
 * whose message names the offending parameter or value; afterwards no memory is leaked. The seed is
 * fresh each run (override with -Ddiffusion4j.fuzz.seed=N) and printed on failure.
 *
 * <p>Only NULL or real-but-freed handles are passed to native code, never invented addresses. A freed
 * handle is used right after being freed, before any other buffer or schedule is created, so the
 * front's registry cannot have handed its address to a new object.
 */
class BadArgumentFuzzTest {
    static final int ITERATIONS = Integer.getInteger("diffusion4j.fuzz.iterations", 3600);
    static final int OK = 0, INVALID_ARGUMENT = 1, INVALID_HANDLE = 2, UNAVAILABLE = 4;

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

    @BeforeAll
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

    @AfterAll
    static void tearDown() {
        if (sentinel != null) sentinel.close();
        if (big != null) big.close();
        if (a != null) a.close();
        if (b != null) b.close();
        if (arena != null) arena.close();
    }

    // ---- the harness ---------------------------------------------------------------------------------

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

    // ---- the generators: public Java API --------------------------------------------------------------

    static void allocateBadShape(Random r, Scope s) {
        DType dt = DType.values()[r.nextInt(DType.values().length)];
        switch (r.nextInt(7)) {
            case 0 -> {
                long[] shape = randomShape(r, 1 + r.nextInt(4));
                int i = r.nextInt(shape.length);
                shape[i] = 0;
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, shape), "dimension " + i, "is 0");
            }
            case 1 -> {
                long[] shape = randomShape(r, 1 + r.nextInt(4));
                int i = r.nextInt(shape.length);
                long v = r.nextBoolean() ? -1 - r.nextInt(100) : Long.MIN_VALUE + r.nextInt(100);
                shape[i] = v;
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, shape), "is " + v);
            }
            case 2 -> {
                long[] shape = {1L << (32 + r.nextInt(8)), 1L << (32 + r.nextInt(8)), 1 + r.nextInt(3)};
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, shape), "overflows");
            }
            case 3 -> {
                long v = Long.MAX_VALUE / 8 + 1 + (r.nextLong() >>> 8);
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, v), "too large");
            }
            case 4 -> expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt), "at least one dimension");
            case 5 -> {
                // fine for Java, refused by the native size limit (more than 64 TiB)
                long n = (1L << 44) + 1 + r.nextInt(1 << 20);
                long bytes = n * 4;
                expectThrows(D4jException.InvalidArgumentException.class, () -> Tensor.allocate(a, dt, n),
                        Long.toString(bytes), "64 TiB");
            }
            default -> expectThrows(IllegalStateException.class, () -> Tensor.allocate(closed, dt, randomShape(r, 2)),
                    "backend cpu is closed");
        }
    }

    static void tensorMisuse(Random r, Scope s) {
        long[] shape = randomShape(r, 1 + r.nextInt(4));
        Tensor x = f(s, shape);
        int n = (int) x.elementCount();
        switch (r.nextInt(5)) {
            case 0 -> {
                int len = r.nextBoolean() ? n + 1 + r.nextInt(5) : r.nextInt(n);
                expectThrows(IllegalArgumentException.class, () -> x.copyFrom(new float[len]), "array of " + len + " elements");
            }
            case 1 -> expectThrows(IllegalArgumentException.class, () -> x.copyFrom(new int[n]), "not an integer tensor");
            case 2 -> {
                Tensor i = t(s, a, r.nextBoolean() ? DType.INT32 : DType.UINT32, shape);
                expectThrows(IllegalArgumentException.class, i::toFloatArray, i.dtype().name(), "not FLOAT32");
            }
            case 3 -> {
                Tensor y = Tensor.allocate(a, DType.FLOAT32, shape);
                String d = y.describe();
                y.close();
                Runnable op = switch (r.nextInt(5)) {
                    case 0 -> () -> y.copyFrom(new float[n]);
                    case 1 -> y::toFloatArray;
                    case 2 -> y::handle;
                    case 3 -> () -> y.fill(1f);
                    default -> () -> DiffusionKernels.randomNormal(a, 1, 2, y);
                };
                expectThrows(IllegalStateException.class, op, d, "closed");
                y.close(); // harmless
            }
            default -> {
                int len = n + 1 + r.nextInt(3);
                expectThrows(IllegalArgumentException.class, () -> Tensor.of(a, new float[len], shape), "array of " + len);
            }
        }
    }

    static void addNoise(Random r, Scope s) {
        int batch = 1 + r.nextInt(4);
        long[] shape = randomShape(r, batch);
        int T = big.numTrainTimesteps();
        int[] ts = timesteps(r, batch, T);
        Tensor x0 = f(s, shape), xT = f(s, shape), eps = f(s, shape);
        long seed = r.nextLong(), off = r.nextLong();
        switch (r.nextInt(9)) {
            case 0 -> {
                int[] wrong = timesteps(r, batch + 1 + r.nextInt(3), T);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, wrong, seed, off, xT, eps), "timesteps has " + wrong.length);
            }
            case 1 -> {
                long[] other = shape.clone();
                other[other.length - 1] += 1;
                Tensor xT2 = f(s, other);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT2, eps), "xT is", xT2.describe());
            }
            case 2 -> {
                Tensor eps2 = t(s, a, DType.INT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, eps2), "eps is", "int32");
            }
            case 3 -> {
                Tensor x02 = t(s, a, DType.UINT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x02, ts, seed, off, xT, eps), "must be float32");
            }
            case 4 -> {
                int i = r.nextInt(batch);
                ts[i] = badTimestep(r, T);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, eps), "timesteps[" + i + "] = " + ts[i]);
            }
            case 5 -> {
                Tensor epsB = t(s, b, DType.FLOAT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, epsB), "eps is on backend");
            }
            case 6 -> {
                Tensor[] all = {x0, xT, eps};
                Tensor victim = all[r.nextInt(3)];
                victim.close();
                expectThrows(IllegalStateException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, eps), victim.describe(), "closed");
            }
            case 7 -> expectThrows(IllegalStateException.class,
                    () -> DiffusionKernels.addNoise(closedSchedule, x0, ts, seed, off, xT, eps), "schedule is closed");
            default -> expectThrows(D4jException.InvalidArgumentException.class,
                    () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, xT), "x_t and eps");
        }
    }

    static void diffusionLoss(Random r, Scope s) {
        NativeSchedule sch = smallSchedule(s, r);
        int T = sch.numTrainTimesteps();
        int batch = 1 + r.nextInt(4);
        long[] shape = randomShape(r, batch);
        PredictionType p = PredictionType.values()[r.nextInt(3)];
        Tensor mo = f(s, shape), x0 = f(s, shape), eps = f(s, shape), loss = f(s, batch), grad = f(s, shape);
        int[] ts = timesteps(r, batch, T);
        float[] w = new float[T];
        for (int i = 0; i < T; i++) w[i] = r.nextFloat() * 5;
        float[] weights = r.nextBoolean() ? w : null;
        switch (r.nextInt(9)) {
            case 0 -> {
                Tensor loss2 = f(s, batch + 1 + r.nextInt(3));
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss2, grad),
                        "loss must have " + batch + " elements");
            }
            case 1 -> {
                float[] w2 = new float[r.nextBoolean() ? T + 1 + r.nextInt(5) : r.nextInt(T)];
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, w2, loss, grad),
                        "lossWeights has " + w2.length, "T = " + T);
            }
            case 2 -> {
                int i = r.nextInt(T);
                w[i] = badFloat(r, true);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, w, loss, r.nextBoolean() ? grad : null),
                        "loss_weights[" + i + "]");
            }
            case 3 -> {
                int i = r.nextInt(batch);
                ts[i] = badTimestep(r, T);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss, grad),
                        "timesteps[" + i + "] = " + ts[i]);
            }
            case 4 -> {
                Tensor g2 = f(s, batch, 7, 3);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss, g2), "grad is");
            }
            case 5 -> {
                Tensor lossB = t(s, b, DType.FLOAT32, batch);
                expectThrows(D4jException.InvalidHandleException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, lossB, grad),
                        "loss:", "another 'cpu' backend");
            }
            case 6 -> {
                Tensor x0B = t(s, b, DType.FLOAT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0B, eps, ts, weights, loss, grad), "x0 is on backend");
            }
            case 7 -> {
                Tensor moI = t(s, a, DType.INT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, moI, x0, eps, ts, weights, loss, grad), "must be float32");
            }
            default -> {
                loss.close();
                expectThrows(IllegalStateException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss, grad), "closed");
            }
        }
    }

    /** Shared bad cases of the two reverse steps; {@code ddim} selects which one is called. */
    static void reverseStep(Random r, Scope s, boolean ddim) {
        NativeSchedule sch = r.nextBoolean() ? big : smallSchedule(s, r);
        int T = sch.numTrainTimesteps();
        int batch = 1 + r.nextInt(4);
        long[] shape = randomShape(r, batch);
        Tensor xT = f(s, shape), mo = f(s, shape), xPrev = f(s, shape);
        int[] ts = timesteps(r, batch, T);
        int[] prev = prevOf(r, ts);
        SampleNoise nz = noise(r, batch);
        PredictionType p = PredictionType.values()[r.nextInt(3)];
        VarianceType v = VarianceType.values()[r.nextInt(2)];
        boolean clip = r.nextBoolean();
        float range = 0.5f + r.nextFloat();
        float eta = r.nextFloat();
        boolean useClipped = r.nextBoolean();
        double fac = r.nextBoolean() ? 1.0 : 0.5 + 0.5 * r.nextDouble();

        // one step call with the (possibly broken) arguments above, overridable per case
        final class Call {
            Tensor x = xT, m = mo, out = xPrev;
            int[] t = ts, pv = prev;
            SampleNoise noise = nz;
            boolean cl = clip;
            float rg = range, e = eta;
            double fa = fac;

            Runnable runnable() {
                return ddim
                        ? () -> DiffusionKernels.ddimStep(sch, p, e, cl, rg, useClipped, fa, x, m, t, pv, noise, out)
                        : () -> DiffusionKernels.ddpmStep(sch, p, v, cl, rg, x, m, t, pv, noise, out);
            }
        }
        Call c = new Call();
        int variants = ddim ? 12 : 10;
        switch (r.nextInt(variants)) {
            case 0 -> {
                int i = r.nextInt(batch);
                c.pv[i] = ts[i] + r.nextInt(T - ts[i]);
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(),
                        "prev_timesteps[" + i + "] = " + c.pv[i], "below timesteps[" + i + "] = " + ts[i]);
            }
            case 1 -> {
                int i = r.nextInt(batch);
                c.pv[i] = r.nextBoolean() ? -2 - r.nextInt(1000) : Integer.MIN_VALUE;
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(),
                        "prev_timesteps[" + i + "] = " + c.pv[i], "outside [-1, " + T + ")");
            }
            case 2 -> {
                int i = r.nextInt(batch);
                c.t[i] = badTimestep(r, T);
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "timesteps[" + i + "] = " + c.t[i]);
            }
            case 3 -> {
                c.cl = true;
                float[] bad = {0f, -0f, -r.nextFloat() - 1e-6f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
                c.rg = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "clip_sample_range");
            }
            case 4 -> {
                c.noise = noise(r, batch + 1 + r.nextInt(2));
                expectThrows(IllegalArgumentException.class, c.runnable(), "noise has " + c.noise.seeds().length,
                        "batch of " + batch);
            }
            case 5 -> {
                int k = batch + 1;
                expectThrows(IllegalArgumentException.class, () -> new SampleNoise(new long[batch], new long[k]),
                        "seeds has " + batch, "offsets has " + k);
            }
            case 6 -> {
                c.pv = prevOf(r, timesteps(r, batch + 1, T));
                expectThrows(IllegalArgumentException.class, c.runnable(), "prevTimesteps has " + (batch + 1));
            }
            case 7 -> {
                c.out = mo;
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "x_prev must not alias model_output");
            }
            case 8 -> {
                c.m = t(s, b, DType.FLOAT32, shape);
                expectThrows(IllegalArgumentException.class, c.runnable(), "modelOutput is on backend");
            }
            case 9 -> {
                if (r.nextBoolean()) {
                    xT.close();
                    expectThrows(IllegalStateException.class, c.runnable(), xT.describe(), "closed");
                } else {
                    long[] other = shape.clone();
                    other[0] += 1;
                    c.out = f(s, other);
                    expectThrows(IllegalArgumentException.class, c.runnable(), "xPrev is");
                }
            }
            case 10 -> {
                c.e = badFloat(r, true);
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "eta must be finite");
            }
            default -> {
                double[] bad = {0.0, -0.0, -r.nextDouble(), 1.0 + 1e-12 + r.nextDouble(), Double.NaN,
                    Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY};
                c.fa = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "final_alpha_cumprod");
            }
        }
    }

    static void embedding(Random r, Scope s) {
        int batch = 1 + r.nextInt(4);
        int dim = 2 + r.nextInt(9);
        float[] ts = new float[batch];
        for (int i = 0; i < batch; i++) ts[i] = r.nextFloat() * 1000;
        boolean flip = r.nextBoolean();
        float shift = r.nextFloat();
        float scale = 1f + r.nextFloat();
        float maxPeriod = 10000f;
        Tensor out = f(s, batch, dim);
        switch (r.nextInt(10)) {
            case 0 -> {
                Tensor o1 = f(s, batch, 1);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, 1, flip, 0f, scale, maxPeriod, o1), "embedding dim", "got 1");
            }
            case 1 -> {
                int d = -r.nextInt(5);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, d, flip, shift, scale, maxPeriod, out),
                        "out must be float32[" + batch + ", " + d + "]");
            }
            case 2 -> {
                float[] ts2 = Arrays.copyOf(ts, batch + 1);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts2, dim, flip, shift, scale, maxPeriod, out),
                        "out must be float32[" + (batch + 1) + ", " + dim + "]");
            }
            case 3 -> {
                int i = r.nextInt(batch);
                ts[i] = badFloat(r, false);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, scale, maxPeriod, out),
                        "timesteps[" + i + "] is not finite");
            }
            case 4 -> {
                float mp = r.nextBoolean() ? badFloat(r, true) : 0f;
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, scale, mp, out), "max_period");
            }
            case 5 -> {
                float sh = r.nextBoolean() ? dim / 2 + r.nextFloat() * 10 : badFloat(r, false);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, sh, scale, maxPeriod, out),
                        "downscale_freq_shift", "dim/2 = " + dim / 2);
            }
            case 6 -> {
                float sc = badFloat(r, false);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, sc, maxPeriod, out), "scale");
            }
            case 7 -> expectThrows(D4jException.InvalidHandleException.class,
                    () -> DiffusionKernels.timestepEmbedding(b, ts, dim, flip, shift, scale, maxPeriod, out),
                    "out:", "another 'cpu' backend");
            case 8 -> expectThrows(IllegalStateException.class,
                    () -> DiffusionKernels.timestepEmbedding(closed, ts, dim, flip, shift, scale, maxPeriod, out),
                    "backend cpu is closed");
            default -> {
                Tensor oi = t(s, a, DType.INT32, batch, dim);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, scale, maxPeriod, oi),
                        "out must be float32");
            }
        }
    }

    static void rng(Random r, Scope s) {
        long[] shape = randomShape(r, 1 + r.nextInt(4));
        long seed = r.nextLong(), off = r.nextLong();
        switch (r.nextInt(5)) {
            case 0 -> {
                Tensor o = f(s, shape);
                expectThrows(IllegalArgumentException.class, () -> DiffusionKernels.randomBits(a, seed, off, o), "must be uint32");
            }
            case 1 -> {
                Tensor o = t(s, a, DType.UINT32, shape);
                expectThrows(IllegalArgumentException.class, () -> DiffusionKernels.randomNormal(a, seed, off, o), "must be float32");
            }
            case 2 -> {
                boolean bits = r.nextBoolean();
                Tensor o = t(s, b, bits ? DType.UINT32 : DType.FLOAT32, shape);
                expectThrows(D4jException.InvalidHandleException.class, bits
                        ? () -> DiffusionKernels.randomBits(a, seed, off, o)
                        : () -> DiffusionKernels.randomNormal(a, seed, off, o), "out:", "another 'cpu' backend");
            }
            case 3 -> {
                Tensor o = t(s, a, DType.UINT32, shape);
                expectThrows(IllegalStateException.class, () -> DiffusionKernels.randomBits(closed, seed, off, o), "closed");
            }
            default -> {
                Tensor o = f(s, shape);
                o.close();
                expectThrows(IllegalStateException.class, () -> DiffusionKernels.randomNormal(a, seed, off, o), "closed");
            }
        }
    }

    static void schedules(Random r, Scope s) {
        int T = 1 + r.nextInt(50);
        double[] ac = validTable(r, T);
        switch (r.nextInt(50) == 0 ? 4 : r.nextInt(4)) {
            case 0 -> {
                int i = r.nextInt(T);
                double[] bad = {Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY};
                ac[i] = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(ac)),
                        "alphas_cumprod[" + i + "] is not finite");
            }
            case 1 -> {
                int i = r.nextInt(T);
                double[] bad = {0.0, -0.0, 1.0, -r.nextDouble(), 1.0 + r.nextDouble(), Double.MIN_VALUE * -1};
                ac[i] = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(ac)),
                        "alphas_cumprod[" + i + "]", "outside (0, 1)");
            }
            case 2 -> {
                if (T < 2) {
                    expectThrows(D4jException.InvalidArgumentException.class,
                            () -> s.add(NativeSchedule.ofAlphasCumprod(new double[0])), "num_train_timesteps", "got 0");
                    return;
                }
                int i = 1 + r.nextInt(T - 1);
                ac[i] = r.nextBoolean() ? ac[i - 1] : Math.min(0.999999, ac[i - 1] + r.nextDouble() * (1 - ac[i - 1]));
                if (!(ac[i] >= ac[i - 1])) ac[i] = ac[i - 1];
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(ac)),
                        "not strictly decreasing at t = " + i);
            }
            case 3 -> expectThrows(D4jException.InvalidArgumentException.class,
                    () -> s.add(NativeSchedule.ofAlphasCumprod(new double[0])), "num_train_timesteps", "got 0");
            default -> {
                double[] huge = new double[1_000_001];
                Arrays.fill(huge, 0.5);
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(huge)),
                        "num_train_timesteps", "1000001");
            }
        }
    }

    static void backendMisuse(Random r, Scope s) {
        switch (r.nextInt(4)) {
            case 0 -> {
                int[] bad = {0, -1 - r.nextInt(100), 1025 + r.nextInt(100000), Integer.MIN_VALUE, Integer.MAX_VALUE};
                int v = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, () -> (r.nextBoolean() ? a : b).setThreads(v),
                        "threads", "got " + v);
            }
            case 1 -> {
                String name = "gpu" + r.nextInt(100);
                expectThrows(IllegalArgumentException.class, () -> Backend.open(name), "unknown backend '" + name + "'");
            }
            case 2 -> {
                Runnable op = switch (r.nextInt(5)) {
                    case 0 -> closed::liveBytes;
                    case 1 -> closed::description;
                    case 2 -> closed::synchronize;
                    case 3 -> () -> closed.setThreads(2);
                    default -> closed::handle;
                };
                expectThrows(IllegalStateException.class, op, "backend cpu is closed");
            }
            default -> {
                long live = a.liveBuffers();
                expectThrows(D4jException.InvalidArgumentException.class, a::close, "still has " + live + " live buffers");
                assertFalse(a.isClosed(), "a failed close must leave the backend open");
            }
        }
    }

    // ---- the generators: raw bindings ----------------------------------------------------------------

    static void rawAlloc(Random r, Scope s) {
        setMarker();
        switch (r.nextInt(6)) {
            case 0 -> {
                long v = r.nextBoolean() ? 0 : -1 - r.nextInt(1 << 20);
                expectStatus(INVALID_ARGUMENT, d4j_h.d4j_buffer_alloc(a.handle(), v, scratchOut), "got " + v);
                assertEquals(0L, scratchOut.get(ValueLayout.JAVA_LONG, 0), "*out must be NULL after a failure");
            }
            case 1 -> {
                long v = (1L << 46) + 1 + (r.nextLong() >>> 18);
                expectStatus(INVALID_ARGUMENT, d4j_h.d4j_buffer_alloc(a.handle(), v, scratchOut), Long.toString(v), "64 TiB");
            }
            case 2 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_buffer_alloc(MemorySegment.NULL, 16, scratchOut), "backend is null");
            case 3 -> {
                MemorySegment dead = closedHandle();
                expectStatus(INVALID_HANDLE, d4j_h.d4j_buffer_alloc(dead, 16, scratchOut), "backend handle is closed or invalid");
            }
            case 4 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_buffer_alloc(a.handle(), 16, MemorySegment.NULL), "out is null");
            default -> {
                // a live buffer handle passed where a backend is expected: refused by the registry, not dereferenced
                MemorySegment buf = rawBuf(s, a, 32);
                setMarker();
                expectStatus(INVALID_HANDLE, d4j_h.d4j_buffer_alloc(buf, 16, scratchOut), "backend handle is closed or invalid");
            }
        }
    }

    static MemorySegment closedHandleCache;

    /** The native handle of the closed backend (captured before it was closed). */
    static MemorySegment closedHandle() {
        return closedHandleCache;
    }

    static void rawFreeAndSize(Random r, Scope s) {
        setMarker();
        switch (r.nextInt(6)) {
            case 0 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_buffer_free(MemorySegment.NULL), "buffer is null");
            case 1 -> {
                MemorySegment dead = freedBuf();
                setMarker();
                expectStatus(INVALID_HANDLE, d4j_h.d4j_buffer_free(dead), "already freed");
            }
            case 2 -> expectStatus(INVALID_HANDLE, d4j_h.d4j_buffer_free(a.handle()), "already freed or invalid");
            case 3 -> {
                MemorySegment dead = freedBuf();
                setMarker();
                expectStatus(INVALID_HANDLE, d4j_h.d4j_buffer_size(dead, scratchOut), "buffer: buffer is freed");
            }
            case 4 -> {
                MemorySegment buf = rawBuf(s, a, 8);
                setMarker();
                expectStatus(INVALID_ARGUMENT, d4j_h.d4j_buffer_size(buf, MemorySegment.NULL), "bytes is null");
            }
            default -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_buffer_size(MemorySegment.NULL, scratchOut), "buffer is null");
        }
    }

    static void rawCopy(Random r, Scope s) {
        long size = 1 + r.nextInt(256);
        MemorySegment buf = rawBuf(s, a, size);
        boolean write = r.nextBoolean();
        long off, n;
        switch (r.nextInt(7)) {
            case 0 -> { off = -1 - r.nextInt(1000); n = r.nextInt((int) size); }
            case 1 -> { off = r.nextInt((int) size); n = -1 - r.nextInt(1000); }
            case 2 -> { off = size + 1 + r.nextInt(1000); n = 0; }
            case 3 -> { off = r.nextInt((int) size + 1); n = size - off + 1 + r.nextInt(1000); }
            case 4 -> { off = Long.MAX_VALUE - r.nextInt(10); n = Long.MAX_VALUE - r.nextInt(10); }
            case 5 -> { off = 1 + r.nextInt((int) size); n = Long.MAX_VALUE - r.nextInt(10); } // off + n overflows
            default -> {
                setMarker();
                int st = write ? d4j_h.d4j_buffer_write(buf, 0, MemorySegment.NULL, size)
                        : d4j_h.d4j_buffer_read(buf, 0, MemorySegment.NULL, size);
                expectStatus(INVALID_ARGUMENT, st, "host pointer is null");
                if (r.nextBoolean()) {
                    MemorySegment dead = freedBuf();
                    setMarker();
                    st = write ? d4j_h.d4j_buffer_write(dead, 0, host, 4) : d4j_h.d4j_buffer_read(dead, 0, host, 4);
                    expectStatus(INVALID_HANDLE, st, "buffer is freed");
                }
                return;
            }
        }
        setMarker();
        int st = write ? d4j_h.d4j_buffer_write(buf, off, host, n) : d4j_h.d4j_buffer_read(buf, off, host, n);
        expectStatus(INVALID_ARGUMENT, st, "outside the buffer of " + size + " bytes", Long.toString(off));
    }

    static void rawRng(Random r, Scope s) {
        boolean normal = r.nextBoolean();
        long cap = 4L * (1 + r.nextInt(64));
        MemorySegment buf = rawBuf(s, a, cap);
        long seed = r.nextLong(), off = r.nextLong();
        MemorySegment be = a.handle();
        long count;
        String[] tokens;
        int expected = INVALID_ARGUMENT;
        switch (r.nextInt(6)) {
            case 0 -> { count = cap / 4 + 1 + r.nextInt(100); tokens = new String[] {"out: buffer holds " + cap + " bytes"}; }
            case 1 -> { count = -1 - r.nextInt(100); tokens = new String[] {"count must be >= 0", "got " + count}; }
            case 2 -> { count = Long.MAX_VALUE / 4 + 1 + r.nextInt(1000); tokens = new String[] {"count", "overflows"}; }
            case 3 -> {
                buf = rawBuf(s, b, cap);
                count = cap / 4;
                expected = INVALID_HANDLE;
                tokens = new String[] {"out: buffer belongs to another 'cpu' backend instance"};
            }
            case 4 -> { be = MemorySegment.NULL; count = 1; tokens = new String[] {"backend is null"}; }
            default -> {
                count = 1;
                expected = INVALID_HANDLE;
                tokens = new String[] {"out: buffer is freed"};
                buf = freedBuf();
            }
        }
        setMarker();
        int st = normal ? d4j_h.d4j_rng_normal(be, seed, off, buf, count) : d4j_h.d4j_rng_uint32(be, seed, off, buf, count);
        expectStatus(expected, st, tokens);
    }

    static void rawAddNoise(Random r, Scope s) {
        int batch = 1 + r.nextInt(3);
        long n = 1 + r.nextInt(8);
        long bytes = batch * n * 4;
        MemorySegment sch = rawSchedule(s, r, 10);
        MemorySegment x0 = rawBuf(s, a, bytes), xt = rawBuf(s, a, bytes), eps = rawBuf(s, a, bytes);
        MemorySegment ts = ints(new int[batch]);
        MemorySegment be = a.handle();
        int bt = batch;
        long nn = n;
        int expected = INVALID_ARGUMENT;
        String[] tokens;
        switch (r.nextInt(10)) {
            case 0 -> { bt = (1 << 30) + r.nextInt(1 << 20); nn = (1L << 40) + r.nextInt(100); tokens = new String[] {"overflows"}; }
            case 1 -> { bt = -r.nextInt(100); tokens = new String[] {"batch must be >= 1", "got " + bt}; }
            case 2 -> { nn = -r.nextInt(100); tokens = new String[] {"n_per_sample must be >= 1", "got " + nn}; }
            case 3 -> { sch = MemorySegment.NULL; tokens = new String[] {"schedule is null"}; }
            case 4 -> { ts = MemorySegment.NULL; tokens = new String[] {"timesteps is null"}; }
            case 5 -> { x0 = rawBuf(s, a, bytes - 1); tokens = new String[] {"x0: buffer holds " + (bytes - 1) + " bytes but " + bytes}; }
            case 6 -> { xt = rawBuf(s, b, bytes); expected = INVALID_HANDLE; tokens = new String[] {"x_t: buffer belongs to another"}; }
            case 7 -> { ts = ints(timestepsWithBad(r, batch, 10)); tokens = new String[] {"timesteps[", "outside [0, 10)"}; }
            case 8 -> { sch = freedSchedule(r); expected = INVALID_HANDLE; tokens = new String[] {"schedule is freed"}; }
            default -> { eps = freedBuf(); expected = INVALID_HANDLE; tokens = new String[] {"eps: buffer is freed"}; }
        }
        setMarker();
        expectStatus(expected, d4j_h.d4j_add_noise(be, sch, x0, ts, bt, nn, r.nextLong(), r.nextLong(), xt, eps), tokens);
    }

    static int[] timestepsWithBad(Random r, int batch, int T) {
        int[] t = new int[batch];
        t[r.nextInt(batch)] = badTimestep(r, T);
        return t;
    }

    static void rawLoss(Random r, Scope s) {
        int T = 10;
        int batch = 1 + r.nextInt(3);
        long n = 1 + r.nextInt(8);
        long bytes = batch * n * 4;
        MemorySegment sch = rawSchedule(s, r, T);
        MemorySegment mo = rawBuf(s, a, bytes), x0 = rawBuf(s, a, bytes), eps = rawBuf(s, a, bytes);
        MemorySegment loss = rawBuf(s, a, batch * 4L), grad = r.nextBoolean() ? rawBuf(s, a, bytes) : MemorySegment.NULL;
        float[] w = new float[T];
        Arrays.fill(w, 1f);
        MemorySegment weights = r.nextBoolean() ? floats(w) : MemorySegment.NULL;
        int pred = r.nextInt(3);
        int expected = INVALID_ARGUMENT;
        String[] tokens;
        switch (r.nextInt(5)) {
            case 0 -> {
                pred = r.nextBoolean() ? 3 + r.nextInt(100) : -1 - r.nextInt(100);
                tokens = new String[] {"prediction type " + pred};
            }
            case 1 -> { loss = rawBuf(s, a, batch * 4L - 1); tokens = new String[] {"loss: buffer holds " + (batch * 4L - 1)}; }
            case 2 -> {
                int i = r.nextInt(T);
                w[i] = badFloat(r, true);
                weights = floats(w);
                tokens = new String[] {"loss_weights[" + i + "]", "finite and >= 0"};
            }
            case 3 -> { grad = rawBuf(s, b, bytes); expected = INVALID_HANDLE; tokens = new String[] {"grad: buffer belongs to another"}; }
            default -> { grad = freedBuf(); expected = INVALID_HANDLE; tokens = new String[] {"grad: buffer is freed"}; }
        }
        setMarker();
        expectStatus(expected, d4j_h.d4j_diffusion_loss(a.handle(), sch, pred, mo, x0, eps, ints(new int[batch]), weights,
                batch, n, loss, grad), tokens);
    }

    static void rawSteps(Random r, Scope s) {
        int T = 10;
        int batch = 1 + r.nextInt(3);
        long n = 1 + r.nextInt(8);
        long bytes = batch * n * 4;
        MemorySegment sch = rawSchedule(s, r, T);
        MemorySegment xt = rawBuf(s, a, bytes), mo = rawBuf(s, a, bytes), xp = r.nextBoolean() ? xt : rawBuf(s, a, bytes);
        int[] t = new int[batch], p = new int[batch];
        Arrays.fill(t, 5);
        Arrays.fill(p, 4);
        MemorySegment ts = ints(t), prev = ints(p), seeds = longs(new long[batch]), offs = longs(new long[batch]);
        boolean ddim = r.nextBoolean();
        int variance = r.nextInt(2), clip = r.nextInt(2), useClipped = r.nextInt(2);
        float range = 1f, eta = 0.5f;
        double fac = 1.0;
        String[] tokens;
        int kind = r.nextInt(7);
        switch (kind) {
            case 0 -> { clip = r.nextBoolean() ? 2 + r.nextInt(10) : -1 - r.nextInt(10); tokens = new String[] {"clip_sample must be 0 or 1", "got " + clip}; }
            case 1 -> { seeds = MemorySegment.NULL; tokens = new String[] {"noise_seeds"}; }
            case 2 -> { prev = MemorySegment.NULL; tokens = new String[] {"prev_timesteps is null"}; }
            case 3 -> { offs = MemorySegment.NULL; tokens = new String[] {"noise_offsets"}; }
            default -> {
                if (ddim) {
                    if (kind == 4) { useClipped = 2 + r.nextInt(5); tokens = new String[] {"use_clipped_model_output", "got " + useClipped}; }
                    else if (kind == 5) { fac = r.nextBoolean() ? 0.0 : 2.0; tokens = new String[] {"final_alpha_cumprod", "(0, 1]"}; }
                    else { eta = -1f; tokens = new String[] {"eta must be finite and >= 0"}; }
                } else {
                    variance = r.nextBoolean() ? 2 + r.nextInt(10) : -1 - r.nextInt(10);
                    tokens = new String[] {"variance type " + variance};
                }
            }
        }
        setMarker();
        int st = ddim
                ? d4j_h.d4j_ddim_step(a.handle(), sch, 0, eta, clip, range, useClipped, fac, xt, mo, ts, prev, batch, n, seeds, offs, xp)
                : d4j_h.d4j_ddpm_step(a.handle(), sch, 0, variance, clip, range, xt, mo, ts, prev, batch, n, seeds, offs, xp);
        expectStatus(INVALID_ARGUMENT, st, tokens);
    }

    static void rawEmbedding(Random r, Scope s) {
        int batch = 1 + r.nextInt(3), dim = 2 + r.nextInt(8);
        MemorySegment out = rawBuf(s, a, batch * dim * 4L);
        MemorySegment ts = floats(new float[batch]);
        int bt = batch, d = dim, flip = r.nextInt(2);
        String[] tokens;
        switch (r.nextInt(5)) {
            case 0 -> { flip = 2 + r.nextInt(5); tokens = new String[] {"flip_sin_to_cos", "got " + flip}; }
            case 1 -> { d = r.nextBoolean() ? (1 << 20) + 1 + r.nextInt(1000) : 1 - r.nextInt(3); tokens = new String[] {"embedding dim", "got " + d}; }
            case 2 -> { ts = MemorySegment.NULL; tokens = new String[] {"timesteps is null"}; }
            case 3 -> { bt = -r.nextInt(10); tokens = new String[] {"batch must be >= 1", "got " + bt}; }
            default -> { out = rawBuf(s, a, batch * dim * 4L - 4); tokens = new String[] {"out: buffer holds " + (batch * dim * 4L - 4)}; }
        }
        setMarker();
        expectStatus(INVALID_ARGUMENT, d4j_h.d4j_timestep_embedding(a.handle(), ts, bt, d, flip, 0f, 1f, 10000f, out), tokens);
    }

    static void rawSchedules(Random r, Scope s) {
        MemorySegment table = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, validTable(r, 8));
        setMarker();
        switch (r.nextInt(6)) {
            case 0 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_schedule_create(MemorySegment.NULL, 5, scratchOut), "alphas_cumprod is null");
            case 1 -> {
                int T = r.nextBoolean() ? -r.nextInt(100) : 1_000_001 + r.nextInt(1000);
                expectStatus(INVALID_ARGUMENT, d4j_h.d4j_schedule_create(table, T, scratchOut), "num_train_timesteps", "got " + T);
            }
            case 2 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_schedule_create(table, 8, MemorySegment.NULL), "out is null");
            case 3 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_schedule_free(MemorySegment.NULL), "schedule is null");
            case 4 -> {
                MemorySegment dead = freedSchedule(r);
                setMarker();
                expectStatus(INVALID_HANDLE, d4j_h.d4j_schedule_free(dead), "schedule is already freed");
            }
            default -> {
                // a buffer handle is not a schedule
                MemorySegment buf = rawBuf(s, a, 8);
                setMarker();
                expectStatus(INVALID_HANDLE, d4j_h.d4j_schedule_free(buf), "schedule is already freed or invalid");
            }
        }
    }

    static void rawBackends(Random r, Scope s) {
        setMarker();
        switch (r.nextInt(11)) {
            case 0 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_open(MemorySegment.NULL, scratchOut), "library_path is null or empty");
            case 1 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_open(cstr(""), scratchOut), "library_path is null or empty");
            case 2 -> {
                String p = "/nonexistent-d4j-" + r.nextInt(1000) + "/libd4j_none.so";
                expectStatus(UNAVAILABLE, d4j_h.d4j_backend_open(cstr(p), scratchOut), "cannot load " + p);
            }
            case 3 -> expectStatus(UNAVAILABLE, d4j_h.d4j_backend_open(cstr(frontLibrary.toString()), scratchOut),
                    "not a diffusion4j backend");
            case 4 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_open(cstr(cpuLibrary.toString()), MemorySegment.NULL), "out is null");
            case 5 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_close(MemorySegment.NULL), "backend is null");
            case 6 -> expectStatus(INVALID_HANDLE, d4j_h.d4j_backend_close(closedHandle()), "backend handle is closed or invalid");
            case 7 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_close(a.handle()), "still has", "live buffers");
            case 8 -> {
                MemorySegment dst = r.nextBoolean() ? MemorySegment.NULL : host;
                long cap = dst.equals(MemorySegment.NULL) ? 64 : 0;
                int st = r.nextBoolean() ? d4j_h.d4j_backend_name(a.handle(), dst, cap) : d4j_h.d4j_backend_describe(a.handle(), dst, cap);
                expectStatus(INVALID_ARGUMENT, st, "dst is null or cap is 0");
            }
            case 9 -> {
                boolean first = r.nextBoolean();
                expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_live(a.handle(), first ? MemorySegment.NULL : scratchOut,
                        first ? scratchOut2 : MemorySegment.NULL), "live_bytes and live_buffers must not be null");
            }
            default -> {
                int st = switch (r.nextInt(4)) {
                    case 0 -> d4j_h.d4j_backend_synchronize(closedHandle());
                    case 1 -> d4j_h.d4j_backend_describe(closedHandle(), host, 64);
                    case 2 -> d4j_h.d4j_backend_live(closedHandle(), scratchOut, scratchOut2);
                    default -> d4j_h.d4j_backend_set_threads(closedHandle(), 2);
                };
                expectStatus(INVALID_HANDLE, st, "backend handle is closed or invalid");
            }
        }
    }

    // ---- the test ------------------------------------------------------------------------------------

    @Test
    void thousandsOfBadArgumentsAreRefusedWithUsefulMessages() throws Exception {
        // the closed backend's raw handle, captured from a fresh instance (its memory is not reused:
        // no backend is opened during the fuzz)
        Backend victim = Backend.open(Device.CPU);
        closedHandleCache = victim.handle();
        victim.close();

        List<Named> gens = List.of(
                new Named("Tensor.allocate bad shape", BadArgumentFuzzTest::allocateBadShape),
                new Named("Tensor misuse", BadArgumentFuzzTest::tensorMisuse),
                new Named("addNoise", BadArgumentFuzzTest::addNoise),
                new Named("diffusionLoss", BadArgumentFuzzTest::diffusionLoss),
                new Named("ddpmStep", (r, s) -> reverseStep(r, s, false)),
                new Named("ddimStep", (r, s) -> reverseStep(r, s, true)),
                new Named("timestepEmbedding", BadArgumentFuzzTest::embedding),
                new Named("random", BadArgumentFuzzTest::rng),
                new Named("NativeSchedule.ofAlphasCumprod", BadArgumentFuzzTest::schedules),
                new Named("Backend misuse", BadArgumentFuzzTest::backendMisuse),
                new Named("raw d4j_buffer_alloc", BadArgumentFuzzTest::rawAlloc),
                new Named("raw d4j_buffer_free/size", BadArgumentFuzzTest::rawFreeAndSize),
                new Named("raw d4j_buffer_write/read", BadArgumentFuzzTest::rawCopy),
                new Named("raw d4j_rng_*", BadArgumentFuzzTest::rawRng),
                new Named("raw d4j_add_noise", BadArgumentFuzzTest::rawAddNoise),
                new Named("raw d4j_diffusion_loss", BadArgumentFuzzTest::rawLoss),
                new Named("raw d4j_ddpm/ddim_step", BadArgumentFuzzTest::rawSteps),
                new Named("raw d4j_timestep_embedding", BadArgumentFuzzTest::rawEmbedding),
                new Named("raw d4j_schedule_*", BadArgumentFuzzTest::rawSchedules),
                new Named("raw d4j_backend_*", BadArgumentFuzzTest::rawBackends));

        long seed = Long.getLong("diffusion4j.fuzz.seed", System.nanoTime() ^ System.identityHashCode(this));
        long startBytes = a.liveBytes(), startBuffers = a.liveBuffers();
        long startBytesB = b.liveBytes(), startBuffersB = b.liveBuffers();
        int[] counts = new int[gens.size()];
        int i = 0;
        String current = "";
        try {
            Random master = new Random(seed);
            for (i = 0; i < ITERATIONS; i++) {
                int g = master.nextInt(gens.size());
                long caseSeed = master.nextLong();
                current = gens.get(g).name() + " (case seed " + caseSeed + ")";
                try (Scope s = new Scope()) {
                    gens.get(g).gen().run(new Random(caseSeed), s);
                }
                counts[g]++;
                if (i % 500 == 0) {
                    assertEquals(startBuffers, a.liveBuffers(), "live buffers of backend a");
                    assertEquals(startBytes, a.liveBytes(), "live bytes of backend a");
                }
            }
            assertEquals(startBytes, a.liveBytes(), "live bytes of backend a after the fuzz");
            assertEquals(startBuffers, a.liveBuffers(), "live buffers of backend a after the fuzz");
            assertEquals(startBytesB, b.liveBytes(), "live bytes of backend b after the fuzz");
            assertEquals(startBuffersB, b.liveBuffers(), "live buffers of backend b after the fuzz");
            assertFalse(a.isClosed());
            // both backends still work after thousands of refusals
            try (Tensor x = Tensor.of(a, new float[] {1, 2, 3}, 3); Tensor y = Tensor.allocate(b, DType.UINT32, 4)) {
                assertEquals(3f, x.toFloatArray()[2]);
                DiffusionKernels.randomBits(b, 1, 2, y);
            }
        } catch (AssertionError | Exception e) {
            throw new AssertionError("BadArgumentFuzzTest failed at iteration " + i + " in " + current + "; rerun with -Ddiffusion4j.fuzz.seed="
                    + seed + ": " + e.getMessage(), e);
        }
        for (int g = 0; g < counts.length; g++) {
            assertTrue(counts[g] > 50, "generator " + gens.get(g).name() + " ran only " + counts[g] + " times (seed " + seed + ")");
        }
        assertTrue(Arrays.stream(counts).sum() >= 3000);
    }
}
