package io.diffusion4j.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.DiffusionKernels;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/**
 * Allocation, accounting, copies and release of backend buffers on the CPU backend, through the raw
 * C API (byte-granular sizes) and through {@link Tensor}. Each test uses its own backend instance so
 * the live counters start at zero.
 */
class BufferLifecycleTest {
    static final int BUFFERS = 10_000;
    static final long MAX_BYTES = 4L << 20; // 4 MiB

    /** One live raw buffer and the bytes written into it (verified again before it is freed). */
    record Live(MemorySegment handle, long bytes, long writtenAt, byte[] written) {}

    static String lastError() {
        return d4j_h.d4j_last_error().reinterpret(1024).getString(0);
    }

    static void ok(int status) {
        assertEquals(0, status, () -> "native call failed: " + lastError());
    }

    /** Log-uniform in [1, MAX_BYTES]: mostly small buffers, some of several MiB. */
    static long randomSize(Random r) {
        double x = Math.exp(r.nextDouble() * Math.log(MAX_BYTES));
        return Math.max(1, Math.min(MAX_BYTES, (long) x));
    }

    @Test
    void tenThousandRandomBuffersAreAccountedAndReleased() {
        long seed = System.nanoTime();
        Random r = new Random(seed);
        String ctx = " (seed " + seed + ")";
        try (Backend be = Backend.open(Device.CPU); Arena arena = Arena.ofConfined()) {
            assertEquals(0, be.liveBytes(), "fresh backend" + ctx);
            assertEquals(0, be.liveBuffers(), "fresh backend" + ctx);
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            MemorySegment size = arena.allocate(ValueLayout.JAVA_LONG);
            MemorySegment hostIn = arena.allocate(8192, 64), hostOut = arena.allocate(8192, 64);
            List<Live> live = new ArrayList<>();
            long expectedBytes = 0, peakBytes = 0;
            int peakCount = 0, roundTrips = 0;
            for (int i = 0; i < BUFFERS; i++) {
                long bytes = randomSize(r);
                ok(d4j_h.d4j_buffer_alloc(be.handle(), bytes, out));
                MemorySegment h = out.get(ValueLayout.ADDRESS, 0);
                ok(d4j_h.d4j_buffer_size(h, size));
                assertEquals(bytes, size.get(ValueLayout.JAVA_LONG, 0), "d4j_buffer_size" + ctx);
                long at = -1;
                byte[] data = null;
                if (r.nextInt(3) == 0) {
                    // a write / read round trip at a random offset, also touching the last byte sometimes
                    int len = (int) Math.min(bytes, 1 + r.nextInt(8192));
                    at = r.nextBoolean() ? bytes - len : (long) (r.nextDouble() * (bytes - len + 1));
                    data = new byte[len];
                    r.nextBytes(data);
                    MemorySegment.copy(data, 0, hostIn, ValueLayout.JAVA_BYTE, 0, len);
                    ok(d4j_h.d4j_buffer_write(h, at, hostIn, len));
                    hostOut.fill((byte) 0);
                    ok(d4j_h.d4j_buffer_read(h, at, hostOut, len));
                    assertArrayEquals(data, hostOut.asSlice(0, len).toArray(ValueLayout.JAVA_BYTE),
                            "round trip of " + len + " bytes at offset " + at + " of a " + bytes + "-byte buffer" + ctx);
                    roundTrips++;
                }
                live.add(new Live(h, bytes, at, data));
                expectedBytes += bytes;
                // free some, in random order; the pool drifts between ~0 and ~150 live buffers
                int target = 75 + (int) (75 * Math.sin(i / 400.0));
                while (live.size() > target || (!live.isEmpty() && r.nextInt(4) == 0)) {
                    Live v = live.remove(r.nextInt(live.size()));
                    verify(v, hostOut, ctx);
                    ok(d4j_h.d4j_buffer_free(v.handle()));
                    expectedBytes -= v.bytes();
                }
                peakBytes = Math.max(peakBytes, expectedBytes);
                peakCount = Math.max(peakCount, live.size());
                if (i % 37 == 0) {
                    assertEquals(expectedBytes, be.liveBytes(), "live bytes after " + (i + 1) + " allocations" + ctx);
                    assertEquals(live.size(), be.liveBuffers(), "live buffers after " + (i + 1) + " allocations" + ctx);
                }
            }
            assertTrue(peakCount >= 100, "the test should hold many buffers at once, peak " + peakCount);
            assertTrue(peakBytes > 4 * MAX_BYTES, "the test should hold tens of MiB at once, peak " + peakBytes);
            assertTrue(roundTrips > 2000, "round trips " + roundTrips);
            assertEquals(expectedBytes, be.liveBytes(), ctx);
            assertEquals(live.size(), be.liveBuffers(), ctx);
            while (!live.isEmpty()) {
                Live v = live.remove(r.nextInt(live.size()));
                verify(v, hostOut, ctx);
                ok(d4j_h.d4j_buffer_free(v.handle()));
            }
            assertEquals(0, be.liveBytes(), "live bytes at the end" + ctx);
            assertEquals(0, be.liveBuffers(), "live buffers at the end" + ctx);
        }
    }

