package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.ConvReference.Grads;
import io.diffusion4j.kernels.ConvReference.Problem;
import io.diffusion4j.kernels.ConvReference.Result;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The conv2d family on the CPU backend against the float64 reference ({@link ConvReference}) for
 * every geometry diffusers' UNet2DModel uses (3x3 same, Downsample2D with padding 1 and 0, 1x1
 * shortcut, Upsample2D) plus a few other legal ones, on odd channel counts and spatial sizes, N = 1
 * and 3, fresh random inputs, NaN-poisoned outputs.
 *
 * <p>Tolerance: every element within {@code (T + 2) u} of its scale, the sum of the absolute values
 * of the T products summed into it (plus |bias| or |initial gradient|): a float32 sum of T rounded
 * products in any order, plus the bias / accumulate addition, errs by at most about (T + 1) u of
 * that scale (first order), so the bound holds for every summation order the kernels use. T is
 * K*K*C_in (forward), (4 if upsampled) K*K*C_out (dx), N*H_out*W_out (dweight, dbias). The
 * measured errors are printed as "[d4j-error]" lines; typically a few u.
 */
class ConvKernelsTest {
    static Backend cpu;

    /** The diffusers geometries, then other legal ones (stride-2 1x1, asymmetric pads with upsampling, no padding). */
    static final List<Conv2dSpec> SPECS = List.of(
            Conv2dSpec.same3x3(), Conv2dSpec.downsample3x3(1), Conv2dSpec.downsample3x3(0), Conv2dSpec.pointwise(),
            Conv2dSpec.upsample3x3(), new Conv2dSpec(1, 2, 0, 0, 0, 0, false), new Conv2dSpec(3, 2, 2, 0, 1, 2, true),
            new Conv2dSpec(3, 1, 0, 0, 0, 0, false));

    /**
     * {n, h, w, cIn, cOut}: odd channel counts and spatial sizes, N = 1 and 3; the last has 53 input channels (one
     * dW pixel range split into channel groups that reach the 12-row AVX-512 dW tile and its overlapping tail).
     */
    static final int[][] SHAPES = {{1, 5, 7, 3, 5}, {3, 9, 5, 13, 19}, {1, 7, 9, 19, 3}, {3, 5, 5, 5, 13}, {1, 9, 7, 53, 37}};

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    static List<Problem> problems(int[][] shapes) {
        List<Problem> out = new ArrayList<>();
        for (Conv2dSpec s : SPECS)
            for (int[] sh : shapes) out.add(new Problem(s, sh[0], sh[1], sh[2], sh[3], sh[4]));
        return out;
    }

    static String ctx(Problem p, TestRandom r) {
        return p + "; " + r.describe();
    }

    /** Checks out against ref.value within (terms + 2) u of ref.scale (+ extra scale). */
    static Tolerance.Report check(String what, float[] out, Result ref, int terms, String ctx) {
        return Tolerance.assertCloseScaled(what, out, ref.value(), ref.scale(), 0.0, (terms + 2) * U, ctx);
    }

    /** ref + init, with |init| added to the scale: the expected value of an accumulated gradient. */
    static Result plus(Result ref, float[] init, int times) {
        double[] v = new double[init.length], s = new double[init.length];
        for (int i = 0; i < v.length; i++) {
            v[i] = init[i] + times * ref.value()[i];
            s[i] = Math.abs(init[i]) + times * ref.scale()[i];
        }
        return new Result(v, s);
    }

