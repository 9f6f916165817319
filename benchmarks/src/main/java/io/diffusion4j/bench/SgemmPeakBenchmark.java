package io.diffusion4j.bench;

import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.tensor.Tensor;
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
 * The machine's SGEMM peak as KernelReport uses it: one n x n x n float32 matrix product, LinearKernels.linear
 * y[n, n] = x[n, n] w[n, n]^T on the CPU backend with all its threads (as benchmarks/torch-compare.sh measures
 * it; 2 n^3 FLOPs per call). KernelReport takes the fastest measurement iteration as the peak. Not a kernel
 * family benchmark (that is LinearBenchmark); the yardstick for the compute-bound rows.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class SgemmPeakBenchmark extends BenchSupport {
    @Param({"1024"})
    public int n;

    @Param({"cpu"})
    public String backend;

    Tensor x, w, y;

    @Setup(Level.Trial)
    public void setup() {
        open(backend);
        x = normal(n, n);
        w = normal(n, n);
        y = normal(n, n);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        close();
    }

    @Benchmark
    public void sgemm() {
        LinearKernels.linear(x, w, null, y);
        sync();
    }
}
