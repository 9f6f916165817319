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
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The machine's copy bandwidth, the yardstick for the memory-bound kernels: memcpy of off-heap memory
 * ({@code bytes} per copy: 64 KiB and 1 MiB per thread live in L2, 4 MiB in L3, 16 and 256 MiB in DRAM on the
 * 2-core machine of the README, whose L3 is 32 MiB), by one thread
 * ({@code copy}) and by as many threads as there are processors at once, each copying its own buffers
 * ({@code copyAllCores}). GB/s = threads * 2 * bytes / time per copy (read + write). KernelReport compares each
 * memory-bound kernel (which runs on all the backend's threads) with the all-core copy whose working set
 * (threads * 2 * bytes) is nearest its own footprint.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class CopyBandwidthBenchmark {
    @Param({"65536", "1048576", "4194304", "16777216", "268435456"})
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
    @Threads(1)
    public void copy() {
        MemorySegment.copy(src, 0, dst, 0, bytes);
    }

    @Benchmark
    @Threads(Threads.MAX)
    public void copyAllCores() {
        MemorySegment.copy(src, 0, dst, 0, bytes);
    }
}
