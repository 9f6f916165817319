package io.diffusion4j.bench;

/** Benchmark shapes given as "BxCxHxW". */
final class Shapes {
    private Shapes() {}

    static long[] parse(String s) {
        String[] p = s.split("x");
        long[] shape = new long[p.length];
        for (int i = 0; i < p.length; i++) shape[i] = Long.parseLong(p[i]);
        return shape;
    }

    static long elements(long[] shape) {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }
}
