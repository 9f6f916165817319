package io.diffusion4j.model;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
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
 * <p><b>Structure.</b> This class wires the network and checks its inputs; the pieces live beside it:
 * {@link ParameterStore} (the parameter and gradient buffers and their views), {@link ActivationArena} (the
 * activation memory of one input size), the layers ({@link ConvLayer}, {@link GroupNormLayer},
 * {@link ResnetBlock}, {@link AttentionBlock}, {@link SkipConcat}, {@link TimeEmbedding}) and
 * {@link DropoutStreams}.
 *
 * <p>Not thread-safe. For concurrent inference, {@link #sharingParameters()} gives each thread its own
 * instance over the same parameter buffer (own activations, no gradients).
 */
public final class UNet2DModel implements AutoCloseable {
    private final Backend backend;
    private final UNet2DConfig config;
    private final UNet2DLayout layout;
    private final ParameterStore store;
    private final ActivationArena arena;
    private final DropoutStreams dropout;
    /** Non-null for an inference instance: the model whose parameter buffer this one reads. */
    private final UNet2DModel source;

    // the network
    private final TimeEmbedding timeEmbedding;
    private final ConvLayer convIn;
    private final List<List<Layer>> downUnits = new ArrayList<>(); // each unit's output is one skip connection
    private final List<Layer> mid = new ArrayList<>();
    private final List<UpUnit> upUnits = new ArrayList<>();
    private final GroupNormLayer normOut;
    private final ConvLayer convOut;

    // the input size the arena holds activations for
    private int curN = -1, curH = -1, curW = -1;
    private boolean forwardDone;
    /** Test hook (package-private): given the Philox offset of every dropout call, forward and backward, in order. */
    java.util.function.LongConsumer dropoutProbe;
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
        this(backend, config, seed, source, withGradients, false);
    }

    /** {@code sizing}: no backend, no buffers, a counting arena ({@link #activationBytes(UNet2DConfig, int, int, int, boolean)}). */
    private UNet2DModel(Backend backend, UNet2DConfig config, long seed, UNet2DModel source, boolean withGradients,
                        boolean sizing) {
        this.source = source;
        this.backend = sizing ? null : Objects.requireNonNull(backend, "backend");
        this.config = Objects.requireNonNull(config, "config");
        this.layout = UNet2DLayout.of(config);
        if (!sizing) ModelLimits.checkParameters(layout); // before the parameter buffer is allocated
        this.store = sizing ? ParameterStore.shapesOnly(layout) : source == null
                ? ParameterStore.allocate(backend, layout, withGradients) : ParameterStore.sharing(source.store);
        this.arena = sizing ? ActivationArena.sizing(withGradients) : new ActivationArena(backend, store.hasGradients());
        this.dropout = new DropoutStreams(config.dropout());
        try {
            float eps = (float) config.normEps();
            timeEmbedding = new TimeEmbedding(store, config);
            int[] ch = config.blockOutChannels();
            int n = ch.length;
            int layers = config.layersPerBlock();
            convIn = new ConvLayer(store, "conv_in", Conv2dSpec.same3x3());
            downUnits.add(List.of(convIn));
            for (int i = 0; i < n; i++) {
                String pre = "down_blocks." + i;
                boolean attn = config.downBlockTypes().get(i).equals(UNet2DConfig.ATTN_DOWN_BLOCK);
                for (int j = 0; j < layers; j++) {
                    List<Layer> unit = new ArrayList<>();
                    unit.add(resnet(pre + ".resnets." + j, 1f, eps));
                    if (attn) unit.add(attention(pre + ".attentions." + j, 1f, eps));
                    downUnits.add(unit);
                }
                if (i != n - 1) {
                    downUnits.add(List.of(new ConvLayer(store, pre + ".downsamplers.0.conv",
                            Conv2dSpec.downsample3x3(config.downsamplePadding()))));
                }
            }
            float midScale = (float) (1.0 / config.midBlockScaleFactor());
            mid.add(resnet("mid_block.resnets.0", midScale, eps));
            mid.add(attention("mid_block.attentions.0", midScale, eps));
            mid.add(resnet("mid_block.resnets.1", midScale, eps));
            int skip = downUnits.size();
            for (int i = 0; i < n; i++) {
                String pre = "up_blocks." + i;
                boolean attn = config.upBlockTypes().get(i).equals(UNet2DConfig.ATTN_UP_BLOCK);
                for (int j = 0; j < layers + 1; j++) {
                    List<Layer> steps = new ArrayList<>();
                    steps.add(resnet(pre + ".resnets." + j, 1f, eps));
                    if (attn) steps.add(attention(pre + ".attentions." + j, 1f, eps));
                    upUnits.add(new UpUnit(--skip, new SkipConcat(), steps, null));
                }
                if (i != n - 1) {
                    upUnits.add(new UpUnit(-1, null, List.of(), new ConvLayer(store, pre + ".upsamplers.0.conv",
                            Conv2dSpec.upsample3x3())));
                }
            }
            if (skip != 0) throw new IllegalStateException("skip connections do not balance: " + skip); // a bug here
            normOut = new GroupNormLayer(store, "conv_norm_out", config.normNumGroups(), eps, true);
            convOut = new ConvLayer(store, "conv_out", Conv2dSpec.same3x3());
            if (source == null && !sizing) store.init(seed);
        } catch (RuntimeException e) {
            store.close();
            throw e;
        }
    }

    private ResnetBlock resnet(String prefix, float invScale, float eps) {
        UNet2DLayout.Resnet r = layout.resnets().stream().filter(q -> q.prefix().equals(prefix)).findFirst()
                .orElseThrow(() -> new IllegalStateException("no resnet " + prefix));
        return new ResnetBlock(store, r, invScale, eps, timeEmbedding, dropout);
    }

    private AttentionBlock attention(String prefix, float invScale, float eps) {
        UNet2DLayout.Attention a = layout.attentions().stream().filter(q -> q.prefix().equals(prefix)).findFirst()
                .orElseThrow(() -> new IllegalStateException("no attention " + prefix));
        return new AttentionBlock(store, a, invScale, eps);
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
        if (!store.hasGradients()) {
            throw new IllegalStateException(what + " is not available on a model made for inference (forInference)");
        }
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

    /**
     * The flat parameter buffer (conv weights HWIO). A {@link #forInference} model keeps prepared forms of some
     * convolution weights (see {@link io.diffusion4j.kernels.ConvKernels#prepare}); after writing this buffer other
     * than through {@link #loadFlat}, call {@link #parametersChanged()}.
     */
    public Tensor parameters() {
        checkOpen();
        return store.parameters();
    }

    /**
     * Makes an inference model's prepared convolution weights for inputs of {@code h x w} now (they are otherwise
     * made with the activations of the first forward at that size), so that a server's memory holds them from the
     * start; a no-op for a model that prepares nothing (a training model, or a backend without prepared forms).
     */
    public void prepareWeights(int h, int w) {
        checkOpen();
        try (UNet2DModel walker = sharingParameters()) {
            walker.reserve(1, h, w); // allocating a layer's activations fetches its prepared weights
        }
    }

    /** Native bytes of the prepared convolution weights an inference model holds now (0 for other models). */
    public long preparedWeightBytes() {
        checkOpen();
        return store.preparedBytes();
    }

    /**
     * Drops the prepared convolution weights of an inference model (made again from the parameters at the next
     * forward): needed after its parameter buffer was written directly. A no-op for other models.
     */
    public void parametersChanged() {
        checkOpen();
        store.dropPrepared();
    }

    /** The flat gradient buffer, same layout as {@link #parameters()}. */
    public Tensor gradients() {
        checkOpen();
        checkHasGradients("gradients()");
        return store.gradients();
    }

    /** The view of one parameter in the flat buffer (HWIO for convolution weights). */
    public Tensor parameter(String name) {
        checkOpen();
        return requireView(store::param, name);
    }

    /** The view of one parameter's gradient. */
    public Tensor gradient(String name) {
        checkOpen();
        checkHasGradients("gradient(name)");
        return requireView(store::grad, name);
    }

    private static Tensor requireView(java.util.function.Function<String, Tensor> views, String name) {
        Tensor t = views.apply(UNet2DLayout.currentName(Objects.requireNonNull(name, "name")));
        if (t == null) throw new IllegalArgumentException("UNet2DModel has no parameter named '" + name + "'");
        return t;
    }

    /** Sets every gradient to 0 (backward accumulates). */
    public void zeroGradients() {
        checkOpen();
        checkHasGradients("zeroGradients()");
        store.gradients().fill(0f);
    }

    /** Re-initialises every parameter from {@code seed} (PyTorch defaults, see the class comment). */
    public void initParameters(long seed) {
        checkOpen();
        checkOwnsParameters("initParameters");
        store.init(seed);
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
        store.load(flat);
    }

    /** Every parameter as {@link #loadFlat} takes them (on-disk shapes, OIHW convolutions). */
    public float[] flatParameters() {
        checkOpen();
        return store.flatParameters();
    }

    /** Every gradient in the on-disk layout of {@link #flatParameters()}. */
    public float[] flatGradients() {
        checkOpen();
        checkHasGradients("flatGradients()");
        return store.flatGradients();
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
        return run(x, timesteps, null, false, 0, 0);
    }

    /**
     * {@link #forward(Tensor, float[])} of a class-conditional model (num_class_embeds): one class label per
     * sample, each in {@code [0, num_class_embeds)}, whose class-embedding row is added to the time embedding
     * (diffusers' {@code class_labels}). Null for an unconditional model.
     */
    public Tensor forward(Tensor x, float[] timesteps, int[] classLabels) {
        return run(x, timesteps, classLabels, false, 0, 0);
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
     * The tensor {@link #forward} returns for inputs of the allocated size (after {@link #reserve} or a forward), for a
     * caller that must take views of it before a graph capture (which refuses making them). Valid until the input size
     * changes or the model is closed.
     */
    public Tensor output() {
        checkOpen();
        if (curN < 0) throw new IllegalStateException("no activations allocated yet: call reserve or forward first");
        return convOut.output();
    }

    /**
     * The forward pass in training mode: as {@link #forward}, and with {@link UNet2DConfig#dropout()} p &gt; 0
     * every ResnetBlock2D drops activations between norm2 + SiLU and conv2, resnet k (forward order) with
     * the Philox stream {@code (dropoutSeed, dropoutOffset + k)} (unsigned 64-bit arithmetic), k &lt;
     * {@link #dropoutStreams()}. With p = 0 it is exactly {@link #forward}. {@link #backward} applies the
     * same masks (regenerated, not stored).
     */
    public Tensor forwardTraining(Tensor x, float[] timesteps, long dropoutSeed, long dropoutOffset) {
        return forwardTraining(x, timesteps, null, dropoutSeed, dropoutOffset);
    }

    /** {@link #forwardTraining(Tensor, float[], long, long)} with class labels (see {@link #forward(Tensor, float[], int[])}). */
    public Tensor forwardTraining(Tensor x, float[] timesteps, int[] classLabels, long dropoutSeed, long dropoutOffset) {
        checkHasGradients("forwardTraining"); // an inference instance has no backward to pair it with
        return run(x, timesteps, classLabels, dropout.p() > 0, dropoutSeed, dropoutOffset);
    }

    /**
     * How many Philox offsets one {@link #forwardTraining} uses (one per ResnetBlock2D):
     * {@code dropoutOffset .. dropoutOffset + dropoutStreams() - 1}.
     */
    public int dropoutStreams() {
        return dropout.count();
    }

    private Tensor run(Tensor x, float[] timesteps, int[] classLabels, boolean applyDropout, long seed, long offset) {
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
        checkClassLabels(classLabels, timesteps.length);
        ensureAllocated((int) x.dim(0), (int) x.dim(1), (int) x.dim(2));
        forwardDone = false;
        dropout.set(applyDropout, seed, offset);
        dropout.probe(dropoutProbe);

        timeEmbedding.forward(backend, timesteps, classLabels);

        Tensor h = x;
        skips.clear();
        for (List<Layer> unit : downUnits) {
            for (Layer s : unit) h = s.forward(h);
            skips.add(h);
        }
        for (Layer s : mid) h = s.forward(h);
        for (UpUnit u : upUnits) {
            if (u.concat != null) h = u.concat.forward(h, skips.get(u.skip));
            for (Layer s : u.steps) h = s.forward(h);
            if (u.upsampler != null) h = u.upsampler.forward(h);
        }
        h = normOut.forwardInto(convOut, h);
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
        dropout.probe(dropoutProbe);
        timeEmbedding.zeroGradient();
        Tensor[] skipGrads = new Tensor[skips.size()];
        Tensor g = convOut.backward(dOut);
        g = normOut.backward(g);
        for (int i = upUnits.size() - 1; i >= 0; i--) {
            UpUnit u = upUnits.get(i);
            if (u.upsampler != null) g = u.upsampler.backward(g);
            for (int j = u.steps.size() - 1; j >= 0; j--) g = u.steps.get(j).backward(g);
            if (u.concat != null) {
                u.concat.backward(g);
                g = u.concat.hGradient();
                skipGrads[u.skip] = u.concat.skipGradient();
            }
        }
        for (int j = mid.size() - 1; j >= 0; j--) g = mid.get(j).backward(g);
        for (int k = downUnits.size() - 1; k >= 0; k--) {
            // the unit's output fed both the next layer (g) and a skip connection
            NormKernels.residualAdd(g, skipGrads[k], 1f, g);
            List<Layer> unit = downUnits.get(k);
            for (int j = unit.size() - 1; j >= 0; j--) {
                Layer st = unit.get(j);
                g = st == convIn && !inputGradient ? convIn.backwardParametersOnly(g) : st.backward(g);
            }
        }
        timeEmbedding.backward();
        return g;
    }

    private void checkClassLabels(int[] labels, int batch) {
        Integer classes = config.numClassEmbeds();
        if (classes == null) {
            if (labels != null) {
                throw new IllegalArgumentException("class labels given, but the model is unconditional (its config has"
                        + " no num_class_embeds)");
            }
            return;
        }
        if (labels == null) {
            throw new IllegalArgumentException("the model is class-conditional (num_class_embeds " + classes
                    + "): pass one class label per sample");
        }
        if (labels.length != batch) {
            throw new IllegalArgumentException("class labels has " + labels.length + " entries, x has batch " + batch);
        }
        for (int i = 0; i < labels.length; i++) {
            if (labels[i] < 0 || labels[i] >= classes) {
                throw new IllegalArgumentException("class label " + labels[i] + " (sample " + i + ") is outside [0, "
                        + classes + ") (num_class_embeds)");
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // activation memory

    private void ensureAllocated(int n, int h, int w) {
        if (n == curN && h == curH && w == curW) return;
        releaseActivations();
        try {
            timeEmbedding.alloc(arena, n);
            Layer.Shape s = new Layer.Shape(n, h, w, config.inChannels());
            List<Layer.Shape> skipShapes = new ArrayList<>();
            for (List<Layer> unit : downUnits) {
                for (Layer st : unit) s = st.alloc(arena, s);
                skipShapes.add(s);
            }
            for (Layer st : mid) s = st.alloc(arena, s);
            for (UpUnit u : upUnits) {
                if (u.concat != null) s = u.concat.alloc(arena, s, skipShapes.get(u.skip));
                for (Layer st : u.steps) s = st.alloc(arena, s);
                if (u.upsampler != null) s = u.upsampler.alloc(arena, s);
            }
            s = normOut.alloc(arena, s, true);
            convOut.alloc(arena, s);
            curN = n;
            curH = h;
            curW = w;
        } catch (RuntimeException e) {
            releaseActivations();
            throw e;
        }
    }

    private void releaseActivations() {
        forwardDone = false;
        curN = curH = curW = -1;
        skips.clear();
        arena.release();
    }

    /**
     * The bytes of activation memory a model of {@code config} allocates for inputs {@code [n, h, w, in_channels]}:
     * exactly what {@link #activationBytes()} reports after {@link #reserve reserve(n, h, w)} on a model with
     * gradients ({@code training}) or on an inference instance ({@link #forInference}, {@link #sharingParameters}),
     * computed by the same layer-by-layer allocation without allocating anything. Long.MAX_VALUE when the count
     * overflows a long.
     *
     * @throws IllegalArgumentException if n, h or w is below 1, or h or w is not a multiple of the downsampling factor
     */
    public static long activationBytes(UNet2DConfig config, int n, int h, int w, boolean training) {
        Objects.requireNonNull(config, "config");
        int f = 1 << (config.numBlocks() - 1);
        if (n < 1 || h < 1 || w < 1 || h % f != 0 || w % f != 0) {
            throw new IllegalArgumentException("activationBytes(" + n + ", " + h + ", " + w + "): n >= 1, H and W"
                    + " positive multiples of " + f);
        }
        try (UNet2DModel m = new UNet2DModel(null, config, 0L, null, training, true)) {
            m.ensureAllocated(n, h, w);
            return m.arena.bytes();
        } catch (ArithmeticException e) {
            return Long.MAX_VALUE;
        }
    }

    /** Native bytes held by saved activations and scratch (0 before the first forward). */
    public long activationBytes() {
        return arena.bytes();
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("UNet2DModel is closed");
    }

    /** Releases parameters, gradients, activations. Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        releaseActivations();
        store.close();
    }

    /** A skip concatenation, the block's layers, or an upsampler (exactly one of concat/upsampler may be set). */
    private record UpUnit(int skip, SkipConcat concat, List<Layer> steps, ConvLayer upsampler) {}
}
