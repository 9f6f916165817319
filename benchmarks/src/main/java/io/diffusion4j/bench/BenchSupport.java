package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.BackendKind;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * What every kernel benchmark state shares: the backend (JMH parameter {@code backend}: cpu by default; cuda and
 * cuda-sim can be asked for with {@code -p backend=cuda}, but cuda-sim times mean nothing and this machine has
 * no GPU), tensors that are closed at tear-down, and a synchronize after each call on asynchronous backends so
 * the time is the kernel's, not the launch's.
 */
abstract class BenchSupport {
    Backend device;
    private boolean async;
    private final List<AutoCloseable> owned = new ArrayList<>();
    private long seed = 1;

    void open(String backendName) {
        device = Backend.open(backendName);
        async = device.kind() != BackendKind.CPU;
    }

    void close() {
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

    /** Waits for the queued work on asynchronous backends (cuda); nothing on cpu. */
    void sync() {
        if (async) device.synchronize();
    }

    static long[] dims(String s) {
        return Shapes.parse(s);
    }
}
