package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertThrows;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The channel concatenation on the CPU backend against a Java reference. The kernel only copies, so
 * the result must be bit-identical (tolerance 0), for 1 and 2 threads, with outputs poisoned with NaN
 * before each call so an unwritten element fails.
 */
class ConcatKernelsTest {
    /** [N, H, W, C1, C2]: odd channel counts, a shape large enough for several parallel tasks. */
    static final int[][] SHAPES = {{1, 1, 1, 1, 1}, {2, 5, 7, 3, 13}, {3, 7, 5, 13, 5}, {2, 33, 31, 64, 37}};
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) {
            cpu.setThreads(Runtime.getRuntime().availableProcessors());
            cpu.close();
        }
    }

    static float[] refConcat(float[] a, float[] b, long rows, int c1, int c2) {
        float[] out = new float[(int) (rows * (c1 + c2))];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(a, r * c1, out, r * (c1 + c2), c1);
            System.arraycopy(b, r * c2, out, r * (c1 + c2) + c1, c2);
        }
        return out;
    }

    static float[] refSplit(float[] d, long rows, int c1, int c2, boolean first) {
        int c = first ? c1 : c2;
        float[] out = new float[(int) (rows * c)];
        for (int r = 0; r < rows; r++) System.arraycopy(d, r * (c1 + c2) + (first ? 0 : c1), out, r * c, c);
        return out;
    }

    record Out(float[] out, float[] da, float[] db) {}

    /** Forward of (a, b) and backward of d on a backend; outputs poisoned with NaN. */
    static Out run(Backend be, int[] s, float[] a, float[] b, float[] d) {
        int n = s[0], h = s[1], w = s[2], c1 = s[3], c2 = s[4];
        try (Tensor ta = Tensor.of(be, a, n, h, w, c1); Tensor tb = Tensor.of(be, b, n, h, w, c2);
             Tensor out = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, n, h, w, c1 + c2);
             Tensor td = Tensor.of(be, d, n, h, w, c1 + c2);
             Tensor da = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, n, h, w, c1);
             Tensor db = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, n, h, w, c2)) {
            out.fill(Float.NaN);
            da.fill(Float.NaN);
            db.fill(Float.NaN);
            ConcatKernels.concatChannels(ta, tb, out);
            ConcatKernels.concatChannelsBackward(td, da, db, c1, c2);
            return new Out(out.toFloatArray(), da.toFloatArray(), db.toFloatArray());
        }
    }

    @Test
    void concatAndSplitMatchReferenceForOneAndTwoThreads() {
        for (int[] s : SHAPES) {
            TestRandom r = TestRandom.fresh();
            long rows = (long) s[0] * s[1] * s[2];
            float[] a = r.gaussians((int) rows * s[3], 1), b = r.gaussians((int) rows * s[4], 1);
            float[] d = r.gaussians((int) rows * (s[3] + s[4]), 1);
            String ctx = java.util.Arrays.toString(s) + " " + r.describe();
            for (int threads : new int[] {1, 2}) {
                cpu.setThreads(threads);
                Out o = run(cpu, s, a, b, d);
                Tolerance.assertBitIdentical("concat out, threads " + threads, refConcat(a, b, rows, s[3], s[4]), o.out(), ctx);
                Tolerance.assertBitIdentical("split da, threads " + threads, refSplit(d, rows, s[3], s[4], true), o.da(), ctx);
                Tolerance.assertBitIdentical("split db, threads " + threads, refSplit(d, rows, s[3], s[4], false), o.db(), ctx);
            }
            cpu.setThreads(Runtime.getRuntime().availableProcessors());
        }
    }

    @Test
    void backwardWithOneNullOutputWritesTheOther() {
        TestRandom r = TestRandom.fresh();
        int n = 2, h = 3, w = 5, c1 = 3, c2 = 7;
        float[] d = r.gaussians(n * h * w * (c1 + c2), 1);
        try (Tensor td = Tensor.of(cpu, d, n, h, w, c1 + c2);
             Tensor db = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, n, h, w, c2)) {
            db.fill(Float.NaN);
            ConcatKernels.concatChannelsBackward(td, null, db, c1, c2);
            Tolerance.assertBitIdentical("db", refSplit(d, (long) n * h * w, c1, c2, false), db.toFloatArray(), r.describe());
        }
    }

    @Test
    void rejectsBadShapesAndOverlap() {
        try (Tensor a = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 2, 3, 3, 4);
             Tensor b = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 2, 3, 3, 5);
             Tensor bWrong = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 2, 3, 2, 5);
             Tensor out = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 2, 3, 3, 9);
             Tensor outWrong = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 2, 3, 3, 8)) {
            assertThrows(IllegalArgumentException.class, () -> ConcatKernels.concatChannels(a, bWrong, out));
            assertThrows(IllegalArgumentException.class, () -> ConcatKernels.concatChannels(a, b, outWrong));
            assertThrows(IllegalArgumentException.class, () -> ConcatKernels.concatChannelsBackward(out, a, b, 4, 4));
            assertThrows(IllegalArgumentException.class, () -> ConcatKernels.concatChannelsBackward(out, b, a, 4, 5));
            // the front refuses an output overlapping an input (a view of the output as input a)
            try (Tensor aliased = out.view(0, 2, 3, 3, 4)) {
                assertThrows(D4jException.class, () -> ConcatKernels.concatChannels(aliased, b, out));
            }
        }
    }
}
