package io.diffusion4j.model;

import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.tensor.Tensor;

/** A 2-D convolution with bias ({@code nn.Conv2d}), HWIO weights. */
final class ConvLayer implements Layer {
    private final Conv2dSpec spec;
    private final ParameterStore ps;
    private final String prefix;
    private final ParameterStore.WeightBias p;
    private final int outChannels;
    private Tensor x, y, dx;
    private int inH = -1, inW = -1;       // the input size of the last alloc
    private Tensor prepared;              // the store's prepared weights for it, or null
    private long preparedGeneration = -1; // the store's generation they were fetched at

    ConvLayer(ParameterStore ps, String prefix, Conv2dSpec spec) {
        this.spec = spec;
        this.ps = ps;
        this.prefix = prefix;
        p = ps.weightBias(prefix);
        outChannels = ps.layout().param(prefix + ".weight").shape()[0]; // OIHW on disk
    }

    @Override
    public Shape alloc(ActivationArena arena, Shape in) {
        long[] ys = spec.outputShape(in.dims(), outChannels);
        y = arena.act(ys);
        dx = arena.bwd(in.dims());
        inH = in.h();
        inW = in.w();
        preparedGeneration = -1;
        prepared(); // an inference model prepares its weights with its activations, not inside the first forward
        return new Shape(in.n(), (int) ys[1], (int) ys[2], (int) ys[3]);
    }

    @Override
    public Tensor forward(Tensor x) {
        this.x = x;
        ConvKernels.forward(spec, x, p.w(), prepared(), p.b(), y);
        return y;
    }

    /** The forward of the GroupNorm {@code norm} of x, normalised as it is read (inference only: no backward). */
    Tensor forward(ConvKernels.GroupNormInput norm, Tensor x) {
        this.x = null;
        ConvKernels.forward(spec, norm, x, p.w(), prepared(), p.b(), y);
        return y;
    }

    /**
     * The prepared weights for the allocated input size when the store keeps them (an inference model's), else
     * null; fetched again after the store dropped them (its parameters were loaded since).
     */
    private Tensor prepared() {
        long g = ps.preparedGeneration();
        if (g != preparedGeneration) {
            prepared = ps.preparedConv(prefix, spec, inH, inW);
            preparedGeneration = g;
        }
        return prepared;
    }

    @Override
    public Tensor backward(Tensor dy) {
        ConvKernels.backward(spec, x, p.w(), dy, dx, p.dw(), p.db());
        return dx;
    }

    /** dw and db only; returns null (the caller needs no gradient of this layer's input). */
    Tensor backwardParametersOnly(Tensor dy) {
        ConvKernels.backward(spec, x, p.w(), dy, null, p.dw(), p.db());
        return null;
    }

    /** The output of the last forward. */
    Tensor output() {
        return y;
    }
}
