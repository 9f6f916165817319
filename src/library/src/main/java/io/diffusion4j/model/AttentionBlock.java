package io.diffusion4j.model;

import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.LinearKernels.AttentionShape;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;

/**
 * diffusers' Attention as UNet2DModel uses it (group norm, residual connection, rescale_output_factor):
 * {@code out = (to_out(attn(gn(x))) + x) * invScale}, over the H x W tokens of each sample.
 */
final class AttentionBlock implements Layer {
    private final float invScale;
    private final GroupNormLayer norm;
    private final int heads, headDim;
    private final ParameterStore.WeightBias toQ, toK, toV, toOut;
    private AttentionShape shape;
    private float scale;
    private Tensor q, k, v, o, q3, k3, v3, o3, lse, proj, out; // forward
    private Tensor dScaled, dO, dO3, dq, dk, dv, dq3, dk3, dv3, dhn, dtmp, dx; // backward

    AttentionBlock(ParameterStore ps, UNet2DLayout.Attention a, float invScale, float eps) {
        this.invScale = invScale;
        String pre = a.prefix();
        heads = a.heads();
        headDim = a.headDim();
        norm = new GroupNormLayer(ps, pre + ".group_norm", a.groups(), eps, false);
        toQ = ps.weightBias(pre + ".to_q");
        toK = ps.weightBias(pre + ".to_k");
        toV = ps.weightBias(pre + ".to_v");
        toOut = ps.weightBias(pre + ".to_out.0");
    }

    @Override
    public Shape alloc(ActivationArena arena, Shape in) {
        norm.alloc(arena, in);
        long[] d = in.dims();
        long tokens = (long) in.h() * in.w();
        if (tokens > Integer.MAX_VALUE) throw new IllegalArgumentException("too many tokens: " + tokens);
        shape = new AttentionShape(in.n(), (int) tokens, heads, headDim);
        scale = shape.defaultScale();
        q = arena.act(d);
        k = arena.act(d);
        v = arena.act(d);
        o = arena.act(d);
        q3 = arena.actView(q, in.n(), tokens, in.c());
        k3 = arena.actView(k, in.n(), tokens, in.c());
        v3 = arena.actView(v, in.n(), tokens, in.c());
        o3 = arena.actView(o, in.n(), tokens, in.c());
        lse = arena.act(in.n(), heads, tokens);
        proj = arena.act(d);
        out = arena.act(d);
        dScaled = invScale != 1f ? arena.bwd(d) : null;
        dO = arena.bwd(d);
        dO3 = arena.bwdView(dO, in.n(), tokens, in.c());
        dq = arena.bwd(d);
        dk = arena.bwd(d);
        dv = arena.bwd(d);
        dq3 = arena.bwdView(dq, in.n(), tokens, in.c());
        dk3 = arena.bwdView(dk, in.n(), tokens, in.c());
        dv3 = arena.bwdView(dv, in.n(), tokens, in.c());
        dhn = arena.bwd(d);
        dtmp = arena.bwd(d);
        dx = arena.bwd(d);
        return in;
    }

    @Override
    public Tensor forward(Tensor x) {
        Tensor hn = norm.forward(x);
        LinearKernels.linear(hn, toQ.w(), toQ.b(), q);
        LinearKernels.linear(hn, toK.w(), toK.b(), k);
        LinearKernels.linear(hn, toV.w(), toV.b(), v);
        LinearKernels.attention(shape, scale, q3, k3, v3, o3, lse);
        LinearKernels.linear(o, toOut.w(), toOut.b(), proj);
        NormKernels.residualAdd(proj, x, invScale, out);
        return out;
    }

    @Override
    public Tensor backward(Tensor dout) {
        Tensor d = Layer.throughOutputScale(dout, invScale, dScaled);
        LinearKernels.linearBackward(o, toOut.w(), d, dO, toOut.dw(), toOut.db());
        LinearKernels.attentionBackward(shape, scale, q3, k3, v3, o3, lse, dO3, dq3, dk3, dv3);
        Tensor hn = norm.output();
        LinearKernels.linearBackward(hn, toQ.w(), dq, dhn, toQ.dw(), toQ.db());
        LinearKernels.linearBackward(hn, toK.w(), dk, dtmp, toK.dw(), toK.db());
        NormKernels.residualAdd(dhn, dtmp, 1f, dhn);
        LinearKernels.linearBackward(hn, toV.w(), dv, dtmp, toV.dw(), toV.db());
        NormKernels.residualAdd(dhn, dtmp, 1f, dhn);
        Tensor dxn = norm.backward(dhn);
        NormKernels.residualAdd(dxn, d, 1f, dx);
        return dx;
    }
}
