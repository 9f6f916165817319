package io.diffusion4j.model;

import io.diffusion4j.kernels.ConcatKernels;
import io.diffusion4j.model.Layer.Shape;
import io.diffusion4j.tensor.Tensor;

/** {@code torch.cat([h, skip], dim=1)} in NHWC (a channel concatenation); backward splits into h's and skip's part. */
final class SkipConcat {
    private int c1, c2;
    private Tensor out, dh, dskip;

    Shape alloc(ActivationArena arena, Shape h, Shape skip) {
        if (h.n() != skip.n() || h.h() != skip.h() || h.w() != skip.w()) {
            throw new IllegalStateException("skip " + skip + " does not match " + h); // a bug in UNet2DModel
        }
        c1 = h.c();
        c2 = skip.c();
        Shape s = new Shape(h.n(), h.h(), h.w(), c1 + c2);
        out = arena.act(s.dims());
        dh = arena.bwd(h.dims());
        dskip = arena.bwd(skip.dims());
        return s;
    }

    Tensor forward(Tensor h, Tensor skip) {
        ConcatKernels.concatChannels(h, skip, out);
        return out;
    }

    /** Splits {@code dout} into {@link #hGradient()} and {@link #skipGradient()}. */
    void backward(Tensor dout) {
        ConcatKernels.concatChannelsBackward(dout, dh, dskip, c1, c2);
    }

    Tensor hGradient() {
        return dh;
    }

    Tensor skipGradient() {
        return dskip;
    }
}
