package io.diffusion4j.selftest;

import io.diffusion4j.Precision;

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
     * |dev - cpu| <= rtol * (|cpu| + magnitude). {@code products}: the output is a sum of products that a
     * tensor-core variant computes from inputs rounded to TF32 or BF16, so at those precisions the bound
     * grows by the products' rounding error ({@link Precision#productError()}) times
     * magnitude, which bounds the sum of the products' absolute values.
     */
    record Close(double rtol, double magnitude, boolean products) implements Check {
        /** The bound's rtol for a device that computed at {@code precision}. */
        double rtol(Precision precision) {
            return products ? rtol + precision.productError() : rtol;
        }
    }

        static Output bits(String name, int[] v) {
            return new Output(name, null, v, null, new BitExact());
        }

        static Output bits(String name, float[] v) {
            return new Output(name, v, null, null, new BitExact());
        }

        static Output close(String name, float[] v, double rtol, double magnitude) {
            return new Output(name, v, null, null, new Close(rtol, magnitude, false));
        }

        /** A sum of products of the matrix families: its bound widens at TF32 and BF16 (see {@link Close}). */
        static Output products(String name, float[] v, double rtol, double magnitude) {
            return new Output(name, v, null, null, new Close(rtol, magnitude, true));
        }

        /** A float64 result (the gradient norm), compared in float64. */
        static Output close(String name, double[] v, double rtol, double magnitude) {
            return new Output(name, null, null, v, new Close(rtol, magnitude, false));
        }

        double value(int k) {
            return f != null ? f[k] : d[k];
        }
}
