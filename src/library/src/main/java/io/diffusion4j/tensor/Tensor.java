package io.diffusion4j.tensor;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Locale;
import java.util.Objects;

/**
 * A dense tensor in a backend's memory (host memory for the CPU backend,
 * device memory for CUDA). Java never sees the memory itself: contents move
 * only through {@link #copyFrom} and {@link #toFloatArray}-style copies. Close
 * it (try-with-resources) to release the memory deterministically; any use
 * after close throws {@link IllegalStateException}.
 */
public final class Tensor implements AutoCloseable {
    private final Backend backend;
    private final long[] shape;
    private final DType dtype;
    private final long elements;
    private MemorySegment handle; // guarded by this

    private Tensor(Backend backend, long[] shape, DType dtype, long elements, MemorySegment handle) {
        this.backend = backend;
        this.shape = shape;
        this.dtype = dtype;
        this.elements = elements;
        this.handle = handle;
    }

    /** Allocates an uninitialised tensor of the given shape. */
    public static Tensor allocate(Backend backend, DType dtype, long... shape) {
        Objects.requireNonNull(backend, "backend");
        Objects.requireNonNull(dtype, "dtype");
        long n = elementCount(shape);
        long bytes = Math.multiplyExact(n, (long) dtype.byteSize());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(d4j_h.d4j_buffer_alloc(backend.handle(), bytes, out));
            return new Tensor(backend, shape.clone(), dtype, n, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    /**
     * A view of this tensor's memory: {@code shape} elements starting at element {@code offset}. It owns no
     * memory; this tensor cannot be closed while the view is open. Used for one flat parameter buffer with
     * one view per parameter.
     */
    public Tensor view(long offset, long... shape) {
        long n = elementCount(shape);
        if (offset < 0 || offset > elements || n > elements - offset) {
            throw new IllegalArgumentException("view of " + n + " elements at " + offset + " does not fit in " + describe());
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(d4j_h.d4j_buffer_view(handle(), offset * dtype.byteSize(), n * dtype.byteSize(), out));
            return new Tensor(backend, shape.clone(), dtype, n, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    /** A float32 tensor holding a copy of {@code data}, whose length must match the shape. */
    public static Tensor of(Backend backend, float[] data, long... shape) {
        Tensor t = allocate(backend, DType.FLOAT32, shape);
        try {
            t.copyFrom(data);
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    /** Number of elements of a shape; refuses negative, zero-rank and overflowing shapes. */
    public static long elementCount(long... shape) {
        Objects.requireNonNull(shape, "shape");
        if (shape.length == 0) throw new IllegalArgumentException("shape must have at least one dimension");
        long n = 1;
        for (int i = 0; i < shape.length; i++) {
            if (shape[i] <= 0) {
                throw new IllegalArgumentException("shape " + Arrays.toString(shape) + ": dimension " + i
                        + " is " + shape[i] + ", must be >= 1");
            }
            try {
                n = Math.multiplyExact(n, shape[i]);
            } catch (ArithmeticException e) {
                throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " overflows 64-bit element count");
            }
        }
        if (n > Long.MAX_VALUE / 8) throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " is too large");
        return n;
    }

    public Backend backend() {
        return backend;
    }

    public DType dtype() {
        return dtype;
    }

    /** A copy of the shape. */
    public long[] shape() {
        return shape.clone();
    }

    /** Size of dimension i. */
    public long dim(int i) {
        return shape[i];
    }

    public int rank() {
        return shape.length;
    }

    public long elementCount() {
        return elements;
    }

    public long byteSize() {
        return elements * dtype.byteSize();
    }

    /** The native buffer handle. Internal to the library: valid while open, never dereferenceable. */
    public synchronized MemorySegment handle() {
        if (handle == null) throw new IllegalStateException("tensor " + describe() + " is closed");
        return handle;
    }

    public synchronized boolean isClosed() {
        return handle == null;
    }

    /** Copies {@code data} into the tensor; its length must equal the element count. */
    public void copyFrom(float[] data) {
        requireType(DType.FLOAT32);
        requireLength(data.length);
        write(MemorySegment.ofArray(data));
    }

    /** Copies {@code data} into an int32 or uint32 tensor. */
    public void copyFrom(int[] data) {
        if (dtype == DType.FLOAT32) throw new IllegalArgumentException("tensor " + describe() + " is not an integer tensor");
        requireLength(data.length);
        write(MemorySegment.ofArray(data));
    }

    /** The contents of a float32 tensor. */
    public float[] toFloatArray() {
        requireType(DType.FLOAT32);
        float[] out = new float[checkedLength()];
        read(MemorySegment.ofArray(out));
        return out;
    }

    /** The contents of an int32 or uint32 tensor (uint32 as raw bits). */
    public int[] toIntArray() {
        if (dtype == DType.FLOAT32) throw new IllegalArgumentException("tensor " + describe() + " is not an integer tensor");
        int[] out = new int[checkedLength()];
        read(MemorySegment.ofArray(out));
        return out;
    }

    /**
     * Copies the tensor's bytes into native memory (no Java array in between: the gradient exchange of a
     * data-parallel run moves whole parameter buffers). {@code dst} must be native and hold {@link #byteSize()} bytes.
     */
    public void copyTo(MemorySegment dst) {
        requireNative(dst, "dst");
        Native.check(d4j_h.d4j_buffer_read(handle(), 0, dst, byteSize()));
    }

    /** Copies {@link #byteSize()} bytes from native memory {@code src} into the tensor. */
    public void copyFrom(MemorySegment src) {
        requireNative(src, "src");
        Native.check(d4j_h.d4j_buffer_write(handle(), 0, src, byteSize()));
    }

    private void requireNative(MemorySegment m, String name) {
        Objects.requireNonNull(m, name);
        if (!m.isNative()) throw new IllegalArgumentException(name + " must be native memory, got a heap segment");
        if (m.byteSize() < byteSize()) {
            throw new IllegalArgumentException(name + " holds " + m.byteSize() + " bytes, " + describe() + " needs "
                    + byteSize());
        }
    }

    /** Fills a float32 tensor with one value on its backend (zeroing gradients, poisoning outputs). */
    public void fill(float value) {
        requireType(DType.FLOAT32);
        Native.check(d4j_h.d4j_buffer_fill_f32(handle(), value));
    }

    private void write(MemorySegment heap) {
        // Heap segments cannot be passed to native code; stage through native memory.
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment tmp = arena.allocate(heap.byteSize(), 64);
            tmp.copyFrom(heap);
            Native.check(d4j_h.d4j_buffer_write(handle(), 0, tmp, heap.byteSize()));
        }
    }

    private void read(MemorySegment heap) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment tmp = arena.allocate(heap.byteSize(), 64);
            Native.check(d4j_h.d4j_buffer_read(handle(), 0, tmp, heap.byteSize()));
            heap.copyFrom(tmp);
        }
    }

    private void requireType(DType t) {
        if (dtype != t) throw new IllegalArgumentException("tensor " + describe() + " is " + dtype + ", not " + t);
    }

    private void requireLength(int length) {
        if (length != elements) {
            throw new IllegalArgumentException("array of " + length + " elements does not match tensor " + describe());
        }
    }

    private int checkedLength() {
        if (elements > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("tensor " + describe() + " is too large for a Java array");
        }
        return (int) elements;
    }

    /** Shape and type, e.g. {@code float32[16, 1, 28, 28]@cpu}. */
    public String describe() {
        return dtype.name().toLowerCase(Locale.ROOT) + Arrays.toString(shape) + "@" + backend.kind().cliName();
    }

    /**
     * Releases the memory. Idempotent. Fails (and the tensor stays open) while views of it are open.
     */
    @Override
    public synchronized void close() {
        if (handle == null) return;
        Native.check(d4j_h.d4j_buffer_free(handle));
        handle = null;
    }

    @Override
    public String toString() {
        return "Tensor[" + describe() + (isClosed() ? ", closed" : "") + "]";
    }
}
