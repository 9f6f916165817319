package io.diffusion4j.bench;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * A copy with ordinary vector loads and stores at the JVM's preferred width, as the kernels' compiled loops do.
 * (MemorySegment.copy switches to non-temporal stores for large blocks, which bypass the caches and so measure
 * DRAM even for a working set that fits in L3.) Kept apart from {@link CopyBandwidthBenchmark} so that loading
 * that class needs no incubator module.
 */
final class CopyLoop {
    private CopyLoop() {}

    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;

    static void copy(MemorySegment src, MemorySegment dst, long bytes) {
        long step = S.vectorByteSize();
        long i = 0;
        for (; i + step <= bytes; i += step) {
            FloatVector.fromMemorySegment(S, src, i, ByteOrder.nativeOrder()).intoMemorySegment(dst, i, ByteOrder.nativeOrder());
        }
        for (; i < bytes; i++) dst.set(ValueLayout.JAVA_BYTE, i, src.get(ValueLayout.JAVA_BYTE, i));
    }
}
