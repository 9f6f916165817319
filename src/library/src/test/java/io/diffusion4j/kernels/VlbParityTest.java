package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import java.util.Arrays;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The vlb family on a device backend (CUDA, CUDA_SIM; skipped with the backend's reason when unavailable)
 * against the CPU backend and the float64 reference. Both backends evaluate the same float64 element math
 * (the device may contract to FMA) and sum in different fixed orders, so they agree to float64 rounding:
 * |dev - cpu| &lt;= 1e-12 (sum of |terms| + n). Small shapes for the simulator: at most a few dozen blocks of
 * 256 threads (4096 elements per block), the last chunk partial.
 */
class VlbParityTest {
    static final int[][] SHAPES = {{3, 785}, {1, 105}, {2, 2 * 4096 + 5}, {17, 3 * 7 * 5}};
    static Backend cpu;
    static NoiseSchedule schedule;
    static NativeSchedule ns;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        schedule = NoiseSchedule.of(BetaSchedule.SCALED_LINEAR, 1000, 0.00085, 0.012);
        ns = NativeSchedule.of(schedule);
    }

    @AfterAll
    static void close() {
        ns.close();
        cpu.close();
    }

    @OnDevices
    void termsAndPriorAgreeWithCpu(Backend dev, Device kind) {
        PredictionType[] preds = PredictionType.values();
        for (int[] sh : SHAPES) {
            TestRandom r = TestRandom.fresh();
            int batch = sh[0], n = sh[1];
            int[] t = r.timesteps(batch, 1000);
            PredictionType p = preds[r.nextInt(preds.length)];
            VarianceType v = r.nextInt(2) == 0 ? VarianceType.FIXED_SMALL : VarianceType.FIXED_LARGE;
            boolean clip = r.nextInt(2) == 0;
            float[] x0 = VlbKernelsTest.data8(r, batch * n);
            float[] xt = VlbKernelsTest.noised(schedule, x0, t, n, r);
            float[] o = VlbKernelsTest.outputs(p, schedule, x0, xt, t, n, 0.005, r);
            String ctx = String.format(Locale.ROOT, "%s vs cpu, %dx%d %s %s clip=%s t=%s %s", kind.cliName(), batch, n,
                    p, v, clip, Arrays.toString(t), r.describe());
            double[] c = VlbKernelsTest.run(cpu, ns, p, v, clip, 1f, x0, xt, o, batch, n, t);
            double[] d = VlbKernelsTest.run(dev, ns, p, v, clip, 1f, x0, xt, o, batch, n, t);
            for (int b = 0; b < batch; b++) {
                double ref = VlbReference.term(schedule, p, v, clip, 1.0, x0, xt, o, b * n, n, t[b]);
                double scale = Math.abs(ref) + n;
                assertTrue(Math.abs(d[b] - c[b]) <= 1e-12 * scale, String.format(Locale.ROOT,
                        "sample %d: device %.17g cpu %.17g; %s", b, d[b], c[b], ctx));
                assertTrue(Math.abs(d[b] - ref) <= 1e-10 * scale, String.format(Locale.ROOT,
                        "sample %d: device %.17g reference %.17g; %s", b, d[b], ref, ctx));
            }
            try (Tensor a = Tensor.of(cpu, x0, batch, n); Tensor da = Tensor.of(dev, x0, batch, n)) {
                double[] pc = VlbKernels.prior(ns, a), pd = VlbKernels.prior(ns, da);
                for (int b = 0; b < batch; b++) {
                    assertTrue(Math.abs(pd[b] - pc[b]) <= 1e-12 * Math.abs(pc[b]), String.format(Locale.ROOT,
                            "prior sample %d: device %.17g cpu %.17g; %s", b, pd[b], pc[b], ctx));
                }
            }
        }
    }
}
