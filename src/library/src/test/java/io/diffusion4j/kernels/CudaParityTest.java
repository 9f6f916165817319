package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.testutil.KernelReference;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * Every kernel on a device backend against the CPU backend with the same inputs: RNG output
 * bit-exact (the transform is specified to give the same bits everywhere), everything else within
 * tolerance. Each test runs once per device backend kind ({@code CUDA}, {@code CUDA_SIM}); a kind
 * that cannot run here (no GPU, no driver, library not in this build) is reported as skipped with
 * the backend's own one-sentence reason from its BackendUnavailableException.
 *
 * <p>Tolerances: device results are held to the same float64-reference bounds as the CPU
 * (DiffusionKernelsTest, EmbeddingTest; contracting a*b+c into an FMA only removes roundings), so
 * device and CPU may differ by at most twice that. The loss is the exception: the device sums
 * squares in float32 (16 sequential adds per thread, then an 8-level tree in shared memory), a
 * relative error of at most about (16 + 8) u of the sum, hence {@link #DEVICE_LOSS_TOL_U}.
 */
class CudaParityTest {
    static final double DEVICE_LOSS_TOL_U = 32;
    static final int GRAIN = DiffusionKernelsTest.GRAIN;
    static final List<DiffusionKernelsTest.Shape> SHAPES = DiffusionKernelsTest.SHAPES;

    static Backend cpu;
    static NoiseSchedule schedule;
    static NativeSchedule nativeSchedule;
    static double[] ac;
    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        schedule = NoiseSchedule.defaults();
        ac = schedule.alphasCumprod();
        nativeSchedule = NativeSchedule.of(schedule);
    }

    @AfterAll
    static void close() {
        if (nativeSchedule != null) nativeSchedule.close();
        if (cpu != null) cpu.close();
    }

    static String ctx(Device kind, TestRandom r, Object... parts) {
        StringBuilder b = new StringBuilder(kind.cliName()).append(" vs cpu: ");
        for (Object p : parts) b.append(p).append(' ');
        return b.append("; ").append(r.describe()).toString();
    }

    /** |dev - cpu| <= tolU u scale, scale from the float64 reference. */
    static void close(String what, float[] dev, float[] host, double[] scale, double tolU, String ctx) {
        double[] h = new double[host.length];
        for (int i = 0; i < h.length; i++) h[i] = host[i];
        Tolerance.log(Tolerance.assertCloseScaled(what, dev, h, scale, 0.0, tolU * U, ctx));
    }

    @OnDevices
    void randomNumbersAreBitIdentical(Backend dev, Device kind) {
        TestRandom r = TestRandom.fresh();
        for (int count : new int[] {1, 3, 7, 4097, 3 * GRAIN + 5, (1 << 20) + 3}) {
            long seed = r.nextLong(), offset = r.nextLong();
            String c = ctx(kind, r, "count", count, String.format("seed=0x%x offset=0x%x", seed, offset));
            Tolerance.assertBitIdentical("uint32", RngTest.nativeBits(cpu, seed, offset, count),
                    RngTest.nativeBits(dev, seed, offset, count), c);
            Tolerance.assertBitIdentical("normal", RngTest.nativeNormals(cpu, seed, offset, count),
                    RngTest.nativeNormals(dev, seed, offset, count), c);
        }
    }

    @OnDevices
    void addNoiseMatchesCpu(Backend dev, Device kind) {
        for (DiffusionKernelsTest.Shape sh : SHAPES) {
            TestRandom r = TestRandom.fresh();
            int n = sh.n(), batch = sh.batch();
            float[] x0 = r.gaussians(batch * n, 1.0);
            int[] t = r.timesteps(batch, ac.length);
            long seed = r.nextLong(), offset = r.nextLong();
            String c = ctx(kind, r, "shape", sh);
            KernelRunner.NoiseOut h = KernelRunner.addNoise(cpu, nativeSchedule, x0, t, n, seed, offset);
            KernelRunner.NoiseOut d = KernelRunner.addNoise(dev, nativeSchedule, x0, t, n, seed, offset);
            Tolerance.assertBitIdentical("add_noise eps", h.eps(), d.eps(), c);
            KernelReference.Ref ref = KernelReference.addNoise(ac, x0, h.eps(), t, n);
            close("add_noise x_t", d.xT(), h.xT(), ref.scale(), 2 * DiffusionKernelsTest.ADD_NOISE_TOL_U, c);
        }
    }

    @OnDevices
    void diffusionLossMatchesCpu(Backend dev, Device kind) {
        for (PredictionType p : PredictionType.values()) {
            double[] w64 = schedule.minSnrWeights(5.0, p);
            float[] w = new float[w64.length];
            for (int i = 0; i < w.length; i++) w[i] = (float) w64[i];
            for (DiffusionKernelsTest.Shape sh : SHAPES) {
                TestRandom r = TestRandom.fresh();
                int n = sh.n(), batch = sh.batch();
                float[] o = r.gaussians(batch * n, 1.0), x0 = r.gaussians(batch * n, 1.0), eps = r.gaussians(batch * n, 1.0);
                int[] t = r.timesteps(batch, ac.length);
                for (float[] weights : new float[][] {null, w}) {
                    String c = ctx(kind, r, p, "minSnr", weights != null, "shape", sh);
                    KernelRunner.LossOut h = KernelRunner.loss(cpu, nativeSchedule, p, o, x0, eps, t, weights, n, true);
                    KernelRunner.LossOut d = KernelRunner.loss(dev, nativeSchedule, p, o, x0, eps, t, weights, n, true);
                    KernelReference.LossRef ref = KernelReference.loss(ac, p, o, x0, eps, t, weights, n);
                    close("loss", d.loss(), h.loss(), ref.lossScale(),
                            DEVICE_LOSS_TOL_U + DiffusionKernelsTest.LOSS_TOL_U, c);
                    close("grad", d.grad(), h.grad(), ref.gradScale(), 2 * DiffusionKernelsTest.GRAD_TOL_U, c);
                    KernelRunner.LossOut d2 = KernelRunner.loss(dev, nativeSchedule, p, o, x0, eps, t, weights, n, false);
                    Tolerance.assertBitIdentical("device loss is deterministic", d.loss(), d2.loss(), c);
                }
            }
        }
    }

    @OnDevices
    void reverseStepsMatchCpu(Backend dev, Device kind) {
        for (PredictionType p : PredictionType.values()) {
            for (DiffusionKernelsTest.Shape sh : SHAPES) {
                TestRandom r = TestRandom.fresh();
                int n = sh.n(), batch = sh.batch();
                float[] x = r.gaussians(batch * n, 1.0), o = r.gaussians(batch * n, 1.0);
                int[] t = r.timesteps(batch, ac.length);
                int[] prev = DiffusionKernelsTest.prevTimesteps(r, t, true);
                long[] seeds = r.longs(batch), offsets = r.longs(batch);
                double tol = 2 * DiffusionKernelsTest.STEP_TOL_U;
                for (VarianceType v : VarianceType.values()) {
                    for (boolean clip : new boolean[] {false, true}) {
                        String c = ctx(kind, r, "ddpm", p, v, "clip", clip, "shape", sh);
                        float[] h = KernelRunner.ddpm(cpu, nativeSchedule, p, v, clip, 1f, x, o, t, prev, seeds, offsets, n, false);
                        float[] d = KernelRunner.ddpm(dev, nativeSchedule, p, v, clip, 1f, x, o, t, prev, seeds, offsets, n, false);
                        KernelReference.Ref ref = KernelReference.ddpm(ac, p, v, clip, 1.0, x, o, t, prev, seeds, offsets, n);
                        close("ddpm_step", d, h, ref.scale(), tol, c);
                        float[] inPlace = KernelRunner.ddpm(dev, nativeSchedule, p, v, clip, 1f, x, o, t, prev, seeds,
                                offsets, n, true);
                        Tolerance.assertBitIdentical("device ddpm in place", d, inPlace, c);
                    }
                }
                for (float eta : new float[] {0f, 1f}) {
                    for (boolean clip : new boolean[] {false, true}) {
                        for (double finalAlpha : new double[] {1.0, ac[0]}) {
                            String c = ctx(kind, r, "ddim", p, "eta", eta, "clip", clip, "finalAlpha", finalAlpha, "shape", sh);
                            float[] h = KernelRunner.ddim(cpu, nativeSchedule, p, eta, clip, 1f, clip, finalAlpha, x, o, t,
                                    prev, seeds, offsets, n, false);
                            float[] d = KernelRunner.ddim(dev, nativeSchedule, p, eta, clip, 1f, clip, finalAlpha, x, o, t,
                                    prev, seeds, offsets, n, false);
                            KernelReference.Ref ref = KernelReference.ddim(ac, p, eta, clip, 1.0, clip, finalAlpha, x, o, t,
                                    prev, seeds, offsets, n);
                            close("ddim_step", d, h, ref.scale(), tol, c);
                        }
                    }
                }
            }
        }
    }

    @OnDevices
    void embeddingMatchesCpu(Backend dev, Device kind) {
        TestRandom r = TestRandom.fresh();
        for (int dim : new int[] {2, 7, 64, 321}) {
            for (boolean flip : new boolean[] {false, true}) {
                for (int batch : new int[] {1, 129}) {
                    float[] t = r.uniforms(batch, 0, 1000);
                    float shift = dim >= 4 ? 1.0f : 0.0f;
                    String c = ctx(kind, r, "dim", dim, "flip", flip, "batch", batch);
                    float[] h = KernelRunner.embedding(cpu, t, dim, flip, shift, 1.0f, 10000.0f);
                    float[] d = KernelRunner.embedding(dev, t, dim, flip, shift, 1.0f, 10000.0f);
                    double[] hd = new double[h.length];
                    for (int i = 0; i < h.length; i++) hd[i] = h[i];
                    Tolerance.log(Tolerance.assertClose("timestep_embedding", d, hd, 2 * EmbeddingTest.ATOL, 0.0, c));
                }
            }
        }
    }
}
