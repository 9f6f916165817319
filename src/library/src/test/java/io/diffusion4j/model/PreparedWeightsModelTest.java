package io.diffusion4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * An inference model ({@link UNet2DModel#forInference}) on the CPU reads prepared convolution weights (Winograd
 * and upsampling forms, made on its first forward and kept): its outputs keep the bits of a trainable model with
 * the same weights, including after {@link UNet2DModel#loadFlat} of other weights, after a direct write of its
 * parameter buffer followed by {@link UNet2DModel#parametersChanged()}, and through an instance sharing its
 * parameters; each Winograd and upsampling convolution of the network has a prepared form, and the memory
 * estimate bounds them.
 */
class PreparedWeightsModelTest {
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    /** 16x16 and 8x8 levels of 128 and 136 channels: Winograd F(2x2) convolutions and an upsampling one. */
    static UNet2DConfig config() {
        return UNet2DConfig.builder()
                .sampleSize(16)
                .inChannels(3)
                .outChannels(3)
                .blockOutChannels(128, 136)
                .layersPerBlock(1)
                .downBlockTypes(List.of("DownBlock2D", "DownBlock2D"))
                .upBlockTypes(List.of("UpBlock2D", "UpBlock2D"))
                .normNumGroups(8)
                .attentionHeadDim(null)
                .build();
    }

    static float[] forward(UNet2DModel m, float[] x, float[] t) {
        try (Tensor xt = Tensor.of(cpu, x, t.length, 16, 16, 3)) {
            return m.forward(xt, t).toFloatArray();
        }
    }

    @Test
    void inferenceModelWithPreparedWeightsKeepsTheTrainableModelsBits() {
        TestRandom r = TestRandom.fresh();
        UNet2DConfig c = config();
        float[] x = r.gaussians(2 * 16 * 16 * 3, 1);
        float[] t = {17, 903};
        long live0 = cpu.liveBytes();
        try (UNet2DModel trainable = new UNet2DModel(cpu, c, r.nextLong());
             UNet2DModel inference = UNet2DModel.forInference(cpu, c)) {
            float[] w1 = trainable.flatParameters();
            inference.loadFlat(w1);
            long beforeForward = cpu.liveBytes();
            Tolerance.assertBitIdentical("first weights", forward(trainable, x, t), forward(inference, x, t), r.describe());
            long prepared = cpu.liveBytes() - beforeForward - UNet2DModel.activationBytes(c, 2, 16, 16, false);
            // conv_in/conv_out (3 channels) and the 1x1 shortcuts have no prepared form, every other 3x3 conv has one
            assertTrue(prepared > 0, "prepared weights were made: " + prepared + " bytes");
            assertTrue(prepared <= RunMemory.preparedWeightsBound(c), prepared + " bytes within the estimate's bound "
                    + RunMemory.preparedWeightsBound(c));
            // a second forward reuses them; an instance sharing the parameters reads the same ones
            Tolerance.assertBitIdentical("second forward", forward(trainable, x, t), forward(inference, x, t), r.describe());
            try (UNet2DModel shared = inference.sharingParameters()) {
                Tolerance.assertBitIdentical("sharing instance", forward(trainable, x, t), forward(shared, x, t), r.describe());
            }

            // other weights through loadFlat: the prepared forms are made again
            try (UNet2DModel other = new UNet2DModel(cpu, c, r.nextLong())) {
                float[] w2 = other.flatParameters();
                inference.loadFlat(w2);
                Tolerance.assertBitIdentical("after loadFlat", forward(other, x, t), forward(inference, x, t), r.describe());
            }

            // a direct write of the parameter buffer, announced with parametersChanged
            Tensor params = inference.parameters();
            float[] device = trainable.parameters().toFloatArray();
            params.copyFrom(device);
            inference.parametersChanged();
            Tolerance.assertBitIdentical("after parametersChanged", forward(trainable, x, t), forward(inference, x, t), r.describe());
        }
        assertEquals(live0, cpu.liveBytes(), "closing the model releases its prepared weights");
    }

    @Test
    void theNetworksWinogradAndUpsamplingConvolutionsHavePreparedForms() {
        // 16x16 x 128 -> 128 (F(2x2)), 8x8 x 136 -> 136 (F(2x2)), the 8 -> 16 upsampling at 136 channels
        assertTrue(ConvKernels.preparedBytes(cpu, ConvKernels.Conv2dSpec.same3x3(), 16, 16, 128, 128) > 0);
        assertTrue(ConvKernels.preparedBytes(cpu, ConvKernels.Conv2dSpec.same3x3(), 8, 8, 136, 136) > 0);
        assertTrue(ConvKernels.preparedBytes(cpu, ConvKernels.Conv2dSpec.upsample3x3(), 8, 8, 136, 136) > 0);
        assertEquals(0, ConvKernels.preparedBytes(cpu, ConvKernels.Conv2dSpec.same3x3(), 16, 16, 3, 128));
    }
}
