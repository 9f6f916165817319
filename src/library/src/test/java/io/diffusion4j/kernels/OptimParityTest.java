package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.OptimKernels.AdamW;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The optimiser kernels on a device backend (CUDA, CUDA_SIM; skipped with the backend's reason when
 * unavailable) against the CPU backend, small counts (the simulator runs every thread on the CPU).
 *
 * <p>AdamW and EMA must be bit-identical to the CPU: both backends evaluate
 * native/common/optim_math.h with correctly rounded float32 operations (the __f*_rn intrinsics on
 * a GPU, so nvcc cannot contract into FMAs) from the same float32 coefficients; they are also held
 * to the CPU test's float64 bounds. The gradient norm sums in another order on the device (float64
 * per thread over a grid-stride slice, a 256-way tree per block, a second one-block tree over the
 * block partials), so it must agree with the CPU and the compensated reference to a relative 1e-12
 * (each square passes through at most a few hundred float64 adds here), be deterministic (same bits
 * on a second call), and independent of what else is in the scratch buffer.
 */
class OptimParityTest {
    static final int[] COUNTS = {1, 7, 255, 257, 5003};
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    static String ctx(Device kind, TestRandom r, Object... parts) {
        StringBuilder b = new StringBuilder(kind.cliName()).append(" vs cpu: ");
        for (Object p : parts) b.append(p).append(' ');
        return b.append("; ").append(r.describe()).toString();
    }

    record Out(float[] p, float[] m, float[] v, float[] g) {}

    static Out adamw(Backend be, AdamW hp, long step, double gs, float[] p, float[] g, float[] m, float[] v, int from, int to) {
        try (OptimKernelsTest.State s = OptimKernelsTest.State.of(be, p, g, m, v)) {
            if (from == 0 && to == p.length) {
                OptimKernels.adamw(s.p(), s.g(), s.m(), s.v(), hp, step, gs);
            } else {
                int n = to - from;
                try (Tensor vp = s.p().view(from, n); Tensor vg = s.g().view(from, n); Tensor vm = s.m().view(from, n);
                     Tensor vv = s.v().view(from, n)) {
                    OptimKernels.adamw(vp, vg, vm, vv, hp, step, gs);
                }
            }
            return new Out(s.p().toFloatArray(), s.m().toFloatArray(), s.v().toFloatArray(), s.g().toFloatArray());
        }
    }

    @OnDevices
    void adamwIsBitIdenticalToCpu(Backend dev, Device kind) {
        for (int count : COUNTS) {
            TestRandom r = TestRandom.fresh();
            AdamW hp = OptimReference.randomHyper(r);
            float[] p = r.gaussians(count, 0.5), m = new float[count], v = new float[count];
            for (int t = 1; t <= 3; t++) {
                float[] g = OptimReference.gradients(r, count);
                double gs = t == 2 ? 0.3 : 1.0;
                String c = ctx(kind, r, "count", count, "step", t, hp);
                Out h = adamw(cpu, hp, t, gs, p, g, m, v, 0, count);
                Out d = adamw(dev, hp, t, gs, p, g, m, v, 0, count);
                Tolerance.assertBitIdentical("adamw param", h.p(), d.p(), c);
                Tolerance.assertBitIdentical("adamw m", h.m(), d.m(), c);
                Tolerance.assertBitIdentical("adamw v", h.v(), d.v(), c);
                Tolerance.assertBitIdentical("adamw grad (read-only)", g, d.g(), c);
                OptimReference.AdamRef ref = OptimReference.adamw64(hp, t, gs, p, g, m, v);
                Tolerance.assertCloseScaled("adamw param", d.p(), ref.p(), ref.pScale(), 0, OptimKernelsTest.P_TOL_U * U, c);
                Tolerance.assertCloseScaled("adamw m", d.m(), ref.m(), ref.mScale(), 0, OptimKernelsTest.M_TOL_U * U, c);
                Tolerance.assertCloseScaled("adamw v", d.v(), ref.v(), ref.vScale(), 0, OptimKernelsTest.V_TOL_U * U, c);
                p = d.p();
                m = d.m();
                v = d.v();
            }
        }
    }