    /** What was written into a buffer is still there (no other buffer overlapped it). */
    static void verify(Live v, MemorySegment host, String ctx) {
        if (v.written() == null) return;
        int len = v.written().length;
        ok(d4j_h.d4j_buffer_read(v.handle(), v.writtenAt(), host, len));
        assertArrayEquals(v.written(), host.asSlice(0, len).toArray(ValueLayout.JAVA_BYTE),
                "contents of a " + v.bytes() + "-byte buffer changed before it was freed" + ctx);
    }

    @Test
    void tensorsRoundTripAndAccountTheirBytes() {
        long seed = System.nanoTime();
        Random r = new Random(seed);
        try (Backend be = Backend.open(Device.CPU)) {
            List<Tensor> held = new ArrayList<>();
            List<Object> contents = new ArrayList<>();
            long expected = 0;
            for (int i = 0; i < 300; i++) {
                long[] shape = new long[1 + r.nextInt(3)];
                for (int d = 0; d < shape.length; d++) shape[d] = 1 + r.nextInt(24);
                DType dt = DType.values()[r.nextInt(DType.values().length)];
                Tensor t = Tensor.allocate(be, dt, shape);
                assertEquals(Tensor.elementCount(shape) * 4, t.byteSize());
                int n = (int) t.elementCount();
                if (dt == DType.FLOAT32) {
                    float[] v = new float[n];
                    for (int k = 0; k < n; k++) v[k] = (float) r.nextGaussian();
                    t.copyFrom(v);
                    contents.add(v);
                } else {
                    int[] v = r.ints(n).toArray();
                    t.copyFrom(v);
                    contents.add(v);
                }
                held.add(t);
                expected += t.byteSize();
                assertEquals(expected, be.liveBytes(), "seed " + seed);
                assertEquals(held.size(), be.liveBuffers(), "seed " + seed);
                if (r.nextInt(3) == 0) {
                    int k = r.nextInt(held.size());
                    Tensor victim = held.remove(k);
                    Object c = contents.remove(k);
                    if (c instanceof float[] f) assertArrayEquals(f, victim.toFloatArray(), "seed " + seed);
                    else assertArrayEquals((int[]) c, victim.toIntArray(), "seed " + seed);
                    victim.close();
                    expected -= victim.byteSize();
                    assertEquals(expected, be.liveBytes(), "seed " + seed);
                }
            }
            for (int k = 0; k < held.size(); k++) {
                Object c = contents.get(k);
                if (c instanceof float[] f) assertArrayEquals(f, held.get(k).toFloatArray(), "seed " + seed);
                else assertArrayEquals((int[]) c, held.get(k).toIntArray(), "seed " + seed);
                held.get(k).close();
            }
            assertEquals(0, be.liveBytes());
            assertEquals(0, be.liveBuffers());
        }
    }

