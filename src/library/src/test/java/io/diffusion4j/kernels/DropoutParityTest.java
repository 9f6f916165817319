package io.diffusion4j.kernels;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * Dropout on a device backend (CUDA, CUDA_SIM; skipped with the backend's reason when unavailable)
 * against the CPU backend: the mask is an integer comparison of the same Philox words and a kept
 * value one correctly rounded multiply, so forward and backward must be bit-identical, out of place
 * and in place, p = 0 an exact copy. Small counts (the simulator runs every thread on the CPU): at most
 * 69 blocks of 256 threads (4 elements each), no barriers.
 */
class DropoutParityTest {
    static final int[] COUNTS = {1, 5, 1365, 70001};
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    static float[] inPlace(Backend be, float[] x, double p, long seed, long offset, boolean backward) {
        try (Tensor t = Tensor.of(be, x, x.length)) {
            if (backward) DropoutKernels.backward(t, p, seed, offset, t);
            else DropoutKernels.forward(t, p, seed, offset, t);
            return t.toFloatArray();
        }
    }

    @OnDevices
    void forwardAndBackwardAreBitIdenticalToCpu(Backend dev, Device kind) {
        for (int count : COUNTS) {
            TestRandom r = TestRandom.fresh();
            double p = DropoutKernelsTest.randomP(r);
            long seed = r.nextLong(), offset = r.nextLong();
            float[] x = r.gaussians(count, 1), dy = r.gaussians(count, 1);
            String ctx = String.format(Locale.ROOT, "%s vs cpu, count %d p %.6g seed %d offset %d %s", kind.cliName(),
                    count, p, seed, offset, r.describe());
            DropoutKernelsTest.Out h = DropoutKernelsTest.run(cpu, x, dy, p, seed, offset);
            DropoutKernelsTest.Out g = DropoutKernelsTest.run(dev, x, dy, p, seed, offset);
            Tolerance.assertBitIdentical("forward", h.y(), g.y(), ctx);
            Tolerance.assertBitIdentical("backward", h.dx(), g.dx(), ctx);
            // and the device's mask is the Java Philox one
            boolean[] keep = DropoutKernelsTest.mask(p, seed, offset, count);
            Tolerance.assertBitIdentical("forward vs Java reference", DropoutKernelsTest.reference(x, keep, p), g.y(), ctx);
            Tolerance.assertBitIdentical("forward in place", h.y(), inPlace(dev, x, p, seed, offset, false), ctx);
            Tolerance.assertBitIdentical("backward in place", h.dx(), inPlace(dev, dy, p, seed, offset, true), ctx);
            DropoutKernelsTest.Out z = DropoutKernelsTest.run(dev, x, dy, 0.0, seed, offset);
            Tolerance.assertBitIdentical("p = 0 forward is a copy", x, z.y(), ctx);
            Tolerance.assertBitIdentical("p = 0 backward is a copy", dy, z.dx(), ctx);
        }
    }
}