    @OnDevices
    void adamwOnAViewLeavesTheRestUntouched(Backend dev, Device kind) {
        TestRandom r = TestRandom.fresh();
        int n = 1001, from = 5, to = 700;
        AdamW hp = OptimReference.randomHyper(r);
        float[] p = r.gaussians(n, 1.0), g = OptimReference.gradients(r, n), m = r.gaussians(n, 0.01),
                v = r.uniforms(n, 0, 1e-3);
        String c = ctx(kind, r, hp);
        Out d = adamw(dev, hp, 4, 0.8, p, g, m, v, from, to);
        Out h = adamw(cpu, hp, 4, 0.8, p, g, m, v, from, to);
        Tolerance.assertBitIdentical("param", h.p(), d.p(), c);
        Tolerance.assertBitIdentical("m", h.m(), d.m(), c);
        Tolerance.assertBitIdentical("v", h.v(), d.v(), c);
        for (int i = 0; i < n; i++) {
            boolean inside = i >= from && i < to;
            boolean same = Float.floatToRawIntBits(d.p()[i]) == Float.floatToRawIntBits(p[i])
                    && Float.floatToRawIntBits(d.m()[i]) == Float.floatToRawIntBits(m[i])
                    && Float.floatToRawIntBits(d.v()[i]) == Float.floatToRawIntBits(v[i]);
            assertTrue(inside != same, "element " + i + (inside ? " inside the view did not change" : " outside changed") + "; " + c);
        }
    }

    @OnDevices
    void emaIsBitIdenticalToCpu(Backend dev, Device kind) {
        EmaSchedule sched = EmaSchedule.ratio(0.999, 0.0, 0);
        for (int count : COUNTS) {
            TestRandom r = TestRandom.fresh();
            float[] ema = r.gaussians(count, 1.0);
            for (int step = 1; step <= 3; step++) {
                float[] p = r.gaussians(count, 1.0);
                double decay = sched.decay(step + (step == 3 ? 1000 : 0));
                String c = ctx(kind, r, "count", count, "decay", decay);
                float[] h, d;
                try (Tensor e = Tensor.of(cpu, ema, count); Tensor q = Tensor.of(cpu, p, count)) {
                    OptimKernels.ema(e, q, decay);
                    h = e.toFloatArray();
                }
                try (Tensor e = Tensor.of(dev, ema, count); Tensor q = Tensor.of(dev, p, count)) {
                    OptimKernels.ema(e, q, decay);
                    d = e.toFloatArray();
                    Tolerance.assertBitIdentical("ema param (read-only)", p, q.toFloatArray(), c);
                }
                Tolerance.assertBitIdentical("ema", h, d, c);
                double[][] ref = OptimReference.ema64(decay, ema, p);
                Tolerance.assertCloseScaled("ema", d, ref[0], ref[1], 0, OptimKernelsTest.EMA_TOL_U * U, c);
                ema = d;
            }
        }
    }

    @OnDevices
    void gradNormMatchesCpu(Backend dev, Device kind) {
        // 70001 elements: 35 blocks of 256 threads x 8 elements; 600000 caps the grid at 1024 blocks on a GPU
        int[] counts = kind == Device.CUDA ? new int[] {1, 7, 257, 70001, 600_001} : new int[] {1, 7, 257, 70001};
        for (int count : counts) {
            TestRandom r = TestRandom.fresh();
            float[] g = OptimReference.gradients(r, count);
            if (count == 1) g[0] = 0.75f;
            String c = ctx(kind, r, "count", count);
            double h = OptimKernelsTest.norm(cpu, g);
            double d, again;
            try (Tensor t = Tensor.of(dev, g, count)) {
                d = OptimKernels.gradNorm(t);
                again = OptimKernels.gradNorm(t);
            }
            assertEquals(Double.doubleToRawLongBits(d), Double.doubleToRawLongBits(again), "not deterministic; " + c);
            double rel = Math.abs(d - h) / h;
            System.out.printf(Locale.ROOT, "[d4j-error] %s grad_norm n=%d rel diff vs cpu = %.3g%n", kind.cliName(), count, rel);
            assertTrue(rel <= OptimKernelsTest.NORM_RTOL, String.format(Locale.ROOT,
                    "device norm %.17g vs cpu %.17g: relative %.3g > %.1g; %s", d, h, rel, OptimKernelsTest.NORM_RTOL, c));
            OptimKernelsTest.assertNormClose(d, g, c);
            if (count == 1) assertEquals(0.75, d, 0.0, c);
        }
    }
}
