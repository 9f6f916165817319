package io.diffusion4j.model;

import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;

/** GroupNorm with affine weight and bias, optionally followed by SiLU (fused in one kernel). */
final class GroupNormLayer implements Layer {
    private final ParameterStore.WeightBias p; // gamma, beta
    private final int groups;
    private final float eps;
    private final boolean silu;
    private Tensor x, y, mean, rstd, dx;

    GroupNormLayer(ParameterStore ps, String prefix, int groups, float eps, boolean silu) {
        p = ps.weightBias(prefix);
        this.groups = groups;
        this.eps = eps;
        this.silu = silu;
    }

    @Override
    public Shape alloc(ActivationArena arena, Shape in) {
        y = arena.act(in.dims());
        dx = arena.bwd(in.dims());
        mean = arena.act(in.n(), groups);
        rstd = arena.act(in.n(), groups);
        return in;
    }

    @Override
    public Tensor forward(Tensor x) {
        this.x = x;
        NormKernels.groupNorm(x, p.w(), p.b(), groups, eps, silu, y, mean, rstd);
        return y;
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
