package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.ConvReference.Grads;
import io.diffusion4j.kernels.ConvReference.Problem;
import io.diffusion4j.kernels.ConvReference.Result;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The conv2d family on the device backends (CUDA, CUDA_SIM) against the CPU backend with the same
 * inputs, small shapes (the simulator runs every thread of every block). Each device result must be
 * within {@code 2 (T + 2) u} of the float64 reference's scale from the CPU result: both are within
 * {@code (T + 2) u} of the reference (see {@link ConvKernelsTest}), whatever order they sum in. The
 * device results are also checked directly against the float64 reference, and for bit-identical
 * repeats (fixed-order reductions, no atomics). Backends that cannot run here are skipped with
 * their reason.
 */
class ConvParityTest {
    static Backend cpu;

    static final List<Conv2dSpec> SPECS = ConvKernelsTest.SPECS;

    /**
     * {n, h, w, cIn, cOut}: odd sizes; the third has 1152 output pixels, so dweight uses several pixel slices; the
     * last two have C_in = 1 and C_out = 1 (conv_in / conv_out: the CPU backend's one-channel paths).
     */
    static final int[][] SHAPES = {{1, 5, 7, 3, 5}, {3, 7, 5, 13, 19}, {2, 24, 24, 3, 5}, {1, 5, 6, 1, 4},
            {2, 6, 5, 4, 1}};

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    static void close(String what, float[] dev, float[] host, Result ref, int terms, String ctx) {
        double[] h = new double[host.length];
        for (int i = 0; i < h.length; i++) h[i] = host[i];
        Tolerance.log(Tolerance.assertCloseScaled(what + " vs cpu", dev, h, ref.scale(), 0.0, 2 * (terms + 2) * U, ctx));
        Tolerance.log(Tolerance.assertCloseScaled(what + " vs float64", dev, ref.value(), ref.scale(), 0.0,
                (terms + 2) * U, ctx));
    }

    @OnDevices
    void forwardMatchesCpu(Backend dev, Device kind) {
        int i = 0;
        for (Conv2dSpec s : SPECS) {
            for (int[] sh : SHAPES) {
                Problem p = new Problem(s, sh[0], sh[1], sh[2], sh[3], sh[4]);
                TestRandom r = TestRandom.fresh();
                float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5);
                float[] b = (i++ % 2 == 0) ? r.gaussians(p.cOut(), 1.0) : null;
                String c = kind.cliName() + " " + p + "; " + r.describe();
                float[] yd = ConvRunner.forward(dev, p, x, w, b);
                float[] yh = ConvRunner.forward(cpu, p, x, w, b);
                Result ref = ConvReference.forward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(b));
                close("conv2d forward " + p, yd, yh, ref, p.forwardTerms(), c);
                Tolerance.assertBitIdentical("conv2d forward repeat", yd, ConvRunner.forward(dev, p, x, w, b), c);
            }
        }
    }

    @OnDevices
    void backwardMatchesCpu(Backend dev, Device kind) {
        for (Conv2dSpec s : SPECS) {
            for (int[] sh : SHAPES) {
                Problem p = new Problem(s, sh[0], sh[1], sh[2], sh[3], sh[4]);
                TestRandom r = TestRandom.fresh();
                float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), dy = r.gaussians(p.ySize(), 1.0);
                float[] dw0 = r.gaussians(p.wSize(), 1.0), db0 = r.gaussians(p.cOut(), 1.0);
                String c = kind.cliName() + " " + p + "; " + r.describe();
                ConvRunner.BackwardOut d = ConvRunner.backward(dev, p, x, w, dy, true, dw0, db0, 1);
                ConvRunner.BackwardOut h = ConvRunner.backward(cpu, p, x, w, dy, true, dw0, db0, 1);
                Grads g = ConvReference.backward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(dy));
                close("conv2d dx " + p, d.dx(), h.dx(), g.dx(), p.dxTerms(), c);
                close("conv2d dweight " + p, d.dw(), h.dw(), ConvKernelsTest.plus(g.dw(), dw0, 1), p.dwTerms(), c);
                close("conv2d dbias " + p, d.db(), h.db(), ConvKernelsTest.plus(g.db(), db0, 1), p.dwTerms(), c);
                ConvRunner.BackwardOut again = ConvRunner.backward(dev, p, x, w, dy, true, dw0, db0, 1);
                Tolerance.assertBitIdentical("conv2d dx repeat", d.dx(), again.dx(), c);
                Tolerance.assertBitIdentical("conv2d dweight repeat", d.dw(), again.dw(), c);
                Tolerance.assertBitIdentical("conv2d dbias repeat", d.db(), again.db(), c);
            }
        }
    }

    /** Accumulation on the device: two backward calls from zero give twice the gradient; dx is overwritten. */
    @OnDevices
    void deviceGradientsAccumulate(Backend dev, Device kind) {
        Problem p = new Problem(Conv2dSpec.upsample3x3(), 3, 5, 7, 5, 13);
        TestRandom r = TestRandom.fresh();
        float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), dy = r.gaussians(p.ySize(), 1.0);
        String c = kind.cliName() + " " + p + "; " + r.describe();
        ConvRunner.BackwardOut d = ConvRunner.backward(dev, p, x, w, dy, true, new float[p.wSize()],
                new float[p.cOut()], 2);
        Grads g = ConvReference.backward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(dy));
        Tolerance.log(ConvKernelsTest.check("conv2d dx after two calls", d.dx(), g.dx(), p.dxTerms(), c));
        Tolerance.log(ConvKernelsTest.check("conv2d dweight after two calls", d.dw(),
                ConvKernelsTest.plus(g.dw(), new float[p.wSize()], 2), p.dwTerms() + 1, c));
        Tolerance.log(ConvKernelsTest.check("conv2d dbias after two calls", d.db(),
                ConvKernelsTest.plus(g.db(), new float[p.cOut()], 2), p.dwTerms() + 1, c));
    }
}
