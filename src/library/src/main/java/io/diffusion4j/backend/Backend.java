package io.diffusion4j.backend;

import io.diffusion4j.Device;
import io.diffusion4j.Precision;
import io.diffusion4j.bindings.d4j_h;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An open compute backend (CPU, CUDA or the CUDA simulator). Owns its native
 * state; {@link #close()} releases it and fails while tensors of the backend
 * are still open. Thread-safe: kernels of one backend may be called from
 * several threads.
 */
public final class Backend implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Backend.class.getName());

    private final Device kind;
    private final Path library;
    private final MemorySegment handle;
    private final AtomicBoolean closed = new AtomicBoolean();

    private Backend(Device kind, Path library, MemorySegment handle) {
        this.kind = kind;
        this.library = library;
        this.handle = handle;
    }

    /**
     * Opens a backend. Throws {@link D4jException.BackendUnavailableException}
     * with a one-sentence reason when it cannot run here, and
     * {@link NativeLibraries.NativeLibrariesUnavailableException} when no native library can be loaded at all.
     */
    public static Backend open(Device kind) {
        Objects.requireNonNull(kind, "kind");
        NativeLibraries libs = NativeLibraries.load();
        Path lib = libs.library(kind).orElseThrow(() -> new D4jException.BackendUnavailableException(
                "the " + kind.cliName() + " backend is not part of this build (" + NativeLibraries.libraryName(kind)
                        + " was not found in " + libs.directory() + ")"));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(d4j_h.d4j_backend_open(arena.allocateFrom(lib.toString()), out));
            return new Backend(kind, lib, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    /**
     * Opens a backend from an explicit library file (for example a sanitized or
     * test-only build of the simulator). {@code kind} is what the library implements.
     */
    public static Backend openLibrary(Device kind, Path library) {
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(library, "library");
        NativeLibraries.load();
        Path lib = library.toAbsolutePath();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(d4j_h.d4j_backend_open(arena.allocateFrom(lib.toString()), out));
            return new Backend(kind, lib, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    /**
     * Opens the profiling build of the simulator: the {@code cuda-sim} backend whose launches can be
     * counted as a GPU profiler would ({@code io.diffusion4j.profile.KernelCounters}).
     */
    public static Backend openProfiling() {
        NativeLibraries libs = NativeLibraries.load();
        Path lib = libs.profilingLibrary().orElseThrow(() -> new D4jException.BackendUnavailableException(
                "the profiling simulator is not part of this build (" + NativeLibraries.PROFILING_LIBRARY
                        + " was not found in " + libs.directory() + ")"));
        return openLibrary(Device.CUDA_SIM, lib);
    }

    /**
     * Opens {@code cuda} when a device can be used, else {@code cpu}, logging (System.Logger
     * {@code io.diffusion4j.backend.Backend}, level INFO) why {@code cuda} was passed over. Only this automatic
     * choice falls back: {@link #open(Device)} of {@code cuda} that cannot start throws with the reason.
     */
    public static Backend openBest() {
        try {
            return open(Device.CUDA);
        } catch (D4jException.BackendUnavailableException e) {
            LOG.log(System.Logger.Level.INFO, () -> fallbackMessage(e.getMessage()));
            return open(Device.CPU);
        }
    }

    /** What the automatic choice logs when it passes over {@code cuda} for {@code cpu}. */
    static String fallbackMessage(String reason) {
        return "using the cpu backend: cuda is not usable here (" + reason + ")";
    }

    /** Opens a backend by its command-line name; {@code null} or "auto" picks the best. */
    public static Backend open(String name) {
        if (name == null || name.equals("auto")) return openBest();
        return open(Device.fromName(name));
    }

    /** What each backend of this build does here: available with a description, or the reason it is not. */
    public static List<Probe> probeAll() {
        NativeLibraries libs = NativeLibraries.load();
        List<Probe> out = new ArrayList<>();
        for (Device k : Device.values()) {
            Path lib = libs.library(k).orElse(null);
            try (Backend b = open(k)) {
                out.add(new Probe(k, lib, true, b.description()));
            } catch (D4jException e) {
                out.add(new Probe(k, lib, false, e.getMessage()));
            }
        }
        return out;
    }

    /** One backend's state on this machine. */
    public record Probe(Device kind, Path library, boolean available, String detail) {}

    public Device kind() {
        return kind;
    }

    /** The library this backend was loaded from. */
    public Path library() {
        return library;
    }

    /** Device, SIMD level and thread count, as the backend describes itself. */
    public String description() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(512);
            Native.check(d4j_h.d4j_backend_describe(handle(), buf, 512));
            return buf.getString(0);
        }
    }

    /** Bytes held by this backend's live buffers. */
    public long liveBytes() {
        return live()[0];
    }

    /** Number of live buffers of this backend. */
    public long liveBuffers() {
        return live()[1];
    }

    private long[] live() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment b = arena.allocate(ValueLayout.JAVA_LONG);
            MemorySegment n = arena.allocate(ValueLayout.JAVA_LONG);
            Native.check(d4j_h.d4j_backend_live(handle(), b, n));
            return new long[] {b.get(ValueLayout.JAVA_LONG, 0), n.get(ValueLayout.JAVA_LONG, 0)};
        }
    }

    /** The kernel families of the native API ("rng", "add_noise", "diffusion_loss", ...). */
    public List<String> kernelFamilies() {
        return List.of(text((arena, buf) -> d4j_h.d4j_kernel_families(handle(), buf, 4096)).split(","));
    }

    /** The variants of a kernel family on this backend, the default first. */
    public List<String> kernelVariants(String family) {
        Objects.requireNonNull(family, "family");
        return List.of(text((arena, buf) -> d4j_h.d4j_kernel_variants(handle(), arena.allocateFrom(family), buf, 4096))
                .split(","));
    }

    /**
     * The variants of a kernel family that run on tensor cores (a subset of {@link #kernelVariants}, empty when
     * it has none): they run only at {@link Precision#TF32} or {@link Precision#BF16} (see {@link #setPrecision}).
     */
    public List<String> tensorCoreVariants(String family) {
        Objects.requireNonNull(family, "family");
        String v = text((arena, buf) -> d4j_h.d4j_kernel_tensor_core_variants(handle(), arena.allocateFrom(family), buf,
                4096));
        return v.isEmpty() ? List.of() : List.of(v.split(","));
    }

    /**
     * Every way to run a kernel family on this backend, in the order of {@link #kernelVariants}: each SIMT variant
     * at {@link Precision#FP32}, each tensor-core variant at {@link Precision#TF32} and at {@link Precision#BF16}.
     */
    public List<VariantRun> variantRuns(String family) {
        List<String> tensorCore = tensorCoreVariants(family);
        List<VariantRun> runs = new ArrayList<>();
        for (String v : kernelVariants(family)) {
            if (tensorCore.contains(v)) {
                runs.add(new VariantRun(family, v, Precision.TF32));
                runs.add(new VariantRun(family, v, Precision.BF16));
            } else {
                runs.add(new VariantRun(family, v, Precision.FP32));
            }
        }
        return List.copyOf(runs);
    }

    /** What {@link #use} changed, put back by {@link #close}: the precision and every family's selection. */
    public final class Selection implements AutoCloseable {
        private final Precision precision;
        private final Map<String, String> selected = new LinkedHashMap<>();

        private Selection() {
            precision = precision();
            for (String f : kernelFamilies()) selected.put(f, selectedKernel(f));
        }

        /** Restores the precision and the selections from before {@link #use}. */
        @Override
        public void close() {
            setPrecision(precision);
            for (Map.Entry<String, String> e : selected.entrySet()) {
                if (!e.getValue().equals(selectedKernel(e.getKey()))) selectKernel(e.getKey(), e.getValue());
            }
        }
    }

    /**
     * Sets the run's precision and selects its variant, for later calls on every thread; closing the returned
     * selection puts back the precision and every family's selection from before (setting a precision re-selects
     * other families' variants too). Like {@link #selectKernel}, for a caller that owns the backend meanwhile.
     */
    public Selection use(VariantRun run) {
        Objects.requireNonNull(run, "run");
        Selection before = new Selection();
        try {
            setPrecision(run.precision());
            selectKernel(run.family(), run.variant());
        } catch (RuntimeException e) {
            before.close();
            throw e;
        }
        return before;
    }

    /**
     * Sets a precision with the selections it brings (each family's first tensor-core variant at TF32 or BF16, the
     * defaults at FP32); closing the returned selection puts back the precision and every family's selection.
     */
    public Selection use(Precision precision) {
        Objects.requireNonNull(precision, "precision");
        Selection before = new Selection();
        try {
            setPrecision(precision);
        } catch (RuntimeException e) {
            before.close();
            throw e;
        }
        return before;
    }

    /** The variant of a kernel family that later calls use. */
    public String selectedKernel(String family) {
        Objects.requireNonNull(family, "family");
        return text((arena, buf) -> d4j_h.d4j_kernel_variant(handle(), arena.allocateFrom(family), buf, 4096));
    }

    /** Selects the variant later calls of a kernel family use (for every thread). */
    public void selectKernel(String family, String variant) {
        Objects.requireNonNull(family, "family");
        Objects.requireNonNull(variant, "variant");
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_kernel_select(handle(), arena.allocateFrom(family), arena.allocateFrom(variant)));
        }
    }

    /**
     * Sets the number format the matrix kernel families (conv2d, linear, attention) compute in on this backend,
     * for later calls on every thread (see {@link Precision}). {@link Precision#TF32} and {@link Precision#BF16}
     * select each such family's first tensor-core variant, where it has one; {@link Precision#FP32} moves a family
     * running a tensor-core variant back to its default. A backend opens at FP32.
     *
     * @throws D4jException with status {@link Status#UNSUPPORTED} when the backend cannot compute in it (the CPU
     *     backend computes FP32 only); the setting is then unchanged
     */
    public void setPrecision(Precision precision) {
        Objects.requireNonNull(precision, "precision");
        // the enum's order is the C API's d4j_precision
        Native.check(d4j_h.d4j_backend_set_precision(handle(), precision.ordinal()));
    }

    /** The number format the matrix kernel families compute in on this backend (see {@link #setPrecision}). */
    public Precision precision() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            Native.check(d4j_h.d4j_backend_precision(handle(), out));
            int code = out.get(ValueLayout.JAVA_INT, 0);
            if (code < 0 || code >= Precision.values().length) throw new IllegalStateException("unknown d4j_precision " + code);
            return Precision.values()[code];
        }
    }

    private interface TextCall {
        int call(Arena arena, MemorySegment buf);
    }

    private static String text(TextCall call) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096);
            Native.check(call.call(arena, buf));
            return buf.getString(0);
        }
    }

    /** Marks the start of a timing region on this backend's queue (one region at a time per backend). */
    public void timerBegin() {
        Native.check(d4j_h.d4j_timer_begin(handle()));
    }

    /** Ends the timing region, waits for its work, and returns its duration in milliseconds. */
    public double timerEnd() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ms = arena.allocate(ValueLayout.JAVA_DOUBLE);
            Native.check(d4j_h.d4j_timer_end(handle(), ms));
            return ms.get(ValueLayout.JAVA_DOUBLE, 0);
        }
    }

    /** Evicts the device's last-level cache, so the next timed call does not read cached data. */
    public void flushCache() {
        Native.check(d4j_h.d4j_flush_cache(handle()));
    }

    /** Theoretical peaks of the device from its attributes; zero where unknown (cpu, cuda-sim). */
    public record Peak(double bytesPerSecond, double flops) {
        /** True when the backend reported a memory bandwidth. */
        public boolean known() {
            return bytesPerSecond > 0;
        }
    }

    /** The device's theoretical DRAM bandwidth and float32 FMA throughput. */
    public Peak devicePeak() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment bw = arena.allocate(ValueLayout.JAVA_DOUBLE);
            MemorySegment fl = arena.allocate(ValueLayout.JAVA_DOUBLE);
            Native.check(d4j_h.d4j_device_peak(handle(), bw, fl));
            return new Peak(bw.get(ValueLayout.JAVA_DOUBLE, 0), fl.get(ValueLayout.JAVA_DOUBLE, 0));
        }
    }

    /** Sets the CPU backend's worker threads (results never depend on it); ignored by GPU backends. */
    public void setThreads(int threads) {
        Native.check(d4j_h.d4j_backend_set_threads(handle(), threads));
    }

    /** Waits for all queued work of this backend. */
    public void synchronize() {
        Native.check(d4j_h.d4j_backend_synchronize(handle()));
    }

    /** The native handle. Internal: valid only while the backend is open. */
    public MemorySegment handle() {
        if (closed.get()) throw new IllegalStateException("backend " + kind.cliName() + " is closed");
        return handle;
    }

    public boolean isClosed() {
        return closed.get();
    }

    /** Releases the backend; fails with a message while its tensors are still open. */
    @Override
    public synchronized void close() {
        // synchronized: two threads closing at once must not both reach the native close
        // (the second would fail with "backend handle is closed or invalid").
        if (closed.get()) return;
        Native.check(d4j_h.d4j_backend_close(handle));
        closed.set(true);
    }

    @Override
    public String toString() {
        return "Backend[" + kind.cliName() + "]";
    }
}
