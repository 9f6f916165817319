package io.diffusion4j.profile;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.bindings.d4j_kernel_profile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Counting the launches of the profiling simulator ({@link Backend#openProfiling()}); any other
 * backend throws {@link io.diffusion4j.backend.D4jException.UnsupportedException}-like errors from the
 * native side ({@code D4J_ERR_UNSUPPORTED}).
 */
public final class KernelCounters {
    private KernelCounters() {}

    /**
     * Runs {@code work} with counting on and returns the launches it made, oldest first.
     *
     * @param maxBlocks at most this many blocks of each launch are simulated and the counts scaled to
     *                  the whole grid (0: every block). The blocks left out are not run, so outputs of a
     *                  sampled run are not results.
     */
    public static List<KernelProfile> count(Backend backend, long maxBlocks, Consumer<Backend> work) {
        Native.check(d4j_h.d4j_profile_begin(backend.handle(), maxBlocks));
        try {
            work.accept(backend);
            return read(backend);
        } finally {
            Native.check(d4j_h.d4j_profile_end(backend.handle()));
        }
    }

    private static List<KernelProfile> read(Backend backend) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(ValueLayout.JAVA_LONG);
            Native.check(d4j_h.d4j_profile_read(backend.handle(), MemorySegment.NULL, 0, count));
            long n = count.get(ValueLayout.JAVA_LONG, 0);
            if (n == 0) return List.of();
            MemorySegment records = d4j_kernel_profile.allocateArray(n, arena);
            Native.check(d4j_h.d4j_profile_read(backend.handle(), records, n, count));
            List<KernelProfile> out = new ArrayList<>((int) n);
            for (long i = 0; i < n; i++) out.add(KernelProfile.of(d4j_kernel_profile.asSlice(records, i)));
            return List.copyOf(out);
        }
    }
}
