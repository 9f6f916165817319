package io.diffusion4j.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The machine's copy bandwidth (memcpy of off-heap memory, one thread), the
 * yardstick for the memory-bound kernels: at sizes that live in L2, in L3 and
 * in DRAM (256 MiB). GB/s = 2 * bytes / time (read + write). KernelReport
 * compares each memory-bound kernel with the copy whose traffic (2 * bytes) is
 * nearest its own. The kernels run on all the backend's threads, so they can
 * exceed one thread's copy bandwidth.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class CopyBandwidthBenchmark {
    /** Bytes copied: 64 KiB, 1 MiB, 8 MiB, 256 MiB. */
    @Param({"65536", "1048576", "8388608", "268435456"})
    public long bytes;

    Arena arena;
    MemorySegment src, dst;

    @Setup(Level.Trial)
    public void setup() {
        arena = Arena.ofShared();
        src = arena.allocate(bytes, 64);
        dst = arena.allocate(bytes, 64);
        src.fill((byte) 1);
        dst.fill((byte) 2);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public void copy() {
        MemorySegment.copy(src, 0, dst, 0, bytes);
    }
}
