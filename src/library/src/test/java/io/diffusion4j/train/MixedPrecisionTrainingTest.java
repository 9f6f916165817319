package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.Precision;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.Assumptions;

/**
 * A short training on real Fashion-MNIST on the device backend at BF16 follows the same training at FP32: same
 * seed, so the same initial weights, batches and noise; only the rounding of the products' inputs (BF16 on the
 * tensor cores, with FP32 master weights and AdamW state) separates the two runs. The stated band: the mean loss
 * of every block of {@value #BLOCK} steps at BF16 is within {@value #BAND} (relative) of FP32's, and both curves
 * fall. The images are Fashion-MNIST's 28x28 averaged over 4x4 pixels and padded to 8x8, so that the simulator
 * runs both in about two minutes; the architecture is TrainerTest's two-level UNet with attention.
 */
class MixedPrecisionTrainingTest {
    static final int STEPS = 20, BLOCK = 5;
    static final double BAND = 0.01; // measured: 0.0004 over 40 steps

    /** Fashion-MNIST's training images, 4x4-averaged to 7x7 and padded with the background value to 8x8. */
    record Pooled(FashionMnist source) implements Dataset {
        public int size() {
            return source.size();
        }

        public int height() {
            return 8;
        }

        public int width() {
            return 8;
        }

        public int channels() {
            return 1;
        }

        public void image(int index, float[] dst, int offset) {
            float[] full = new float[source.imageFloats()];
            source.image(index, full, 0);
            Arrays.fill(dst, offset, offset + 64, -1.0f);
            for (int r = 0; r < 7; r++)
                for (int c = 0; c < 7; c++) {
                    float s = 0;
                    for (int dr = 0; dr < 4; dr++)
                        for (int dc = 0; dc < 4; dc++) s += full[(4 * r + dr) * 28 + 4 * c + dc];
                    dst[offset + r * 8 + c] = s / 16;
                }
        }

        public String describe() {
            return source.describe() + ", 4x4-averaged to 8x8";
        }
    }

    static double[] train(Backend be, Precision precision, Dataset data, long seed) {
        UNet2DConfig cfg = UNet2DConfig.builder().sampleSize(8).inChannels(1).outChannels(1).blockOutChannels(8, 16)
                .layersPerBlock(1).normNumGroups(4).attentionHeadDim(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).build();
        double[] losses = new double[STEPS];
        try (Backend.Selection s = be.use(precision);
             UNet2DModel model = new UNet2DModel(be, cfg, seed);
             Trainer t = new Trainer(model, TrainerTest.schedule(), data, TrainerTest.options(seed, PredictionType.EPSILON))) {
            for (int i = 0; i < STEPS; i++) losses[i] = t.step().loss();
        }
        return losses;
    }

    static double mean(double[] v, int from) {
        return Arrays.stream(v, from, from + BLOCK).average().orElseThrow();
    }

    @OnDevices(Device.CUDA_SIM)
    void bf16LossCurveFollowsFp32(Backend be, Device kind) throws IOException {
        Assumptions.assumeTrue(java.nio.file.Files.isDirectory(FashionMnist.DEFAULT_DIRECTORY),
                "Fashion-MNIST is not installed (" + FashionMnist.DEFAULT_DIRECTORY + ")");
        Dataset data = new Pooled(FashionMnist.load(FashionMnist.DEFAULT_DIRECTORY, true));
        long seed = TestRandom.fresh().nextLong();
        double[] fp32 = train(be, Precision.FP32, data, seed), bf16 = train(be, Precision.BF16, data, seed);
        StringBuilder curve = new StringBuilder();
        double worst = 0;
        for (int b = 0; b < STEPS; b += BLOCK) {
            double f = mean(fp32, b), h = mean(bf16, b);
            worst = Math.max(worst, Math.abs(h - f) / f);
            curve.append(String.format(Locale.ROOT, "steps %d-%d: fp32 %.4f bf16 %.4f; ", b + 1, b + BLOCK, f, h));
        }
        String ctx = String.format(Locale.ROOT, "%s seed 0x%x: %sworst relative difference %.4f (band %.2f)", kind.cliName(),
                seed, curve, worst, BAND);
        System.out.println("MixedPrecisionTrainingTest " + ctx);
        for (double l : bf16) assertTrue(Double.isFinite(l), ctx);
        assertTrue(worst <= BAND, ctx);
        assertTrue(mean(fp32, STEPS - BLOCK) < 0.8 * mean(fp32, 0) && mean(bf16, STEPS - BLOCK) < 0.8 * mean(bf16, 0),
                "both curves fall: " + ctx);
    }
}
