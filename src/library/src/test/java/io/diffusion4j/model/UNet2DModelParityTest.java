package io.diffusion4j.model;

import static io.diffusion4j.testutil.Tolerance.maxAbs;
import static io.diffusion4j.testutil.Tolerance.toDouble;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.Precision;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * The tiny UNet on a device backend (CUDA, CUDA_SIM; skipped with the backend's reason when
 * unavailable) against the CPU backend with the same parameters and inputs: forward output, input
 * gradient and parameter gradients. The kernels sum in different orders on the two backends (each
 * within a few float32 ulps of its float64 reference per layer), and ~25 layers compound that, so
 * the tolerance is |dev - cpu| <= 1e-4 * max|cpu| + 1e-4 * |cpu| (measured worst: see the printed
 * report). One forward + backward of the tiny config on cuda-sim takes a few seconds.
 */
class UNet2DModelParityTest {
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    record Run(float[] out, float[] dx, float[] grad) {}

    /** dropout: null for the inference forward, else the training forward's {seed, offset}. */
    static Run run(Backend be, UNet2DConfig cfg, Inputs in, long[] dropout) {
        return run(be, cfg, in, null, dropout);
    }

    /** With class labels for a class-conditional config (null otherwise). */
    static Run run(Backend be, UNet2DConfig cfg, Inputs in, int[] labels, long[] dropout) {
        try (UNet2DModel m = new UNet2DModel(be, cfg, 0);
             Tensor x = Tensor.of(be, in.xs(), 2, 8, 8, cfg.inChannels());
             Tensor dOut = Tensor.of(be, in.d(), 2, 8, 8, cfg.outChannels())) {
            m.loadFlat(in.params());
            m.zeroGradients();
            float[] out = UNet2DModelTest.forward(m, x, in.t(), labels, dropout).toFloatArray();
            float[] dx = m.backward(dOut).toFloatArray();
            return new Run(out, dx, m.flatGradients());
        }
    }

