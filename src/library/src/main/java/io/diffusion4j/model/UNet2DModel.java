package io.diffusion4j.model;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConcatKernels;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.LinearKernels.AttentionShape;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * diffusers' {@code UNet2DModel} (positional time embedding, {@code resnet_time_scale_shift "default"})
 * on one backend: forward pass saving what the backward needs, and the backward pass accumulating every
 * parameter gradient.
 *
 * <p><b>Dropout.</b> With {@link UNet2DConfig#dropout()} p &gt; 0, every ResnetBlock2D applies
 * {@code torch.nn.Dropout(p)} between norm2 + SiLU and conv2, in training only:
 * {@link #forwardTraining} applies it, {@link #forward} (inference, as {@code model.eval()}) does not.
 * Masks come from the counter-based RNG ({@link DropoutKernels}), a pure function of (seed, offset,
 * element), so the backward regenerates them and the same arguments give the same result on every
 * backend. Offsets are allotted per resnet: the k-th ResnetBlock2D in forward order (down blocks, mid
 * block, up blocks; {@link #dropoutStreams()} of them) uses the Philox stream
 * {@code (dropoutSeed, dropoutOffset + k)} over its {@code [N, H, W, C]} activation, element i of the
 * tensor in memory order being element i of the stream. A caller that gives each step the offsets
 * {@code [step * dropoutStreams(), (step + 1) * dropoutStreams())} (as {@code Trainer} does) gets a
 * distinct stream for every resnet of every step.
 *
 * <p><b>Parameters.</b> One flat float32 parameter tensor and one flat gradient tensor of
 * {@link UNet2DLayout#bufferFloats()} floats, each parameter at its {@link UNet2DLayout.Param#offset()}.
 * In these device buffers convolution weights are <b>HWIO</b> {@code [kh, kw, in, out]} (what the conv
 * kernels read); linear weights are {@code [out, in]} and vectors {@code [C]}, as on disk. The host
 * arrays of {@link #loadFlat} / {@link #flatParameters} / {@link #flatGradients} use the same offsets
 * but the <b>on-disk</b> shapes ({@code OIHW} for convolutions), so they can be filled directly from
 * a diffusers state dict; alignment padding is zero on output and ignored on input.
 *
 * <p><b>Initialisation</b> (the constructor, or {@link #initParameters(long)}): PyTorch's defaults for
 * {@code nn.Conv2d} / {@code nn.Linear} ({@code kaiming_uniform_(a = sqrt(5))}, which is
 * {@code U(-1/sqrt(fan_in), 1/sqrt(fan_in))}, and the bias the same bound), fan_in = in * kh * kw;
 * GroupNorm weight 1, bias 0. Values are drawn from one {@link SplittableRandom} seeded with
 * {@code seed}, parameter by parameter in state-dict order, each in its on-disk element order, so the
 * result is independent of the backend.
 *
 * <p><b>Activations.</b> {@link #forward} allocates the saved activations and backward scratch (an inference
 * instance from {@link #sharingParameters()}: the forward activations only) on the first call for a given
 * {@code (N, H, W)} and reuses them for later calls of the same size (a new size
 * releases and reallocates). The tensors returned by {@link #forward} and {@link #backward} belong to the
 * model: valid until the next call or {@link #close}. {@link #close} releases everything.
 *
 * <p>Not thread-safe. For concurrent inference, {@link #sharingParameters()} gives each thread its own
 * instance over the same parameter buffer (own activations, no gradients).
 */
public final class UNet2DModel implements AutoCloseable {
    /** diffusers' get_timestep_embedding defaults used by UNet2DModel's Timesteps module. */
    private static final float TIME_SCALE = 1f;
    private static final float TIME_MAX_PERIOD = 10000f;

    private final Backend backend;
    private final UNet2DConfig config;
    private final UNet2DLayout layout;
    private final Tensor params;
    private final Tensor grads;
    private final Map<String, Tensor> paramViews = new HashMap<>();
    private final Map<String, Tensor> gradViews = new HashMap<>();
    private final List<Tensor> ownedViews = new ArrayList<>();
    private final float eps;
    private final double dropout; // config.dropout(): the probability p, applied in training forwards only
    private int resnetCount; // resnets built so far: the next one's dropout stream index
    /** Non-null for an inference instance: the model whose parameter buffer this one reads. */
    private final UNet2DModel source;

    // the network
    private final Conv convIn;
    private final String lin1 = "time_embedding.linear_1";
    private final String lin2 = "time_embedding.linear_2";
    private final List<List<Step>> downUnits = new ArrayList<>(); // each unit's output is one skip connection
    private final List<Step> mid = new ArrayList<>();
    private final List<UpUnit> upUnits = new ArrayList<>();
    private final GroupNorm normOut;
    private final Conv convOut;

    // activations and scratch for the current size
    private final List<Tensor> acts = new ArrayList<>();
    private final List<Tensor> actViews = new ArrayList<>();
    private int curN = -1, curH = -1, curW = -1;
    private boolean forwardDone;
    // dropout of the last forward (active only in a training forward with p > 0); the backward reuses it
    private boolean dropoutActive;
    private long dropoutSeed, dropoutOffset;
    /** Test hook (package-private): given the Philox offset of every dropout call, forward and backward, in order. */
    java.util.function.LongConsumer dropoutProbe;
    private Tensor tproj, e1, e1s, emb, embS; // time embedding chain
    private Tensor dEmbS, dEmbTmp, dEmb, de1s, de1;
    private final List<Tensor> skips = new ArrayList<>();
    private boolean closed;

    /** Builds the network with parameters initialised from {@code seed} (see the class comment). */
    public UNet2DModel(Backend backend, UNet2DConfig config, long seed) {
        this(backend, config, seed, null, true);
    }

    /**
     * A model for inference only (e.g. a sampling server): its own parameter buffer (initialised as the
     * constructor does with seed 0, to be replaced by {@link #loadFlat}) and no gradient buffer, so it holds the
     * weights alone. {@link #backward}, {@link #forwardTraining} and the gradient accessors throw on it;
     * {@link #sharingParameters()} works as on any model.
     */
    public static UNet2DModel forInference(Backend backend, UNet2DConfig config) {
        return new UNet2DModel(backend, config, 0L, null, false);
    }

    /**
     * With {@code source}: an inference instance over source's parameters (see {@link #sharingParameters()});
     * without, a model with its own parameters and, when {@code withGradients}, a gradient buffer.
     */
    private UNet2DModel(Backend backend, UNet2DConfig config, long seed, UNet2DModel source, boolean withGradients) {
        this.source = source;
        this.backend = Objects.requireNonNull(backend, "backend");
        this.config = Objects.requireNonNull(config, "config");
        this.layout = UNet2DLayout.of(config);
        if (layout.bufferFloats() > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("the model has " + layout.bufferFloats()
                    + " parameter floats; at most 2^31 - 17 are supported (one Java array)");
        }
        this.eps = (float) config.normEps();
        this.dropout = config.dropout();
        Tensor p = null, g = null;
        try {
            if (source == null) {
                p = Tensor.allocate(backend, DType.FLOAT32, layout.bufferFloats());
                if (withGradients) g = Tensor.allocate(backend, DType.FLOAT32, layout.bufferFloats());
            }
            this.params = source == null ? p : source.params;
            this.grads = g;
            for (UNet2DLayout.Param prm : layout.params()) {
                long[] s = computeShape(prm);
                Tensor pv = params.view(prm.offset(), s);
                ownedViews.add(pv);
                paramViews.put(prm.name(), pv);
                if (g == null) continue; // an inference instance has no gradients
                Tensor gv = g.view(prm.offset(), s);
                ownedViews.add(gv);
                gradViews.put(prm.name(), gv);
            }
            if (g != null) g.fill(0f);

            int[] ch = config.blockOutChannels();
            int n = ch.length;
            int layers = config.layersPerBlock();
            convIn = new Conv("conv_in", Conv2dSpec.same3x3());
            downUnits.add(List.of(convIn));
            for (int i = 0; i < n; i++) {
                String pre = "down_blocks." + i;
                boolean attn = config.downBlockTypes().get(i).equals(UNet2DConfig.ATTN_DOWN_BLOCK);
                for (int j = 0; j < layers; j++) {
                    List<Step> unit = new ArrayList<>();
                    unit.add(new Resnet(pre + ".resnets." + j, 1f));
                    if (attn) unit.add(new Attention(pre + ".attentions." + j, 1f));
                    downUnits.add(unit);
                }
                if (i != n - 1) {
                    downUnits.add(List.of(new Conv(pre + ".downsamplers.0.conv",
                            Conv2dSpec.downsample3x3(config.downsamplePadding()))));
                }
            }
            float midScale = (float) (1.0 / config.midBlockScaleFactor());
            mid.add(new Resnet("mid_block.resnets.0", midScale));
            mid.add(new Attention("mid_block.attentions.0", midScale));
            mid.add(new Resnet("mid_block.resnets.1", midScale));
            int skip = downUnits.size();
            for (int i = 0; i < n; i++) {
                String pre = "up_blocks." + i;
                boolean attn = config.upBlockTypes().get(i).equals(UNet2DConfig.ATTN_UP_BLOCK);
                for (int j = 0; j < layers + 1; j++) {
                    List<Step> steps = new ArrayList<>();
                    steps.add(new Resnet(pre + ".resnets." + j, 1f));
                    if (attn) steps.add(new Attention(pre + ".attentions." + j, 1f));
                    upUnits.add(new UpUnit(--skip, new Concat(), steps, null));
                }
                if (i != n - 1) {
                    upUnits.add(new UpUnit(-1, null, List.of(), new Conv(pre + ".upsamplers.0.conv",
                            Conv2dSpec.upsample3x3())));
                }
            }
            if (skip != 0) throw new IllegalStateException("skip connections do not balance: " + skip); // a bug here
            normOut = new GroupNorm("conv_norm_out", config.normNumGroups(), true);
            convOut = new Conv("conv_out", Conv2dSpec.same3x3());
            if (source == null) initParameters(seed);
        } catch (RuntimeException e) {
            // the final fields may be unassigned here: release through the locals
            for (int i = ownedViews.size() - 1; i >= 0; i--) ownedViews.get(i).close();
            if (g != null) g.close();
            if (p != null) p.close();
            throw e;
        }
    }

    /** The shape a parameter has in the device buffer: HWIO for convolutions, on-disk otherwise. */
    private static long[] computeShape(UNet2DLayout.Param p) {
        int[] s = p.shape();
        return switch (p.kind()) {
            case CONV3X3, CONV1X1 -> new long[] {s[2], s[3], s[1], s[0]};
            default -> Arrays.stream(s).asLongStream().toArray();
        };
    }

    /**
     * A new model over this model's parameter buffer (not a copy) with its own activation workspace and no
     * gradients, for inference: several threads may each run {@link #forward} on their own instance at once
     * while the parameters are not modified. {@link #backward}, the gradient accessors and the parameter
     * setters throw on it. Close every instance before this model (its parameter buffer cannot be freed
     * while they hold views of it).
     */
    public UNet2DModel sharingParameters() {
        checkOpen();
        UNet2DModel root = source != null ? source : this;
        return new UNet2DModel(backend, config, 0L, root, false);
    }

    /** True for an instance made by {@link #sharingParameters()}. */
    public boolean isSharedInstance() {
        return source != null;
    }

    private void checkOwnsParameters(String what) {
        if (source != null) {
            throw new IllegalStateException(what + " is not available on an inference instance that shares another"
                    + " model's parameters (see sharingParameters)");
        }
    }

    /** Gradients, backward and training forwards: not on a shared instance nor on a {@link #forInference} model. */
    private void checkHasGradients(String what) {
        checkOwnsParameters(what);
        if (grads == null) throw new IllegalStateException(what + " is not available on a model made for inference (forInference)");
    }

    public Backend backend() {
        return backend;
    }

    public UNet2DConfig config() {
        return config;
    }

    public UNet2DLayout layout() {
        return layout;
    }

    /** The flat parameter buffer (conv weights HWIO). */
    public Tensor parameters() {
        checkOpen();
        return params;
    }

    /** The flat gradient buffer, same layout as {@link #parameters()}. */
    public Tensor gradients() {
        checkOpen();
        checkHasGradients("gradients()");
        return grads;
    }

    /** The view of one parameter in the flat buffer (HWIO for convolution weights). */
    public Tensor parameter(String name) {
        checkOpen();
        return requireView(paramViews, name);
    }

    /** The view of one parameter's gradient. */
    public Tensor gradient(String name) {
        checkOpen();
        checkHasGradients("gradient(name)");
        return requireView(gradViews, name);
    }

    private Tensor requireView(Map<String, Tensor> views, String name) {
        Tensor t = views.get(UNet2DLayout.currentName(Objects.requireNonNull(name, "name")));
        if (t == null) throw new IllegalArgumentException("UNet2DModel has no parameter named '" + name + "'");
        return t;
    }

    /** Sets every gradient to 0 (backward accumulates). */
    public void zeroGradients() {
        checkOpen();
        checkHasGradients("zeroGradients()");
        grads.fill(0f);
    }

    /** Re-initialises every parameter from {@code seed} (PyTorch defaults, see the class comment). */
    public void initParameters(long seed) {
        checkOpen();
        checkOwnsParameters("initParameters");
        SplittableRandom rnd = new SplittableRandom(seed);
        float[] flat = new float[(int) layout.bufferFloats()];
        for (UNet2DLayout.Param p : layout.params()) {
            int off = (int) p.offset();
            int size = (int) p.size();
            switch (p.kind()) {
                case NORM_WEIGHT -> Arrays.fill(flat, off, off + size, 1f);
                case NORM_BIAS -> Arrays.fill(flat, off, off + size, 0f);
                case CONV3X3, CONV1X1, LINEAR -> uniform(rnd, flat, off, size, fanIn(p));
                case BIAS -> uniform(rnd, flat, off, size,
                        fanIn(layout.param(p.name().substring(0, p.name().length() - "bias".length()) + "weight")));
            }
        }
        loadFlat(flat);
    }

    private static int fanIn(UNet2DLayout.Param weight) {
        int[] s = weight.shape();
        int f = 1;
        for (int i = 1; i < s.length; i++) f *= s[i];
        return f;
    }

    private static void uniform(SplittableRandom rnd, float[] dst, int off, int size, int fanIn) {
        double bound = 1.0 / Math.sqrt(fanIn);
        for (int i = 0; i < size; i++) dst[off + i] = (float) rnd.nextDouble(-bound, bound);
    }

    /**
     * Loads every parameter from a host array of {@link UNet2DLayout#bufferFloats()} floats holding each
     * parameter at its layout offset in its on-disk shape (OIHW convolutions); converts convolutions to HWIO.
     */
    public void loadFlat(float[] flat) {
        checkOpen();
        checkOwnsParameters("loadFlat");
        Objects.requireNonNull(flat, "flat");
        if (flat.length != layout.bufferFloats()) {
            throw new IllegalArgumentException("flat has " + flat.length + " floats, the layout needs "
                    + layout.bufferFloats());
        }
        params.copyFrom(convert(flat, true));
    }

    /** Every parameter as {@link #loadFlat} takes them (on-disk shapes, OIHW convolutions). */
    public float[] flatParameters() {
        checkOpen();
        return convert(params.toFloatArray(), false);
    }

    /** Every gradient in the on-disk layout of {@link #flatParameters()}. */
    public float[] flatGradients() {
        checkOpen();
        checkHasGradients("flatGradients()");
        return convert(grads.toFloatArray(), false);
    }

    /** OIHW <-> HWIO for the convolution weights; everything else copied; padding zeroed. */
    private float[] convert(float[] src, boolean toDevice) {
        float[] out = new float[src.length];
        for (UNet2DLayout.Param p : layout.params()) {
            int off = (int) p.offset();
            int size = (int) p.size();
            int[] s = p.shape();
            if (p.kind() == UNet2DLayout.Kind.CONV3X3 || p.kind() == UNet2DLayout.Kind.CONV1X1) {
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

    // ---------------------------------------------------------------------------------------------
    // forward / backward

    /**
     * The forward pass in inference mode (no dropout, as diffusers after {@code model.eval()}): {@code x}
     * NHWC {@code [N, H, W, in_channels]} (H, W multiples of {@code 2^(len(block_out_channels) - 1)}), one
     * timestep per sample. Returns the model-owned output {@code [N, H, W, out_channels]}; saves the
     * activations {@link #backward} needs.
     */
    public Tensor forward(Tensor x, float[] timesteps) {
        return run(x, timesteps, false, 0, 0);
    }

    /**
     * Allocates the activation workspace for inputs {@code [n, h, w, in_channels]} now, as {@link #forward}
     * would on its first call at that size, so that forward calls at that size allocate nothing (needed before
     * a graph capture of forward calls, which refuses allocation).
     */
    public void reserve(int n, int h, int w) {
        checkOpen();
        int f = 1 << (config.numBlocks() - 1);
        if (n < 1 || h < 1 || w < 1 || h > 1 << 15 || w > 1 << 15 || h % f != 0 || w % f != 0) {
            throw new IllegalArgumentException("reserve(" + n + ", " + h + ", " + w + "): n >= 1, H and W multiples of "
                    + f + " in [1, 32768]");
        }
        ensureAllocated(n, h, w);
    }

    /**
     * The forward pass in training mode: as {@link #forward}, and with {@link UNet2DConfig#dropout()} p &gt; 0
     * every ResnetBlock2D drops activations between norm2 + SiLU and conv2, resnet k (forward order) with
     * the Philox stream {@code (dropoutSeed, dropoutOffset + k)} (unsigned 64-bit arithmetic), k &lt;
     * {@link #dropoutStreams()}. With p = 0 it is exactly {@link #forward}. {@link #backward} applies the
     * same masks (regenerated, not stored).
     */
    public Tensor forwardTraining(Tensor x, float[] timesteps, long dropoutSeed, long dropoutOffset) {
        checkHasGradients("forwardTraining"); // an inference instance has no backward to pair it with
        return run(x, timesteps, dropout > 0, dropoutSeed, dropoutOffset);
    }

    /**
     * How many Philox offsets one {@link #forwardTraining} uses (one per ResnetBlock2D):
     * {@code dropoutOffset .. dropoutOffset + dropoutStreams() - 1}.
     */
    public int dropoutStreams() {
        return resnetCount;
    }

    private Tensor run(Tensor x, float[] timesteps, boolean applyDropout, long seed, long offset) {
        checkOpen();
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(timesteps, "timesteps");
        if (x.dtype() != DType.FLOAT32 || x.rank() != 4 || x.dim(3) != config.inChannels()) {
            throw new IllegalArgumentException("x must be float32[N, H, W, " + config.inChannels() + "] (NHWC), got "
                    + x.describe());
        }
        if (x.backend() != backend) {
            throw new IllegalArgumentException("x is on backend " + x.backend().kind().cliName() + ", the model on "
                    + backend.kind().cliName());
        }
        int f = 1 << (config.numBlocks() - 1);
        if (x.dim(0) > Integer.MAX_VALUE || x.dim(1) > 1 << 15 || x.dim(2) > 1 << 15 || x.dim(1) % f != 0
                || x.dim(2) % f != 0) {
            throw new IllegalArgumentException("x " + x.describe() + ": H and W must be multiples of " + f
                    + " (at most 32768) and N below 2^31");
        }
        if (timesteps.length != x.dim(0)) {
            throw new IllegalArgumentException("timesteps has " + timesteps.length + " entries, x has batch " + x.dim(0));
        }
        for (int i = 0; i < timesteps.length; i++) {
            if (!Float.isFinite(timesteps[i])) {
                throw new IllegalArgumentException("timesteps[" + i + "] = " + timesteps[i] + " is not finite");
            }
        }
        ensureAllocated((int) x.dim(0), (int) x.dim(1), (int) x.dim(2));
        forwardDone = false;
        dropoutActive = applyDropout;
        dropoutSeed = seed;
        dropoutOffset = offset;

        DiffusionKernels.timestepEmbedding(backend, timesteps, config.timestepInputDim(), config.flipSinToCos(),
                (float) config.freqShift(), TIME_SCALE, TIME_MAX_PERIOD, tproj);
        LinearKernels.linear(tproj, p(lin1 + ".weight"), p(lin1 + ".bias"), e1);
        NormKernels.silu(e1, e1s);
        LinearKernels.linear(e1s, p(lin2 + ".weight"), p(lin2 + ".bias"), emb);
        // every ResnetBlock2D applies silu to temb before its time_emb_proj: computed once here
        NormKernels.silu(emb, embS);

        Tensor h = x;
        skips.clear();
        for (List<Step> unit : downUnits) {
            for (Step s : unit) h = s.forward(h);
            skips.add(h);
        }
        for (Step s : mid) h = s.forward(h);
        for (UpUnit u : upUnits) {
            if (u.concat != null) h = u.concat.forward(h, skips.get(u.skip));
            for (Step s : u.steps) h = s.forward(h);
            if (u.upsampler != null) h = u.upsampler.forward(h);
        }
        h = normOut.forward(h);
        h = convOut.forward(h);
        forwardDone = true;
        return h;
    }

    /**
     * The backward pass of the last {@link #forward} for the upstream gradient {@code dOut} (the output's
     * shape): accumulates (+=) every parameter gradient into {@link #gradients()} and returns the
     * model-owned gradient of the input x.
     */
    public Tensor backward(Tensor dOut) {
        return backward(dOut, true);
    }

    /**
     * As {@link #backward} without the gradient of the input x: training needs the parameter gradients only, and
     * conv_in's input gradient (a 9 x C_in x 32-channel product over every pixel) is skipped.
     */
    public void backwardParameters(Tensor dOut) {
        backward(dOut, false);
    }

    private Tensor backward(Tensor dOut, boolean inputGradient) {
        checkOpen();
        checkHasGradients("backward");
        if (!forwardDone) throw new IllegalStateException("backward needs a completed forward pass first");
        Objects.requireNonNull(dOut, "dOut");
        long[] outShape = {curN, curH, curW, config.outChannels()};
        if (dOut.dtype() != DType.FLOAT32 || !Arrays.equals(dOut.shape(), outShape) || dOut.backend() != backend) {
            throw new IllegalArgumentException("dOut must be float32" + Arrays.toString(outShape) + " on "
                    + backend.kind().cliName() + ", got " + dOut.describe());
        }
        dEmbS.fill(0f);
        Tensor[] skipGrads = new Tensor[skips.size()];
        Tensor g = convOut.backward(dOut);
        g = normOut.backward(g);
        for (int i = upUnits.size() - 1; i >= 0; i--) {
            UpUnit u = upUnits.get(i);
            if (u.upsampler != null) g = u.upsampler.backward(g);
            for (int j = u.steps.size() - 1; j >= 0; j--) g = u.steps.get(j).backward(g);
            if (u.concat != null) {
                u.concat.backward(g);
                g = u.concat.da;
                skipGrads[u.skip] = u.concat.db;
            }
        }
        for (int j = mid.size() - 1; j >= 0; j--) g = mid.get(j).backward(g);
        for (int k = downUnits.size() - 1; k >= 0; k--) {
            // the unit's output fed both the next layer (g) and a skip connection
            NormKernels.residualAdd(g, skipGrads[k], 1f, g);
            List<Step> unit = downUnits.get(k);
            for (int j = unit.size() - 1; j >= 0; j--) {
                Step st = unit.get(j);
                g = st == convIn && !inputGradient ? convIn.backwardParametersOnly(g) : st.backward(g);
            }
        }
        NormKernels.siluBackward(dEmbS, emb, dEmb);
        LinearKernels.linearBackward(e1s, p(lin2 + ".weight"), dEmb, de1s, gr(lin2 + ".weight"), gr(lin2 + ".bias"));
        NormKernels.siluBackward(de1s, e1, de1);
        LinearKernels.linearBackward(tproj, p(lin1 + ".weight"), de1, null, gr(lin1 + ".weight"), gr(lin1 + ".bias"));
        return g;
    }

    private Tensor p(String name) {
        return paramViews.get(name);
    }

    private Tensor gr(String name) {
        return gradViews.get(name);
    }

    // ---------------------------------------------------------------------------------------------
    // activation memory

    private void ensureAllocated(int n, int h, int w) {
        if (n == curN && h == curH && w == curW) return;
        releaseActivations();
        try {
            int c0 = config.timestepInputDim();
            int t = config.timeEmbedDim();
            tproj = act(n, c0);
            e1 = act(n, t);
            e1s = act(n, t);
            emb = act(n, t);
            embS = act(n, t);
            dEmbS = bwd(n, t);
            dEmbTmp = bwd(n, t);
            dEmb = bwd(n, t);
            de1s = bwd(n, t);
            de1 = bwd(n, t);
            Shape s = new Shape(n, h, w, config.inChannels());
            List<Shape> skipShapes = new ArrayList<>();
            for (List<Step> unit : downUnits) {
                for (Step st : unit) s = st.alloc(s);
                skipShapes.add(s);
            }
            for (Step st : mid) s = st.alloc(s);
            for (UpUnit u : upUnits) {
                if (u.concat != null) s = u.concat.alloc(s, skipShapes.get(u.skip));
                for (Step st : u.steps) s = st.alloc(s);
                if (u.upsampler != null) s = u.upsampler.alloc(s);
            }
            s = normOut.alloc(s);
            convOut.alloc(s);
            curN = n;
            curH = h;
            curW = w;
        } catch (RuntimeException e) {
            releaseActivations();
            throw e;
        }
    }

    private Tensor act(long... shape) {
        Tensor t = Tensor.allocate(backend, DType.FLOAT32, shape);
        acts.add(t);
        return t;
    }

    /**
     * A buffer only {@link #backward} uses (input gradients and backward scratch): none (null) on an inference
     * instance, which cannot run backward, so it holds forward activations only.
     */
    private Tensor bwd(long... shape) {
        return grads == null ? null : act(shape);
    }

    private Tensor bwdView(Tensor owner, long... shape) {
        return owner == null ? null : actView(owner, shape);
    }

    private Tensor actView(Tensor owner, long... shape) {
        Tensor t = owner.view(0, shape);
        actViews.add(t);
        return t;
    }

    private void releaseActivations() {
        forwardDone = false;
        curN = curH = curW = -1;
        skips.clear();
        for (int i = actViews.size() - 1; i >= 0; i--) actViews.get(i).close();
        actViews.clear();
        for (int i = acts.size() - 1; i >= 0; i--) acts.get(i).close();
        acts.clear();
    }

    /** Native bytes held by saved activations and scratch (0 before the first forward). */
    public long activationBytes() {
        long b = 0;
        for (Tensor t : acts) b += t.byteSize();
        return b;
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("UNet2DModel is closed");
    }

    /** Releases parameters, gradients, activations. Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        closeAll();
    }

    private void closeAll() {
        releaseActivations();
        for (int i = ownedViews.size() - 1; i >= 0; i--) ownedViews.get(i).close();
        ownedViews.clear();
        if (grads != null) grads.close();
        if (params != null && source == null) params.close();
    }

    // ---------------------------------------------------------------------------------------------
    // layers

    private record Shape(int n, int h, int w, int c) {
        long[] dims() {
            return new long[] {n, h, w, c};
        }
    }

    /** One layer: allocates its outputs for an input shape, runs forward and backward (returns dx). */
    private interface Step {
        Shape alloc(Shape in);

        Tensor forward(Tensor x);

        Tensor backward(Tensor dy);
    }

    /** A skip concatenation, the block's steps, or an upsampler (exactly one of concat/upsampler may be set). */
    private record UpUnit(int skip, Concat concat, List<Step> steps, Conv upsampler) {}

    private final class Conv implements Step {
        final Conv2dSpec spec;
        final Tensor w, b, dw, db;
        Tensor x, y, dx;

        Conv(String prefix, Conv2dSpec spec) {
            this.spec = spec;
            w = p(prefix + ".weight");
            b = p(prefix + ".bias");
            dw = gr(prefix + ".weight");
            db = gr(prefix + ".bias");
        }

        @Override
        public Shape alloc(Shape in) {
            long[] ys = spec.outputShape(in.dims(), w.dim(3));
            y = act(ys);
            dx = bwd(in.dims());
            return new Shape(in.n(), (int) ys[1], (int) ys[2], (int) ys[3]);
        }

        @Override
        public Tensor forward(Tensor x) {
            this.x = x;
            ConvKernels.forward(spec, x, w, b, y);
            return y;
        }

        @Override
        public Tensor backward(Tensor dy) {
            ConvKernels.backward(spec, x, w, dy, dx, dw, db);
            return dx;
        }

        /** dw and db only; returns null (the caller needs no gradient of this layer's input). */
        Tensor backwardParametersOnly(Tensor dy) {
            ConvKernels.backward(spec, x, w, dy, null, dw, db);
            return null;
        }
    }

    private final class GroupNorm implements Step {
        final Tensor gamma, beta, dgamma, dbeta;
        final int groups;
        final boolean silu;
        Tensor x, y, mean, rstd, dx;

        GroupNorm(String prefix, int groups, boolean silu) {
            gamma = p(prefix + ".weight");
            beta = p(prefix + ".bias");
            dgamma = gr(prefix + ".weight");
            dbeta = gr(prefix + ".bias");
            this.groups = groups;
            this.silu = silu;
        }

        @Override
        public Shape alloc(Shape in) {
            y = act(in.dims());
            dx = bwd(in.dims());
            mean = act(in.n(), groups);
            rstd = act(in.n(), groups);
            return in;
        }

        @Override
        public Tensor forward(Tensor x) {
            this.x = x;
            NormKernels.groupNorm(x, gamma, beta, groups, eps, silu, y, mean, rstd);
            return y;
        }

        @Override
        public Tensor backward(Tensor dy) {
            NormKernels.groupNormBackward(dy, x, gamma, beta, mean, rstd, groups, silu, dx, dgamma, dbeta);
            return dx;
        }
    }

    /**
     * ResnetBlock2D: {@code out = (shortcut(x) + conv2(dropout(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb)))))))
     * * invScale}; the temb add is fused into norm2; dropout only in a training forward with p > 0.
     */
    private final class Resnet implements Step {
        final float invScale;
        final GroupNorm norm1;
        final Conv conv1, conv2, shortcut;
        final Tensor tw, tb, dtw, dtb, g2, b2, dg2, db2;
        final int groups;
        final int dropoutIndex; // this resnet's Philox stream: dropoutOffset + dropoutIndex
        Tensor tproj1, h3, mean2, rstd2, out, dScaled, dh2, dtproj, dx;

        Resnet(String prefix, float invScale) {
            this.invScale = invScale;
            this.dropoutIndex = resnetCount++;
            UNet2DLayout.Resnet r = layout.resnets().stream().filter(q -> q.prefix().equals(prefix)).findFirst()
                    .orElseThrow(() -> new IllegalStateException("no resnet " + prefix));
            groups = r.groups();
            norm1 = new GroupNorm(prefix + ".norm1", groups, true);
            conv1 = new Conv(prefix + ".conv1", Conv2dSpec.same3x3());
            conv2 = new Conv(prefix + ".conv2", Conv2dSpec.same3x3());
            shortcut = r.hasShortcut() ? new Conv(prefix + ".conv_shortcut", Conv2dSpec.pointwise()) : null;
            tw = p(prefix + ".time_emb_proj.weight");
            tb = p(prefix + ".time_emb_proj.bias");
            dtw = gr(prefix + ".time_emb_proj.weight");
            dtb = gr(prefix + ".time_emb_proj.bias");
            g2 = p(prefix + ".norm2.weight");
            b2 = p(prefix + ".norm2.bias");
            dg2 = gr(prefix + ".norm2.weight");
            db2 = gr(prefix + ".norm2.bias");
        }

        @Override
        public Shape alloc(Shape in) {
            Shape s = norm1.alloc(in);
            s = conv1.alloc(s);
            tproj1 = act(s.n(), s.c());
            h3 = act(s.dims());
            mean2 = act(s.n(), groups);
            rstd2 = act(s.n(), groups);
            dh2 = bwd(s.dims());
            dtproj = bwd(s.n(), s.c());
            conv2.alloc(s);
            if (shortcut != null) shortcut.alloc(in);
            out = act(s.dims());
            dScaled = invScale != 1f ? bwd(s.dims()) : null;
            dx = bwd(in.dims());
            return s;
        }

        @Override
        public Tensor forward(Tensor x) {
            Tensor h = conv1.forward(norm1.forward(x));
            LinearKernels.linear(embS, tw, tb, tproj1);
            NormKernels.biasGroupNorm(h, tproj1, g2, b2, groups, eps, true, h3, mean2, rstd2);
            // dropout in place: the norm backward recomputes from conv1.y, mean2, rstd2 and never reads h3;
            // conv2's backward reads its input, which is the dropped h3
            if (dropoutActive) {
                long offset = dropoutOffset + dropoutIndex; // unsigned 64-bit, wraps as the C API's uint64_t
                if (dropoutProbe != null) dropoutProbe.accept(offset);
                DropoutKernels.forward(h3, dropout, dropoutSeed, offset, h3);
            }
            Tensor h4 = conv2.forward(h3);
            Tensor s = shortcut != null ? shortcut.forward(x) : x;
            NormKernels.residualAdd(s, h4, invScale, out);
            return out;
        }

        @Override
        public Tensor backward(Tensor dout) {
            Tensor d = dout;
            if (dScaled != null) {
                NormKernels.residualAddBackward(dout, invScale, dScaled, null);
                d = dScaled;
            }
            Tensor dh3 = conv2.backward(d); // conv2's own scratch: the dropout backward may overwrite it
            if (dropoutActive) {
                long offset = dropoutOffset + dropoutIndex;
                if (dropoutProbe != null) dropoutProbe.accept(offset);
                DropoutKernels.backward(dh3, dropout, dropoutSeed, offset, dh3);
            }
            NormKernels.biasGroupNormBackward(dh3, conv1.y, tproj1, g2, b2, mean2, rstd2, groups, true, dh2, dtproj,
                    dg2, db2);
            LinearKernels.linearBackward(embS, tw, dtproj, dEmbTmp, dtw, dtb);
            NormKernels.residualAdd(dEmbS, dEmbTmp, 1f, dEmbS);
            Tensor dx1 = norm1.backward(conv1.backward(dh2));
            Tensor dres = shortcut != null ? shortcut.backward(d) : d;
            NormKernels.residualAdd(dx1, dres, 1f, dx);
            return dx;
        }
    }

    /** diffusers Attention (residual connection, rescale_output_factor): out = (to_out(attn(gn(x))) + x) * invScale. */
    private final class Attention implements Step {
        final float invScale;
        final GroupNorm norm;
        final String pre;
        final int heads, headDim;
        AttentionShape shape;
        float scale;
        Tensor q, k, v, o, q3, k3, v3, o3, lse, proj, out, dScaled, dO, dO3, dq, dk, dv, dq3, dk3, dv3, dhn, dtmp, dx;

        Attention(String prefix, float invScale) {
            this.invScale = invScale;
            this.pre = prefix;
            UNet2DLayout.Attention a = layout.attentions().stream().filter(q -> q.prefix().equals(prefix)).findFirst()
                    .orElseThrow(() -> new IllegalStateException("no attention " + prefix));
            heads = a.heads();
            headDim = a.headDim();
            norm = new GroupNorm(prefix + ".group_norm", a.groups(), false);
        }

        @Override
        public Shape alloc(Shape in) {
            norm.alloc(in);
            long[] d = in.dims();
            long tokens = (long) in.h() * in.w();
            if (tokens > Integer.MAX_VALUE) throw new IllegalArgumentException("too many tokens: " + tokens);
            shape = new AttentionShape(in.n(), (int) tokens, heads, headDim);
            scale = shape.defaultScale();
            q = act(d);
            k = act(d);
            v = act(d);
            o = act(d);
            q3 = actView(q, in.n(), tokens, in.c());
            k3 = actView(k, in.n(), tokens, in.c());
            v3 = actView(v, in.n(), tokens, in.c());
            o3 = actView(o, in.n(), tokens, in.c());
            lse = act(in.n(), heads, tokens);
            proj = act(d);
            out = act(d);
            dScaled = invScale != 1f ? bwd(d) : null;
            dO = bwd(d);
            dO3 = bwdView(dO, in.n(), tokens, in.c());
            dq = bwd(d);
            dk = bwd(d);
            dv = bwd(d);
            dq3 = bwdView(dq, in.n(), tokens, in.c());
            dk3 = bwdView(dk, in.n(), tokens, in.c());
            dv3 = bwdView(dv, in.n(), tokens, in.c());
            dhn = bwd(d);
            dtmp = bwd(d);
            dx = bwd(d);
            return in;
        }

        @Override
        public Tensor forward(Tensor x) {
            Tensor hn = norm.forward(x);
            LinearKernels.linear(hn, p(pre + ".to_q.weight"), p(pre + ".to_q.bias"), q);
            LinearKernels.linear(hn, p(pre + ".to_k.weight"), p(pre + ".to_k.bias"), k);
            LinearKernels.linear(hn, p(pre + ".to_v.weight"), p(pre + ".to_v.bias"), v);
            LinearKernels.attention(shape, scale, q3, k3, v3, o3, lse);
            LinearKernels.linear(o, p(pre + ".to_out.0.weight"), p(pre + ".to_out.0.bias"), proj);
            NormKernels.residualAdd(proj, x, invScale, out);
            return out;
        }

        @Override
        public Tensor backward(Tensor dout) {
            Tensor d = dout;
            if (dScaled != null) {
                NormKernels.residualAddBackward(dout, invScale, dScaled, null);
                d = dScaled;
            }
            LinearKernels.linearBackward(o, p(pre + ".to_out.0.weight"), d, dO, gr(pre + ".to_out.0.weight"),
                    gr(pre + ".to_out.0.bias"));
            LinearKernels.attentionBackward(shape, scale, q3, k3, v3, o3, lse, dO3, dq3, dk3, dv3);
            Tensor hn = norm.y;
            LinearKernels.linearBackward(hn, p(pre + ".to_q.weight"), dq, dhn, gr(pre + ".to_q.weight"),
                    gr(pre + ".to_q.bias"));
            LinearKernels.linearBackward(hn, p(pre + ".to_k.weight"), dk, dtmp, gr(pre + ".to_k.weight"),
                    gr(pre + ".to_k.bias"));
            NormKernels.residualAdd(dhn, dtmp, 1f, dhn);
            LinearKernels.linearBackward(hn, p(pre + ".to_v.weight"), dv, dtmp, gr(pre + ".to_v.weight"),
                    gr(pre + ".to_v.bias"));
            NormKernels.residualAdd(dhn, dtmp, 1f, dhn);
            Tensor dxn = norm.backward(dhn);
            NormKernels.residualAdd(dxn, d, 1f, dx);
            return dx;
        }
    }

    /** torch.cat([h, skip], dim=1) in NHWC; backward splits into da (h) and db (skip). */
    private final class Concat {
        int c1, c2;
        Tensor out, da, db;

        Shape alloc(Shape h, Shape skip) {
            if (h.n() != skip.n() || h.h() != skip.h() || h.w() != skip.w()) {
                throw new IllegalStateException("skip " + skip + " does not match " + h); // a bug in this class
            }
            c1 = h.c();
            c2 = skip.c();
            Shape s = new Shape(h.n(), h.h(), h.w(), c1 + c2);
            out = act(s.dims());
            da = bwd(h.dims());
            db = bwd(skip.dims());
            return s;
        }

        Tensor forward(Tensor h, Tensor skip) {
            ConcatKernels.concatChannels(h, skip, out);
            return out;
        }

        void backward(Tensor dout) {
            ConcatKernels.concatChannelsBackward(dout, da, db, c1, c2);
        }
    }
}
