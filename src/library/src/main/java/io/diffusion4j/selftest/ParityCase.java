package io.diffusion4j.selftest;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.selftest.SelfTest.Shape;
import java.util.function.Supplier;

/** One call of a kernel family on one shape with fixed random inputs, runnable on any backend. */
interface ParityCase {
    /** The call within the family and its parameters ("normal", "ddim v_prediction", ...). */
    String kernel();

    Shape shape();

    /** The tolerance of its toleranced outputs (0 if it has none). */
    double rtol();

    /** Allocates and uploads the inputs and the outputs on a backend. */
    Prepared prepare(Backend backend);

    /** A case whose tensors {@code factory} makes afresh for every backend. */
    static ParityCase of(String kernel, Shape shape, double rtol, Supplier<Prepared> factory) {
        return new Simple(kernel, shape, rtol, factory);
    }

    /** A case built from a factory of {@link Prepared} calls. */
    record Simple(String kernel, Shape shape, double rtol, Supplier<Prepared> factory) implements ParityCase {
        @Override
        public Prepared prepare(Backend backend) {
            Prepared p = factory.get();
            p.be = backend;
            try {
                p.allocate();
            } catch (RuntimeException e) {
                try {
                    p.close();
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
                throw e;
            }
            return p;
        }
    }
}
