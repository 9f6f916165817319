package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
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
 * What every kernel benchmark state shares: the JMH settings (average time in microseconds, 2 warm-up and 3
 * measurement iterations of 1 s, one fork with native access; JMH reads them from this superclass), the backend
 * (JMH parameter {@code backend}: cpu by default; cuda and cuda-sim can be asked for with {@code -p
 * backend=cuda}, but cuda-sim times mean nothing and this machine has no GPU), opened before {@link #allocate}
 * at trial set-up, tensors that are closed at tear-down with it, and a synchronize after each call on
 * asynchronous backends so the time is the kernel's, not the launch's. A benchmark class keeps only its own
 * parameters ({@code shape}), tensors, work model and benchmark methods.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public abstract class BenchSupport {
    @Param({"cpu"})
    public String backend;

    Backend device;
    private boolean async;
    private final List<AutoCloseable> owned = new ArrayList<>();
    private long seed = 1;

    /** Opens the backend, then allocates the benchmark's tensors. */
    @Setup(Level.Trial)
    public final void setup() {
        device = Backend.open(backend);
        async = device.kind() != Device.CPU;
        allocate();
    }

    /** Allocates (through {@link #own}, {@link #normal}, {@link #filled}, {@link #of}) what the benchmark reads. */
    abstract void allocate();

    /** Closes every owned tensor (last first), then the backend. */
    @TearDown(Level.Trial)
    public final void tearDown() {
        for (int i = owned.size() - 1; i >= 0; i--) {
            try {
                owned.get(i).close();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
        owned.clear();
        device.close();
    }

    <T extends AutoCloseable> T own(T t) {
        owned.add(t);
        return t;
    }

    /** Standard normal values drawn by the backend's RNG kernel (fast even for 35 M elements). */
    Tensor normal(long... shape) {
        Tensor t = own(Tensor.allocate(device, DType.FLOAT32, shape));
        DiffusionKernels.randomNormal(device, 7, seed++, t);
        return t;
    }

    Tensor filled(float value, long... shape) {
        Tensor t = own(Tensor.allocate(device, DType.FLOAT32, shape));
        t.fill(value);
        return t;
    }

    Tensor of(float[] data, long... shape) {
        return own(Tensor.of(device, data, shape));
    }

    /** The default noise schedule (NoiseSchedule.defaults()) on the device, closed at tear-down. */
    NativeSchedule defaultSchedule() {
        return own(NativeSchedule.of(NoiseSchedule.defaults()));
    }

    /** Per-sample noise of a batch: sample b draws from seed b at offset 0. */
    static DiffusionKernels.SampleNoise noisePerSample(int batch) {
        long[] seeds = new long[batch];
        for (int b = 0; b < batch; b++) seeds[b] = b;
        return new DiffusionKernels.SampleNoise(seeds, new long[batch]);
    }

    /** Waits for the queued work on asynchronous backends (cuda); nothing on cpu. */
    void sync() {
        if (async) device.synchronize();
    }

    static long[] dims(String s) {
        return Shapes.parse(s);
    }
}
