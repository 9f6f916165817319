package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.NormKernelsTest.BwdOut;
import io.diffusion4j.kernels.NormKernelsTest.FwdOut;
import io.diffusion4j.kernels.NormKernelsTest.Problem;
import io.diffusion4j.kernels.NormKernelsTest.Ref;
import io.diffusion4j.kernels.NormKernelsTest.Shape;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The norm family on the device backends (CUDA, CUDA_SIM) against the float64 reference of
 * {@link NormKernelsTest} and against the CPU backend, on small shapes (the simulator runs a
 * 256-thread block with barriers in about a millisecond). A kind that cannot run here is skipped
 * with the backend's own reason.
 *
 * <p>Tolerances: the device computes the group statistics as float32 Welford summaries (8 rows per
 * thread, a 3-level merge tree, then a float64 merge), and the backward's per-channel sums as
 * float32 partials of 8 terms plus a 3-level tree, then float64: about 11 more roundings of the
 * summed magnitudes than the CPU, which sums in float64. Hence the device bounds below; device vs
 * CPU may differ by the sum of the two bounds.
 */
class NormParityTest {
    /** measured worst about 2.1 u */
    static final double DEVICE_FWD_TOL_U = 16;
    /** measured worst about 1.7 u */
    static final double DEVICE_STATS_TOL_U = 16;
    /** measured worst about 1.3 u */
    static final double DEVICE_BWD_TOL_U = 24;

