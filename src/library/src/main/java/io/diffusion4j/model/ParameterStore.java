package io.diffusion4j.model;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The parameters of one {@link UNet2DModel}: a flat float32 buffer of {@link UNet2DLayout#bufferFloats()} floats,
 * for a trainable model a gradient buffer of the same layout, and a named view of every parameter (and
 * gradient) at its {@link UNet2DLayout.Param#offset()}, convolution weights HWIO (see the model's class comment).
 *
 * <p>A store either owns its parameter buffer or reads one it shares with another store ({@link #sharing}); it
 * always owns its views and its gradient buffer. {@link #close} releases what it owns.
 *
 * <p>A store that owns its parameters and has no gradients (an inference model's) also keeps the backend's
 * prepared forms of convolution weights ({@link ConvKernels#prepare}), made on first use and shared with the
 * stores reading its parameters; {@link #load} drops them. A training model's parameters change every step, so
 * its store (and those sharing it) prepare nothing.
 */
final class ParameterStore implements AutoCloseable {
    private final UNet2DLayout layout;
    private final Tensor params;
    private final boolean ownsParams;
    private final Tensor grads; // null: no gradients (an inference model)
    private final Map<String, Tensor> paramViews = new HashMap<>();
    private final Map<String, Tensor> gradViews = new HashMap<>();
    private final List<Tensor> ownedViews = new ArrayList<>();
    private final ParameterStore preparing; // the store keeping prepared weights for this one, or null: none
    private final Map<String, Optional<Tensor>> prepared = new ConcurrentHashMap<>(); // of a preparing owner
    private volatile long preparedGeneration; // of a preparing owner: counts dropPrepared calls

    /** A store with its own parameter buffer and, when {@code withGradients}, a zeroed gradient buffer. */
    static ParameterStore allocate(Backend backend, UNet2DLayout layout, boolean withGradients) {
        Tensor p = Tensor.allocate(backend, DType.FLOAT32, layout.bufferFloats());
        Tensor g = null;
        try {
            if (withGradients) g = Tensor.allocate(backend, DType.FLOAT32, layout.bufferFloats());
            return new ParameterStore(layout, p, true, g);
        } catch (RuntimeException e) {
            if (g != null) g.close();
            p.close();
            throw e;
        }
    }

    /**
     * A store without buffers or views, for sizing a model's activations before anything is allocated
     * ({@link ActivationArena#sizing}): every view is null, {@link #layout()} answers.
     */
    static ParameterStore shapesOnly(UNet2DLayout layout) {
        return new ParameterStore(layout, null, false, null);
    }

    /** The layout the store's views follow. */
    UNet2DLayout layout() {
        return layout;
    }

    /** A store reading {@code owner}'s parameter buffer (not a copy), without gradients. */
    static ParameterStore sharing(ParameterStore owner) {
        return new ParameterStore(owner.layout, owner.params, false, null, owner.preparing);
    }

    private ParameterStore(UNet2DLayout layout, Tensor params, boolean ownsParams, Tensor grads) {
        this(layout, params, ownsParams, grads, null);
    }

    /** On failure releases the views it made; the buffers stay with the caller. */
    private ParameterStore(UNet2DLayout layout, Tensor params, boolean ownsParams, Tensor grads,
                           ParameterStore preparingOwner) {
        this.layout = layout;
        this.params = params;
        this.ownsParams = ownsParams;
        this.grads = grads;
        this.preparing = ownsParams && grads == null && params != null ? this : preparingOwner;
        if (params == null) return; // shapesOnly
        try {
            for (UNet2DLayout.Param prm : layout.params()) {
                long[] s = deviceShape(prm);
                Tensor pv = params.view(prm.offset(), s);
                ownedViews.add(pv);
                paramViews.put(prm.name(), pv);
                if (grads == null) continue;
                Tensor gv = grads.view(prm.offset(), s);
                ownedViews.add(gv);
                gradViews.put(prm.name(), gv);
            }
            if (grads != null) grads.fill(0f);
        } catch (RuntimeException e) {
            closeViews();
            throw e;
        }
    }

    /** The shape a parameter has in the device buffer: HWIO for convolutions, on-disk otherwise. */
    private static long[] deviceShape(UNet2DLayout.Param p) {
        int[] s = p.shape();
        return switch (p.kind()) {
            case CONV3X3, CONV1X1 -> new long[] {s[2], s[3], s[1], s[0]};
            default -> Arrays.stream(s).asLongStream().toArray();
        };
    }

    /** The flat parameter buffer. */
    Tensor parameters() {
        return params;
    }

    /** The flat gradient buffer, or null without gradients. */
    Tensor gradients() {
        return grads;
    }

    boolean hasGradients() {
        return grads != null;
    }

    /** The view of parameter {@code name} (current diffusers name), or null if there is none. */
    Tensor param(String name) {
        return paramViews.get(name);
    }

    /** The view of the gradient of parameter {@code name}, or null (no such parameter, or no gradients). */
    Tensor grad(String name) {
        return gradViews.get(name);
    }

    /** A layer's {@code <prefix>.weight} and {@code <prefix>.bias} views and their gradients (null without). */
    record WeightBias(Tensor w, Tensor b, Tensor dw, Tensor db) {}

    /** The weight and bias of the layer named {@code prefix}. */
    WeightBias weightBias(String prefix) {
        return new WeightBias(param(prefix + ".weight"), param(prefix + ".bias"), grad(prefix + ".weight"),
                grad(prefix + ".bias"));
    }

    /**
     * Fills the parameters with PyTorch's default initialisation drawn from {@code seed} (see the model's class
     * comment): one {@link SplittableRandom}, parameter by parameter in state-dict order, on-disk element order.
     */
    void init(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        float[] flat = new float[(int) layout.bufferFloats()];
        for (UNet2DLayout.Param p : layout.params()) {
            int off = (int) p.offset();
            int size = (int) p.size();
            switch (p.kind()) {
                case NORM_WEIGHT -> Arrays.fill(flat, off, off + size, 1f);
                case NORM_BIAS -> Arrays.fill(flat, off, off + size, 0f);
                case CONV3X3, CONV1X1, LINEAR -> uniform(rnd, flat, off, size, fanIn(p));
                case EMBEDDING -> { // nn.Embedding's reset_parameters: normal_(0, 1)
                    for (int i = 0; i < size; i++) flat[off + i] = (float) rnd.nextGaussian();
                }
                case BIAS -> uniform(rnd, flat, off, size,
                        fanIn(layout.param(p.name().substring(0, p.name().length() - "bias".length()) + "weight")));
            }
        }
        load(flat);
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

    /** Loads every parameter from an on-disk-layout host array of the right length (the caller checked it). */
    void load(float[] diskFlat) {
        dropPrepared();
        params.copyFrom(layout.diskToDevice(diskFlat));
    }

    /**
     * The backend's prepared form of convolution {@code prefix}'s weights for inputs of {@code h x w}, made on the
     * first call and kept until the parameters are loaded again; null for a training model's parameters or when
     * the backend has none for that geometry (then the forward reads the weights).
     */
    Tensor preparedConv(String prefix, ConvKernels.Conv2dSpec spec, int h, int w) {
        if (preparing == null) return null;
        Tensor weight = param(prefix + ".weight");
        return preparing.prepared.computeIfAbsent(prefix + "@" + h + "x" + w,
                k -> Optional.ofNullable(ConvKernels.prepare(spec, h, w, weight))).orElse(null);
    }

    /** Releases the prepared weights (the parameters are about to change, or the store closes). */
    void dropPrepared() {
        if (preparing != this) return;
        preparedGeneration++;
        for (Optional<Tensor> t : prepared.values()) t.ifPresent(Tensor::close);
        prepared.clear();
    }

    /** Bytes of the prepared weights held for this store (by its owner when it shares the parameters). */
    long preparedBytes() {
        if (preparing == null) return 0;
        long b = 0;
        for (Optional<Tensor> t : preparing.prepared.values()) b += t.map(Tensor::byteSize).orElse(0L);
        return b;
    }

    /** Changes whenever the prepared weights are dropped: a layer holding one fetches it again. */
    long preparedGeneration() {
        return preparing == null ? 0 : preparing.preparedGeneration;
    }

    /** Every parameter in the on-disk layout. */
    float[] flatParameters() {
        return layout.deviceToDisk(params.toFloatArray());
    }

    /** Every gradient in the on-disk layout (the caller checked {@link #hasGradients()}). */
    float[] flatGradients() {
        return layout.deviceToDisk(grads.toFloatArray());
    }

    private void closeViews() {
        for (int i = ownedViews.size() - 1; i >= 0; i--) ownedViews.get(i).close();
        ownedViews.clear();
    }

    /** Releases the views, the gradient buffer and, when owned, the parameter buffer. */
    @Override
    public void close() {
        dropPrepared();
        closeViews();
        if (grads != null) grads.close();
        if (ownsParams) params.close();
    }
}
