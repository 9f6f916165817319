package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.EnumMap;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The channel concatenation on a device backend (CUDA, CUDA_SIM; skipped with the backend's reason
 * when unavailable) against the CPU backend: pure copies, so bit-identical. Small shapes (the
 * simulator runs every thread on the CPU): at most a few dozen 256-thread blocks.
 */
class ConcatParityTest {
    static final int[][] SHAPES = {{1, 1, 1, 1, 1}, {2, 5, 7, 3, 13}, {1, 7, 5, 13, 5}};
    static Backend cpu;
    private static final Map<Device, Backend> OPEN = new EnumMap<>(Device.class);
    private static final Map<Device, String> UNAVAILABLE = new EnumMap<>(Device.class);

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        synchronized (OPEN) {
            OPEN.values().forEach(Backend::close);
            OPEN.clear();
        }
        if (cpu != null) cpu.close();
    }

    static Backend device(Device kind) {
        synchronized (OPEN) {
            if (!OPEN.containsKey(kind) && !UNAVAILABLE.containsKey(kind)) {
                try {
                    OPEN.put(kind, Backend.open(kind));
                } catch (D4jException.BackendUnavailableException e) {
                    UNAVAILABLE.put(kind, e.getMessage());
                }
            }
            Backend b = OPEN.get(kind);
            String reason = UNAVAILABLE.get(kind);
            assumeTrue(b != null, () -> "backend " + kind.cliName() + " is unavailable: " + reason);
            return b;
        }
    }

    @ParameterizedTest
    @EnumSource(value = Device.class, names = {"CUDA", "CUDA_SIM"})
    void concatAndSplitAreBitIdenticalToCpu(Device kind) {
        Backend dev = device(kind);
        for (int[] s : SHAPES) {
            TestRandom r = TestRandom.fresh();
            long rows = (long) s[0] * s[1] * s[2];
            float[] a = r.gaussians((int) rows * s[3], 1), b = r.gaussians((int) rows * s[4], 1);
            float[] d = r.gaussians((int) rows * (s[3] + s[4]), 1);
            String ctx = kind.cliName() + " vs cpu " + java.util.Arrays.toString(s) + " " + r.describe();
            ConcatKernelsTest.Out h = ConcatKernelsTest.run(cpu, s, a, b, d);
            ConcatKernelsTest.Out g = ConcatKernelsTest.run(dev, s, a, b, d);
            Tolerance.assertBitIdentical("concat out", h.out(), g.out(), ctx);
            Tolerance.assertBitIdentical("split da", h.da(), g.da(), ctx);
            Tolerance.assertBitIdentical("split db", h.db(), g.db(), ctx);
        }
    }
}
