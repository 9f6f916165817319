package io.diffusion4j.selftest;

import io.diffusion4j.Precision;
import java.util.function.ToDoubleFunction;

/**
 * One output array of a call with how it is checked (the CPU side's check is the one used): float32,
 * float64 (the gradient norm, the bound's terms) or uint32 (raw random words) values.
 */
record Output(String name, float[] f, int[] i, double[] d, Check check) {
    /** How an output is checked. */
    sealed interface Check permits BitExact, Close {}

    /** Identical bits. */
    record BitExact() implements Check {}

    /**
     * |dev - cpu| <= rtol(precision) * (|cpu| + magnitude), where rtol(precision) = rtol + widening(precision):
     * what a tensor-core variant's rounding of its inputs to TF32 or BF16 adds (0 at FP32). For a sum of
     * products ({@link #products}) the widening is the products' rounding error ({@link
     * Precision#productError()}), magnitude bounding the sum of their absolute values.
     */
    record Close(double rtol, double magnitude, ToDoubleFunction<Precision> widening) implements Check {
        /** The bound's rtol for a device that computed at {@code precision}. */
        double rtol(Precision precision) {
            return rtol + widening.applyAsDouble(precision);
        }
    }

        static Output bits(String name, int[] v) {
            return new Output(name, null, v, null, new BitExact());
        }

        static Output bits(String name, float[] v) {
            return new Output(name, v, null, null, new BitExact());
        }

        static Output close(String name, float[] v, double rtol, double magnitude) {
            return new Output(name, v, null, null, new Close(rtol, magnitude, p -> 0.0));
        }

        /** A sum of products of the matrix families: its bound widens at TF32 and BF16 (see {@link Close}). */
        static Output products(String name, float[] v, double rtol, double magnitude) {
            return new Output(name, v, null, null, new Close(rtol, magnitude, Precision::productError));
        }

        /**
         * An output that a tensor-core variant computes through several rounded products in sequence
         * (attention): at precision p its rtol grows by {@code widening(p)}, a bound the case derives.
         */
        static Output rounded(String name, float[] v, double rtol, double magnitude, ToDoubleFunction<Precision> widening) {
            return new Output(name, v, null, null, new Close(rtol, magnitude, widening));
        }

        /** A float64 result (the gradient norm), compared in float64. */
        static Output close(String name, double[] v, double rtol, double magnitude) {
            return new Output(name, null, null, v, new Close(rtol, magnitude, p -> 0.0));
        }

        double value(int k) {
            return f != null ? f[k] : d[k];
        }
}
