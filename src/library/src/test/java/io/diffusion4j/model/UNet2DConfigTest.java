package io.diffusion4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.io.Json;
import io.diffusion4j.io.JsonException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class UNet2DConfigTest {

    /**
     * config.json of google/ddpm-cifar10-32 (diffusers conversion of the original DDPM CIFAR-10 model); its
     * network-defining values agree with published copies of that file, and diffusers builds 35,746,307
     * parameters from them (DiffusersCrossCheckTest#ddpmCifar10MatchesDiffusers).
     */
    static final String DDPM_CIFAR10_32 = """
            {
              "_class_name": "UNet2DModel",
              "_diffusers_version": "0.0.4",
              "act_fn": "silu",
              "attention_head_dim": null,
              "block_out_channels": [128, 256, 256, 256],
              "center_input_sample": false,
              "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
              "downsample_padding": 0,
              "flip_sin_to_cos": false,
              "freq_shift": 1,
              "in_channels": 3,
              "layers_per_block": 2,
              "mid_block_scale_factor": 1,
              "norm_eps": 1e-06,
              "norm_num_groups": 32,
              "out_channels": 3,
              "sample_size": 32,
              "time_embedding_type": "positional",
              "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
            }
            """;

    /** The Fashion-MNIST network the train command uses by default: attention only at the lowest resolution. */
    static UNet2DConfig fashionMnist() {
        return UNet2DConfig.builder()
                .sampleSize(28)
                .inChannels(1)
                .outChannels(1)
                .blockOutChannels(32, 64, 64)
                .layersPerBlock(1)
                .downBlockTypes(List.of("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"))
                .upBlockTypes(List.of("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))
                .normNumGroups(8)
                .attentionHeadDim(null)
                .build();
    }

    @Test
    void defaultsAreThoseOfTheDiffusersConstructor() {
        UNet2DConfig c = UNet2DConfig.fromJson("{}");
        assertEquals(UNet2DConfig.builder().build(), c);
        assertEquals(-1, c.sampleHeight(), "sample_size None");
        assertEquals(3, c.inChannels());
        assertEquals(3, c.outChannels());
        assertNull(c.timeEmbeddingDimSetting());
        assertEquals(0.0, c.freqShift());
        assertTrue(c.flipSinToCos());
        assertEquals(List.of("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"), c.downBlockTypes());
        assertEquals(List.of("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), c.upBlockTypes());
        assertArrayEquals(new int[] {224, 448, 672, 896}, c.blockOutChannels());
        assertEquals(2, c.layersPerBlock());
        assertEquals(1.0, c.midBlockScaleFactor());
        assertEquals(1, c.downsamplePadding());
        assertEquals(0.0, c.dropout());
        assertEquals("silu", c.actFn());
        assertEquals(8, c.attentionHeadDimSetting());
        assertEquals(32, c.normNumGroups());
        assertNull(c.attnNormNumGroups());
        assertEquals(1e-5, c.normEps());
        assertNull(c.numTrainTimesteps());
        assertEquals(4 * 224, c.timeEmbedDim());
        assertEquals(224 / 8, c.heads(224), "attention_head_dim 8: channels / 8 heads");
    }

    @Test
    void parsesDdpmCifar10Config() {
        UNet2DConfig c = UNet2DConfig.fromJson(DDPM_CIFAR10_32);
        assertEquals(32, c.sampleHeight());
        assertEquals(32, c.sampleWidth());
        assertArrayEquals(new int[] {128, 256, 256, 256}, c.blockOutChannels());
        assertEquals(0, c.downsamplePadding());
        assertEquals(1.0, c.freqShift());
        assertEquals(false, c.flipSinToCos());
        assertEquals(1e-6, c.normEps());
        assertEquals(512, c.timeEmbedDim());
        assertNull(c.attentionHeadDimSetting());
        assertEquals(256, c.headDim(256), "attention_head_dim None: head dim = channels");
        assertEquals(1, c.heads(256), "... i.e. one head");
        assertEquals(32, c.midAttentionGroups());
        assertEquals("0.0.4", c.informational().get("_diffusers_version"));
    }

    @Test
    void jsonRoundTripIsExactAndWritesEveryDiffusersKey() {
        for (UNet2DConfig c : List.of(UNet2DConfig.fromJson(DDPM_CIFAR10_32), fashionMnist(),
                UNet2DConfig.builder().sampleSize(64, 32).timeEmbeddingDim(96).attnNormNumGroups(4).freqShift(0.5)
                        .numTrainTimesteps(1000).dropout(0.1).actFn("swish").build())) {
            String json = c.toJson();
            UNet2DConfig back = UNet2DConfig.fromJson(json);
            assertEquals(c, back, json);
            assertEquals(json, back.toJson(), "writing is stable");
            LinkedHashMap<String, Object> m = Json.parseObject(json);
            for (String k : UNet2DConfig.supportedKeys()) {
                assertTrue(m.containsKey(k), "written config lacks " + k);
            }
        }
        UNet2DConfig pair = UNet2DConfig.fromJson("{\"sample_size\": [64, 32], \"block_out_channels\": [32, 64],"
                + "\"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\"]}");
        assertEquals(64, pair.sampleHeight());
        assertEquals(32, pair.sampleWidth());
        assertEquals(List.of(64L, 32L), Json.parseObject(pair.toJson()).get("sample_size"));
    }

    /** Every key a current diffusers save_pretrained writes for UNet2DModel, at supported values. */
    @Test
    void acceptsAFullCurrentDiffusersConfig() {
        String full = """
                {"_class_name": "UNet2DModel", "_diffusers_version": "0.32.0", "_name_or_path": "x/y",
                 "sample_size": 28, "in_channels": 1, "out_channels": 1, "center_input_sample": false,
                 "time_embedding_type": "positional", "time_embedding_dim": null, "freq_shift": 0,
                 "flip_sin_to_cos": true, "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                 "mid_block_type": "UNetMidBlock2D", "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
                 "block_out_channels": [32, 64, 64], "layers_per_block": 1, "mid_block_scale_factor": 1,
                 "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": 0.0,
                 "act_fn": "silu", "attention_head_dim": null, "norm_num_groups": 8, "attn_norm_num_groups": null,
                 "norm_eps": 1e-05, "resnet_time_scale_shift": "default", "add_attention": true,
                 "class_embed_type": null, "num_class_embeds": null, "num_train_timesteps": null}
                """;
        UNet2DConfig c = UNet2DConfig.fromJson(full);
        assertEquals(fashionMnist().toMap().get("block_out_channels"), c.toMap().get("block_out_channels"));
        LinkedHashMap<String, Object> a = c.toMap();
        LinkedHashMap<String, Object> b = fashionMnist().toMap();
        a.keySet().removeIf(k -> k.startsWith("_"));
        b.keySet().removeIf(k -> k.startsWith("_"));
        assertEquals(b, a);
        assertEquals(Map.of("_class_name", "UNet2DModel", "_diffusers_version", "0.32.0", "_name_or_path", "x/y"),
                c.informational());
    }

    private static String withKey(String key, String jsonValue) {
        LinkedHashMap<String, Object> m = Json.parseObject(DDPM_CIFAR10_32);
        m.put(key, Json.parse(jsonValue));
        return Json.write(m);
    }

    /** diffusers' class-conditional UNet2DModel: num_class_embeds with class_embed_type null, round trip. */
    @Test
    void classConditionalConfigRoundTripsAndAddsTheEmbeddingTable() {
        UNet2DConfig c = UNet2DConfig.fromJson(withKey("num_class_embeds", "11"));
        assertTrue(c.isClassConditional());
        assertEquals(11, c.numClassEmbeds());
        assertEquals(c, UNet2DConfig.fromJson(c.toJson()));
        assertTrue(c.toJson().contains("\"num_class_embeds\": 11"), c.toJson());
        UNet2DLayout l = UNet2DLayout.of(c);
        UNet2DLayout plain = UNet2DLayout.of(UNet2DConfig.fromJson(withKey("num_class_embeds", "null")));
        assertEquals(plain.parameterCount() + 11L * c.timeEmbedDim(), l.parameterCount());
        assertEquals(UNet2DLayout.Kind.EMBEDDING, l.param("class_embedding.weight").kind());
        // state-dict order: right after the time embedding, as diffusers registers the module
        List<String> names = l.params().stream().map(UNet2DLayout.Param::name).toList();
        assertEquals(names.indexOf("time_embedding.linear_2.bias") + 1, names.indexOf("class_embedding.weight"));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
        "center_input_sample|true|center_input_sample",
        "time_embedding_type|`\"fourier\"`|time_embedding_type",
        "time_embedding_type|`\"learned\"`|time_embedding_type",
        "mid_block_type|null|mid_block_type",
        "mid_block_type|`\"UNetMidBlock2DCrossAttn\"`|mid_block_type",
        "down_block_types|`[\"DownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]`|down_block_types[1]",
        "up_block_types|`[\"UpBlock2D\", \"UpBlock2D\", \"AttnUpBlock2D\", \"SkipUpBlock2D\"]`|up_block_types[3]",
        "up_block_types|`[\"UpBlock2D\", \"UpBlock2D\", \"AttnUpBlock2D\"]`|up_block_types has 3",
        "block_out_channels|`[128, 256, 256]`|down_block_types has 4",
        "block_out_channels|`[128, 256, 250, 256]`|block_out_channels[2] = 250 is not divisible by norm_num_groups",
        "block_out_channels|`[128, 256, 0, 256]`|block_out_channels[2]",
        "block_out_channels|`[128, 256.0, 256, 256]`|block_out_channels[1]",
        "downsample_type|`\"resnet\"`|downsample_type",
        "upsample_type|`\"resnet\"`|upsample_type",
        "downsample_padding|2|downsample_padding",
        "act_fn|`\"gelu\"`|act_fn",
        "act_fn|1|act_fn",
        "resnet_time_scale_shift|`\"scale_shift\"`|resnet_time_scale_shift",
        "add_attention|false|add_attention",
        "class_embed_type|`\"timestep\"`|class_embed_type",
        "num_class_embeds|0|num_class_embeds must be in [1, 1048576], got 0",
        "num_class_embeds|2.5|num_class_embeds",
        "class_embed_type|`\"identity\"`|class_embed_type",
        "norm_num_groups|null|norm_num_groups",
        "norm_num_groups|0|norm_num_groups",
        "attention_head_dim|100|attention_head_dim = 100 does not divide",
        "attn_norm_num_groups|3|attn_norm_num_groups = 3 does not divide",
        "layers_per_block|2.5|layers_per_block",
        "layers_per_block|`\"2\"`|layers_per_block",
        "layers_per_block|0|layers_per_block",
        "layers_per_block|4294967297|layers_per_block",
        "sample_size|30|multiple of 2^(len(block_out_channels) - 1) = 8",
        "sample_size|`[32]`|sample_size",
        "sample_size|`[32, 32.5]`|sample_size[1]",
        "in_channels|0|in_channels",
        "dropout|1.0|dropout",
        "dropout|-0.1|dropout",
        "norm_eps|0|norm_eps",
        "mid_block_scale_factor|0|mid_block_scale_factor",
        "flip_sin_to_cos|`\"yes\"`|flip_sin_to_cos",
        "freq_shift|`\"1\"`|freq_shift",
        "time_embedding_dim|0|time_embedding_dim",
        "num_train_timesteps|0|num_train_timesteps",
        "_class_name|`\"UNet2DConditionModel\"`|_class_name",
        "_diffusers_version|1|_diffusers_version",
        "cross_attention_dim|768|unknown UNet2DModel config key \"cross_attention_dim\"",
        "resnet_eps|1e-6|unknown UNet2DModel config key \"resnet_eps\"",
    })
    void unsupportedKeysAndValuesAreRefusedByName(String key, String jsonValue, String message) {
        String json = withKey(key, jsonValue);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> UNet2DConfig.fromJson(json));
        assertTrue(e.getMessage().contains(message), "message '" + e.getMessage() + "' should contain '" + message + "'");
    }

    @Test
    void malformedJsonIsAJsonException() {
        JsonException e = assertThrows(JsonException.class, () -> UNet2DConfig.fromJson("{\"in_channels\": 3,}"));
        assertTrue(e.getMessage().contains("trailing comma"), e.getMessage());
        assertThrows(JsonException.class, () -> UNet2DConfig.fromJson("[]"));
    }

    @Test
    void builderValidatesToo() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> UNet2DConfig.builder().blockOutChannels(32, 64).build());
        assertTrue(e.getMessage().contains("down_block_types has 4 entries but block_out_channels has 2"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> UNet2DConfig.builder().blockOutChannels().build());
        assertThrows(IllegalArgumentException.class, () -> UNet2DConfig.builder().normEps(Double.NaN).build());
        assertThrows(IllegalArgumentException.class, () -> UNet2DConfig.builder().freqShift(Double.POSITIVE_INFINITY).build());
    }
}
