package io.diffusion4j.bench;

import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * The machine's SGEMM peak as KernelReport uses it: one n x n x n float32 matrix product, LinearKernels.linear
 * y[n, n] = x[n, n] w[n, n]^T on the CPU backend with all its threads (as benchmarks/torch-compare.sh measures
 * it; 2 n^3 FLOPs per call). KernelReport takes the fastest measurement iteration as the peak. Not a kernel
 * family benchmark (that is LinearBenchmark); the yardstick for the compute-bound rows.
 */
public class SgemmPeakBenchmark extends BenchSupport {
    @Param({"1024"})
    public int n;

    Tensor x, w, y;

    @Override
    void allocate() {
        x = normal(n, n);
        w = normal(n, n);
        y = normal(n, n);
    }

    @Benchmark
    public void sgemm() {
        LinearKernels.linear(x, w, null, y);
        sync();
    }
}
