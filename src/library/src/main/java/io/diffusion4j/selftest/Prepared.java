package io.diffusion4j.selftest;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/** A case's tensors on one backend. */
abstract class Prepared implements AutoCloseable {
    private final List<Tensor> tensors = new ArrayList<>();
    Backend be;

    /** Allocates and uploads (tensors through {@link #keep}). */
    abstract void allocate();

    final Tensor keep(Tensor t) {
        tensors.add(t);
        return t;
    }

    /** Bytes of all tensors of the call. */
    final long bytes() {
        long b = 0;
        for (Tensor t : tensors) b += t.byteSize();
        return b;
    }

    /** Writes NaN (or a NaN bit pattern) into every output. */
    abstract void poison();

    /** The kernel call. */
    abstract void call();

    /** Reads the outputs. */
    abstract List<Output> read();

    final List<Output> runOnce() {
        poison();
        call();
        return read();
    }

    @Override
    public void close() {
        RuntimeException first = null;
        for (int i = tensors.size() - 1; i >= 0; i--) {
            try {
                tensors.get(i).close();
            } catch (RuntimeException e) {
                if (first == null) first = e;
            }
        }
        if (first != null) throw first;
    }
}