    @Test
    void forwardMatchesReference() {
        int i = 0;
        for (Problem p : problems(SHAPES)) {
            TestRandom r = TestRandom.fresh();
            float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5);
            float[] b = (i++ % 2 == 0) ? r.gaussians(p.cOut(), 1.0) : null;
            float[] y = ConvRunner.forward(cpu, p, x, w, b);
            Result ref = ConvReference.forward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(b));
            Tolerance.log(check("conv2d forward " + (b == null ? "no bias " : "bias ") + p, y, ref, p.forwardTerms(),
                    ctx(p, r)));
        }
    }

    @Test
    void backwardMatchesAnalyticReference() {
        for (Problem p : problems(SHAPES)) {
            TestRandom r = TestRandom.fresh();
            float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), dy = r.gaussians(p.ySize(), 1.0);
            float[] dw0 = r.gaussians(p.wSize(), 1.0), db0 = r.gaussians(p.cOut(), 1.0);
            ConvRunner.BackwardOut out = ConvRunner.backward(cpu, p, x, w, dy, true, dw0, db0, 1);
            Grads g = ConvReference.backward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(dy));
            String c = ctx(p, r);
            Tolerance.log(check("conv2d dx " + p, out.dx(), g.dx(), p.dxTerms(), c));
            Tolerance.log(check("conv2d dweight " + p, out.dw(), plus(g.dw(), dw0, 1), p.dwTerms(), c));
            Tolerance.log(check("conv2d dbias " + p, out.db(), plus(g.db(), db0, 1), p.dwTerms(), c));
        }
    }

    /**
     * Bigger shapes: several weight panels (C_out > 16), several tasks, parallel paths of the CPU backend; the
     * second has more than 4096 output pixels, so dW sums several pixel ranges (and an odd C_out, a padded dy copy).
     */
    @Test
    void largerShapesMatchReference() {
        int[][] shapes = {{2, 16, 12, 37, 45}, {2, 47, 45, 7, 21}};
        for (Conv2dSpec s : List.of(Conv2dSpec.same3x3(), Conv2dSpec.downsample3x3(0), Conv2dSpec.upsample3x3(),
                Conv2dSpec.pointwise())) {
            for (int[] sh : shapes) {
                Problem p = new Problem(s, sh[0], sh[1], sh[2], sh[3], sh[4]);
                TestRandom r = TestRandom.fresh();
                float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.1), b = r.gaussians(p.cOut(), 1.0);
                float[] dy = r.gaussians(p.ySize(), 1.0);
                String c = ctx(p, r);
                Tolerance.log(check("conv2d forward " + p, ConvRunner.forward(cpu, p, x, w, b),
                        ConvReference.forward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(b)),
                        p.forwardTerms(), c));
                ConvRunner.BackwardOut out = ConvRunner.backward(cpu, p, x, w, dy, true, new float[p.wSize()],
                        new float[p.cOut()], 1);
                Grads g = ConvReference.backward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(dy));
                Tolerance.log(check("conv2d dx " + p, out.dx(), g.dx(), p.dxTerms(), c));
                Tolerance.log(check("conv2d dweight " + p, out.dw(), g.dw(), p.dwTerms(), c));
                Tolerance.log(check("conv2d dbias " + p, out.db(), g.db(), p.dwTerms(), c));
            }
        }
    }

    /**
     * The CPU backend's special paths, each against the reference and bit-identical for 1, 2 and 3 threads:
     * C_in = 1 (conv_in: forward and dW gather all taps into one segment, dX is one dot product per pixel),
     * C_out = 1 (conv_out: forward one dot product per pixel, dX one gathered segment, dW an axpy over C_in),
     * both (C = 1 everywhere), C_out a multiple of 16 (forward reads the weight unpacked), batch 1 with few
     * tiles (one panel pair per task), and stride-2 dX at odd sizes (input pixels split by parity class; the
     * stride-2 1x1 spec leaves odd rows and columns unreached: they must come out zero, not NaN). The first two
     * shapes have more than 4096 output pixels: dW sums several pixel ranges. The last two give the one-channel
     * dot products (forward over C_in, dX over C_out) an odd number of whole 16-float blocks plus a tail.
     */
    @Test
    void smallChannelAndStridedPathsMatchReference() {
        int[][] shapes = {{3, 41, 39, 1, 32}, {3, 41, 39, 32, 1}, {1, 7, 9, 1, 1}, {1, 15, 13, 48, 64},
                {2, 23, 21, 3, 17}, {1, 9, 11, 2, 5}, {2, 9, 11, 19, 1}, {1, 9, 11, 1, 21}};
        try {
            for (Problem p : problems(shapes)) {
                TestRandom r = TestRandom.fresh();
                float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), b = r.gaussians(p.cOut(), 1.0);
                float[] dy = r.gaussians(p.ySize(), 1.0), dw0 = r.gaussians(p.wSize(), 1.0);
                String c = ctx(p, r);
                cpu.setThreads(1);
                float[] y1 = ConvRunner.forward(cpu, p, x, w, b);
                ConvRunner.BackwardOut g1 = ConvRunner.backward(cpu, p, x, w, dy, true, dw0, null, 1);
                Tolerance.log(check("conv2d forward " + p, y1,
                        ConvReference.forward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(b)),
                        p.forwardTerms(), c));
                Grads g = ConvReference.backward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(dy));
                Tolerance.log(check("conv2d dx " + p, g1.dx(), g.dx(), p.dxTerms(), c));
                Tolerance.log(check("conv2d dweight " + p, g1.dw(), plus(g.dw(), dw0, 1), p.dwTerms(), c));
                assertSameBitsOn2And3Threads(p, x, w, b, dy, dw0, null, y1, g1, c);
            }
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
    }

    /**
     * Gradient check on tiny shapes: with L = sum(y * g), dL/dx, dL/dweight and dL/dbias by central
     * differences of the float64 reference forward (L is linear in each, so a step of 1 is exact up to
     * float64 rounding) must match the analytic float64 backward to 1e-9 and the native float32
     * backward (with dy = g) within the float32 tolerance.
     */
    @Test
    void gradientsMatchFiniteDifferences() {
        int[][] tiny = {{1, 3, 4, 2, 3}, {2, 4, 3, 3, 2}};
        for (Problem p : problems(tiny)) {
            TestRandom r = TestRandom.fresh();
            float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), b = r.gaussians(p.cOut(), 1.0);
            float[] g = r.gaussians(p.ySize(), 1.0);
            double[] xd = ConvReference.d(x), wd = ConvReference.d(w), bd = ConvReference.d(b), gd = ConvReference.d(g);
            double[] fdX = finiteDifferences(xd, () -> ConvReference.loss(p, xd, wd, bd, gd));
            double[] fdW = finiteDifferences(wd, () -> ConvReference.loss(p, xd, wd, bd, gd));
            double[] fdB = finiteDifferences(bd, () -> ConvReference.loss(p, xd, wd, bd, gd));
            String c = ctx(p, r);
            Grads an = ConvReference.backward(p, xd, wd, gd);
            Tolerance.assertClose("reference dx vs finite differences", toFloat(an.dx().value()), fdX, 1e-9, 1e-6, c);
            Tolerance.assertClose("reference dweight vs finite differences", toFloat(an.dw().value()), fdW, 1e-9, 1e-6, c);
            Tolerance.assertClose("reference dbias vs finite differences", toFloat(an.db().value()), fdB, 1e-9, 1e-6, c);
            ConvRunner.BackwardOut out = ConvRunner.backward(cpu, p, x, w, g, true, new float[p.wSize()],
                    new float[p.cOut()], 1);
            Tolerance.log(check("conv2d dx vs finite differences " + p, out.dx(), new Result(fdX, an.dx().scale()),
                    p.dxTerms(), c));
            Tolerance.log(check("conv2d dweight vs finite differences " + p, out.dw(),
                    new Result(fdW, an.dw().scale()), p.dwTerms(), c));
            Tolerance.log(check("conv2d dbias vs finite differences " + p, out.db(), new Result(fdB, an.db().scale()),
                    p.dwTerms(), c));
        }
    }

    static double[] finiteDifferences(double[] v, java.util.function.DoubleSupplier loss) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            double old = v[i];
            v[i] = old + 1.0;
            double plus = loss.getAsDouble();
            v[i] = old - 1.0;
            double minus = loss.getAsDouble();
            v[i] = old;
            out[i] = (plus - minus) / 2.0;
        }
        return out;
    }

    static float[] toFloat(double[] v) {
        float[] o = new float[v.length];
        for (int i = 0; i < v.length; i++) o[i] = (float) v[i];
        return o;
    }

    /** dweight and dbias accumulate (two calls give twice the gradient); dx is overwritten, not accumulated. */
    @Test
    void gradientsAccumulateAndDxIsOverwritten() {
        for (Conv2dSpec s : List.of(Conv2dSpec.same3x3(), Conv2dSpec.upsample3x3(), Conv2dSpec.downsample3x3(0))) {
            Problem p = new Problem(s, 3, 7, 5, 13, 5);
            TestRandom r = TestRandom.fresh();
            float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), dy = r.gaussians(p.ySize(), 1.0);
            ConvRunner.BackwardOut out = ConvRunner.backward(cpu, p, x, w, dy, true, new float[p.wSize()],
                    new float[p.cOut()], 2);
            Grads g = ConvReference.backward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(dy));
            String c = ctx(p, r);
            Tolerance.log(check("conv2d dx after two calls " + p, out.dx(), g.dx(), p.dxTerms(), c));
            Tolerance.log(check("conv2d dweight after two calls " + p, out.dw(), plus(g.dw(), new float[p.wSize()], 2),
                    p.dwTerms() + 1, c));
            Tolerance.log(check("conv2d dbias after two calls " + p, out.db(), plus(g.db(), new float[p.cOut()], 2),
                    p.dwTerms() + 1, c));
            // skipped outputs stay untouched: only dbias requested
            float[] db0 = r.gaussians(p.cOut(), 1.0);
            ConvRunner.BackwardOut only = ConvRunner.backward(cpu, p, x, w, dy, false, null, db0, 1);
            Tolerance.log(check("conv2d dbias alone " + p, only.db(), plus(g.db(), db0, 1), p.dwTerms(), c));
        }
    }

    /**
     * Results are bit-identical for 1, 2 and 3 worker threads (shapes large enough to run in parallel; the second
     * has more than 4096 output pixels, several dW pixel ranges, and C_out = 32: dW reads dy in place).
     */
    @Test
    void resultsDoNotDependOnThreadCount() {
        try {
            for (Conv2dSpec s : List.of(Conv2dSpec.same3x3(), Conv2dSpec.upsample3x3(), Conv2dSpec.downsample3x3(1))) {
              for (Problem p : List.of(new Problem(s, 2, 20, 18, 29, 35), new Problem(s, 3, 40, 37, 13, 32))) {
                TestRandom r = TestRandom.fresh();
                float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), b = r.gaussians(p.cOut(), 1.0);
                float[] dy = r.gaussians(p.ySize(), 1.0), dw0 = r.gaussians(p.wSize(), 1.0), db0 = r.gaussians(p.cOut(), 1.0);
                cpu.setThreads(1);
                float[] y1 = ConvRunner.forward(cpu, p, x, w, b);
                ConvRunner.BackwardOut g1 = ConvRunner.backward(cpu, p, x, w, dy, true, dw0, db0, 1);
                assertSameBitsOn2And3Threads(p, x, w, b, dy, dw0, db0, y1, g1, ctx(p, r));
              }
            }
        } finally {
            cpu.setThreads(Math.max(1, Runtime.getRuntime().availableProcessors()));
        }
    }

    /**
     * Forward and backward on 2 and 3 threads give the bits of the 1-thread results {@code y1} and {@code g1}
     * (computed from the same inputs); dbias is compared when {@code db0} is given. Leaves the thread count at 3.
     */
    static void assertSameBitsOn2And3Threads(Problem p, float[] x, float[] w, float[] b, float[] dy, float[] dw0,
                                             float[] db0, float[] y1, ConvRunner.BackwardOut g1, String ctx) {
        for (int threads : new int[] {2, 3}) {
            cpu.setThreads(threads);
            String c = threads + " threads vs 1: " + ctx;
            Tolerance.assertBitIdentical("conv2d forward", y1, ConvRunner.forward(cpu, p, x, w, b), c);
            ConvRunner.BackwardOut g = ConvRunner.backward(cpu, p, x, w, dy, true, dw0, db0, 1);
            Tolerance.assertBitIdentical("conv2d dx", g1.dx(), g.dx(), c);
            Tolerance.assertBitIdentical("conv2d dweight", g1.dw(), g.dw(), c);
            if (db0 != null) Tolerance.assertBitIdentical("conv2d dbias", g1.db(), g.db(), c);
        }
    }

    /**
     * An image's forward output has the same bits whatever batch it is computed in: the batch of 5 crosses every
     * size-dependent choice of the CPU kernels (packed or in-place weights from 1,024 output pixels, task plans)
     * while one image stays below them. Samplers rely on this (partial batches) and so does the server
     * (continuous batching: an image shares its model calls with other requests' images).
     */
    @Test
    void forwardOfABatchEqualsForwardOfEachImage() {
        for (Conv2dSpec s : SPECS) {
            for (int[] ch : new int[][] {{13, 32}, {1, 32}, {32, 1}, {19, 21}}) {
                int n = 5, h = 9, w = 11;
                Problem batch = new Problem(s, n, h, w, ch[0], ch[1]), one = new Problem(s, 1, h, w, ch[0], ch[1]);
                TestRandom r = TestRandom.fresh();
                float[] x = r.gaussians(batch.xSize(), 1.0), wt = r.gaussians(batch.wSize(), 0.5);
                float[] b = r.gaussians(batch.cOut(), 1.0);
                float[] all = ConvRunner.forward(cpu, batch, x, wt, b);
                int xs = one.xSize(), ys = one.ySize();
                for (int i = 0; i < n; i++) {
                    float[] xi = java.util.Arrays.copyOfRange(x, i * xs, (i + 1) * xs);
                    Tolerance.assertBitIdentical("conv2d forward of image " + i + " alone vs in a batch of " + n,
                            java.util.Arrays.copyOfRange(all, i * ys, (i + 1) * ys), ConvRunner.forward(cpu, one, xi, wt, b),
                            ctx(batch, r));
                }
            }
        }
    }

    @Test
    void oihwHwioRoundTrip() {
        TestRandom r = TestRandom.fresh();
        for (int[] d : new int[][] {{5, 3, 3}, {19, 13, 3}, {7, 1, 1}, {3, 11, 1}}) {
            int cOut = d[0], cIn = d[1], k = d[2];
            float[] oihw = r.gaussians(cOut * cIn * k * k, 1.0);
            float[] hwio = ConvKernels.oihwToHwio(oihw, cOut, cIn, k, k);
            String c = "cOut=" + cOut + " cIn=" + cIn + " k=" + k + "; " + r.describe();
            Tolerance.assertBitIdentical("OIHW -> HWIO", ConvReference.hwioAt(oihw, cOut, cIn, k), hwio, c);
            Tolerance.assertBitIdentical("HWIO -> OIHW -> HWIO round trip", oihw,
                    ConvKernels.hwioToOihw(hwio, k, k, cIn, cOut), c);
        }
        assertThrows(IllegalArgumentException.class, () -> ConvKernels.oihwToHwio(new float[10], 2, 2, 3, 3));
    }

    @Test
    void diffusersOutputSizes() {
        // Downsample2D halves even sizes with either padding; odd sizes round as torch does
        assertArrayEquals(new long[] {2, 8, 8, 4}, Conv2dSpec.downsample3x3(1).outputShape(new long[] {2, 16, 16, 3}, 4));
        assertArrayEquals(new long[] {2, 8, 8, 4}, Conv2dSpec.downsample3x3(0).outputShape(new long[] {2, 16, 16, 3}, 4));
        assertArrayEquals(new long[] {1, 3, 4, 4}, Conv2dSpec.downsample3x3(1).outputShape(new long[] {1, 5, 7, 3}, 4));
        assertArrayEquals(new long[] {1, 2, 3, 4}, Conv2dSpec.downsample3x3(0).outputShape(new long[] {1, 5, 7, 3}, 4));
        assertArrayEquals(new long[] {1, 10, 14, 4}, Conv2dSpec.upsample3x3().outputShape(new long[] {1, 5, 7, 3}, 4));
        assertArrayEquals(new long[] {1, 5, 7, 4}, Conv2dSpec.same3x3().outputShape(new long[] {1, 5, 7, 3}, 4));
    }

    @Test
    void badArgumentsAreRejected() {
        Problem p = new Problem(Conv2dSpec.same3x3(), 1, 5, 5, 3, 4);
        try (Tensor x = Tensor.allocate(cpu, DType.FLOAT32, p.xShape()); Tensor w = Tensor.allocate(cpu, DType.FLOAT32, p.wShape());
             Tensor y = Tensor.allocate(cpu, DType.FLOAT32, p.yShape());
             Tensor wrong = Tensor.allocate(cpu, DType.FLOAT32, 1, 5, 5, 5)) {
            x.fill(0);
            w.fill(0);
            var e = assertThrows(IllegalArgumentException.class,
                    () -> ConvKernels.forward(p.spec(), x, wrong, null, y));
            assertTrue(e.getMessage().contains("weight"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> ConvKernels.forward(p.spec(), x, w, null, wrong));
            assertTrue(e.getMessage().contains("y"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> ConvKernels.forward(p.spec(), x, w, wrong, y));
            assertTrue(e.getMessage().contains("bias"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> ConvKernels.backward(p.spec(), x, w, y, wrong, null, null));
            assertTrue(e.getMessage().contains("dx"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> new Conv2dSpec(3, 1, 3, 0, 0, 0, false));
            assertTrue(e.getMessage().contains("padTop"), e.getMessage());
            // the native front: bad geometry, too-small buffers, overlapping output
            MemorySegment be = cpu.handle();
            assertStatus(d4j_h.d4j_conv2d_forward(be, x.handle(), 1, 5, 5, 3, w.handle(), MemorySegment.NULL, 4, 5, 1,
                    1, 1, 1, 1, 0, y.handle()), "kernel_size");
            assertStatus(d4j_h.d4j_conv2d_forward(be, x.handle(), 1, 5, 5, 3, w.handle(), MemorySegment.NULL, 4, 3, 1,
                    1, 1, 1, 3, 0, y.handle()), "pad_right");
            assertStatus(d4j_h.d4j_conv2d_forward(be, x.handle(), 1, 6, 5, 3, w.handle(), MemorySegment.NULL, 4, 3, 1,
                    1, 1, 1, 1, 0, y.handle()), "x: buffer");
            assertStatus(d4j_h.d4j_conv2d_forward(be, x.handle(), 1, 5, 5, 3, w.handle(), MemorySegment.NULL, 4, 3, 1,
                    1, 1, 1, 1, 1, y.handle()), "y: buffer");
            assertStatus(d4j_h.d4j_conv2d_forward(be, x.handle(), 1, 5, 5, 3, w.handle(), MemorySegment.NULL, 0, 3, 1,
                    1, 1, 1, 1, 0, y.handle()), "c_out");
            assertStatus(d4j_h.d4j_conv2d_forward(be, x.handle(), 1, 1, 1, 3, w.handle(), MemorySegment.NULL, 4, 3, 2,
                    0, 0, 0, 0, 0, y.handle()), "smaller than");
            assertStatus(d4j_h.d4j_conv2d_forward(be, y.handle(), 1, 5, 5, 3, w.handle(), MemorySegment.NULL, 4, 3, 1,
                    1, 1, 1, 1, 0, y.handle()), "y overlaps x");
            assertStatus(d4j_h.d4j_conv2d_backward(be, x.handle(), 1, 5, 5, 3, MemorySegment.NULL, 4, 3, 1, 1, 1, 1, 1,
                    0, y.handle(), x.handle(), MemorySegment.NULL, MemorySegment.NULL), "weight is null");
            assertStatus(d4j_h.d4j_conv2d_backward(be, MemorySegment.NULL, 1, 5, 5, 3, w.handle(), 4, 3, 1, 1, 1, 1, 1,
                    0, y.handle(), MemorySegment.NULL, w.handle(), MemorySegment.NULL), "x is null");
            assertStatus(d4j_h.d4j_conv2d_backward(be, x.handle(), 1, 5, 5, 3, w.handle(), 4, 3, 1, 1, 1, 1, 1,
                    0, y.handle(), MemorySegment.NULL, w.handle(), MemorySegment.NULL), "dweight overlaps weight");
            assertStatus(d4j_h.d4j_conv2d_forward(be, x.handle(), 65536, 65536, 5, 3, w.handle(), MemorySegment.NULL, 4,
                    3, 1, 1, 1, 1, 1, 0, y.handle()), "limit");
        }
    }

    static void assertStatus(int status, String token) {
        assertStatus(status, d4j_h.D4J_ERR_INVALID_ARGUMENT(), token);
    }

    /** The call returned {@code expected} and left a message mentioning {@code token}. */
    static void assertStatus(int status, int expected, String token) {
        String msg = D4jLast.message();
        assertTrue(status == expected, "expected status " + expected + ", got " + status + ": " + msg);
        assertTrue(msg.contains(token), "message '" + msg + "' should mention '" + token + "'");
    }

    /** The calling thread's last native error message. */
    static final class D4jLast {
        static String message() {
            return d4j_h.d4j_last_error().reinterpret(4096).getString(0);
        }
    }
}
