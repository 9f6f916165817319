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
        return new Shape(in.n(), (int) ys[1], (int) ys[2], (int) ys[3]);
    }

    @Override
    public Tensor forward(Tensor x) {
        this.x = x;
        ConvKernels.forward(spec, x, p.w(), prepared(x), p.b(), y);
        return y;
    }

    /** The forward of the GroupNorm {@code norm} of x, normalised as it is read (inference only: no backward). */
    Tensor forward(ConvKernels.GroupNormInput norm, Tensor x) {
        this.x = null;
        ConvKernels.forward(spec, norm, x, p.w(), prepared(x), p.b(), y);
        return y;
    }

    /** The prepared weights for x's size when the store keeps them (an inference model's), else null. */
    private Tensor prepared(Tensor x) {
        return ps.preparedConv(prefix, spec, (int) x.dim(1), (int) x.dim(2));
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
