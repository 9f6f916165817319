package io.diffusion4j.backend;

import io.diffusion4j.Precision;
import static io.diffusion4j.backend.BadArgumentFuzz.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.diffusion4j.bindings.d4j_h;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Random;

/**
 * The generators of {@link BadArgumentFuzzTest} that call the C API directly through the generated
 * bindings (NULL, freed and wrong-kind handles, bad sizes and tables): each expects an error status with a
 * fresh message naming the offending parameter.
 */
final class RawBindingBadArguments {
    private RawBindingBadArguments() {}

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
        switch (r.nextInt(12)) {
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
            case 10 -> {
                // the enum is an int to a caller: any value outside it is refused by the front, before the backend
                int[] bad = {3, -1, Integer.MIN_VALUE, Integer.MAX_VALUE, 3 + r.nextInt(Integer.MAX_VALUE - 3)};
                int v = bad[r.nextInt(bad.length)];
                switch (r.nextInt(3)) {
                    case 0 -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_set_precision(a.handle(), v),
                            "precision " + v + " is not fp32(0), tf32(1) or bf16(2)");
                    case 1 -> expectStatus(UNSUPPORTED, d4j_h.d4j_backend_set_precision(a.handle(),
                            r.nextBoolean() ? d4j_h.D4J_PRECISION_TF32() : d4j_h.D4J_PRECISION_BF16()), "cpu", "fp32 only");
                    default -> expectStatus(INVALID_ARGUMENT, d4j_h.d4j_backend_precision(a.handle(), MemorySegment.NULL),
                            "out is null");
                }
                assertEquals(Precision.FP32, a.precision(), "a refused setting changed the precision");
            }
            default -> {
                int st = switch (r.nextInt(6)) {
                    case 0 -> d4j_h.d4j_backend_synchronize(closedHandle());
                    case 1 -> d4j_h.d4j_backend_describe(closedHandle(), host, 64);
                    case 2 -> d4j_h.d4j_backend_live(closedHandle(), scratchOut, scratchOut2);
                    case 3 -> d4j_h.d4j_backend_set_precision(closedHandle(), d4j_h.D4J_PRECISION_FP32());
                    case 4 -> d4j_h.d4j_backend_precision(closedHandle(), scratchOut);
                    default -> d4j_h.d4j_backend_set_threads(closedHandle(), 2);
                };
                expectStatus(INVALID_HANDLE, st, "backend handle is closed or invalid");
            }
        }
    }
}