    @Test
    void concurrentAllocationAndReleaseKeepExactCounts() throws Exception {
        try (Backend be = Backend.open(Device.CPU)) {
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<?>> futures = new ArrayList<>();
                for (int w = 0; w < 4; w++) {
                    long seed = System.nanoTime() + w;
                    futures.add(pool.submit(() -> {
                        Random r = new Random(seed);
                        List<Tensor> mine = new ArrayList<>();
                        for (int i = 0; i < 600; i++) {
                            int n = 1 + r.nextInt(20_000);
                            Tensor t = Tensor.allocate(be, DType.FLOAT32, n);
                            float marker = r.nextFloat();
                            t.fill(marker);
                            mine.add(t);
                            if (mine.size() > 20 || r.nextBoolean()) {
                                Tensor v = mine.remove(r.nextInt(mine.size()));
                                float[] got = v.toFloatArray();
                                float first = got[0];
                                for (float g : got) assertEquals(first, g, "a tensor's contents were overwritten (seed " + seed + ")");
                                v.close();
                                v.close(); // harmless, also under contention
                            }
                        }
                        for (Tensor t : mine) t.close();
                        return null;
                    }));
                }
                for (Future<?> f : futures) f.get();
            } finally {
                pool.shutdownNow();
            }
            assertEquals(0, be.liveBytes());
            assertEquals(0, be.liveBuffers());
        }
    }

    @Test
    void closingATensorTwiceIsHarmless() {
        try (Backend be = Backend.open(Device.CPU)) {
            Tensor keep = Tensor.allocate(be, DType.FLOAT32, 5);
            Tensor t = Tensor.allocate(be, DType.INT32, 2, 3);
            assertEquals(2, be.liveBuffers());
            assertEquals(20 + 24, be.liveBytes());
            t.close();
            assertTrue(t.isClosed());
            assertEquals(1, be.liveBuffers());
            t.close();
            t.close();
            assertEquals(1, be.liveBuffers(), "a second close must not free anything else");
            assertEquals(20, be.liveBytes());
            assertFalse(keep.isClosed());
            keep.copyFrom(new float[] {1, 2, 3, 4, 5});
            assertArrayEquals(new float[] {1, 2, 3, 4, 5}, keep.toFloatArray());
            assertTrue(t.toString().contains("closed"), t.toString());
            keep.close();
            assertEquals(0, be.liveBuffers());
        }
    }

    @Test
    void useAfterCloseThrowsIllegalStateWithAMessage() {
        try (Backend be = Backend.open(Device.CPU)) {
            Tensor f = Tensor.of(be, new float[] {1, 2, 3, 4, 5, 6}, 2, 3);
            Tensor u = Tensor.allocate(be, DType.UINT32, 4);
            f.close();
            u.close();
            List<org.junit.jupiter.api.function.Executable> uses = List.of(
                    f::handle, f::toFloatArray, () -> f.copyFrom(new float[6]), () -> f.fill(0f),
                    u::toIntArray, () -> u.copyFrom(new int[4]),
                    () -> DiffusionKernels.randomBits(be, 1, 2, u), () -> DiffusionKernels.randomNormal(be, 1, 2, f));
            for (var use : uses) {
                IllegalStateException e = assertThrows(IllegalStateException.class, use);
                assertTrue(e.getMessage() != null && e.getMessage().contains("is closed"), e.getMessage());
                assertTrue(e.getMessage().contains("float32[2, 3]@cpu") || e.getMessage().contains("uint32[4]@cpu"),
                        "the message should say which tensor: " + e.getMessage());
            }
            // metadata stays readable
            assertArrayEquals(new long[] {2, 3}, f.shape());
            assertEquals(0, be.liveBuffers());
        }
    }

    @Test
    void backendCloseWithLiveTensorsFailsNamingTheCountThenSucceeds() {
        Backend be = Backend.open(Device.CPU);
        List<Tensor> ts = new ArrayList<>();
        for (int i = 0; i < 3; i++) ts.add(Tensor.allocate(be, DType.FLOAT32, 10 + i));
        D4jException e = assertThrows(D4jException.class, be::close);
        assertTrue(e.getMessage().contains("3 live buffers"), e.getMessage());
        assertFalse(be.isClosed(), "a refused close must leave the backend usable");
        // still usable
        try (Tensor x = Tensor.of(be, new float[] {7}, 1)) {
            assertArrayEquals(new float[] {7}, x.toFloatArray());
        }
        ts.remove(0).close();
        e = assertThrows(D4jException.class, be::close);
        assertTrue(e.getMessage().contains("2 live buffers"), e.getMessage());
        for (Tensor t : ts) t.close();
        be.close();
        assertTrue(be.isClosed());
        be.close(); // idempotent
        IllegalStateException ise = assertThrows(IllegalStateException.class, () -> Tensor.allocate(be, DType.FLOAT32, 1));
        assertTrue(ise.getMessage().contains("closed"), ise.getMessage());
        assertThrows(IllegalStateException.class, be::liveBytes);
    }

    @Test
    void concurrentClosesOfOneBackendAreHarmless() throws Exception {
        for (int round = 0; round < 20; round++) {
            Backend be = Backend.open(Device.CPU);
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<?>> fs = new ArrayList<>();
                for (int k = 0; k < 4; k++) fs.add(pool.submit(() -> {
                    be.close();
                    return null;
                }));
                for (Future<?> f : fs) f.get(); // none may throw
            } finally {
                pool.shutdownNow();
            }
            assertTrue(be.isClosed());
        }
    }
}
