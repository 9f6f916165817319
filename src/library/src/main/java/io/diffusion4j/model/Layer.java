package io.diffusion4j.model;

import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;

/**
 * One layer of {@link UNet2DModel} on NHWC activations: takes its output (and backward) buffers from the arena
 * for an input shape, runs forward saving what its backward needs, and backward accumulating its parameter
 * gradients and returning the gradient of its input. The tensors it returns are its own buffers.
 */
interface Layer {
    /** An NHWC activation shape. */
    record Shape(int n, int h, int w, int c) {
        long[] dims() {
            return new long[] {n, h, w, c};
        }
    }

    /** Takes this layer's buffers for input shape {@code in}; returns the output shape. */
    Shape alloc(ActivationArena arena, Shape in);

    Tensor forward(Tensor x);

    /** The gradient of the input for the output gradient {@code dy}; accumulates the parameter gradients. */
    Tensor backward(Tensor dy);

    /**
     * The backward of a block's output scale {@code out = sum * invScale}: {@code dout * invScale} into
     * {@code scaled}, or {@code dout} itself when there is no scale ({@code scaled} null, invScale 1).
     */
    static Tensor throughOutputScale(Tensor dout, float invScale, Tensor scaled) {
        if (scaled == null) return dout;
        NormKernels.residualAddBackward(dout, invScale, scaled, null);
        return scaled;
    }
}
