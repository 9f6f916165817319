package io.diffusion4j.model;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * The activation memory of one {@link UNet2DModel} for one input size: every tensor the layers save in the
 * forward pass and every buffer the backward pass writes. Layers take their buffers here when the model sizes
 * them ({@link Layer#alloc}); {@link #release} frees them all, views first, when the size changes or the model
 * closes.
 *
 * <p>An arena without backward ({@code withBackward == false}, an inference model) hands out null for the
 * backward buffers, so it holds the forward activations only.
 */
final class ActivationArena {
    private final Backend backend;
    private final boolean withBackward;
    private final List<Tensor> tensors = new ArrayList<>();
    private final List<Tensor> views = new ArrayList<>();

    ActivationArena(Backend backend, boolean withBackward) {
        this.backend = backend;
        this.withBackward = withBackward;
    }

    /** False for an inference model's arena: no backward will read the forward's activations. */
    boolean withBackward() {
        return withBackward;
    }

    /** A float32 buffer the forward pass writes (and the backward may read). */
    Tensor act(long... shape) {
        Tensor t = Tensor.allocate(backend, DType.FLOAT32, shape);
        tensors.add(t);
        return t;
    }

    /** A buffer only the backward pass uses (input gradients and scratch): null without backward. */
    Tensor bwd(long... shape) {
        return withBackward ? act(shape) : null;
    }

    /** A reshaped view of a backward buffer: null when {@code owner} is (no backward). */
    Tensor bwdView(Tensor owner, long... shape) {
        return owner == null ? null : actView(owner, shape);
    }

    /** A reshaped view of the whole of {@code owner}. */
    Tensor actView(Tensor owner, long... shape) {
        Tensor t = owner.view(0, shape);
        views.add(t);
        return t;
    }

    /** Releases every buffer and view handed out, views first. */
    void release() {
        for (int i = views.size() - 1; i >= 0; i--) views.get(i).close();
        views.clear();
        for (int i = tensors.size() - 1; i >= 0; i--) tensors.get(i).close();
        tensors.clear();
    }

    /** Native bytes of the buffers handed out (views add none). */
    long bytes() {
        long b = 0;
        for (Tensor t : tensors) b += t.byteSize();
        return b;
    }
}
