package io.diffusion4j.model;

import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.ConvKernels.GroupNormInput;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;

/**
 * diffusers' ResnetBlock2D ({@code resnet_time_scale_shift "default"}):
 * {@code out = (shortcut(x) + conv2(dropout(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb))))))) * invScale};
 * the temb add is fused into norm2; dropout only in a training forward with p > 0. In an inference arena the two
 * norms write only their statistics and the convolutions after them normalise their input as they read it.
 */
final class ResnetBlock implements Layer {
    private final float invScale;
    private final float eps;
    private final TimeEmbedding temb;
    private final DropoutStreams dropout;
    private final int dropoutStream;
    private final GroupNormLayer norm1;
    private final ConvLayer conv1, conv2, shortcut;
    private final ParameterStore.WeightBias proj, norm2; // time_emb_proj; norm2 (run fused with the temb add)
    private final int groups;
    private boolean fused; // inference arena: both norms are applied inside the convolutions that read them
    private Tensor tproj1, h3, mean2, rstd2, out, dScaled, dh2, dtproj, dx;

    ResnetBlock(ParameterStore ps, UNet2DLayout.Resnet r, float invScale, float eps, TimeEmbedding temb,
                DropoutStreams dropout) {
        this.invScale = invScale;
        this.eps = eps;
        this.temb = temb;
        this.dropout = dropout;
        this.dropoutStream = dropout.allot();
        String prefix = r.prefix();
        groups = r.groups();
        norm1 = new GroupNormLayer(ps, prefix + ".norm1", groups, eps, true);
        conv1 = new ConvLayer(ps, prefix + ".conv1", Conv2dSpec.same3x3());
        conv2 = new ConvLayer(ps, prefix + ".conv2", Conv2dSpec.same3x3());
        shortcut = r.hasShortcut() ? new ConvLayer(ps, prefix + ".conv_shortcut", Conv2dSpec.pointwise()) : null;
        proj = ps.weightBias(prefix + ".time_emb_proj");
        norm2 = ps.weightBias(prefix + ".norm2");
    }

    @Override
    public Shape alloc(ActivationArena arena, Shape in) {
        fused = !arena.withBackward();
        Shape s = norm1.alloc(arena, in, true);
        s = conv1.alloc(arena, s);
        tproj1 = arena.act(s.n(), s.c());
        h3 = fused ? null : arena.act(s.dims());
        mean2 = arena.act(s.n(), groups);
        rstd2 = arena.act(s.n(), groups);
        dh2 = arena.bwd(s.dims());
        dtproj = arena.bwd(s.n(), s.c());
        conv2.alloc(arena, s);
        if (shortcut != null) shortcut.alloc(arena, in);
        out = arena.act(s.dims());
        dScaled = invScale != 1f ? arena.bwd(s.dims()) : null;
        dx = arena.bwd(in.dims());
        return s;
    }

    @Override
    public Tensor forward(Tensor x) {
        Tensor h = norm1.forwardInto(conv1, x);
        temb.project(proj.w(), proj.b(), tproj1);
        Tensor h4;
        if (fused) { // no dropout in inference; conv2 normalises h + tproj1 as it reads it
            NormKernels.biasGroupNorm(h, tproj1, norm2.w(), norm2.b(), groups, eps, true, null, mean2, rstd2);
            h4 = conv2.forward(new GroupNormInput(tproj1, norm2.w(), norm2.b(), mean2, rstd2, groups, true), h);
        } else {
            NormKernels.biasGroupNorm(h, tproj1, norm2.w(), norm2.b(), groups, eps, true, h3, mean2, rstd2);
            // dropout in place: the norm backward recomputes from conv1's output, mean2, rstd2 and never reads h3;
            // conv2's backward reads its input, which is the dropped h3
            dropout.forward(h3, dropoutStream);
            h4 = conv2.forward(h3);
        }
        Tensor s = shortcut != null ? shortcut.forward(x) : x;
        NormKernels.residualAdd(s, h4, invScale, out);
        return out;
    }

    @Override
    public Tensor backward(Tensor dout) {
        Tensor d = Layer.throughOutputScale(dout, invScale, dScaled);
        Tensor dh3 = conv2.backward(d); // conv2's own scratch: the dropout backward may overwrite it
        dropout.backward(dh3, dropoutStream);
        NormKernels.biasGroupNormBackward(dh3, conv1.output(), tproj1, norm2.w(), norm2.b(), mean2, rstd2, groups, true,
                dh2, dtproj, norm2.dw(), norm2.db());
        temb.projectBackward(proj.w(), dtproj, proj.dw(), proj.db());
        Tensor dx1 = norm1.backward(conv1.backward(dh2));
        Tensor dres = shortcut != null ? shortcut.backward(d) : d;
        NormKernels.residualAdd(dx1, dres, 1f, dx);
        return dx;
    }
}
