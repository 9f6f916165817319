package io.diffusion4j.model;

import io.diffusion4j.kernels.ConvKernels;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Every parameter of a diffusers {@code UNet2DModel} built from a {@link UNet2DConfig}: its exact
 * state-dict name, its shape as diffusers stores it (convolutions OIHW {@code [out, in, kh, kw]},
 * linear layers {@code [out, in]}, everything else {@code [C]}), its {@link Kind} (so a loader knows
 * which layout conversion applies) and its offset in one flat float32 parameter buffer, each
 * parameter starting on a multiple of {@value #ALIGN_FLOATS} floats (64 bytes).
 *
 * <p>The order is that of diffusers' {@code state_dict()}: modules in registration order
 * ({@code conv_in, time_embedding, down_blocks, up_blocks, mid_block, conv_norm_out, conv_out}; the
 * mid block is registered after the up blocks because {@code UNet2DModel.__init__} first assigns
 * it None), and inside attention blocks {@code attentions} before {@code resnets}, because the
 * blocks register their ModuleLists in that order. Channel arithmetic follows
 * {@code UNet2DModel.__init__}: the up block i has {@code layers_per_block + 1} resnets, resnet j
 * taking {@code (j == 0 ? prev_output_channel : out) + (j == last ? in : out)} channels where
 * {@code in} is the width of the next-shallower level, the concatenation of a skip connection.
 *
 * <p>Checkpoints written before diffusers 0.14 name the attention projections {@code query, key,
 * value, proj_attn}; {@link #currentName} maps them to {@code to_q, to_k, to_v, to_out.0} as
 * diffusers' {@code _convert_deprecated_attention_blocks} does.
 */
public final class UNet2DLayout {
    /** Alignment of every parameter's start in the flat buffer, in floats. */
    public static final int ALIGN_FLOATS = 16;

    /** What a parameter is, which decides how a loader converts it from the on-disk layout. */
    public enum Kind {
        /** 3x3 convolution weight, on disk OIHW [out, in, 3, 3]. */
        CONV3X3,
        /** 1x1 convolution weight (resnet conv_shortcut), on disk OIHW [out, in, 1, 1]. */
        CONV1X1,
        /** Linear weight, on disk [out, in] (PyTorch nn.Linear). */
        LINEAR,
        /** GroupNorm scale (gamma), [C]; initialised to 1. */
        NORM_WEIGHT,
        /** GroupNorm shift (beta), [C]; initialised to 0. */
        NORM_BIAS,
        /** Bias of a convolution or linear layer, [out]. */
        BIAS,
        /** An embedding table [rows, dim] (PyTorch nn.Embedding); initialised N(0, 1). */
        EMBEDDING
    }

    /** One parameter: name, kind, on-disk shape, offset and size in the flat buffer (in floats). */
    public static final class Param {
        private final String name;
        private final Kind kind;
        private final int[] shape;
        private final long offset;
        private final long size;

        Param(String name, Kind kind, int[] shape, long offset) {
            this.name = name;
            this.kind = kind;
            this.shape = shape;
            this.offset = offset;
            long n = 1;
            for (int d : shape) n = Math.multiplyExact(n, d);
            this.size = n;
        }

        /** diffusers state-dict name, e.g. {@code down_blocks.0.resnets.1.conv1.weight}. */
        public String name() {
            return name;
        }

        public Kind kind() {
            return kind;
        }

        /** Shape as stored by diffusers (OIHW for convolutions, [out, in] for linear layers). */
        public int[] shape() {
            return shape.clone();
        }

        /** Shape as longs, for comparing with a checkpoint's header. */
        public long[] shapeLong() {
            return Arrays.stream(shape).asLongStream().toArray();
        }

        /** First float of this parameter in the flat buffer; a multiple of {@value #ALIGN_FLOATS}. */
        public long offset() {
            return offset;
        }

        /** Number of floats. */
        public long size() {
            return size;
        }

        @Override
        public String toString() {
            return name + " " + kind + " " + Arrays.toString(shape) + " @" + offset;
        }
    }

    /** A ResnetBlock2D: prefix (e.g. {@code up_blocks.1.resnets.2}), channels, shortcut, groups. */
    public record Resnet(String prefix, int inChannels, int outChannels, boolean hasShortcut, int groups) {}

    /** An Attention block (group_norm, to_q/k/v, to_out.0) with {@code heads * headDim == channels}. */
    public record Attention(String prefix, int channels, int heads, int headDim, int groups) {}

    private final UNet2DConfig config;
    private final List<Param> params;
    private final Map<String, Param> byName;
    private final List<Resnet> resnets;
    private final List<Attention> attentions;
    private final long parameterCount;
    private final long bufferFloats;

    private UNet2DLayout(UNet2DConfig config) {
        this.config = config;
        Builder b = new Builder();
        int[] ch = config.blockOutChannels();
        int n = ch.length;
        int temb = config.timeEmbedDim();
        int groups = config.normNumGroups();

        b.conv3("conv_in", config.inChannels(), ch[0]);
        b.linear("time_embedding.linear_1", config.timestepInputDim(), temb);
        b.linear("time_embedding.linear_2", temb, temb);
        if (config.isClassConditional()) b.add("class_embedding.weight", Kind.EMBEDDING, config.numClassEmbeds(), temb);

        int out = ch[0];
        for (int i = 0; i < n; i++) {
            int in = out;
            out = ch[i];
            String p = "down_blocks." + i;
            boolean attn = config.downBlockTypes().get(i).equals(UNet2DConfig.ATTN_DOWN_BLOCK);
            if (attn) {
                for (int j = 0; j < config.layersPerBlock(); j++) {
                    b.attention(p + ".attentions." + j, out, config.heads(out), config.headDim(out), groups);
                }
            }
            for (int j = 0; j < config.layersPerBlock(); j++) {
                b.resnet(p + ".resnets." + j, j == 0 ? in : out, out, temb, groups);
            }
            if (i != n - 1) {
                b.conv3(p + ".downsamplers.0.conv", out, out);
            }
        }

        out = ch[n - 1];
        for (int i = 0; i < n; i++) {
            int prevOut = out;
            out = ch[n - 1 - i];
            int in = ch[n - 1 - Math.min(i + 1, n - 1)];
            String p = "up_blocks." + i;
            int layers = config.layersPerBlock() + 1;
            boolean attn = config.upBlockTypes().get(i).equals(UNet2DConfig.ATTN_UP_BLOCK);
            if (attn) {
                for (int j = 0; j < layers; j++) {
                    b.attention(p + ".attentions." + j, out, config.heads(out), config.headDim(out), groups);
                }
            }
            for (int j = 0; j < layers; j++) {
                int skip = j == layers - 1 ? in : out;
                int resIn = j == 0 ? prevOut : out;
                b.resnet(p + ".resnets." + j, resIn + skip, out, temb, groups);
            }
            if (i != n - 1) {
                b.conv3(p + ".upsamplers.0.conv", out, out);
            }
        }

        int mid = ch[n - 1];
        b.attention("mid_block.attentions.0", mid, config.heads(mid), config.headDim(mid), config.midAttentionGroups());
        b.resnet("mid_block.resnets.0", mid, mid, temb, groups);
        b.resnet("mid_block.resnets.1", mid, mid, temb, groups);

        b.norm("conv_norm_out", ch[0]);
        b.conv3("conv_out", ch[0], config.outChannels());

        params = Collections.unmodifiableList(b.params);
        byName = Collections.unmodifiableMap(b.byName);
        resnets = List.copyOf(b.resnets);
        attentions = List.copyOf(b.attentions);
        parameterCount = b.count;
        bufferFloats = b.offset;
    }

    /** The layout of the network described by {@code config}. */
    public static UNet2DLayout of(UNet2DConfig config) {
        return new UNet2DLayout(Objects.requireNonNull(config, "config"));
    }

    private static final class Builder {
        final List<Param> params = new ArrayList<>();
        final Map<String, Param> byName = new LinkedHashMap<>();
        final List<Resnet> resnets = new ArrayList<>();
        final List<Attention> attentions = new ArrayList<>();
        long offset;
        long count;

        void add(String name, Kind kind, int... shape) {
            Param p = new Param(name, kind, shape, offset);
            if (byName.put(name, p) != null) {
                throw new IllegalStateException("duplicate parameter " + name); // a bug in this class
            }
            params.add(p);
            count += p.size();
            offset = alignUp(offset + p.size());
        }

        void conv3(String prefix, int in, int out) {
            add(prefix + ".weight", Kind.CONV3X3, out, in, 3, 3);
            add(prefix + ".bias", Kind.BIAS, out);
        }

        void linear(String prefix, int in, int out) {
            add(prefix + ".weight", Kind.LINEAR, out, in);
            add(prefix + ".bias", Kind.BIAS, out);
        }

        void norm(String prefix, int c) {
            add(prefix + ".weight", Kind.NORM_WEIGHT, c);
            add(prefix + ".bias", Kind.NORM_BIAS, c);
        }

        /** ResnetBlock2D, modules in registration order: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut. */
        void resnet(String prefix, int in, int out, int temb, int groups) {
            boolean shortcut = in != out;
            resnets.add(new Resnet(prefix, in, out, shortcut, groups));
            norm(prefix + ".norm1", in);
            conv3(prefix + ".conv1", in, out);
            linear(prefix + ".time_emb_proj", temb, out);
            norm(prefix + ".norm2", out);
            conv3(prefix + ".conv2", out, out);
            if (shortcut) {
                add(prefix + ".conv_shortcut.weight", Kind.CONV1X1, out, in, 1, 1);
                add(prefix + ".conv_shortcut.bias", Kind.BIAS, out);
            }
        }

        /** Attention (from a deprecated attention block): group_norm, to_q, to_k, to_v, to_out.0. */
        void attention(String prefix, int c, int heads, int headDim, int groups) {
            attentions.add(new Attention(prefix, c, heads, headDim, groups));
            norm(prefix + ".group_norm", c);
            linear(prefix + ".to_q", c, c);
            linear(prefix + ".to_k", c, c);
            linear(prefix + ".to_v", c, c);
            linear(prefix + ".to_out.0", c, c);
        }
    }

    static long alignUp(long floats) {
        return (floats + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    }

    public UNet2DConfig config() {
        return config;
    }

    /** Every parameter in state-dict order, unmodifiable. */
    public List<Param> params() {
        return params;
    }

    public boolean contains(String name) {
        return byName.containsKey(name);
    }

    /** The parameter with this current diffusers name. */
    public Param param(String name) {
        Param p = byName.get(name);
        if (p == null) {
            throw new IllegalArgumentException("UNet2DModel has no parameter named '" + name + "'");
        }
        return p;
    }

    /** The parameter a checkpoint tensor name refers to (legacy attention names mapped), or null. */
    public Param resolve(String checkpointName) {
        return byName.get(currentName(checkpointName));
    }

    /** Total number of parameters (without alignment padding): 35,746,307 for google/ddpm-cifar10-32. */
    public long parameterCount() {
        return parameterCount;
    }

    /** Floats needed for the flat buffer (sum of sizes plus alignment padding). */
    public long bufferFloats() {
        return bufferFloats;
    }

    /**
     * A flat parameter array in the device layout (HWIO convolution weights), from one in the on-disk layout
     * (OIHW); every other parameter copied, alignment padding zeroed.
     */
    public float[] diskToDevice(float[] disk) {
        return convertConvolutions(disk, true);
    }

    /** The inverse of {@link #diskToDevice}: device layout (HWIO) to on-disk layout (OIHW). */
    public float[] deviceToDisk(float[] device) {
        return convertConvolutions(device, false);
    }

    private float[] convertConvolutions(float[] src, boolean toDevice) {
        if (src.length != bufferFloats) {
            throw new IllegalArgumentException("a flat parameter array has " + bufferFloats + " floats, got "
                    + src.length);
        }
        float[] out = new float[src.length];
        for (Param p : params) {
            int off = Math.toIntExact(p.offset());
            int size = Math.toIntExact(p.size());
            int[] s = p.shape();
            if (p.kind() == Kind.CONV3X3 || p.kind() == Kind.CONV1X1) {
                float[] w = Arrays.copyOfRange(src, off, off + size);
                float[] c = toDevice ? ConvKernels.oihwToHwio(w, s[0], s[1], s[2], s[3])
                        : ConvKernels.hwioToOihw(w, s[2], s[3], s[1], s[0]);
                System.arraycopy(c, 0, out, off, size);
            } else {
                System.arraycopy(src, off, out, off, size);
            }
        }
        return out;
    }

    /** Every ResnetBlock2D in state-dict order. */
    public List<Resnet> resnets() {
        return resnets;
    }

    /** Every attention block in state-dict order. */
    public List<Attention> attentions() {
        return attentions;
    }

    private static final Pattern LEGACY = Pattern.compile(
            "^((?:down_blocks|up_blocks)\\.\\d+\\.attentions\\.\\d+|mid_block\\.attentions\\.\\d+)"
                    + "\\.(query|key|value|proj_attn)\\.(weight|bias)$");
    private static final Map<String, String> LEGACY_NAMES = Map.of(
            "query", "to_q", "key", "to_k", "value", "to_v", "proj_attn", "to_out.0");

    /**
     * The current diffusers name of a checkpoint tensor: legacy attention names
     * ({@code ...attentions.N.query|key|value|proj_attn.weight|bias}) are mapped to
     * {@code to_q|to_k|to_v|to_out.0}; any other name is returned unchanged.
     */
    public static String currentName(String checkpointName) {
        Objects.requireNonNull(checkpointName, "checkpointName");
        Matcher m = LEGACY.matcher(checkpointName);
        if (!m.matches()) {
            return checkpointName;
        }
        return m.group(1) + "." + LEGACY_NAMES.get(m.group(2)) + "." + m.group(3);
    }

    /**
     * Checks that a checkpoint (tensor name to shape) holds exactly this layout's parameters with
     * their shapes, legacy attention names allowed. Throws an {@link IllegalArgumentException}
     * listing every missing, unexpected, doubly-named (legacy and current) and mis-shaped tensor.
     */
    public void checkCheckpoint(Map<String, long[]> checkpointShapes) {
        Objects.requireNonNull(checkpointShapes, "checkpointShapes");
        List<String> problems = new ArrayList<>();
        Map<String, String> seen = new HashMap<>();
        for (Map.Entry<String, long[]> e : new TreeMap<>(checkpointShapes).entrySet()) {
            String name = e.getKey();
            String current = currentName(name);
            Param p = byName.get(current);
            if (p == null) {
                problems.add("unexpected tensor '" + name + "'");
                continue;
            }
            String other = seen.put(current, name);
            if (other != null) {
                problems.add("tensors '" + other + "' and '" + name + "' both map to '" + current + "'");
            }
            if (!Arrays.equals(p.shapeLong(), e.getValue())) {
                problems.add("tensor '" + name + "' has shape " + Arrays.toString(e.getValue()) + ", expected "
                        + Arrays.toString(p.shape));
            }
        }
        for (Param p : params) {
            if (!seen.containsKey(p.name)) {
                problems.add("missing tensor '" + p.name + "'");
            }
        }
        if (!problems.isEmpty()) {
            int shown = Math.min(problems.size(), 20);
            String more = problems.size() > shown ? " (and " + (problems.size() - shown) + " more)" : "";
            throw new IllegalArgumentException("checkpoint does not match the UNet2DModel layout: "
                    + String.join("; ", problems.subList(0, shown)) + more);
        }
    }
}
