package io.diffusion4j.model;

import io.diffusion4j.io.Json;
import io.diffusion4j.io.JsonFields;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * The configuration of a diffusers {@code UNet2DModel}, with the semantics of its
 * {@code config.json}: same keys, same defaults as the {@code UNet2DModel} constructor, same
 * derived quantities (time embedding width {@code time_embedding_dim or 4 * block_out_channels[0]},
 * attention head dimension {@code attention_head_dim if not None else} the block's channels, i.e.
 * one head).
 *
 * <p>Only the architecture this library implements is accepted: positional (sinusoidal) time
 * embedding, {@code DownBlock2D}/{@code AttnDownBlock2D} and {@code UpBlock2D}/{@code AttnUpBlock2D}
 * blocks, a {@code UNetMidBlock2D} with attention, convolutional down/up-sampling, SiLU, additive
 * time conditioning ({@code resnet_time_scale_shift "default"}) and optional class conditioning by an
 * embedding table ({@code num_class_embeds} with {@code class_embed_type} null: diffusers' {@code nn.Embedding}
 * whose row for the class label is added to the time embedding). An
 * unknown key or an unsupported value is refused with an {@link IllegalArgumentException} naming
 * the key; keys that diffusers writes but that do not affect the network ({@code _class_name},
 * {@code _diffusers_version}, {@code _name_or_path}) are accepted and kept for round trips.
 */
public final class UNet2DConfig {
    /** Block type names of diffusers. */
    public static final String DOWN_BLOCK = "DownBlock2D";
    public static final String ATTN_DOWN_BLOCK = "AttnDownBlock2D";
    public static final String UP_BLOCK = "UpBlock2D";
    public static final String ATTN_UP_BLOCK = "AttnUpBlock2D";
    public static final String MID_BLOCK = "UNetMidBlock2D";

    /** Upper bounds that keep every derived size far from int overflow. */
    static final int MAX_CHANNELS = 1 << 15;
    static final int MAX_BLOCKS = 8;
    static final int MAX_LAYERS_PER_BLOCK = 32;
    static final int MAX_SAMPLE_SIZE = 1 << 15;
    static final int MAX_CLASS_EMBEDS = 1 << 20;

    private static final Set<String> INFORMATIONAL = Set.of("_class_name", "_diffusers_version", "_name_or_path");
    private static final List<String> KEYS = List.of(
            "sample_size", "in_channels", "out_channels", "center_input_sample", "time_embedding_type",
            "time_embedding_dim", "freq_shift", "flip_sin_to_cos", "down_block_types", "mid_block_type",
            "up_block_types", "block_out_channels", "layers_per_block", "mid_block_scale_factor",
            "downsample_padding", "downsample_type", "upsample_type", "dropout", "act_fn", "attention_head_dim",
            "norm_num_groups", "attn_norm_num_groups", "norm_eps", "resnet_time_scale_shift", "add_attention",
            "class_embed_type", "num_class_embeds", "num_train_timesteps");

    private final Integer sampleHeight; // null: sample_size None
    private final Integer sampleWidth;
    private final boolean sampleSizeIsPair;
    private final int inChannels;
    private final int outChannels;
    private final Integer timeEmbeddingDim;
    private final double freqShift;
    private final boolean flipSinToCos;
    private final List<String> downBlockTypes;
    private final List<String> upBlockTypes;
    private final int[] blockOutChannels;
    private final int layersPerBlock;
    private final double midBlockScaleFactor;
    private final int downsamplePadding;
    private final double dropout;
    private final String actFn;
    private final Integer attentionHeadDim;
    private final int normNumGroups;
    private final Integer attnNormNumGroups;
    private final double normEps;
    private final Integer numTrainTimesteps;
    private final Integer numClassEmbeds; // null: unconditional
    private final Map<String, Object> informational;

    private UNet2DConfig(Builder b) {
        sampleHeight = b.sampleHeight;
        sampleWidth = b.sampleWidth;
        sampleSizeIsPair = b.sampleSizeIsPair;
        inChannels = b.inChannels;
        outChannels = b.outChannels;
        timeEmbeddingDim = b.timeEmbeddingDim;
        freqShift = b.freqShift;
        flipSinToCos = b.flipSinToCos;
        downBlockTypes = List.copyOf(b.downBlockTypes);
        upBlockTypes = List.copyOf(b.upBlockTypes);
        blockOutChannels = b.blockOutChannels.clone();
        layersPerBlock = b.layersPerBlock;
        midBlockScaleFactor = b.midBlockScaleFactor;
        downsamplePadding = b.downsamplePadding;
        dropout = b.dropout;
        actFn = b.actFn;
        attentionHeadDim = b.attentionHeadDim;
        normNumGroups = b.normNumGroups;
        attnNormNumGroups = b.attnNormNumGroups;
        normEps = b.normEps;
        numTrainTimesteps = b.numTrainTimesteps;
        numClassEmbeds = b.numClassEmbeds;
        informational = new LinkedHashMap<>(b.informational);
        validate();
    }

