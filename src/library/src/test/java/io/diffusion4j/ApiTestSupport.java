package io.diffusion4j;

import io.diffusion4j.model.UNet2DConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/** A tiny 1-channel 8x8 model config and a checkpoint trained through the API for the API tests. */
final class ApiTestSupport {
    private ApiTestSupport() {}

    static String tinyConfigJson(int channels) {
        return UNet2DConfig.builder().sampleSize(8).inChannels(channels).outChannels(channels).blockOutChannels(4, 8)
                .layersPerBlock(1).normNumGroups(2).attentionHeadDim(4)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).build().toJson();
    }

    /** Trains the tiny model for a few steps of procedural data and saves it to dir. */
    static Path trainTiny(Diffusion4j d4j, Path dir, long seed, int steps) throws IOException {
        try (TrainingRun run = d4j.newTrainingRun().modelConfigJson(tinyConfigJson(1)).steps(steps).batchSize(4)
                .seed(seed).build()) {
            run.train();
            run.save(dir);
        }
        return dir;
    }
}
