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
 *
 * <p>A sizing arena ({@link #sizing}) allocates nothing: it hands out null for every buffer and view and only adds
 * up the bytes the same requests would take, so that a run can be refused before it allocates
 * ({@link UNet2DModel#activationBytes(UNet2DConfig, int, int, int, boolean)}).
 */
final class ActivationArena {
    private final Backend backend;
    private final boolean withBackward;
    private final List<Tensor> tensors = new ArrayList<>();
    private final List<Tensor> views = new ArrayList<>();
    private final boolean sizing;
    private long counted; // a sizing arena's bytes

    ActivationArena(Backend backend, boolean withBackward) {
        this(backend, withBackward, false);
    }

    private ActivationArena(Backend backend, boolean withBackward, boolean sizing) {
        this.backend = backend;
        this.withBackward = withBackward;
        this.sizing = sizing;
    }

    /** An arena that allocates nothing and counts the bytes asked for (see the class comment). */
    static ActivationArena sizing(boolean withBackward) {
        return new ActivationArena(null, withBackward, true);
    }

    /** False for an inference model's arena: no backward will read the forward's activations. */
    boolean withBackward() {
        return withBackward;
    }

    /** A float32 buffer the forward pass writes (and the backward may read). */
    Tensor act(long... shape) {
        if (sizing) {
            long n = DType.FLOAT32.byteSize();
            for (long d : shape) n = Math.multiplyExact(n, d);
            counted = Math.addExact(counted, n);
            return null;
        }
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
        if (sizing) return null;
        Tensor t = owner.view(0, shape);
        views.add(t);
        return t;
    }

    /** Releases every buffer and view handed out, views first. */
    void release() {
        counted = 0;
        for (int i = views.size() - 1; i >= 0; i--) views.get(i).close();
        views.clear();
        for (int i = tensors.size() - 1; i >= 0; i--) tensors.get(i).close();
        tensors.clear();
    }

    /** Native bytes of the buffers handed out (views add none). */
    long bytes() {
        if (sizing) return counted;
        long b = 0;
        for (Tensor t : tensors) b += t.byteSize();
        return b;
    }
}
