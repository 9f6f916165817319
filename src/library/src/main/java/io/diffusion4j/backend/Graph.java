package io.diffusion4j.backend;

import io.diffusion4j.bindings.d4j_h;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

/**
 * A captured sequence of kernel calls (a CUDA graph; the "graph" section of d4j.h), replayed with {@link #launch()}.
 * {@link #capture} runs a body on the calling thread with the backend recording instead of executing: every
 * kernel call keeps the buffers it was given (by address: a launch sees their current contents) and the host
 * arguments it had at that moment (timesteps, seeds, offsets: the native layer snapshots them), so a body may
 * reuse its host arrays between calls. The body must not allocate, free, read or write tensors, or
 * synchronise (the native layer refuses, and the capture is then discarded); other threads' calls on the
 * backend wait until the capture ends. Tensors the recorded calls use cannot be freed while the graph is
 * open. Internal to the library's own packages; not part of the supported API.
 */
public final class Graph implements AutoCloseable {
    private final Backend backend;
    private final MemorySegment handle;
    private boolean closed;

    private Graph(Backend backend, MemorySegment handle) {
        this.backend = backend;
        this.handle = handle;
    }

    /** Whether {@link #capture} can work on this backend (CUDA and cuda-sim; not the CPU backend). */
    public static boolean supported(Backend backend) {
        Objects.requireNonNull(backend, "backend");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            Native.check(d4j_h.d4j_capture_supported(backend.handle(), out));
            return out.get(ValueLayout.JAVA_INT, 0) != 0;
        }
    }

    /**
     * Records the backend calls {@code body} makes on this thread into a new graph. If the body throws, the
     * capture is ended and discarded and the exception propagates; if a recorded call failed, the failure
     * is thrown (a {@link D4jException}). Throws {@link D4jException} with status
     * {@link Status#UNSUPPORTED} on a backend that cannot capture.
     */
    public static Graph capture(Backend backend, Runnable body) {
        Objects.requireNonNull(backend, "backend");
        Objects.requireNonNull(body, "body");
        Native.check(d4j_h.d4j_capture_begin(backend.handle()));
        MemorySegment graph;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            try {
                body.run();
            } catch (RuntimeException | Error e) {
                int st = d4j_h.d4j_capture_end(backend.handle(), out); // ends (and here discards) the capture
                MemorySegment g = out.get(ValueLayout.ADDRESS, 0);
                if (st == 0 && !g.equals(MemorySegment.NULL)) d4j_h.d4j_graph_free(g);
                throw e;
            }
            Native.check(d4j_h.d4j_capture_end(backend.handle(), out));
            graph = out.get(ValueLayout.ADDRESS, 0);
        }
        return new Graph(backend, graph);
    }

    /** Runs the recorded calls once (asynchronously on CUDA: a later read waits for it). */
    public void launch() {
        checkOpen();
        Native.check(d4j_h.d4j_graph_launch(handle));
    }

    /** Nodes of the graph (kernel launches and copies). */
    public long nodes() {
        return info()[0];
    }

    /** Device scratch bytes the graph owns (one region per recorded call that needs scratch). */
    public long deviceBytes() {
        return info()[1];
    }

    /** Host bytes the graph owns (snapshots of the recorded calls' host arguments). */
    public long hostBytes() {
        return info()[2];
    }

    private long[] info() {
        checkOpen();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment n = arena.allocate(ValueLayout.JAVA_LONG), d = arena.allocate(ValueLayout.JAVA_LONG),
                    h = arena.allocate(ValueLayout.JAVA_LONG);
            Native.check(d4j_h.d4j_graph_info(handle, n, d, h));
            return new long[] {n.get(ValueLayout.JAVA_LONG, 0), d.get(ValueLayout.JAVA_LONG, 0),
                    h.get(ValueLayout.JAVA_LONG, 0)};
        }
    }

    public Backend backend() {
        return backend;
    }

    /** The native handle (tests). */
    public MemorySegment handle() {
        checkOpen();
        return handle;
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("graph is closed");
    }

    /** Frees the graph (waits for a running launch) and releases the tensors it pinned. Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        Native.check(d4j_h.d4j_graph_free(handle));
    }
}
