package io.diffusion4j.backend;

import io.diffusion4j.Device;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Graph capture and replay (the "graph" section of d4j.h) on the device backends (CUDA, CUDA_SIM; skipped with the
 * backend's reason when unavailable): a recorded call is not executed until the graph is launched and then
 * equals the direct call bit for bit, with the host arguments it had when it was recorded (the native layer
 * snapshots them; the test rewrites the arrays before launching); the capture refuses allocation, frees,
 * synchronous copies, synchronisation and host results on the capturing thread and keeps other threads'
 * calls out (they wait and run directly); a failing recorded call discards the graph; graph handles are
 * validated; buffers used by a live graph cannot be freed; live bytes return to their start. The CPU backend
 * cannot capture. Named *ParityTest so the ASan execution of the simulator re-runs it (a recorded copy that
 * read freed host memory would show there).
 */
class GraphCaptureParityTest {
    static final int OK = 0, INVALID_ARGUMENT = 1, INVALID_HANDLE = 2, UNSUPPORTED = 7;
    static final NoiseSchedule SCHEDULE = NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);

    static String lastError() {
        return d4j_h.d4j_last_error().reinterpret(4096).getString(0);
    }

    @Test
    void cpuCannotCapture() {
        try (Backend cpu = Backend.open(Device.CPU)) {
            assertFalse(Graph.supported(cpu));
            assertEquals(UNSUPPORTED, d4j_h.d4j_capture_begin(cpu.handle()));
            assertTrue(lastError().contains("cannot capture"), lastError());
            D4jException e = assertThrows(D4jException.class, () -> Graph.capture(cpu, () -> {}));
            assertEquals(Status.UNSUPPORTED, e.status());
            // nothing is left capturing: ordinary calls work
            try (Tensor t = Tensor.allocate(cpu, DType.FLOAT32, 3)) {
                t.fill(2f);
                assertEquals(2f, t.toFloatArray()[2]);
            }
        }
    }

    /** One DDPM step with per-sample host arguments, the way a sampling loop calls it. */
    static void ddpm(NativeSchedule ns, Tensor x, Tensor out, int[] t, int[] prev, long[] seeds, long[] offsets, Tensor dst) {
        DiffusionKernels.ddpmStep(ns, PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1f, x, out, t, prev,
                new SampleNoise(seeds, offsets), dst);
    }

    @OnDevices
    void recordedCallsRunOnLaunchWithTheirHostArgumentsAsRecorded(Backend be) {
        TestRandom r = TestRandom.fresh();
        int batch = 3, n = 37;
        try (NativeSchedule ns = NativeSchedule.of(SCHEDULE)) {
            long startBytes = be.liveBytes(), startBuffers = be.liveBuffers();
            float[] xs = r.gaussians(batch * n, 1.0), os = r.gaussians(batch * n, 1.0);
            int[] t = {999, 500, 1}, prev = {998, 499, 0};
            long[] seeds = {r.nextLong(), r.nextLong(), r.nextLong()}, offsets = {1, 2, 3};
            int[] t2 = {700, 10, 0}, prev2 = {650, 5, -1};
            float[] direct1, direct2;
            try (Tensor x = Tensor.of(be, xs, batch, n); Tensor o = Tensor.of(be, os, batch, n);
                 Tensor d1 = Tensor.allocate(be, DType.FLOAT32, batch, n);
                 Tensor d2 = Tensor.allocate(be, DType.FLOAT32, batch, n)) {
                ddpm(ns, x, o, t, prev, seeds, offsets, d1);
                ddpm(ns, x, o, t2, prev2, new long[] {7, 8, 9}, new long[] {4, 5, 6}, d2);
                direct1 = d1.toFloatArray();
                direct2 = d2.toFloatArray();
            }
            try (Tensor x = Tensor.of(be, xs, batch, n); Tensor o = Tensor.of(be, os, batch, n);
                 Tensor g1 = Tensor.allocate(be, DType.FLOAT32, batch, n);
                 Tensor g2 = Tensor.allocate(be, DType.FLOAT32, batch, n);
                 Tensor marker = Tensor.allocate(be, DType.FLOAT32, 5)) {
                g1.fill(Float.NaN);
                g2.fill(Float.NaN);
                marker.fill(-1f);
                int[] tt = t.clone(), pp = prev.clone();
                long[] ss = seeds.clone(), oo = offsets.clone();
                Graph g = Graph.capture(be, () -> {
                    ddpm(ns, x, o, tt, pp, ss, oo, g1);
                    // the loop's way: the same host arrays rewritten for the next call
                    System.arraycopy(t2, 0, tt, 0, batch);
                    System.arraycopy(prev2, 0, pp, 0, batch);
                    System.arraycopy(new long[] {7, 8, 9}, 0, ss, 0, batch);
                    System.arraycopy(new long[] {4, 5, 6}, 0, oo, 0, batch);
                    ddpm(ns, x, o, tt, pp, ss, oo, g2);
                    marker.fill(3f);
                });
                try {
                    // recorded, not executed
                    assertTrue(Float.isNaN(g1.toFloatArray()[0]), "a recorded call ran during the capture");
                    assertEquals(-1f, marker.toFloatArray()[4]);
                    // the arrays change again after the capture: the graph keeps what each call was given
                    Arrays.fill(tt, 3);
                    Arrays.fill(pp, 2);
                    Arrays.fill(ss, 42);
                    assertTrue(g.nodes() >= 5, "nodes " + g.nodes());
                    assertTrue(g.hostBytes() > 0 && g.deviceBytes() > 0, "host " + g.hostBytes() + ", device " + g.deviceBytes());
                    for (int launch = 0; launch < 2; launch++) {
                        g1.fill(Float.NaN);
                        g.launch();
                        Tolerance.assertBitIdentical("first recorded step, launch " + launch, direct1, g1.toFloatArray(), r.describe());
                        Tolerance.assertBitIdentical("second recorded step, launch " + launch, direct2, g2.toFloatArray(), r.describe());
                        assertEquals(3f, marker.toFloatArray()[4]);
                    }
                } finally {
                    g.close();
                }
                g.close(); // idempotent
            }
            assertEquals(startBytes, be.liveBytes(), "live bytes");
            assertEquals(startBuffers, be.liveBuffers(), "live buffers");
        }
    }

    static void assertRefused(String call, Runnable r) {
        D4jException e = assertThrows(D4jException.InvalidArgumentException.class, r::run, call);
        assertTrue(e.getMessage().contains(call) && e.getMessage().contains("captures a graph"), e.getMessage());
    }

    @OnDevices
    void captureRefusesAllocationFreesSynchronousCallsAndHostResults(Backend be) {
        try (Tensor a = Tensor.allocate(be, DType.FLOAT32, 7);
             Tensor victim = Tensor.allocate(be, DType.FLOAT32, 3)) {
            a.fill(0f);
            long bytes = be.liveBytes(), buffers = be.liveBuffers();
            Graph g = Graph.capture(be, () -> {
                a.fill(1f); // recorded
                assertRefused("d4j_buffer_alloc", () -> Tensor.allocate(be, DType.FLOAT32, 4));
                assertRefused("d4j_buffer_read", a::toFloatArray);
                assertRefused("d4j_buffer_write", () -> a.copyFrom(new float[7]));
                assertRefused("d4j_buffer_free", () -> Native.check(d4j_h.d4j_buffer_free(victim.handle())));
                assertRefused("d4j_backend_synchronize", be::synchronize);
                assertRefused("d4j_grad_norm", () -> OptimKernels.gradNorm(a));
                assertRefused("d4j_timer_begin", be::timerBegin);
                assertRefused("d4j_backend_close", () -> Native.check(d4j_h.d4j_backend_close(be.handle())));
                assertEquals(INVALID_ARGUMENT, d4j_h.d4j_capture_begin(be.handle()), "nested capture");
                assertTrue(lastError().contains("already capturing"), lastError());
                // a view owns no memory and may be made (not freed) during a capture
                Tensor v = a.view(2, 3);
                v.fill(5f); // recorded
                assertEquals(bytes, be.liveBytes());
                assertEquals(buffers, be.liveBuffers()); // views are not counted
                // the graph must be freed before its view may be
                views.add(v);
            });
            try {
                assertEquals(0f, a.toFloatArray()[3], "nothing ran during the capture");
                g.launch();
                assertEquals(1f, a.toFloatArray()[0]);
                assertEquals(5f, a.toFloatArray()[3]);
                assertEquals(5f, a.toFloatArray()[4]);
                assertEquals(1f, a.toFloatArray()[6]);
                // the refused calls recorded nothing: the graph is the two fills
                try (Graph two = Graph.capture(be, () -> {
                    a.fill(1f);
                    views.get(0).fill(5f);
                })) {
                    assertEquals(two.nodes(), g.nodes());
                }
            } finally {
                g.close();
                for (Tensor v : views) v.close();
                views.clear();
            }
            assertEquals(bytes, be.liveBytes());
            assertEquals(buffers, be.liveBuffers());
        }
    }

    static final java.util.List<Tensor> views = new java.util.ArrayList<>();

    @OnDevices
    void otherThreadsWaitForTheCaptureAndAreNotRecorded(Backend be) throws Exception {
        try (Tensor a = Tensor.allocate(be, DType.FLOAT32, 5);
             Tensor b = Tensor.allocate(be, DType.FLOAT32, 5)) {
            a.fill(0f);
            b.fill(0f);
            CompletableFuture<Void>[] other = new CompletableFuture[1];
            Graph g = Graph.capture(be, () -> {
                a.fill(1f);
                other[0] = CompletableFuture.runAsync(() -> b.fill(7f));
                try {
                    Thread.sleep(300);
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
                assertFalse(other[0].isDone(), "another thread's call ran (or failed) during the capture");
            });
            try {
                other[0].get(60, TimeUnit.SECONDS); // runs once the capture has ended
                assertEquals(7f, b.toFloatArray()[4], "the other thread's call ran directly");
                b.fill(0f);
                g.launch();
                assertEquals(1f, a.toFloatArray()[4]);
                assertEquals(0f, b.toFloatArray()[4], "the other thread's call was recorded into the graph");
            } finally {
                g.close();
            }
        }
    }

    @OnDevices
    void aFailingRecordedCallOrBodyDiscardsTheCapture(Backend be) {
        try (Tensor q = Tensor.allocate(be, DType.FLOAT32, 4097);
             Tensor out = Tensor.allocate(be, DType.FLOAT32, 4097)) {
            long bytes = be.liveBytes();
            assertEquals(OK, d4j_h.d4j_capture_begin(be.handle()));
            // valid for the front, refused by the CUDA backend (at most 4096 tokens)
            int st = d4j_h.d4j_attention_forward(be.handle(), q.handle(), q.handle(), q.handle(), 1, 4097, 1, 1, 1f,
                    out.handle(), MemorySegment.NULL);
            assertEquals(INVALID_ARGUMENT, st, lastError());
            q.fill(1f); // recorded, but the capture is already discarded
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment g = arena.allocate(ValueLayout.ADDRESS);
                assertEquals(INVALID_ARGUMENT, d4j_h.d4j_capture_end(be.handle(), g));
                assertTrue(lastError().contains("discarded") && lastError().contains("4096"), lastError());
                assertEquals(MemorySegment.NULL, g.get(ValueLayout.ADDRESS, 0));
            }
            // an exception in the body ends the capture too
            assertThrows(IllegalStateException.class, () -> Graph.capture(be, () -> {
                q.fill(2f);
                throw new IllegalStateException("body failed");
            }));
            // the backend is usable and not capturing
            q.fill(3f);
            assertEquals(3f, q.toFloatArray()[4096]);
            assertEquals(bytes, be.liveBytes());
        }
    }

    @OnDevices
    void graphHandlesAreValidatedAndPinTheirBuffers(Backend be) {
        try (Arena arena = Arena.ofConfined()) {
            long bytes = be.liveBytes(), buffers = be.liveBuffers();
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS), l = arena.allocate(ValueLayout.JAVA_LONG);
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_graph_launch(MemorySegment.NULL));
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_graph_free(MemorySegment.NULL));
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_graph_info(MemorySegment.NULL, l, l, l));
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_capture_begin(MemorySegment.NULL));
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_capture_supported(be.handle(), MemorySegment.NULL));
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_capture_end(be.handle(), out), "end without begin");
            assertTrue(lastError().contains("not capturing"), lastError());
            Tensor t = Tensor.allocate(be, DType.FLOAT32, 9);
            Tensor v = t.view(4, 5);
            assertEquals(OK, d4j_h.d4j_capture_begin(be.handle()));
            v.fill(2f);
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_capture_end(be.handle(), MemorySegment.NULL), "NULL out");
            v.fill(4f); // the capture went on
            assertEquals(OK, d4j_h.d4j_capture_end(be.handle(), out), lastError());
            MemorySegment g = out.get(ValueLayout.ADDRESS, 0);
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_graph_info(g, MemorySegment.NULL, l, l));
            assertEquals(OK, d4j_h.d4j_graph_info(g, l, l, l));
            v.close(); // the view may go: the graph holds its owning buffer
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_buffer_free(t.handle()));
            assertTrue(lastError().contains("live graphs"), lastError());
            assertEquals(INVALID_ARGUMENT, d4j_h.d4j_backend_close(be.handle()));
            assertTrue(lastError().contains("live graphs"), lastError());
            t.fill(0f);
            assertEquals(OK, d4j_h.d4j_graph_launch(g), lastError());
            float[] got = t.toFloatArray();
            assertEquals(0f, got[3]);
            assertEquals(4f, got[4]);
            assertEquals(4f, got[8]);
            assertEquals(OK, d4j_h.d4j_graph_free(g), lastError());
            assertEquals(INVALID_HANDLE, d4j_h.d4j_graph_launch(g));
            assertEquals(INVALID_HANDLE, d4j_h.d4j_graph_free(g));
            assertEquals(INVALID_HANDLE, d4j_h.d4j_graph_info(g, l, l, l));
            t.close();
            assertEquals(bytes, be.liveBytes(), "live bytes");
            assertEquals(buffers, be.liveBuffers(), "live buffers");
        }
    }
}
