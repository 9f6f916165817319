package io.diffusion4j.kernels;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.schedule.NoiseSchedule;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

/**
 * A {@link NoiseSchedule}'s alphas_cumprod table handed to the native layer,
 * which derives every per-sample coefficient from it in float64. Belongs to
 * no backend; close it to release it.
 */
public final class NativeSchedule implements AutoCloseable {
    private final int numTrainTimesteps;
    private MemorySegment handle;

    private NativeSchedule(int t, MemorySegment handle) {
        this.numTrainTimesteps = t;
        this.handle = handle;
    }

    /** Uploads a schedule. */
    public static NativeSchedule of(NoiseSchedule schedule) {
        Objects.requireNonNull(schedule, "schedule");
        return ofAlphasCumprod(schedule.alphasCumprod());
    }

    /** Uploads a raw alphas_cumprod table; the native layer validates it (finite, in (0,1), decreasing). */
    public static NativeSchedule ofAlphasCumprod(double[] alphasCumprod) {
        Objects.requireNonNull(alphasCumprod, "alphasCumprod");
        Native.ensureLoaded();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment table = alphasCumprod.length == 0
                    ? MemorySegment.NULL
                    : arena.allocateFrom(ValueLayout.JAVA_DOUBLE, alphasCumprod);
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(d4j_h.d4j_schedule_create(table, alphasCumprod.length, out));
            return new NativeSchedule(alphasCumprod.length, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    /** T, the number of training timesteps. */
    public int numTrainTimesteps() {
        return numTrainTimesteps;
    }

    /** The native handle; internal. */
    public synchronized MemorySegment handle() {
        if (handle == null) throw new IllegalStateException("schedule is closed");
        return handle;
    }

    @Override
    public void close() {
        MemorySegment h;
        synchronized (this) {
            h = handle;
            handle = null;
        }
        if (h != null) Native.check(d4j_h.d4j_schedule_free(h));
    }
}
