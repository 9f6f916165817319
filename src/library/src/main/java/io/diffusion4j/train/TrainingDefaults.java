package io.diffusion4j.train;

import io.diffusion4j.model.UNet2DConfig;
import java.util.List;

/** What a training run uses when nothing else is said: the default model and the files written beside a checkpoint. */
public final class TrainingDefaults {
    private TrainingDefaults() {}

    /** File names written beside the checkpoint. */
    public static final String LOSS_CSV = "loss.csv", LOSS_CURVE = "loss_curve.png";

    /** The default model: Fashion-MNIST sized (28x28x1), 32/64/64 channels, attention at the lowest level. */
    public static UNet2DConfig config() {
        return UNet2DConfig.builder().sampleSize(28).inChannels(1).outChannels(1).blockOutChannels(32, 64, 64)
                .layersPerBlock(1).normNumGroups(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK, UNet2DConfig.UP_BLOCK))
                .build();
    }
}
