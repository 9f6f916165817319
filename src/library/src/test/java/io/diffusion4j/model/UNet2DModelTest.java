package io.diffusion4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * UNet2DModel on the CPU backend: a whole-network gradient check against central finite differences
 * of the same float32 forward, the Fashion-MNIST-sized forward (finite, right shape; timed with its
 * backward), parameter round trips, validation and native memory accounting.
 */
class UNet2DModelTest {
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    /**
     * Tiny but complete: two levels (a plain and an attention block down, the mirror up), every
     * resnet with and without a 1x1 shortcut, 2 attention heads, a mid block with
     * mid_block_scale_factor != 1 (the scaled residual paths), padding-0 downsampling.
     */
    static UNet2DConfig tiny() {
        return tinyBuilder().build();
    }

    static UNet2DConfig.Builder tinyBuilder() {
        return UNet2DConfig.builder().sampleSize(8).inChannels(2).outChannels(3).blockOutChannels(4, 8)
                .layersPerBlock(1).normNumGroups(2).attentionHeadDim(4)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK))
                .midBlockScaleFactor(1.25).downsamplePadding(0);
    }

    static UNet2DConfig fashionMnist() {
        return UNet2DConfig.builder().sampleSize(28).inChannels(1).outChannels(1).blockOutChannels(32, 64, 64)
                .layersPerBlock(1).normNumGroups(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK, UNet2DConfig.UP_BLOCK))
                .build();
    }

    static double dot(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += (double) a[i] * b[i];
        return s;
    }

    /** tiny() with dropout p in every ResnetBlock2D (training forwards only). */
    static UNet2DConfig tinyWithDropout(double p) {
        return tinyBuilder().dropout(p).build();
    }

    /** A forward pass: inference ({@code dropout == null}) or training with dropout seed, offset. */
    static Tensor forward(UNet2DModel m, Tensor x, float[] t, long[] dropout) {
        return forward(m, x, t, null, dropout);
    }

    /** A forward pass with class labels (null for an unconditional model). */
    static Tensor forward(UNet2DModel m, Tensor x, float[] t, int[] labels, long[] dropout) {
        return dropout == null ? m.forward(x, t, labels) : m.forwardTraining(x, t, labels, dropout[0], dropout[1]);
    }

    /** sum(out * R) of one forward, accumulated in float64. */
    static double loss(UNet2DModel m, Tensor x, float[] t, float[] r, long[] dropout) {
        return loss(m, x, t, null, r, dropout);
    }

    static double loss(UNet2DModel m, Tensor x, float[] t, int[] labels, float[] r, long[] dropout) {
        return dot(forward(m, x, t, labels, dropout).toFloatArray(), r);
    }

    /**
     * Gradient check of sum(out * R): backward's gradient of one random element of every parameter
     * tensor (norms, biases, the time MLP, attention, shortcuts, down/upsamplers), 20 more random
     * parameter elements and 12 input elements against central differences of the float32 forward with step
     * h = 1e-2 * max(1, |p|). Float32 rounding of the loss (~256 outputs of size ~1, relative 6e-8)
     * contributes ~1e-5 / (2h) ~ 1e-3 to a difference quotient and the O(h^2) truncation is of the same
     * order, so the check is |fd - analytic| <= 5e-2 * max(|fd|, |analytic|) + 2e-3 * gscale, gscale
     * the RMS of the sampled analytic gradients. A missing or wrong backward term is off by O(1).
     */
    /** backwardParameters (what training calls) gives the parameter gradients of backward, bit for bit. */
    @Test
    void parameterOnlyBackwardGivesTheSameGradients() {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = tiny();
        try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong());
             Tensor x = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * cfg.inChannels(), 1), 2, 8, 8, cfg.inChannels());
             Tensor dOut = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * cfg.outChannels(), 1), 2, 8, 8, cfg.outChannels())) {
            float[] t = {r.nextInt(1000), r.nextInt(1000)};
            m.zeroGradients();
            m.forward(x, t);
            m.backward(dOut);
            float[] full = m.flatGradients();
            m.zeroGradients();
            m.forward(x, t);
            m.backwardParameters(dOut);
            Tolerance.assertBitIdentical("parameter gradients", full, m.flatGradients(), r.describe());
            assertTrue(differ(full, new float[full.length]),
                    "the gradients are all zero; " + r.describe());
        }
    }

    @Test
    void gradientCheckOfTheWholeNetwork() {
        gradientCheck(tiny(), null, TestRandom.fresh());
    }

    /**
     * A class-conditional model (num_class_embeds 5, diffusers' class-embedding table added to the time
     * embedding): the same gradient check, which samples an element of the class-embedding table among the
     * parameters; both samples use one label (their gradients add into one row) and another row gets none.
     */
    @Test
    void gradientCheckOfAClassConditionalNetwork() {
        gradientCheck(tinyBuilder().numClassEmbeds(5).build(), null, TestRandom.fresh());
    }

    /** Labels select rows: different labels give different outputs, and the model checks them. */
    @Test
    void classLabelsSelectTheirEmbeddingRowAndAreChecked() {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = tinyBuilder().numClassEmbeds(3).build();
        try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong()); UNet2DModel plain = new UNet2DModel(cpu, tiny(), 1L);
             Tensor x = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 2, 1), 2, 8, 8, 2)) {
            assertArrayEquals(new int[] {3, 16}, m.layout().param("class_embedding.weight").shape());
            float[] t = {5, 700};
            float[] a = m.forward(x, t, new int[] {0, 2}).toFloatArray();
            float[] b = m.forward(x, t, new int[] {1, 2}).toFloatArray();
            int half = a.length / 2;
            assertTrue(differ(java.util.Arrays.copyOf(a, half), java.util.Arrays.copyOf(b, half)), "label 0 vs 1");
            assertArrayEquals(java.util.Arrays.copyOfRange(a, half, a.length), java.util.Arrays.copyOfRange(b, half, b.length),
                    "sample 1 kept its label: same bits");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.forward(x, t));
            assertTrue(e.getMessage().contains("class-conditional"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> m.forward(x, t, new int[] {0, 3}));
            assertTrue(e.getMessage().contains("class label 3 (sample 1) is outside [0, 3)"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> m.forward(x, t, new int[] {0}));
            assertTrue(e.getMessage().contains("1 entries"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> plain.forward(x, t, new int[] {0, 0}));
            assertTrue(e.getMessage().contains("unconditional"), e.getMessage());
        }
    }

    /**
     * The same gradient check of a training forward with dropout p = 0.3 in all 8 resnets: the masks are
     * a fixed function of (seed, offset), so the network is a fixed smooth function of its inputs and
     * the same tolerance applies. Dropout must actually act (the output differs from inference) and
     * repeat exactly for the same (seed, offset).
     */
    @Test
    void gradientCheckOfTheWholeNetworkWithDropout() {
        TestRandom r = TestRandom.fresh();
        long[] dropout = {r.nextLong(), r.nextLong() >>> 1};
        UNet2DConfig cfg = tinyWithDropout(0.3);
        try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong());
             Tensor x = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 2, 1), 2, 8, 8, 2)) {
            assertEquals(8, m.dropoutStreams(), "one Philox stream per resnet");
            assertEquals(m.layout().resnets().size(), m.dropoutStreams());
            float[] t = {r.nextInt(1000), r.nextInt(1000)};
            float[] inference = m.forward(x, t).toFloatArray();
            float[] training = m.forwardTraining(x, t, dropout[0], dropout[1]).toFloatArray();
            float[] again = m.forwardTraining(x, t, dropout[0], dropout[1]).toFloatArray();
            float[] nextStep = m.forwardTraining(x, t, dropout[0], dropout[1] + m.dropoutStreams()).toFloatArray();
            assertArrayEquals(training, again, "same (seed, offset), same masks; " + r.describe());
            assertTrue(differ(inference, training), "dropout did not change the training output; " + r.describe());
            assertTrue(differ(training, nextStep), "the next step's offsets gave the same output; " + r.describe());
        }
        gradientCheck(cfg, dropout, r);
    }

    /**
     * Offset allotment: a training forward makes one dropout call per resnet with offsets
     * base, base + 1, ..., base + R - 1 in forward order (R = dropoutStreams() = the layout's resnet
     * count, all distinct), the backward the same R offsets in reverse order; an inference forward
     * and a p = 0 model make none. A base near 2^64 wraps as unsigned arithmetic.
     */
    @Test
    void eachResnetGetsItsOwnOffsetAndBackwardReusesIt() {
        TestRandom r = TestRandom.fresh();
        try (UNet2DModel m = new UNet2DModel(cpu, tinyWithDropout(0.2), r.nextLong());
             UNet2DModel plain = new UNet2DModel(cpu, tiny(), r.nextLong());
             Tensor x = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 2, 1), 2, 8, 8, 2);
             Tensor d = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 3, 1), 2, 8, 8, 3)) {
            int streams = m.dropoutStreams();
            assertEquals(m.layout().resnets().size(), streams);
            float[] t = {1, 2};
            for (long base : new long[] {0, r.nextLong() >>> 1, -3}) {
                List<Long> calls = new ArrayList<>();
                m.dropoutProbe = calls::add;
                m.forwardTraining(x, t, r.nextLong(), base);
                m.backward(d);
                List<Long> expected = new ArrayList<>();
                for (int k = 0; k < streams; k++) expected.add(base + k);
                for (int k = streams - 1; k >= 0; k--) expected.add(base + k);
                assertEquals(expected, calls, "dropout offsets, forward then backward, base " + base);
                calls.clear();
                m.forward(x, t);
                m.backward(d);
                assertEquals(List.of(), calls, "inference must not drop");
            }
            List<Long> calls = new ArrayList<>();
            plain.dropoutProbe = calls::add;
            plain.forwardTraining(x, t, 1, 2);
            plain.backward(d);
            assertEquals(List.of(), calls, "p = 0 must not call dropout");
        }
    }

    static boolean differ(float[] a, float[] b) {
        for (int i = 0; i < a.length; i++) if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) return true;
        return false;
    }

    /**
     * d loss / d v at orig by central differences with steps h = 1e-2 max(1, |orig|) and h/2, combined by
     * Richardson extrapolation (4 D(h/2) - D(h)) / 3, which cancels the h^2 truncation term: a single
     * h = 1e-2 difference was 12% off on a strongly curved GroupNorm direction at one seed
     * (0x53c28295dca1917d), while float32 rounding rules out much smaller steps.
     */
    private static double richardson(float orig, java.util.function.DoubleUnaryOperator lossAt) {
        float h = (float) (1e-2 * Math.max(1, Math.abs(orig)));
        double d1 = central(orig, h, lossAt), d2 = central(orig, h / 2, lossAt);
        return (4 * d2 - d1) / 3;
    }

    private static double central(float orig, float h, java.util.function.DoubleUnaryOperator lossAt) {
        float plus = orig + h, minus = orig - h;
        double lp = lossAt.applyAsDouble(plus), lm = lossAt.applyAsDouble(minus);
        return (lp - lm) / ((double) plus - (double) minus);  // the steps actually taken
    }

    private static void gradientCheck(UNet2DConfig cfg, long[] dropout, TestRandom r) {
        int n = 2, hw = 8;
        try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong())) {
            // perturb the GroupNorm affine parameters away from 1 / 0 so their gradients are generic
            float[] flat = m.flatParameters();
            for (UNet2DLayout.Param p : m.layout().params()) {
                if (p.kind() == UNet2DLayout.Kind.NORM_WEIGHT || p.kind() == UNet2DLayout.Kind.NORM_BIAS) {
                    float[] noise = r.gaussians((int) p.size(), 0.2);
                    for (int i = 0; i < p.size(); i++) flat[(int) p.offset() + i] += noise[i];
                }
            }
            m.loadFlat(flat);
            float[] xs = r.gaussians(n * hw * hw * cfg.inChannels(), 1);
            float[] t = {r.nextInt(1000), r.nextInt(1000)};
            int[] labels = null;
            if (cfg.isClassConditional()) {
                int l = r.nextInt(cfg.numClassEmbeds());
                labels = new int[] {l, l};
            }
            int[] lab = labels;
            float[] rr = r.gaussians(n * hw * hw * cfg.outChannels(), 1);
            try (Tensor x = Tensor.of(cpu, xs, n, hw, hw, cfg.inChannels());
                 Tensor dOut = Tensor.of(cpu, rr, n, hw, hw, cfg.outChannels())) {
                m.zeroGradients();
                forward(m, x, t, lab, dropout);
                float[] dx = m.backward(dOut).toFloatArray();
                float[] grad = m.flatGradients();

                List<String> names = new ArrayList<>();
                List<Double> analytic = new ArrayList<>(), numeric = new ArrayList<>();
                List<UNet2DLayout.Param> all = m.layout().params();
                // one random element of every parameter tensor (a broken gradient of any single layer is
                // caught), plus 20 more elements of randomly chosen tensors; the class table's element in the
                // labelled row (the others' gradient is exactly 0, checked below)
                for (int s = 0; s < all.size() + 20; s++) {
                    UNet2DLayout.Param p = all.get(s < all.size() ? s : r.nextInt(all.size()));
                    int pick = (int) p.offset() + r.nextInt((int) p.size());
                    if (p.kind() == UNet2DLayout.Kind.EMBEDDING) {
                        int dim = p.shape()[1];
                        pick = (int) p.offset() + lab[0] * dim + r.nextInt(dim);
                        int other = (lab[0] + 1) % p.shape()[0];
                        assertEquals(0f, grad[(int) p.offset() + other * dim + r.nextInt(dim)], "an unused class row");
                    }
                    int idx = pick;
                    float orig = flat[idx];
                    double d = richardson(orig, v -> {
                        flat[idx] = (float) v;
                        m.loadFlat(flat);
                        return loss(m, x, t, lab, rr, dropout);
                    });
                    flat[idx] = orig;
                    names.add(p.name() + "[" + (idx - p.offset()) + "]");
                    analytic.add((double) grad[idx]);
                    numeric.add(d);
                }
                m.loadFlat(flat);
                for (int s = 0; s < 12; s++) {
                    int idx = r.nextInt(xs.length);
                    float orig = xs[idx];
                    double d = richardson(orig, v -> {
                        xs[idx] = (float) v;
                        x.copyFrom(xs);
                        return loss(m, x, t, lab, rr, dropout);
                    });
                    xs[idx] = orig;
                    x.copyFrom(xs);
                    names.add("input[" + idx + "]");
                    analytic.add((double) dx[idx]);
                    numeric.add(d);
                }
                double ms = 0;
                for (double a : analytic) ms += a * a;
                double gscale = Math.sqrt(ms / analytic.size());
                double worst = 0;
                String worstName = "";
                StringBuilder fails = new StringBuilder();
                for (int i = 0; i < names.size(); i++) {
                    double a = analytic.get(i), f = numeric.get(i);
                    double tol = 5e-2 * Math.max(Math.abs(a), Math.abs(f)) + 2e-3 * gscale;
                    double ratio = Math.abs(a - f) / tol;
                    if (ratio > worst) {
                        worst = ratio;
                        worstName = names.get(i);
                    }
                    if (!(Math.abs(a - f) <= tol)) {
                        fails.append(String.format(Locale.ROOT, "%n  %s: analytic %.6g, finite difference %.6g",
                                names.get(i), a, f));
                    }
                }
                System.out.printf(Locale.ROOT, "UNet gradient check%s: %d elements, gradient RMS %.4g, worst |err|/tol %.3f (%s)%n",
                        dropout == null ? "" : " with dropout " + cfg.dropout(), names.size(), gscale, worst, worstName);
                assertTrue(fails.isEmpty(), "gradient check failed (" + r.describe() + "):" + fails);
            }
        }
    }

    /**
     * dropout = 0 is exactly the model before dropout existed: a training forward and its backward are
     * bit for bit the inference forward's (no dropout call is made), and a model whose config has p > 0
     * gives, in inference, bit for bit the p = 0 model's output and gradients.
     */
    @Test
    void dropoutZeroAndInferenceAreExactlyTheModelWithoutDropout() {
        TestRandom r = TestRandom.fresh();
        long init = r.nextLong();
        float[] xs = r.gaussians(2 * 8 * 8 * 2, 1), ds = r.gaussians(2 * 8 * 8 * 3, 1);
        float[] t = {r.nextInt(1000), r.nextInt(1000)};
        try (UNet2DModel plain = new UNet2DModel(cpu, tiny(), init);
             UNet2DModel withP = new UNet2DModel(cpu, tinyWithDropout(0.25), init);
             Tensor x = Tensor.of(cpu, xs, 2, 8, 8, 2); Tensor d = Tensor.of(cpu, ds, 2, 8, 8, 3)) {
            plain.zeroGradients();
            float[] out = plain.forward(x, t).toFloatArray();
            float[] dx = plain.backward(d).toFloatArray();
            float[] g = plain.gradients().toFloatArray();

            plain.zeroGradients();
            float[] outT = plain.forwardTraining(x, t, r.nextLong(), r.nextLong() >>> 1).toFloatArray();
            float[] dxT = plain.backward(d).toFloatArray();
            Tolerance.assertBitIdentical("p = 0 training forward", out, outT, r.describe());
            Tolerance.assertBitIdentical("p = 0 training input gradient", dx, dxT, r.describe());
            Tolerance.assertBitIdentical("p = 0 training parameter gradients", g, plain.gradients().toFloatArray(),
                    r.describe());

            withP.zeroGradients();
            Tolerance.assertBitIdentical("p > 0 inference forward", out, withP.forward(x, t).toFloatArray(), r.describe());
            Tolerance.assertBitIdentical("p > 0 inference input gradient", dx, withP.backward(d).toFloatArray(), r.describe());
            Tolerance.assertBitIdentical("p > 0 inference parameter gradients", g, withP.gradients().toFloatArray(),
                    r.describe());
        }
    }

    @Test
    void backwardAccumulatesAndIsDeterministic() {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig cfg = tiny();
        try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong());
             Tensor x = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 2, 1), 2, 8, 8, 2);
             Tensor d = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 3, 1), 2, 8, 8, 3)) {
            float[] t = {3, 999};
            m.zeroGradients();
            m.forward(x, t);
            float[] dx1 = m.backward(d).toFloatArray();
            float[] g1 = m.gradients().toFloatArray();
            m.forward(x, t);
            float[] dx2 = m.backward(d).toFloatArray();
            float[] g2 = m.gradients().toFloatArray();
            assertArrayEquals(dx1, dx2, "input gradient must be written, not accumulated; " + r.describe());
            for (int i = 0; i < g1.length; i++) {
                assertEquals(2 * g1[i], g2[i], 0f, "gradient " + i + " must accumulate exactly (2g); " + r.describe());
            }
        }
    }

    @Test
    void fashionMnistForwardIsFiniteAndTimed() {
        UNet2DConfig cfg = fashionMnist();
        TestRandom r = TestRandom.fresh();
        int n = 8;
        try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong());
             Tensor x = Tensor.of(cpu, r.gaussians(n * 28 * 28, 1), n, 28, 28, 1);
             Tensor d = Tensor.of(cpu, r.gaussians(n * 28 * 28, 1e-3), n, 28, 28, 1)) {
            float[] t = new float[n];
            for (int i = 0; i < n; i++) t[i] = r.nextInt(1000);
            Tensor out = m.forward(x, t);
            assertArrayEquals(new long[] {n, 28, 28, 1}, out.shape());
            float[] o = out.toFloatArray();
            double ss = 0;
            for (float v : o) {
                assertTrue(Float.isFinite(v), "non-finite output; " + r.describe());
                ss += v * v;
            }
            assertTrue(ss > 0, "output is identically zero; " + r.describe());
            m.zeroGradients();
            m.backward(d);
            // timing: best of 3 forward + backward at batch 8 (after the warm-up call above)
            double best = Double.MAX_VALUE, bestF = 0;
            for (int rep = 0; rep < 3; rep++) {
                long t0 = System.nanoTime();
                m.forward(x, t);
                long t1 = System.nanoTime();
                m.backward(d);
                long t2 = System.nanoTime();
                if ((t2 - t0) / 1e6 < best) {
                    best = (t2 - t0) / 1e6;
                    bestF = (t1 - t0) / 1e6;
                }
            }
            for (float v : m.gradients().toFloatArray()) assertTrue(Float.isFinite(v), "non-finite gradient");
            System.out.printf(Locale.ROOT,
                    "UNet Fashion-MNIST config (%d params), batch %d, cpu: forward %.1f ms, forward+backward %.1f ms,"
                            + " activations %.1f MiB%n",
                    m.layout().parameterCount(), n, bestF, best, m.activationBytes() / 1048576.0);
        }
    }

    @Test
    void flatParametersRoundTripAndConvWeightsAreHwioOnTheDevice() {
        TestRandom r = TestRandom.fresh();
        try (UNet2DModel m = new UNet2DModel(cpu, tiny(), r.nextLong())) {
            UNet2DLayout layout = m.layout();
            float[] flat = new float[(int) layout.bufferFloats()];
            for (UNet2DLayout.Param p : layout.params()) {
                float[] v = r.gaussians((int) p.size(), 1);
                System.arraycopy(v, 0, flat, (int) p.offset(), v.length);
            }
            m.loadFlat(flat);
            assertArrayEquals(flat, m.flatParameters(), "round trip; " + r.describe());
            UNet2DLayout.Param w = layout.param("up_blocks.0.resnets.0.conv1.weight");
            int[] s = w.shape();
            float[] oihw = java.util.Arrays.copyOfRange(flat, (int) w.offset(), (int) (w.offset() + w.size()));
            assertArrayEquals(ConvKernels.oihwToHwio(oihw, s[0], s[1], s[2], s[3]),
                    m.parameter(w.name()).toFloatArray(), "device conv weight must be HWIO");
            assertArrayEquals(new long[] {3, 3, s[1], s[0]}, m.parameter(w.name()).shape());
            // initialisation is deterministic in the seed and follows PyTorch's bounds
            try (UNet2DModel a = new UNet2DModel(cpu, tiny(), 42); UNet2DModel b = new UNet2DModel(cpu, tiny(), 42)) {
                float[] fa = a.flatParameters();
                assertArrayEquals(fa, b.flatParameters());
                for (UNet2DLayout.Param p : layout.params()) {
                    for (int i = 0; i < p.size(); i++) {
                        float v = fa[(int) p.offset() + i];
                        switch (p.kind()) {
                            case NORM_WEIGHT -> assertEquals(1f, v, p.name());
                            case NORM_BIAS -> assertEquals(0f, v, p.name());
                            default -> {
                                String wn = p.kind() == UNet2DLayout.Kind.BIAS
                                        ? p.name().substring(0, p.name().length() - 4) + "weight" : p.name();
                                int[] ws = layout.param(wn).shape();
                                int fan = 1;
                                for (int k = 1; k < ws.length; k++) fan *= ws[k];
                                assertTrue(Math.abs(v) <= 1 / Math.sqrt(fan), p.name() + " outside the init bound");
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void rejectsBadInputs() {
        try (UNet2DModel m = new UNet2DModel(cpu, tiny(), 1);
             Tensor wrongC = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 1, 8, 8, 3);
             Tensor oddH = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 1, 7, 8, 2);
             Tensor x = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 1, 8, 8, 2);
             Tensor badD = Tensor.allocate(cpu, io.diffusion4j.tensor.DType.FLOAT32, 1, 8, 8, 2)) {
            x.fill(0.5f);
            assertThrows(IllegalStateException.class, () -> m.backward(badD), "backward before forward");
            assertThrows(IllegalArgumentException.class, () -> m.forward(wrongC, new float[] {1}));
            assertThrows(IllegalArgumentException.class, () -> m.forward(oddH, new float[] {1}));
            assertThrows(IllegalArgumentException.class, () -> m.forward(x, new float[] {1, 2}));
            assertThrows(IllegalArgumentException.class, () -> m.forward(x, new float[] {Float.NaN}));
            assertThrows(IllegalArgumentException.class, () -> m.loadFlat(new float[3]));
            m.forward(x, new float[] {1});
            assertThrows(IllegalArgumentException.class, () -> m.backward(badD), "dOut with in_channels");
        }
    }

    @Test
    void nativeMemoryReturnsToStartAfterClose() {
        long bytes = cpu.liveBytes(), buffers = cpu.liveBuffers();
        TestRandom r = TestRandom.fresh();
        UNet2DModel m = new UNet2DModel(cpu, tiny(), r.nextLong());
        try (Tensor x = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 2, 1), 2, 8, 8, 2);
             Tensor d = Tensor.of(cpu, r.gaussians(2 * 8 * 8 * 3, 1), 2, 8, 8, 3);
             Tensor x1 = Tensor.of(cpu, r.gaussians(16 * 16 * 2, 1), 1, 16, 16, 2)) {
            m.forward(x, new float[] {1, 2});
            m.backward(d);
            long afterFirst = cpu.liveBytes();
            m.forward(x, new float[] {5, 6}); // same size: no new allocation
            assertEquals(afterFirst, cpu.liveBytes(), "activations must be reused for the same size");
            m.forward(x1, new float[] {7}); // another size: reallocated
            assertTrue(m.activationBytes() > 0);
        } finally {
            m.close();
            m.close(); // idempotent
        }
        assertEquals(bytes, cpu.liveBytes(), "live bytes after close");
        assertEquals(buffers, cpu.liveBuffers(), "live buffers after close");
        assertThrows(IllegalStateException.class, m::parameters);
    }
}
