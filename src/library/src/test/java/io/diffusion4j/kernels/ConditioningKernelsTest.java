package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.BoxMuller;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The conditioning kernels on the CPU backend against Java references: the float32 expression of d4j.h evaluated
 * operation by operation (bit-exact: each native operation is rounded once) with the normals of the Java Philox
 * and Box-Muller emulation, and float64 references within stated tolerances. Fresh inputs every run, odd sizes,
 * outputs poisoned with NaN, 1 and 2 threads. The CUDA kernels are compared with these by the self-test's parity
 * cases (KernelParityTest).
 */
class ConditioningKernelsTest {
    static Backend cpu;
    static NoiseSchedule schedule = NoiseSchedule.defaults();
    static NativeSchedule nativeSchedule;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        nativeSchedule = NativeSchedule.of(schedule);
    }

    @AfterAll
    static void close() {
        if (nativeSchedule != null) nativeSchedule.close();
        if (cpu != null) {
            cpu.setThreads(Runtime.getRuntime().availableProcessors());
            cpu.close();
        }
    }

    static double ab(int t) {
        return t < 0 ? 1.0 : schedule.alphasCumprod()[t];
    }

    @Test
    void classEmbeddingAddsTheRowAndItsGradientAccumulatesInRowOrder() {
        TestRandom r = TestRandom.fresh();
        for (int[] sz : new int[][] {{1, 1, 3}, {7, 5, 129}, {41, 11, 37}}) {
            int batch = sz[0], classes = sz[1], dim = sz[2];
            int[] labels = new int[batch];
            for (int b = 0; b < batch; b++) labels[b] = r.nextInt(classes);
            float[] table = r.gaussians(classes * dim, 1), emb = r.gaussians(batch * dim, 1);
            float[] dEmb = r.gaussians(batch * dim, 1), dTable = r.gaussians(classes * dim, 1);
            float[] embRef = emb.clone(), dTableRef = dTable.clone();
            double[] dTable64 = Tolerance.toDouble(dTable);
            for (int b = 0; b < batch; b++) {
                for (int j = 0; j < dim; j++) {
                    embRef[b * dim + j] = emb[b * dim + j] + table[labels[b] * dim + j];
                    dTableRef[labels[b] * dim + j] += dEmb[b * dim + j];
                    dTable64[labels[b] * dim + j] += dEmb[b * dim + j];
                }
            }
            for (int threads : new int[] {1, 2}) {
                cpu.setThreads(threads);
                try (Tensor tt = Tensor.of(cpu, table, classes, dim); Tensor te = Tensor.of(cpu, emb, batch, dim);
                     Tensor tg = Tensor.of(cpu, dEmb, batch, dim); Tensor td = Tensor.of(cpu, dTable, classes, dim)) {
                    ConditioningKernels.classEmbeddingForward(tt, labels, te);
                    ConditioningKernels.classEmbeddingBackward(tg, labels, td);
                    String ctx = batch + "x" + classes + "x" + dim + " threads " + threads + ", " + r.describe();
                    Tolerance.assertBitIdentical("emb", embRef, te.toFloatArray(), ctx);
                    Tolerance.assertBitIdentical("d_table", dTableRef, td.toFloatArray(), ctx);
                    // the float32 running sum of at most 41 rows against float64
                    Tolerance.assertClose("d_table vs float64", td.toFloatArray(), dTable64, 1e-6, 64 * Tolerance.U, ctx);
                }
            }
        }
    }

    @Test
    void guidanceMixesThePredictionsInPlaceOrNot() {
        TestRandom r = TestRandom.fresh();
        for (int count : new int[] {1, 5, 70001}) {
            float[] c = r.gaussians(count, 1), u = r.gaussians(count, 1);
            float scale = (float) (8 * r.nextDouble());
            float[] ref = new float[count];
            double[] ref64 = new double[count];
            for (int i = 0; i < count; i++) {
                ref[i] = u[i] + scale * (c[i] - u[i]);
                ref64[i] = u[i] + (double) scale * ((double) c[i] - u[i]);
            }
            for (int threads : new int[] {1, 2}) {
                cpu.setThreads(threads);
                try (Tensor tc = Tensor.of(cpu, c, count); Tensor tu = Tensor.of(cpu, u, count);
                     Tensor out = Tensor.allocate(cpu, DType.FLOAT32, count)) {
                    out.fill(Float.NaN);
                    String ctx = "count " + count + " scale " + scale + " threads " + threads + ", " + r.describe();
                    ConditioningKernels.classifierFreeGuidance(tc, tu, scale, out);
                    Tolerance.assertBitIdentical("out", ref, out.toFloatArray(), ctx);
                    // three roundings, the last relative to |uncond| + scale |cond - uncond|
                    double[] scaleOf = new double[count];
                    for (int i = 0; i < count; i++) scaleOf[i] = Math.abs(u[i]) + scale * Math.abs(c[i] - u[i]);
                    Tolerance.assertCloseScaled("out vs float64", out.toFloatArray(), ref64, scaleOf, 0, 3 * Tolerance.U, ctx);
                    // in place over cond; scale 0 is the unconditional prediction exactly (u + 0 * finite)
                    ConditioningKernels.classifierFreeGuidance(tc, tu, scale, tc);
                    Tolerance.assertBitIdentical("out in place", ref, tc.toFloatArray(), ctx);
                    ConditioningKernels.classifierFreeGuidance(tc, tu, 0f, out);
                    Tolerance.assertBitIdentical("scale 0", u, out.toFloatArray(), ctx);
                }
            }
        }
    }

    @Test
    void noiseToTimestepDrawsFromTheForwardProcess() {
        TestRandom r = TestRandom.fresh();
        int batch = 3, n = 1365;
        float[] src = r.gaussians(batch * n, 1);
        int[] from = {-1, 17, 500}, to = {999, 18, 731};
        long[] seeds = r.longs(batch), offsets = r.longs(batch);
        float[] ref = new float[batch * n];
        for (int b = 0; b < batch; b++) {
            double ratio = ab(to[b]) / ab(from[b]);
            float a = (float) Math.sqrt(ratio), s = (float) Math.sqrt(1 - ratio);
            float[] z = BoxMuller.normals(seeds[b], offsets[b], 0, n);
            for (int i = 0; i < n; i++) ref[b * n + i] = a * src[b * n + i] + s * z[i];
        }
        for (int threads : new int[] {1, 2}) {
            cpu.setThreads(threads);
            try (Tensor ts = Tensor.of(cpu, src, batch, n); Tensor x = Tensor.allocate(cpu, DType.FLOAT32, batch, n)) {
                x.fill(Float.NaN);
                ConditioningKernels.noiseToTimestep(nativeSchedule, ts, from, to, new SampleNoise(seeds, offsets), x);
                String ctx = "threads " + threads + ", " + r.describe();
                Tolerance.assertBitIdentical("x", ref, x.toFloatArray(), ctx);
                ConditioningKernels.noiseToTimestep(nativeSchedule, ts, from, to, new SampleNoise(seeds, offsets), ts);
                Tolerance.assertBitIdentical("x in place", ref, ts.toFloatArray(), ctx);
            }
        }
    }

    @Test
    void inpaintMergeKeepsTheKnownPixelsExactlyAtTheEnd() {
        TestRandom r = TestRandom.fresh();
        int batch = 4, n = 70001;
        float[] known = r.gaussians(batch * n, 1), x = r.gaussians(batch * n, 1), mask = new float[batch * n];
        for (int i = 0; i < mask.length; i++) mask[i] = r.nextInt(3) == 0 ? 0.25f * r.nextInt(5) : r.nextInt(2);
        int[] t = {-1, 0, 412, 999};
        long[] seeds = r.longs(batch), offsets = r.longs(batch);
        float[] ref = new float[batch * n];
        double[] ref64 = new double[batch * n];
        for (int b = 0; b < batch; b++) {
            double ab = ab(t[b]);
            float a = (float) Math.sqrt(ab), s = (float) Math.sqrt(1 - ab);
            float[] z = t[b] < 0 ? new float[n] : BoxMuller.normals(seeds[b], offsets[b], 0, n);
            for (int i = 0; i < n; i++) {
                int e = b * n + i;
                float kn = a * known[e] + s * z[i];
                ref[e] = mask[e] * kn + (1f - mask[e]) * x[e];
                ref64[e] = mask[e] * (Math.sqrt(ab) * known[e] + Math.sqrt(1 - ab) * z[i]) + (1.0 - mask[e]) * x[e];
            }
        }
        for (int threads : new int[] {1, 2}) {
            cpu.setThreads(threads);
            try (Tensor tk = Tensor.of(cpu, known, batch, n); Tensor tm = Tensor.of(cpu, mask, batch, n);
                 Tensor tx = Tensor.of(cpu, x, batch, n)) {
                ConditioningKernels.inpaintMerge(nativeSchedule, tk, tm, t, new SampleNoise(seeds, offsets), tx);
                float[] got = tx.toFloatArray();
                String ctx = "threads " + threads + ", " + r.describe();
                Tolerance.assertBitIdentical("x", ref, got, ctx);
                Tolerance.assertClose("x vs float64", got, ref64, 1e-6, 8 * Tolerance.U, ctx);
                for (int i = 0; i < n; i++) {
                    if (mask[i] == 1f) assertEquals(Float.floatToRawIntBits(known[i]), Float.floatToRawIntBits(got[i]), ctx);
                    if (mask[i] == 0f) assertEquals(Float.floatToRawIntBits(x[i]), Float.floatToRawIntBits(got[i]), ctx);
                }
            }
        }
    }

    @Test
    void theJavaApiNamesTheBadArgument() {
        try (Tensor table = Tensor.allocate(cpu, DType.FLOAT32, 3, 4); Tensor emb = Tensor.allocate(cpu, DType.FLOAT32, 2, 4);
             Tensor odd = Tensor.allocate(cpu, DType.FLOAT32, 2, 5); Tensor other = Tensor.allocate(cpu, DType.FLOAT32, 2, 4)) {
            D4jException e = assertThrows(D4jException.class,
                    () -> ConditioningKernels.classEmbeddingForward(table, new int[] {0, 3}, emb));
            assertTrue(e.getMessage().contains("labels[1] = 3 is outside [0, 3)"), e.getMessage());
            e = assertThrows(D4jException.class, () -> ConditioningKernels.classEmbeddingBackward(emb, new int[] {-1, 0}, table));
            assertTrue(e.getMessage().contains("labels[0] = -1"), e.getMessage());
            IllegalArgumentException ia = assertThrows(IllegalArgumentException.class,
                    () -> ConditioningKernels.classEmbeddingForward(table, new int[] {0}, emb));
            assertTrue(ia.getMessage().contains("labels has 1 entries"), ia.getMessage());
            ia = assertThrows(IllegalArgumentException.class, () -> ConditioningKernels.classEmbeddingForward(table, new int[] {0, 1}, odd));
            assertTrue(ia.getMessage().contains("dim"), ia.getMessage());
            for (float bad : new float[] {Float.NaN, -0.5f, Float.POSITIVE_INFINITY}) {
                e = assertThrows(D4jException.class, () -> ConditioningKernels.classifierFreeGuidance(emb, emb, bad, emb));
                assertTrue(e.getMessage().contains("guidance_scale must be finite and >= 0"), e.getMessage());
            }
            ia = assertThrows(IllegalArgumentException.class, () -> ConditioningKernels.classifierFreeGuidance(emb, odd, 1f, emb));
            assertTrue(ia.getMessage().contains("uncond"), ia.getMessage());
            SampleNoise noise = new SampleNoise(new long[2], new long[2]);
            e = assertThrows(D4jException.class, () -> ConditioningKernels.noiseToTimestep(nativeSchedule, emb,
                    new int[] {5, -1}, new int[] {5, 3}, noise, emb));
            assertTrue(e.getMessage().contains("to_timesteps[0] = 5 must be above from_timesteps[0] = 5"), e.getMessage());
            e = assertThrows(D4jException.class, () -> ConditioningKernels.noiseToTimestep(nativeSchedule, emb,
                    new int[] {-1, -1}, new int[] {-1, 3}, noise, emb));
            assertTrue(e.getMessage().contains("to_timesteps[0]"), e.getMessage());
            e = assertThrows(D4jException.class, () -> ConditioningKernels.inpaintMerge(nativeSchedule, emb, emb,
                    new int[] {0, 1000}, noise, other));
            assertTrue(e.getMessage().contains("timesteps[1] = 1000"), e.getMessage());
            e = assertThrows(D4jException.class, () -> ConditioningKernels.inpaintMerge(nativeSchedule, emb, emb,
                    new int[] {0, 1}, noise, emb));
            assertTrue(e.getMessage().contains("x overlaps known"), e.getMessage());
        }
    }

    @Test
    void theCApiRefusesNullsAndSizes() {
        try (Tensor a = Tensor.allocate(cpu, DType.FLOAT32, 2, 5); Tensor small = Tensor.allocate(cpu, DType.FLOAT32, 9);
             Arena arena = Arena.ofConfined()) {
            MemorySegment be = cpu.handle(), h = a.handle(), s = nativeSchedule.handle();
            MemorySegment labels = arena.allocateFrom(ValueLayout.JAVA_INT, 0, 1);
            MemorySegment ts = arena.allocateFrom(ValueLayout.JAVA_INT, 0, 1);
            MemorySegment seeds = arena.allocateFrom(ValueLayout.JAVA_LONG, 1, 2);
            expect("labels is null", d4j_h.d4j_class_embedding_forward(be, h, MemorySegment.NULL, 2, 2, 5, h));
            expect("num_classes must be >= 1", d4j_h.d4j_class_embedding_forward(be, h, labels, 2, 0, 5, h));
            expect("emb: buffer holds 36 bytes", d4j_h.d4j_class_embedding_forward(be, h, labels, 2, 2, 5, small.handle()));
            expect("overlap", d4j_h.d4j_class_embedding_backward(be, h, labels, 2, 2, 5, h));
            expect("count must be >= 1", d4j_h.d4j_classifier_free_guidance(be, h, h, 0, 1f, h));
            expect("cond: buffer is null", d4j_h.d4j_classifier_free_guidance(be, MemorySegment.NULL, h, 10, 1f, h));
            expect("noise_seeds", d4j_h.d4j_noise_to_timestep(be, s, h, ts, arena.allocateFrom(ValueLayout.JAVA_INT, 1, 2),
                    2, 5, MemorySegment.NULL, seeds, h));
            expect("schedule is null", d4j_h.d4j_inpaint_merge(be, MemorySegment.NULL, h, h, ts, 2, 5, seeds, seeds, h));
            expect("timesteps is null", d4j_h.d4j_inpaint_merge(be, s, small.handle(), small.handle(), MemorySegment.NULL, 1,
                    5, seeds, seeds, h));
        }
    }

    static void expect(String fragment, int status) {
        assertTrue(status != 0, "expected a failure mentioning '" + fragment + "'");
        String msg = d4j_h.d4j_last_error().reinterpret(1024).getString(0);
        assertTrue(msg.contains(fragment), "message '" + msg + "' does not mention '" + fragment + "'");
    }
}
