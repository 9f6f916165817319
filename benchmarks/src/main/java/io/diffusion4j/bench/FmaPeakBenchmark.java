package io.diffusion4j.bench;

import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The processors' float32 FMA throughput, measured: every processor runs {@link FmaLoop} (independent vector FMA
 * chains, Vector API) at once; the secondary result {@code flops} is the FLOPs per second of all threads
 * together. This is the hardware's arithmetic limit, which no kernel can pass; the SGEMM peak (our own
 * LinearKernels at 1024^3, {@link SgemmPeakBenchmark}) is what the PyTorch comparison reports as the peak,
 * and tuned kernels (the convolutions) can pass that one.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Threads(Threads.MAX)
@Fork(value = 1, jvmArgsAppend = "--add-modules=jdk.incubator.vector")
public class FmaPeakBenchmark {
    static final int ITERATIONS = 20_000;

    /** FLOPs done, reported per second (summed over the threads). */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Counters {
        public long flops;

        @Setup(Level.Iteration)
        public void reset() {
            flops = 0;
        }
    }

    float mul = 0.9999999f, add = 1e-7f;

    @Benchmark
    public float fma(Counters c) {
        c.flops += FmaLoop.flops(ITERATIONS);
        return FmaLoop.run(ITERATIONS, mul, add);
    }
}