    // ---------------------------------------------------------------------------------------------
    // parsing

    /** Parses a {@code config.json} text. */
    public static UNet2DConfig fromJson(String json) {
        return fromMap(Json.parseObject(json));
    }

    /** Builds a configuration from a parsed {@code config.json} object; missing keys take diffusers' defaults. */
    public static UNet2DConfig fromMap(Map<String, Object> map) {
        Objects.requireNonNull(map, "config map");
        JsonFields f = JsonFields.of(map, "UNet2DModel config");
        Builder b = builder();
        for (String k : f.keys()) {
            Object v = f.get(k);
            if (INFORMATIONAL.contains(k)) {
                if (k.equals("_class_name") && !"UNet2DModel".equals(v)) {
                    throw f.fail(k, "this is a UNet2DModel configuration reader, got " + JsonFields.describe(v));
                }
                if (v != null) f.requireString(k);
                b.informational.put(k, v);
                continue;
            }
            switch (k) {
                case "sample_size" -> {
                    if (v == null) {
                        b.sampleSize(null);
                    } else if (v instanceof List<?> l) {
                        if (l.size() != 2) {
                            throw f.fail(k, "must be an integer or a list [height, width], got " + l);
                        }
                        int[] hw = f.requireIntArray(k);
                        b.sampleSize(hw[0], hw[1]);
                    } else {
                        b.sampleSize(f.requireInt(k));
                    }
                }
                case "in_channels" -> b.inChannels(f.requireInt(k));
                case "out_channels" -> b.outChannels(f.requireInt(k));
                case "center_input_sample" -> requireValue(f, k, Boolean.FALSE, "input centering is not supported");
                case "time_embedding_type" -> requireValue(f, k, "positional",
                        "only the sinusoidal \"positional\" embedding is supported");
                case "time_embedding_dim" -> b.timeEmbeddingDim(v == null ? null : f.requireInt(k));
                case "freq_shift" -> b.freqShift(f.requireDouble(k));
                case "flip_sin_to_cos" -> b.flipSinToCos(f.requireBoolean(k));
                case "down_block_types" -> b.downBlockTypes(f.requireStringList(k));
                case "mid_block_type" -> requireValue(f, k, MID_BLOCK, "only " + MID_BLOCK + " is supported");
                case "up_block_types" -> b.upBlockTypes(f.requireStringList(k));
                case "block_out_channels" -> b.blockOutChannels(f.requireIntArray(k));
                case "layers_per_block" -> b.layersPerBlock(f.requireInt(k));
                case "mid_block_scale_factor" -> b.midBlockScaleFactor(f.requireDouble(k));
                case "downsample_padding" -> b.downsamplePadding(f.requireInt(k));
                case "downsample_type" -> requireValue(f, k, "conv", "only \"conv\" downsampling is supported");
                case "upsample_type" -> requireValue(f, k, "conv", "only \"conv\" upsampling is supported");
                case "dropout" -> b.dropout(f.requireDouble(k));
                case "act_fn" -> b.actFn(f.requireString(k));
                case "attention_head_dim" -> b.attentionHeadDim(v == null ? null : f.requireInt(k));
                case "norm_num_groups" -> {
                    if (v == null) {
                        throw f.fail(k, "null groups (min(C/4, 32) per layer in diffusers) is not supported");
                    }
                    b.normNumGroups(f.requireInt(k));
                }
                case "attn_norm_num_groups" -> b.attnNormNumGroups(v == null ? null : f.requireInt(k));
                case "norm_eps" -> b.normEps(f.requireDouble(k));
                case "resnet_time_scale_shift" -> requireValue(f, k, "default",
                        "only additive time conditioning (\"default\") is supported");
                case "add_attention" -> requireValue(f, k, Boolean.TRUE,
                        "a mid block without attention is not supported");
                case "class_embed_type" -> requireValue(f, k, null, "only the class-embedding table (class_embed_type"
                        + " null with num_class_embeds) is supported; \"timestep\", \"identity\" and the projections"
                        + " are not");
                case "num_class_embeds" -> b.numClassEmbeds(v == null ? null : f.requireInt(k));
                case "num_train_timesteps" -> b.numTrainTimesteps(v == null ? null : f.requireInt(k));
                default -> throw new IllegalArgumentException("unknown UNet2DModel config key \"" + k + "\"");
            }
        }
        return b.build();
    }

