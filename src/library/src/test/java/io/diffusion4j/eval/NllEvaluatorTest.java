package io.diffusion4j.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.eval.NllEvaluator.ImageResult;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.VlbReference;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The whole bound of a tiny random UNet (2 channels, 8x8) on a tiny schedule (T = 10) against a float64
 * reference that builds every x_t itself (the documented Philox stream, float32 as add_noise), runs the model
 * one image at a time and evaluates improved-diffusion's formulas ({@link VlbReference}) in float64: every
 * term of every image, the prior, decoder, KL sum and total. The model outputs are the same float32 values on
 * both sides (the forward is deterministic and per-image), so the bound agrees to float64 formulation error:
 * |evaluator - reference| &lt;= 1e-9 (|reference| + 1e-6) per term in bits/dim (measured ~1e-13 relative).
 * Also: batch-size independence (bit-identical), the strided estimate, 8-bit snapping, argument checks.
 */
class NllEvaluatorTest {
    static Backend cpu;
    static UNet2DModel model;
    static NoiseSchedule schedule;
    static final int H = 8, W = 8, C = 2, PER = H * W * C, T = 10;

    static UNet2DConfig tinyConfig() {
        return UNet2DConfig.builder().sampleSize(8).inChannels(C).outChannels(C).blockOutChannels(4, 8)
                .layersPerBlock(1).normNumGroups(2).attentionHeadDim(4)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).build();
    }

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        model = new UNet2DModel(cpu, tinyConfig(), TestRandom.fresh().nextLong());
        schedule = NoiseSchedule.of(BetaSchedule.LINEAR, T, 1e-3, 0.2);
    }

    @AfterAll
    static void close() {
        model.close();
        cpu.close();
    }

    /** Images in [-1, 1], not on the 8-bit grid (the evaluator snaps them), some at the edges. */
    static float[] images(TestRandom r, int n) {
        float[] v = r.uniforms(n * PER, -1.2, 1.2);
        for (int i = 0; i < v.length; i++) v[i] = Math.max(-1f, Math.min(1f, v[i]));
        return v;
    }

    static List<ImageResult> evaluate(NllEvaluator.Options o, float[] imgs, int n, int batch, long seed) {
        List<ImageResult> all = new ArrayList<>();
        try (NllEvaluator ev = new NllEvaluator(model, schedule, o, batch, H, W)) {
            for (int first = 0; first < n; first += batch) {
                int count = Math.min(batch, n - first);
                float[] part = java.util.Arrays.copyOfRange(imgs, first * PER, (first + count) * PER);
                all.addAll(ev.evaluate(part, count, seed, first, null));
            }
        }
        return all;
    }

    /** The float64 reference of image g's whole bound: terms[t] (bits/dim) and the prior. */
    static double[] referenceTerms(NllEvaluator.Options o, float[] x0, long seed, long g) {
        double toBits = 1.0 / (PER * Math.log(2));
        double[] terms = new double[T + 1]; // [0, T): terms, [T]: prior
        try (Tensor eps = Tensor.allocate(cpu, DType.FLOAT32, PER); Tensor xt = Tensor.allocate(cpu, DType.FLOAT32, 1, H, W, C)) {
            for (int t = 0; t < T; t++) {
                DiffusionKernels.randomNormal(cpu, seed, (g << 32) | t, eps);
                float[] e = eps.toFloatArray();
                double ab = schedule.alphasCumprod()[t];
                float a = (float) Math.sqrt(ab), s = (float) Math.sqrt(1 - ab);
                float[] x = new float[PER];
                for (int i = 0; i < PER; i++) x[i] = a * x0[i] + s * e[i]; // float32, as d4j_noise_elem
                xt.copyFrom(x);
                float[] out;
                try (UNet2DModel m = model.sharingParameters()) {
                    out = m.forward(xt, new float[] {t}).toFloatArray();
                }
                terms[t] = VlbReference.term(schedule, o.prediction(), o.variance(), o.clipDenoised(), o.clipRange(), x0,
                        x, out, 0, PER, t) * toBits;
            }
        }
        terms[T] = VlbReference.prior(schedule, x0, 0, PER) * toBits;
        return terms;
    }

    static void close(String what, double got, double ref, String ctx) {
        double tol = 1e-9 * (Math.abs(ref) + 1e-6);
        assertTrue(Math.abs(got - ref) <= tol, String.format(Locale.ROOT, "%s: evaluator %.17g reference %.17g "
                + "(|diff| %.3g > %.3g); %s", what, got, ref, Math.abs(got - ref), tol, ctx));
    }

    @Test
    void theWholeBoundMatchesTheFloat64Reference() {
        for (PredictionType p : PredictionType.values()) {
            TestRandom r = TestRandom.fresh();
            VarianceType v = r.nextInt(2) == 0 ? VarianceType.FIXED_SMALL : VarianceType.FIXED_LARGE;
            boolean clip = r.nextInt(2) == 0;
            NllEvaluator.Options o = new NllEvaluator.Options(p, v, clip, 1f, 1);
            int n = 3;
            long seed = r.nextLong() >>> 1;
            float[] imgs = images(r, n);
            List<ImageResult> res = evaluate(o, imgs, n, 2, seed);
            for (int g = 0; g < n; g++) {
                float[] x0 = new float[PER];
                for (int i = 0; i < PER; i++) x0[i] = NllEvaluator.quantize8(imgs[g * PER + i]);
                double[] ref = referenceTerms(o, x0, seed, g);
                String ctx = String.format(Locale.ROOT, "image %d %s %s clip=%s seed %d %s", g, p, v, clip, seed, r.describe());
                ImageResult got = res.get(g);
                double kl = 0;
                for (int t = 0; t < T; t++) {
                    close("term t=" + t, got.terms()[t], ref[t], ctx);
                    if (t > 0) kl += ref[t];
                }
                close("prior", got.priorBpd(), ref[T], ctx);
                close("decoder", got.decoderBpd(), ref[0], ctx);
                close("kl", got.klBpd(), kl, ctx);
                close("vb", got.vbBpd(), ref[0] + kl, ctx);
                close("total", got.totalBpd(), ref[T] + ref[0] + kl, ctx);
            }
        }
    }

    @Test
    void resultsDoNotDependOnTheBatchAndTheStrideSubsamplesTheSameTerms() {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong() >>> 1;
        int n = 5;
        float[] imgs = images(r, n);
        NllEvaluator.Options exact = NllEvaluator.Options.exact(PredictionType.EPSILON, VarianceType.FIXED_SMALL);
        List<ImageResult> a = evaluate(exact, imgs, n, 2, seed), b = evaluate(exact, imgs, n, 5, seed);
        for (int g = 0; g < n; g++) {
            assertArrayEquals(a.get(g).terms(), b.get(g).terms(), "image " + g + " batch 2 vs 5; " + r.describe());
            assertEquals(a.get(g).totalBpd(), b.get(g).totalBpd(), 0.0);
        }
        // stride 4 on T = 10: KL terms at t = 9, 5, 1 (3 of 9, scaled by 3), the decoder at 0
        assertArrayEquals(new int[] {9, 5, 1, 0}, NllEvaluator.evaluatedTimesteps(T, 4));
        assertArrayEquals(new int[] {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, NllEvaluator.evaluatedTimesteps(T, 1));
        assertArrayEquals(new int[] {9, 0}, NllEvaluator.evaluatedTimesteps(T, 100));
        List<ImageResult> s = evaluate(new NllEvaluator.Options(PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1f, 4),
                imgs, n, 3, seed);
        for (int g = 0; g < n; g++) {
            double[] full = a.get(g).terms(), part = s.get(g).terms();
            for (int t = 0; t < T; t++) {
                if (t == 9 || t == 5 || t == 1 || t == 0) assertEquals(full[t], part[t], 0.0, "t = " + t);
                else assertTrue(Double.isNaN(part[t]), "t = " + t + " is not evaluated");
            }
            double kl = 3 * (full[9] + full[5] + full[1]);
            assertEquals(kl, s.get(g).klBpd(), 1e-15 * kl);
            assertEquals(a.get(g).priorBpd() + full[0] + kl, s.get(g).totalBpd(), 1e-14 * s.get(g).totalBpd());
        }
    }

    @Test
    void summaryQuantizationAndArguments() {
        assertEquals(-1f, NllEvaluator.quantize8(-1.3f));
        assertEquals(1f, NllEvaluator.quantize8(1f));
        assertEquals(128 / 127.5f - 1f, NllEvaluator.quantize8(0.001f));
        assertEquals(127 / 127.5f - 1f, NllEvaluator.quantize8(-0.002f));
        for (int k = 0; k < 256; k++) assertEquals(k / 127.5f - 1f, NllEvaluator.quantize8(k / 127.5f - 1f), "level " + k);
        NllEvaluator.Estimate e = NllEvaluator.Estimate.of(new double[] {1, 2, 3, 6});
        assertEquals(3.0, e.mean(), 1e-15);
        assertEquals(Math.sqrt(14.0 / 3 / 4), e.standardError(), 1e-15); // sample sd / sqrt(n)
        assertEquals(0.0, NllEvaluator.Estimate.of(new double[] {2.5}).standardError());
        assertThrows(IllegalArgumentException.class, () -> new NllEvaluator.Options(PredictionType.EPSILON,
                VarianceType.FIXED_SMALL, true, 1f, 0));
        assertThrows(IllegalArgumentException.class, () -> new NllEvaluator.Options(PredictionType.EPSILON,
                VarianceType.FIXED_SMALL, true, Float.NaN, 1));
        try (NllEvaluator ev = new NllEvaluator(model, schedule, NllEvaluator.Options.exact(PredictionType.EPSILON,
                VarianceType.FIXED_SMALL), 2, H, W)) {
            assertThrows(IllegalArgumentException.class, () -> ev.evaluate(new float[PER], 2, 0, 0, null));
            assertThrows(IllegalArgumentException.class, () -> ev.evaluate(new float[3 * PER], 3, 0, 0, null));
            assertEquals(T, ev.callsPerBatch());
        }
        assertThrows(IllegalArgumentException.class, () -> new NllEvaluator(model,
                NoiseSchedule.fromBetas(new double[] {0.1}), NllEvaluator.Options.exact(PredictionType.EPSILON,
                        VarianceType.FIXED_SMALL), 2, H, W));
    }
}
