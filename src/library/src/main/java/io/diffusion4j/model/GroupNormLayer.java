package io.diffusion4j.model;

import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.GroupNormInput;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;

/**
 * GroupNorm with affine weight and bias, optionally followed by SiLU (fused in one kernel). In an inference
 * arena (no backward) a norm that feeds a convolution ({@link #forwardInto}) writes only its statistics, and the
 * convolution normalises its input as it reads it: the normalised tensor is never stored.
 */
final class GroupNormLayer implements Layer {
    private final ParameterStore.WeightBias p; // gamma, beta
    private final int groups;
    private final float eps;
    private final boolean silu;
    private boolean fused; // into the next convolution (inference arena, forwardInto)
    private Tensor x, y, mean, rstd, dx;

    GroupNormLayer(ParameterStore ps, String prefix, int groups, float eps, boolean silu) {
        p = ps.weightBias(prefix);
        this.groups = groups;
        this.eps = eps;
        this.silu = silu;
    }

    @Override
    public Shape alloc(ActivationArena arena, Shape in) {
        return alloc(arena, in, false);
    }

    /**
     * As {@link #alloc(ActivationArena, Shape)}; {@code intoConv}: the layer's output goes only to a convolution
     * through {@link #forwardInto}, so in an inference arena it is fused there and has no output buffer.
     */
    Shape alloc(ActivationArena arena, Shape in, boolean intoConv) {
        fused = intoConv && !arena.withBackward();
        y = fused ? null : arena.act(in.dims());
        dx = arena.bwd(in.dims());
        mean = arena.act(in.n(), groups);
        rstd = arena.act(in.n(), groups);
        return in;
    }

    @Override
    public Tensor forward(Tensor x) {
        if (fused) throw new IllegalStateException("this GroupNorm is fused into its convolution: use forwardInto");
        this.x = x;
        NormKernels.groupNorm(x, p.w(), p.b(), groups, eps, silu, y, mean, rstd);
        return y;
    }

    /** {@code conv.forward(forward(x))}, fused when the layer was allocated so. */
    Tensor forwardInto(ConvLayer conv, Tensor x) {
        if (!fused) return conv.forward(forward(x));
        this.x = x;
        NormKernels.groupNorm(x, p.w(), p.b(), groups, eps, silu, null, mean, rstd);
        return conv.forward(input(null), x);
    }

    /** This norm, with its statistics of the last forward, as a convolution's input transform (tb added first). */
    GroupNormInput input(Tensor tb) {
        return new GroupNormInput(tb, p.w(), p.b(), mean, rstd, groups, silu);
    }

    @Override
    public Tensor backward(Tensor dy) {
        NormKernels.groupNormBackward(dy, x, p.w(), p.b(), mean, rstd, groups, silu, dx, p.dw(), p.db());
        return dx;
    }

    /** The output of the last forward. */
    Tensor output() {
        return y;
    }
}
