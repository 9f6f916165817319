package io.diffusion4j.model;

import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.tensor.Tensor;
import java.util.function.LongConsumer;

/**
 * The dropout of a {@link UNet2DModel}'s ResnetBlock2Ds: probability p, one Philox stream per resnet (allotted
 * in construction order by {@link #allot()}), and the seed and base offset of the current training forward.
 * Resnet k draws from stream {@code (seed, offset + k)}, in unsigned 64-bit arithmetic as the C API's
 * {@code uint64_t}; the backward regenerates the same masks.
 */
final class DropoutStreams {
    private final double p;
    private int allotted;
    private boolean active;
    private long seed, offset;
    private LongConsumer probe;

    DropoutStreams(double p) {
        this.p = p;
    }

    /** The next stream index; the constructor of each resnet calls it once. */
    int allot() {
        return allotted++;
    }

    /** How many streams one training forward uses. */
    int count() {
        return allotted;
    }

    /** The probability p (dropout applies in training only, and only with p > 0). */
    double p() {
        return p;
    }

    /** Sets the masks of the next forward and its backward: {@code active} false means no dropout. */
    void set(boolean active, long seed, long offset) {
        this.active = active;
        this.seed = seed;
        this.offset = offset;
    }

    /** The test hook to tell of every Philox offset used (null: none). */
    void probe(LongConsumer probe) {
        this.probe = probe;
    }

    /** Drops elements of {@code h} in place with stream {@code stream}; nothing unless active. */
    void forward(Tensor h, int stream) {
        if (!active) return;
        DropoutKernels.forward(h, p, seed, offsetOf(stream), h);
    }

    /** The backward of {@link #forward} in place on {@code dh}: the same mask, regenerated. */
    void backward(Tensor dh, int stream) {
        if (!active) return;
        DropoutKernels.backward(dh, p, seed, offsetOf(stream), dh);
    }

    private long offsetOf(int stream) {
        long o = offset + stream; // unsigned 64-bit, wraps as the C API's uint64_t
        if (probe != null) probe.accept(o);
        return o;
    }
}
