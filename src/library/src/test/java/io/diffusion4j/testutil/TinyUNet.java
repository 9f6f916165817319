package io.diffusion4j.testutil;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * The tiny UNet of the sampling, eval and serving tests (8x8 samples, blocks of 4 and 8 channels, one layer per
 * block, the second level with attention), and its weights written as a checkpoint's safetensors file.
 */
public final class TinyUNet {
    private TinyUNet() {}

    /** The tiny model with {@code channels} input and output channels. */
    public static UNet2DConfig config(int channels) {
        return builder(channels).build();
    }

    /** The tiny model with {@code channels} channels and {@code numClassEmbeds} class-embedding rows. */
    public static UNet2DConfig conditionalConfig(int channels, int numClassEmbeds) {
        return builder(channels).numClassEmbeds(numClassEmbeds).build();
    }

    private static UNet2DConfig.Builder builder(int channels) {
        return UNet2DConfig.builder().sampleSize(8).inChannels(channels).outChannels(channels).blockOutChannels(4, 8)
                .layersPerBlock(1).normNumGroups(2).attentionHeadDim(4)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK));
    }

    /** Writes the parameters of a {@code cfg} model initialised from {@code seed} as diffusers' safetensors file. */
    public static void writeWeights(Path file, UNet2DConfig cfg, long seed) throws IOException {
        try (Backend cpu = Backend.open(Device.CPU); UNet2DModel m = new UNet2DModel(cpu, cfg, seed)) {
            float[] flat = m.flatParameters();
            List<SafeTensors.Entry> entries = new ArrayList<>();
            for (UNet2DLayout.Param p : m.layout().params()) {
                entries.add(new SafeTensors.Entry(p.name(), p.shapeLong(),
                        Arrays.copyOfRange(flat, (int) p.offset(), (int) (p.offset() + p.size()))));
            }
            SafeTensors.write(file, entries, Map.of("format", "pt"));
        }
    }
}
