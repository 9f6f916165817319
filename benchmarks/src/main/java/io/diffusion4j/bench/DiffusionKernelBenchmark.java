package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.BackendKind;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.Tensor;
import java.util.SplittableRandom;
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
 * The fused diffusion kernels on the CPU backend. Bytes moved per call (n =
 * batch elements, float32): add_noise 12n (x0 in, eps and x_t out),
 * diffusion_loss 16n (output, x0, eps in, grad out), ddpm_step 12n (x_t and
 * output in, x_prev out), randn 4n. KernelReport turns the times into GB/s.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class DiffusionKernelBenchmark {
    @Param({"128x3x32x32", "16x1x28x28"})
    public String shape;

    Backend backend;
    NativeSchedule schedule;
    Tensor x0, xt, eps, out, loss, grad, xprev;
    int[] t, prev;
    DiffusionKernels.SampleNoise noise;
    long step;

    @Setup(Level.Trial)
    public void setup() {
        backend = Backend.open(BackendKind.CPU);
        schedule = NativeSchedule.of(NoiseSchedule.defaults());
        long[] s = Shapes.parse(shape);
        int batch = (int) s[0];
        int n = (int) Shapes.elements(s);
        SplittableRandom r = new SplittableRandom(42);
        float[] data = new float[n];
        for (int i = 0; i < n; i++) data[i] = (float) (r.nextDouble() * 2 - 1);
        x0 = Tensor.of(backend, data, s);
        out = Tensor.of(backend, data, s);
        xt = Tensor.of(backend, data, s);
        eps = Tensor.of(backend, data, s);
        grad = Tensor.of(backend, data, s);
        xprev = Tensor.of(backend, data, s);
        loss = Tensor.of(backend, new float[batch], batch);
        t = new int[batch];
        prev = new int[batch];
        long[] seeds = new long[batch];
        long[] offsets = new long[batch];
        for (int b = 0; b < batch; b++) {
            t[b] = 1 + r.nextInt(999);
            prev[b] = t[b] - 1;
            seeds[b] = b;
        }
        noise = new DiffusionKernels.SampleNoise(seeds, offsets);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        for (Tensor x : new Tensor[] {x0, xt, eps, out, loss, grad, xprev}) x.close();
        schedule.close();
        backend.close();
    }

    @Benchmark
    public void addNoise() {
        DiffusionKernels.addNoise(schedule, x0, t, 1234L, step++, xt, eps);
    }

    @Benchmark
    public void diffusionLoss() {
        DiffusionKernels.diffusionLoss(schedule, PredictionType.EPSILON, out, x0, eps, t, null, loss, grad);
    }

    @Benchmark
    public void ddpmStep() {
        DiffusionKernels.ddpmStep(schedule, PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1.0f, xt, out, t,
                prev, noise, xprev);
    }

    @Benchmark
    public void randomNormal() {
        DiffusionKernels.randomNormal(backend, 99L, step++, eps);
    }
}
