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
 * The machine's copy bandwidth, the yardstick for the memory-bound kernels: a copy of off-heap memory with
 * ordinary vector loads and stores ({@link CopyLoop}; the JDK's MemorySegment.copy uses non-temporal stores for
 * large blocks, which would measure DRAM where the kernels' data stay in L3), {@code bytes} per copy (working
 * set 2 * bytes per thread: from L2 up to DRAM on the README's machine, 2 MiB L2 per core and 32 MiB L3), by one
 * thread ({@code copy}) and by as many threads as there are processors at once, each copying its own buffers
 * ({@code copyAllCores}, and {@code memcpyAllCores} with MemorySegment.copy, whose non-temporal stores win in
 * DRAM). GB/s = threads * 2 * bytes / time per copy (read + write). KernelReport compares each memory-bound
 * kernel (which runs on all the backend's threads) with the faster all-core copy at the working set
 * (threads * 2 * bytes) nearest its own footprint.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = "--add-modules=jdk.incubator.vector")
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
        CopyLoop.copy(src, dst, bytes);
    }

    @Benchmark
    @Threads(Threads.MAX)
    public void copyAllCores() {
        CopyLoop.copy(src, dst, bytes);
    }

    /** MemorySegment.copy on all processors: non-temporal stores for large blocks, faster than the loop in DRAM. */
    @Benchmark
    @Threads(Threads.MAX)
    public void memcpyAllCores() {
        MemorySegment.copy(src, 0, dst, 0, bytes);
    }
}
