package io.diffusion4j.kernels;

import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.ConvReference.Grads;
import io.diffusion4j.kernels.ConvReference.Problem;
import io.diffusion4j.kernels.ConvReference.Result;
import io.diffusion4j.testutil.InputRounding;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;

/**
 * The tensor-core conv2d variants compute what they claim: at TF32 and BF16 each result equals the float64
 * convolution of the <em>rounded</em> inputs up to FP32 accumulation error, and is visibly not the FP32 result.
 * So a variant that silently ran the FP32 path, rounded the wrong operand, or rounded to the wrong format fails
 * here, while {@code KernelParityTest} holds it to the precision's stated tolerance against the CPU (and runs
 * again under the sanitizers; this test runs once, on the plain simulator: every variant, precision and
 * geometry here takes minutes under AddressSanitizer).
 *
 * <p>Bounds, per output element with S = the sum of the products' absolute values: against the reference of the
 * rounded inputs, 2 (T + 2) u S (the accumulation in FP32, with room for a tensor core's own summation order);
 * against the reference of the unrounded inputs, (productError + 2 (T + 2) u) S, the tolerance the parity suite
 * states. The bias gradient is a plain FP32 reduction at every precision: (T + 2) u S.
 *
 * <p>The roundings: {@link InputRounding}, written independently of the native code.
 */
class TensorCoreConvRoundingTest {
    static final List<Conv2dSpec> SPECS = List.of(Conv2dSpec.same3x3(), Conv2dSpec.downsample3x3(1),
            Conv2dSpec.downsample3x3(0), Conv2dSpec.pointwise(), Conv2dSpec.upsample3x3());
    /** {n, h, w, cIn, cOut}: odd sizes; the second has more than one 64-wide tile of pixels and of channels. */
    static final int[][] SHAPES = {{1, 5, 7, 3, 5}, {2, 9, 7, 19, 67}};

    static double[] rounded(Precision p, float[] v) {
        return InputRounding.roundedDoubles(p, v);
    }

    static void check(String what, Precision p, float[] dev, Result ofRounded, Result exact, int terms, String ctx) {
        InputRounding.checkRounded(what, p, dev, ofRounded.value(), ofRounded.scale(), exact.value(), exact.scale(),
                terms, ctx);
    }

    @OnDevices
    void forwardAndBackwardRoundTheirInputs(Backend dev, Device kind) {
        for (VariantRun run : dev.variantRuns("conv2d")) {
            if (run.precision() == Precision.FP32) continue;
            Precision precision = run.precision();
            try (Backend.Selection s = dev.use(run)) {
                for (Conv2dSpec spec : SPECS) {
                    for (int[] sh : SHAPES) {
                        Problem p = new Problem(spec, sh[0], sh[1], sh[2], sh[3], sh[4]);
                        TestRandom r = TestRandom.fresh();
                        float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5);
                        float[] b = r.gaussians(p.cOut(), 1.0), dy = r.gaussians(p.ySize(), 1.0);
                        String c = kind.cliName() + " conv2d " + run.label() + " " + p + "; " + r.describe();

                        float[] y = ConvRunner.forward(dev, p, x, w, b);
                        check("conv2d forward", precision, y, ConvReference.forward(p, rounded(precision, x),
                                rounded(precision, w), ConvReference.d(b)), ConvReference.forward(p, ConvReference.d(x),
                                ConvReference.d(w), ConvReference.d(b)), p.forwardTerms(), c);
                        Tolerance.assertBitIdentical("conv2d forward repeat", y, ConvRunner.forward(dev, p, x, w, b), c);

                        ConvRunner.BackwardOut d = ConvRunner.backward(dev, p, x, w, dy, true, new float[p.wSize()],
                                new float[p.cOut()], 1);
                        Grads g = ConvReference.backward(p, rounded(precision, x), rounded(precision, w),
                                rounded(precision, dy));
                        Grads e = ConvReference.backward(p, ConvReference.d(x), ConvReference.d(w), ConvReference.d(dy));
                        check("conv2d dx", precision, d.dx(), g.dx(), e.dx(), p.dxTerms(), c);
                        check("conv2d dweight", precision, d.dw(), g.dw(), e.dw(), p.dwTerms(), c);
                        Tolerance.log(Tolerance.assertCloseScaled("conv2d dbias (an FP32 reduction)", d.db(),
                                e.db().value(), e.db().scale(), 0.0, (p.dwTerms() + 2) * U, c));
                        ConvRunner.BackwardOut again = ConvRunner.backward(dev, p, x, w, dy, true, new float[p.wSize()],
                                new float[p.cOut()], 1);
                        Tolerance.assertBitIdentical("conv2d dweight repeat", d.dw(), again.dw(), c);
                    }
                }
            }
        }
    }
}
