package io.diffusion4j.selftest;

/**
 * One output array of a call with how it is checked (the CPU side's check is the one used): float32,
 * float64 (the gradient norm, the bound's terms) or uint32 (raw random words) values.
 */
record Output(String name, float[] f, int[] i, double[] d, Check check) {
    /** How an output is checked. */
    sealed interface Check permits BitExact, Close {}

    /** Identical bits. */
    record BitExact() implements Check {}

    /** |dev - cpu| <= rtol * (|cpu| + magnitude). */
    record Close(double rtol, double magnitude) implements Check {}

        static Output bits(String name, int[] v) {
            return new Output(name, null, v, null, new BitExact());
        }

        static Output bits(String name, float[] v) {
            return new Output(name, v, null, null, new BitExact());
        }

        static Output close(String name, float[] v, double rtol, double magnitude) {
            return new Output(name, v, null, null, new Close(rtol, magnitude));
        }

        /** A float64 result (the gradient norm), compared in float64. */
        static Output close(String name, double[] v, double rtol, double magnitude) {
            return new Output(name, null, null, v, new Close(rtol, magnitude));
        }

        double value(int k) {
            return f != null ? f[k] : d[k];
        }
}