    /** Random parameters (drawn by a CPU model), input, timesteps and output gradient of a batch of 2 at 8x8. */
    record Inputs(float[] params, float[] xs, float[] t, float[] d) {
        static Inputs draw(TestRandom r, UNet2DConfig cfg) {
            float[] params;
            try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong())) {
                params = m.flatParameters();
            }
            float[] xs = r.gaussians(2 * 8 * 8 * cfg.inChannels(), 1);
            float[] t = {r.nextInt(1000), r.nextInt(1000)};
            float[] d = r.gaussians(2 * 8 * 8 * cfg.outChannels(), 1);
            return new Inputs(params, xs, t, d);
        }
    }

    /** The device run {@code g} matches the CPU run {@code h}: output, input gradient, parameter gradients. */
    static void assertClose(Run g, Run h, String variant, String ctx) {
        Tolerance.log(Tolerance.assertClose("unet forward" + variant, g.out(), toDouble(h.out()),
                1e-4 * maxAbs(h.out()), 1e-4, ctx));
        Tolerance.log(Tolerance.assertClose("unet input gradient" + variant, g.dx(), toDouble(h.dx()),
                1e-4 * maxAbs(h.dx()), 1e-4, ctx));
        Tolerance.log(Tolerance.assertClose("unet parameter gradients" + variant, g.grad(), toDouble(h.grad()),
                1e-4 * maxAbs(h.grad()), 1e-4, ctx));
    }

    @OnDevices
    void tinyUnetMatchesCpu(Backend be, Device kind) {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = UNet2DModelTest.tiny();
        Inputs in = Inputs.draw(r, cfg);
        Run h = run(cpu, cfg, in, null);
        Run g = run(be, cfg, in, null);
        String ctx = kind.cliName() + " vs cpu; " + r.describe();
        assertClose(g, h, "", ctx);
    }

    /**
     * A class-conditional tiny UNet (num_class_embeds 4) with two labels, training forward and backward: the class
     * table's gradient (two rows, the rest exactly 0) is among the parameter gradients compared.
     */
    @OnDevices
    void classConditionalTinyUnetMatchesCpu(Backend be, Device kind) {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = UNet2DModelTest.tinyBuilder().numClassEmbeds(4).build();
        Inputs in = Inputs.draw(r, cfg);
        int[] labels = {r.nextInt(4), r.nextInt(4)};
        Run h = run(cpu, cfg, in, labels, null);
        Run g = run(be, cfg, in, labels, null);
        assertClose(g, h, " (class-conditional)", kind.cliName() + " vs cpu, labels " + java.util.Arrays.toString(labels)
                + "; " + r.describe());
    }

    /**
     * An inference instance (as the samplers and the server use) normalises the inputs of the convolutions after a
     * GroupNorm as it reads them (d4j_group_norm_conv2d_forward) instead of storing them: at every precision its
     * output on the device stays within the tolerance of the tests above of the CPU's unfused FP32 forward (on the
     * CPU the two are bit-identical, SamplerTest).
     */
    @OnDevices
    void inferenceInstanceWithNormsFusedIntoConvolutionsMatchesCpu(Backend be, Device kind) {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = UNet2DModelTest.tiny();
        Inputs in = Inputs.draw(r, cfg);
        Run h = run(cpu, cfg, in, null);
        for (Precision p : Precision.values()) {
            float[] out;
            try (Backend.Selection s = be.use(p);
                 UNet2DModel m = new UNet2DModel(be, cfg, 0);
                 UNet2DModel inf = m.sharingParameters();
                 Tensor x = Tensor.of(be, in.xs(), 2, 8, 8, cfg.inChannels())) {
                m.loadFlat(in.params());
                out = inf.forward(x, in.t()).toFloatArray();
            }
            double tol = p == Precision.FP32 ? 1e-4 : PRECISION_FACTOR * p.productError();
            Tolerance.log(Tolerance.assertClose("inference instance forward at " + p.cliName(), out,
                    toDouble(h.out()), tol * maxAbs(h.out()), tol, kind.cliName() + " vs cpu fp32; " + r.describe()));
        }
    }

    /**
     * A training forward and backward with dropout p = 0.3 in every resnet: the device draws the same
     * masks as the CPU (bit-identical Philox words, DropoutParityTest), so the same tolerance holds; a
     * mask that differed would move outputs by O(1) of their scale. The dropped activations must be
     * visible: the CPU's training output differs from its inference output.
     */
    @OnDevices
    void tinyUnetWithDropoutMatchesCpu(Backend be, Device kind) {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = UNet2DModelTest.tinyWithDropout(0.3);
        Inputs in = Inputs.draw(r, cfg);
        long[] dropout = {r.nextLong(), r.nextLong() >>> 1};
        Run h = run(cpu, cfg, in, dropout);
        Run g = run(be, cfg, in, dropout);
        Run inference = run(cpu, cfg, in, null);
        String ctx = kind.cliName() + " vs cpu, dropout 0.3; " + r.describe();
        org.junit.jupiter.api.Assertions.assertTrue(UNet2DModelTest.differ(h.out(), inference.out()),
                "dropout did not act on the CPU; " + ctx);
        assertClose(g, h, " (dropout)", ctx);
    }

    /**
     * The whole tiny UNet at TF32 and at BF16 (its convolutions, linear layers and attention on tensor cores, the
     * inputs of every product rounded) against the CPU's FP32: the output, input gradient and parameter gradients
     * stay within {@value #PRECISION_FACTOR} x the precision's product error ({@link Precision#productError()},
     * 2^-10 for TF32, 2^-7 for BF16) of the CPU result's scale, elementwise and relative to its largest value: each
     * layer adds about one product error relative to its scale, and normalisation keeps the scales from compounding.
     * The rounding must show: BF16 lands further from FP32 than TF32, and TF32 further than the device's own FP32.
     */
    @OnDevices
    void tinyUnetAtReducedPrecisionStaysWithinItsTolerance(Backend be, Device kind) {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = UNet2DModelTest.tiny();
        Inputs in = Inputs.draw(r, cfg);
        Run h = run(cpu, cfg, in, null);
        double[] worst = new double[Precision.values().length];
        for (Precision p : Precision.values()) {
            Run g;
            try (Backend.Selection s = be.use(p)) {
                g = run(be, cfg, in, null);
            }
            String ctx = kind.cliName() + " " + p.cliName() + " vs cpu fp32; " + r.describe();
            double tol = p == Precision.FP32 ? 1e-4 : PRECISION_FACTOR * p.productError();
            Tolerance.log(Tolerance.assertClose("unet forward at " + p.cliName(), g.out(), toDouble(h.out()),
                    tol * maxAbs(h.out()), tol, ctx));
            Tolerance.log(Tolerance.assertClose("unet input gradient at " + p.cliName(), g.dx(), toDouble(h.dx()),
                    tol * maxAbs(h.dx()), tol, ctx));
            Tolerance.log(Tolerance.assertClose("unet parameter gradients at " + p.cliName(), g.grad(),
                    toDouble(h.grad()), tol * maxAbs(h.grad()), tol, ctx));
            worst[p.ordinal()] = maxDiff(g.out(), h.out()) / maxAbs(h.out());
        }
        String ctx = kind.cliName() + ": worst forward difference / max|cpu| at fp32, tf32, bf16 = "
                + java.util.Arrays.toString(worst) + "; " + r.describe();
        org.junit.jupiter.api.Assertions.assertTrue(worst[Precision.BF16.ordinal()] > worst[Precision.TF32.ordinal()]
                && worst[Precision.TF32.ordinal()] > worst[Precision.FP32.ordinal()], ctx);
        System.out.println(ctx);
    }

    static final double PRECISION_FACTOR = 4; // measured worst: about a third of it (forward, gradients)

    static double maxDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }
}
