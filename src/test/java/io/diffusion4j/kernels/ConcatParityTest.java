package io.diffusion4j.kernels;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.BackendKind;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The channel concatenation on a device backend (CUDA, CUDA_SIM; skipped with the backend's reason
 * when unavailable) against the CPU backend: pure copies, so bit-identical. Small shapes (the
 * simulator runs every thread on the CPU): at most a few dozen 256-thread blocks.
 */
class ConcatParityTest {
    static final int[][] SHAPES = {{1, 1, 1, 1, 1}, {2, 5, 7, 3, 13}, {1, 7, 5, 13, 5}};
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(BackendKind.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    @OnDevices
    void concatAndSplitAreBitIdenticalToCpu(Backend dev, BackendKind kind) {
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