    /** Refuses every value of key {@code key} but {@code expected} (a feature this implementation lacks). */
    private static void requireValue(JsonFields f, String key, Object expected, String why) {
        Object v = f.get(key);
        if (!Objects.equals(v, expected)) {
            throw f.fail(key, why + " (expected " + JsonFields.describe(expected) + ", got "
                    + JsonFields.describe(v) + ")");
        }
    }

    // ---------------------------------------------------------------------------------------------
    // validation

    private void validate() {
        if (sampleHeight != null) {
            checkRange("sample_size", sampleHeight, 1, MAX_SAMPLE_SIZE);
            checkRange("sample_size", sampleWidth, 1, MAX_SAMPLE_SIZE);
        }
        checkRange("in_channels", inChannels, 1, MAX_CHANNELS);
        checkRange("out_channels", outChannels, 1, MAX_CHANNELS);
        int n = blockOutChannels.length;
        if (n < 1 || n > MAX_BLOCKS) {
            throw new IllegalArgumentException("block_out_channels must have 1 to " + MAX_BLOCKS + " entries, got " + n);
        }
        if (downBlockTypes.size() != n) {
            throw new IllegalArgumentException("down_block_types has " + downBlockTypes.size()
                    + " entries but block_out_channels has " + n + "; they must match");
        }
        if (upBlockTypes.size() != n) {
            throw new IllegalArgumentException("up_block_types has " + upBlockTypes.size()
                    + " entries but down_block_types has " + n + "; they must match");
        }
        for (int i = 0; i < n; i++) {
            String d = downBlockTypes.get(i);
            if (!d.equals(DOWN_BLOCK) && !d.equals(ATTN_DOWN_BLOCK)) {
                throw new IllegalArgumentException("down_block_types[" + i + "] = \"" + d + "\" is not supported; expected "
                        + DOWN_BLOCK + " or " + ATTN_DOWN_BLOCK);
            }
            String u = upBlockTypes.get(i);
            if (!u.equals(UP_BLOCK) && !u.equals(ATTN_UP_BLOCK)) {
                throw new IllegalArgumentException("up_block_types[" + i + "] = \"" + u + "\" is not supported; expected "
                        + UP_BLOCK + " or " + ATTN_UP_BLOCK);
            }
        }
        checkRange("layers_per_block", layersPerBlock, 1, MAX_LAYERS_PER_BLOCK);
        checkRange("norm_num_groups", normNumGroups, 1, MAX_CHANNELS);
        for (int i = 0; i < n; i++) {
            String key = "block_out_channels[" + i + "]";
            checkRange(key, blockOutChannels[i], 1, MAX_CHANNELS);
            // every GroupNorm sees a block width or a sum of two: divisibility of each width suffices
            if (blockOutChannels[i] % normNumGroups != 0) {
                throw new IllegalArgumentException(key + " = " + blockOutChannels[i]
                        + " is not divisible by norm_num_groups = " + normNumGroups);
            }
        }
        if (timeEmbeddingDim != null) {
            checkRange("time_embedding_dim", timeEmbeddingDim, 1, 4 * MAX_CHANNELS);
        }
        if (!Double.isFinite(freqShift)) {
            throw new IllegalArgumentException("freq_shift must be finite, got " + freqShift);
        }
        if (!(midBlockScaleFactor > 0) || !Double.isFinite(midBlockScaleFactor)) {
            throw new IllegalArgumentException("mid_block_scale_factor must be finite and > 0, got " + midBlockScaleFactor);
        }
        if (downsamplePadding != 0 && downsamplePadding != 1) {
            throw new IllegalArgumentException("downsample_padding must be 0 (asymmetric (0,1,0,1) pad) or 1, got "
                    + downsamplePadding);
        }
        if (!(dropout >= 0 && dropout < 1)) {
            throw new IllegalArgumentException("dropout must be in [0, 1), got " + dropout);
        }
        if (!actFn.equals("silu") && !actFn.equals("swish")) {
            throw new IllegalArgumentException("act_fn \"" + actFn + "\" is not supported; expected \"silu\" (or its alias \"swish\")");
        }
        if (!(normEps > 0) || !Double.isFinite(normEps)) {
            throw new IllegalArgumentException("norm_eps must be finite and > 0, got " + normEps);
        }
        if (numTrainTimesteps != null) {
            checkRange("num_train_timesteps", numTrainTimesteps, 1, Integer.MAX_VALUE);
        }
        if (numClassEmbeds != null) {
            checkRange("num_class_embeds", numClassEmbeds, 1, MAX_CLASS_EMBEDS);
        }
        if (attentionHeadDim != null) {
            checkRange("attention_head_dim", attentionHeadDim, 1, MAX_CHANNELS);
        }
        if (attnNormNumGroups != null) {
            checkRange("attn_norm_num_groups", attnNormNumGroups, 1, MAX_CHANNELS);
        }
        for (int c : attentionChannels()) {
            int head = headDim(c);
            if (c % head != 0) {
                // diffusers would build heads = c // head with an inner width != c: not this architecture
                throw new IllegalArgumentException("attention_head_dim = " + head + " does not divide the " + c
                        + " channels of an attention block");
            }
        }
        int last = blockOutChannels[n - 1];
        if (last % midAttentionGroups() != 0) {
            throw new IllegalArgumentException("attn_norm_num_groups = " + midAttentionGroups()
                    + " does not divide the mid block's " + last + " channels");
        }
        if (sampleHeight != null) {
            int f = 1 << (n - 1);
            if (sampleHeight % f != 0 || sampleWidth % f != 0) {
                throw new IllegalArgumentException("sample_size " + sampleHeight + "x" + sampleWidth
                        + " must be a multiple of 2^(len(block_out_channels) - 1) = " + f);
            }
        }
    }