    /** Odd channel counts, C > 32 (two channel tiles), H*W > 64 (two row splits). */
    static final List<Shape> SHAPES = List.of(new Shape(1, 5, 7, 6, 3), new Shape(3, 5, 7, 10, 5),
            new Shape(2, 5, 7, 32, 8), new Shape(1, 9, 11, 40, 8), new Shape(2, 3, 5, 13, 1));

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
        return kind.cliName() + " vs cpu/reference: " + NormKernelsTest.ctx(r, parts);
    }

    /** |dev - cpu| <= tolU u scale. */
    static void closeToCpu(String what, float[] dev, float[] host, double[] scale, double tolU, String c) {
        double[] h = new double[host.length];
        for (int i = 0; i < h.length; i++) h[i] = host[i];
        Tolerance.log(Tolerance.assertCloseScaled(what + " device vs cpu", dev, h, scale, 0.0, tolU * U, c));
    }

    static void checkOne(Device kind, Backend dev, Problem p, TestRandom r, String c) {
        Shape s = p.s();
        boolean bias = p.tb() != null;
        Ref ref = new Ref(p);
        FwdOut d = NormKernelsTest.forward(dev, p);
        FwdOut h = NormKernelsTest.forward(cpu, p);
        NormKernelsTest.checkForward(kind.cliName() + " group_norm", d, ref, DEVICE_FWD_TOL_U, DEVICE_STATS_TOL_U, c);
        closeToCpu("y", d.y(), h.y(), ref.sy, DEVICE_FWD_TOL_U + NormKernelsTest.FWD_TOL_U, c);
        closeToCpu("rstd", d.rstd(), h.rstd(), ref.rstd, DEVICE_STATS_TOL_U + NormKernelsTest.STATS_TOL_U, c);
        FwdOut d2 = NormKernelsTest.forward(dev, p);
        Tolerance.assertBitIdentical("device y is deterministic", d.y(), d2.y(), c);

        float[] dy = r.gaussians(s.elements(), 1.0);
        float[] dgamma0 = r.gaussians(s.c(), 1.0), dbeta0 = r.gaussians(s.c(), 1.0);
        Ref.Grads g = ref.backward(dy);
        // from each backend's own saved statistics, as in training
        BwdOut bd = NormKernelsTest.backward(dev, p, d.mean(), d.rstd(), dy, true, bias, dgamma0, dbeta0);
        BwdOut bh = NormKernelsTest.backward(cpu, p, h.mean(), h.rstd(), dy, true, bias, dgamma0, dbeta0);
        NormKernelsTest.checkBackward(kind.cliName() + " group_norm_backward", bd, g, dgamma0, dbeta0, bias,
                DEVICE_BWD_TOL_U, c);
        double both = DEVICE_BWD_TOL_U + NormKernelsTest.BWD_TOL_U;
        closeToCpu("dx", bd.dx(), bh.dx(), g.sdx(), both, c);
        if (bias) closeToCpu("dtb", bd.dtb(), bh.dtb(), g.sdtb(), both, c);
        closeToCpu("dgamma", bd.dgamma(), bh.dgamma(), NormKernelsTest.plusAbs(dgamma0, g.sdgamma()), both, c);
        closeToCpu("dbeta", bd.dbeta(), bh.dbeta(), NormKernelsTest.plusAbs(dbeta0, g.sdbeta()), both, c);
        BwdOut bd2 = NormKernelsTest.backward(dev, p, d.mean(), d.rstd(), dy, true, bias, dgamma0, dbeta0);
        Tolerance.assertBitIdentical("device dx is deterministic", bd.dx(), bd2.dx(), c);
        Tolerance.assertBitIdentical("device dgamma is deterministic", bd.dgamma(), bd2.dgamma(), c);
    }

    @OnDevices
    void groupNormMatchesCpu(Backend dev, Device kind) {
        for (Shape s : SHAPES) {
            for (boolean bias : new boolean[] {false, true}) {
                for (boolean silu : new boolean[] {false, true}) {
                    TestRandom r = TestRandom.fresh();
                    Problem p = Problem.random(r, s, bias, silu, 0.3, 1.5, 1e-5f);
                    checkOne(kind, dev, p, r, ctx(kind, r, s, "bias", bias, "silu", silu));
                }
            }
        }
    }

    /** y null computes the statistics alone: the same bits as the full forward's, before and after it. */
    @OnDevices
    void statisticsOnlyForwardMatchesFullForward(Backend dev, Device kind) {
        for (Shape s : SHAPES) {
            for (boolean bias : new boolean[] {false, true}) {
                TestRandom r = TestRandom.fresh();
                Problem p = Problem.random(r, s, bias, true, 0.3, 1.5, 1e-5f);
                String c = ctx(kind, r, s, "bias", bias);
                FwdOut before = NormKernelsTest.statistics(dev, p);
                FwdOut full = NormKernelsTest.forward(dev, p);
                NormKernelsTest.checkStatisticsOnly(kind.cliName(), dev, p, full, c);
                Tolerance.assertBitIdentical(kind.cliName() + " mean with y null, first call", full.mean(),
                        before.mean(), c);
                Tolerance.assertBitIdentical(kind.cliName() + " rstd with y null, first call", full.rstd(),
                        before.rstd(), c);
            }
        }
    }

    @OnDevices
    void largeMeanInputsKeepTheirVariance(Backend dev, Device kind) {
        for (Shape s : List.of(new Shape(2, 9, 11, 10, 5), new Shape(1, 5, 7, 40, 8))) {
            TestRandom r = TestRandom.fresh();
            Problem p = Problem.random(r, s, true, true, 1000.0, 0.05, 1e-6f);
            checkOne(kind, dev, p, r, ctx(kind, r, s, "x = 1000 + 0.05 N(0,1)"));
        }
    }

    @OnDevices
    void siluAndResidualMatchReference(Backend dev, Device kind) {
        for (int count : new int[] {1, 14, 1001}) {
            TestRandom r = TestRandom.fresh();
            String c = ctx(kind, r, "count", count);
            NormKernelsTest.checkSilu(kind.cliName(), dev, r, count, NormKernelsTest.SILU_TOL_U, c);
            NormKernelsTest.checkResidual(kind.cliName(), dev, r, count, NormKernelsTest.RESIDUAL_TOL_U, c);
        }
    }
}
