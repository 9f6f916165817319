package io.diffusion4j.selftest;

import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * Cases over float32 tensors only (the UNet layer and optimiser families): each argument says how it is
 * set before every call, so both backends and every timed repeat start from the same values.
 */
final class TensorCase {
    private TensorCase() {}

    /** How a tensor argument of a call is set before every call (on both backends alike). */
    enum Init {
        /** Uploaded once; the kernel only reads it. */
        INPUT,
        /** An output the kernel writes: NaN before every call. */
        POISON,
        /**
         * Accumulated into ({@code +=}) or updated in place: the same values are uploaded again before
         * every call, so both backends (and every timed repeat) start from identical copies. NaN would
         * only propagate, never show an unwritten element.
         */
        RESET
    }

    /** One float32 tensor argument: how it is initialised, its values (INPUT, RESET) and its shape. */
    record Arg(Init init, float[] data, long... shape) {
        static Arg in(float[] data, long... shape) {
            return new Arg(Init.INPUT, data, shape);
        }

        static Arg out(long... shape) {
            return new Arg(Init.POISON, null, shape);
        }

        static Arg reset(float[] data, long... shape) {
            return new Arg(Init.RESET, data, shape);
        }
    }

    /**
     * A case over float32 tensors: {@code call} gets the tensors in the order of {@code args};
     * {@code read} gets the values of every non-input argument (null for inputs), read back after the call.
     */
    static ParityCase tensorCase(String kernel, Shape shape, double rtol, List<Arg> args, Consumer<Tensor[]> call,
                           Function<float[][], List<Output>> read) {
        return ParityCase.of(kernel, shape, rtol, () -> new Prepared() {
            Tensor[] t;

            @Override
            void allocate() {
                t = new Tensor[args.size()];
                for (int k = 0; k < t.length; k++) {
                    Arg a = args.get(k);
                    t[k] = keep(a.init() == Init.INPUT ? Tensor.of(be, a.data(), a.shape())
                            : Tensor.allocate(be, DType.FLOAT32, a.shape()));
                }
            }

            @Override
            void poison() {
                for (int k = 0; k < t.length; k++) {
                    Arg a = args.get(k);
                    if (a.init() == Init.POISON) t[k].fill(Float.NaN);
                    else if (a.init() == Init.RESET) t[k].copyFrom(a.data());
                }
            }

            @Override
            void call() {
                call.accept(t);
            }

            @Override
            List<Output> read() {
                float[][] v = new float[t.length][];
                for (int k = 0; k < t.length; k++) if (args.get(k).init() != Init.INPUT) v[k] = t[k].toFloatArray();
                return read.apply(v);
            }
        });
    }
}