    private static void checkRange(String key, int v, int lo, int hi) {
        if (v < lo || v > hi) {
            throw new IllegalArgumentException(key + " must be in [" + lo + ", " + hi + "], got " + v);
        }
    }

    /** Channel counts of every attention block (down, mid, up), for the head-dim check. */
    private List<Integer> attentionChannels() {
        List<Integer> out = new ArrayList<>();
        int n = blockOutChannels.length;
        for (int i = 0; i < n; i++) {
            if (downBlockTypes.get(i).equals(ATTN_DOWN_BLOCK)) out.add(blockOutChannels[i]);
            if (upBlockTypes.get(i).equals(ATTN_UP_BLOCK)) out.add(blockOutChannels[n - 1 - i]);
        }
        out.add(blockOutChannels[n - 1]);
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // accessors (config.json semantics) and derived quantities

    /** Sample height, or -1 when sample_size is null. */
    public int sampleHeight() {
        return sampleHeight == null ? -1 : sampleHeight;
    }

    /** Sample width, or -1 when sample_size is null. */
    public int sampleWidth() {
        return sampleWidth == null ? -1 : sampleWidth;
    }

    public int inChannels() {
        return inChannels;
    }

    public int outChannels() {
        return outChannels;
    }

    /** The configured time_embedding_dim, or null (then 4 * block_out_channels[0]). */
    public Integer timeEmbeddingDimSetting() {
        return timeEmbeddingDim;
    }

    /** Width of the time embedding MLP: {@code time_embedding_dim or 4 * block_out_channels[0]}. */
    public int timeEmbedDim() {
        return timeEmbeddingDim != null ? timeEmbeddingDim : 4 * blockOutChannels[0];
    }

    /** Width of the sinusoidal projection fed to time_embedding.linear_1 (block_out_channels[0]). */
    public int timestepInputDim() {
        return blockOutChannels[0];
    }

    public double freqShift() {
        return freqShift;
    }

    public boolean flipSinToCos() {
        return flipSinToCos;
    }

    public List<String> downBlockTypes() {
        return downBlockTypes;
    }

    public List<String> upBlockTypes() {
        return upBlockTypes;
    }

    public int[] blockOutChannels() {
        return blockOutChannels.clone();
    }

    public int numBlocks() {
        return blockOutChannels.length;
    }

    public int layersPerBlock() {
        return layersPerBlock;
    }

    public double midBlockScaleFactor() {
        return midBlockScaleFactor;
    }

    public int downsamplePadding() {
        return downsamplePadding;
    }

    public double dropout() {
        return dropout;
    }

    public String actFn() {
        return actFn;
    }

    /** The configured attention_head_dim, or null (one head per attention block). */
    public Integer attentionHeadDimSetting() {
        return attentionHeadDim;
    }

    /** Head dimension of an attention block with {@code channels} channels, as diffusers derives it. */
    public int headDim(int channels) {
        return attentionHeadDim != null ? attentionHeadDim : channels;
    }

    /** Number of heads of an attention block with {@code channels} channels. */
    public int heads(int channels) {
        return channels / headDim(channels);
    }

    public int normNumGroups() {
        return normNumGroups;
    }

    public Integer attnNormNumGroups() {
        return attnNormNumGroups;
    }

    /**
     * Groups of the mid block attention's GroupNorm: attn_norm_num_groups, or norm_num_groups when
     * null (diffusers, resnet_time_scale_shift "default"). Down/up attention blocks always use
     * norm_num_groups.
     */
    public int midAttentionGroups() {
        return attnNormNumGroups != null ? attnNormNumGroups : normNumGroups;
    }

    public double normEps() {
        return normEps;
    }

    public Integer numTrainTimesteps() {
        return numTrainTimesteps;
    }

    /** diffusers' {@code num_class_embeds}: rows of the class-embedding table, or null for an unconditional model. */
    public Integer numClassEmbeds() {
        return numClassEmbeds;
    }

    /** Whether the model takes class labels (num_class_embeds set). */
    public boolean isClassConditional() {
        return numClassEmbeds != null;
    }

    /** The accepted informational keys (_class_name, ...), as read. */
    public Map<String, Object> informational() {
        return new LinkedHashMap<>(informational);
    }

    // ---------------------------------------------------------------------------------------------
    // writing

    /** Every key of a diffusers UNet2DModel config.json, informational ones first, as a JSON-ready map. */
    public LinkedHashMap<String, Object> toMap() {
        LinkedHashMap<String, Object> m = new LinkedHashMap<>();
        m.put("_class_name", "UNet2DModel");
        m.putAll(informational);
        m.put("sample_size", sampleHeight == null ? null
                : sampleSizeIsPair ? List.of((long) sampleHeight, (long) sampleWidth) : (Object) (long) sampleHeight);
        m.put("in_channels", (long) inChannels);
        m.put("out_channels", (long) outChannels);
        m.put("center_input_sample", false);
        m.put("time_embedding_type", "positional");
        m.put("time_embedding_dim", timeEmbeddingDim == null ? null : (long) timeEmbeddingDim);
        m.put("freq_shift", number(freqShift));
        m.put("flip_sin_to_cos", flipSinToCos);
        m.put("down_block_types", downBlockTypes);
        m.put("mid_block_type", MID_BLOCK);
        m.put("up_block_types", upBlockTypes);
        m.put("block_out_channels", Arrays.stream(blockOutChannels).mapToObj(c -> (Object) (long) c).toList());
        m.put("layers_per_block", (long) layersPerBlock);
        m.put("mid_block_scale_factor", number(midBlockScaleFactor));
        m.put("downsample_padding", (long) downsamplePadding);
        m.put("downsample_type", "conv");
        m.put("upsample_type", "conv");
        m.put("dropout", dropout);
        m.put("act_fn", actFn);
        m.put("attention_head_dim", attentionHeadDim == null ? null : (long) attentionHeadDim);
        m.put("norm_num_groups", (long) normNumGroups);
        m.put("attn_norm_num_groups", attnNormNumGroups == null ? null : (long) attnNormNumGroups);
        m.put("norm_eps", normEps);
        m.put("resnet_time_scale_shift", "default");
        m.put("add_attention", true);
        m.put("class_embed_type", null);
        m.put("num_class_embeds", numClassEmbeds == null ? null : (long) numClassEmbeds);
        m.put("num_train_timesteps", numTrainTimesteps == null ? null : (long) numTrainTimesteps);
        return m;
    }

    /** Integral values written as JSON integers (diffusers writes freq_shift 1, not 1.0). */
    private static Object number(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? (Object) (long) v : (Object) v;
    }

    /** Pretty-printed config.json text; {@link #fromJson} of it gives an equal configuration. */
    public String toJson() {
        return Json.write(toMap());
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof UNet2DConfig c)) return false;
        LinkedHashMap<String, Object> a = toMap();
        LinkedHashMap<String, Object> b = c.toMap();
        return a.equals(b);
    }

    @Override
    public int hashCode() {
        return toMap().hashCode();
    }

    @Override
    public String toString() {
        return "UNet2DConfig" + Json.writeCompact(toMap());
    }

    /** Known config keys (excluding the informational ones), in diffusers' constructor order. */
    public static List<String> supportedKeys() {
        return KEYS;
    }

    // ---------------------------------------------------------------------------------------------
    // builder

    /** A builder holding diffusers' UNet2DModel constructor defaults. */
    public static Builder builder() {
        return new Builder();
    }

    /** Mutable configuration; {@link #build} validates. */
    public static final class Builder {
        private Integer sampleHeight;
        private Integer sampleWidth;
        private boolean sampleSizeIsPair;
        private int inChannels = 3;
        private int outChannels = 3;
        private Integer timeEmbeddingDim;
        private double freqShift = 0;
        private boolean flipSinToCos = true;
        private List<String> downBlockTypes = List.of(DOWN_BLOCK, ATTN_DOWN_BLOCK, ATTN_DOWN_BLOCK, ATTN_DOWN_BLOCK);
        private List<String> upBlockTypes = List.of(ATTN_UP_BLOCK, ATTN_UP_BLOCK, ATTN_UP_BLOCK, UP_BLOCK);
        private int[] blockOutChannels = {224, 448, 672, 896};
        private int layersPerBlock = 2;
        private double midBlockScaleFactor = 1;
        private int downsamplePadding = 1;
        private double dropout = 0.0;
        private String actFn = "silu";
        private Integer attentionHeadDim = 8;
        private int normNumGroups = 32;
        private Integer attnNormNumGroups;
        private double normEps = 1e-5;
        private Integer numTrainTimesteps;
        private Integer numClassEmbeds;
        private final Map<String, Object> informational = new LinkedHashMap<>();

        private Builder() {}

        /** Square samples; null for diffusers' sample_size None. */
        public Builder sampleSize(Integer size) {
            sampleHeight = size;
            sampleWidth = size;
            sampleSizeIsPair = false;
            return this;
        }

        public Builder sampleSize(int height, int width) {
            sampleHeight = height;
            sampleWidth = width;
            sampleSizeIsPair = true;
            return this;
        }

        public Builder inChannels(int v) {
            inChannels = v;
            return this;
        }

        public Builder outChannels(int v) {
            outChannels = v;
            return this;
        }

        public Builder timeEmbeddingDim(Integer v) {
            timeEmbeddingDim = v;
            return this;
        }

        public Builder freqShift(double v) {
            freqShift = v;
            return this;
        }

        public Builder flipSinToCos(boolean v) {
            flipSinToCos = v;
            return this;
        }

        public Builder downBlockTypes(List<String> v) {
            downBlockTypes = List.copyOf(v);
            return this;
        }

        public Builder upBlockTypes(List<String> v) {
            upBlockTypes = List.copyOf(v);
            return this;
        }

        public Builder blockOutChannels(int... v) {
            blockOutChannels = v.clone();
            return this;
        }

        public Builder layersPerBlock(int v) {
            layersPerBlock = v;
            return this;
        }

        public Builder midBlockScaleFactor(double v) {
            midBlockScaleFactor = v;
            return this;
        }

        public Builder downsamplePadding(int v) {
            downsamplePadding = v;
            return this;
        }

        public Builder dropout(double v) {
            dropout = v;
            return this;
        }

        public Builder actFn(String v) {
            actFn = Objects.requireNonNull(v, "act_fn");
            return this;
        }

        public Builder attentionHeadDim(Integer v) {
            attentionHeadDim = v;
            return this;
        }

        public Builder normNumGroups(int v) {
            normNumGroups = v;
            return this;
        }

        public Builder attnNormNumGroups(Integer v) {
            attnNormNumGroups = v;
            return this;
        }

        public Builder normEps(double v) {
            normEps = v;
            return this;
        }

        public Builder numTrainTimesteps(Integer v) {
            numTrainTimesteps = v;
            return this;
        }

        /** diffusers' {@code num_class_embeds}: null for an unconditional model. */
        public Builder numClassEmbeds(Integer v) {
            numClassEmbeds = v;
            return this;
        }

        /** Validates and returns the configuration. */
        public UNet2DConfig build() {
            return new UNet2DConfig(this);
        }
    }
}
