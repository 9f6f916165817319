package io.diffusion4j.bench;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Twelve independent chains of float32 vector FMAs at the JVM's preferred vector width (16 lanes with
 * AVX-512): enough chains to cover the FMA latency on every current x86 core, so the loop runs at the FMA
 * units' throughput. Kept apart from {@link FmaPeakBenchmark} so that loading that class needs no incubator
 * module.
 */
final class FmaLoop {
    private FmaLoop() {}

    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int CHAINS = 12;

    /** FLOPs of one {@link #run} call: 2 per lane per FMA. */
    static long flops(int iterations) {
        return 2L * S.length() * CHAINS * iterations;
    }

    static float run(int iterations, float mul, float add) {
        FloatVector m = FloatVector.broadcast(S, mul), c = FloatVector.broadcast(S, add);
        FloatVector a0 = FloatVector.broadcast(S, 1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
                a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (int i = 0; i < iterations; i++) {
            a0 = a0.fma(m, c);
            a1 = a1.fma(m, c);
            a2 = a2.fma(m, c);
            a3 = a3.fma(m, c);
            a4 = a4.fma(m, c);
            a5 = a5.fma(m, c);
            a6 = a6.fma(m, c);
            a7 = a7.fma(m, c);
            a8 = a8.fma(m, c);
            a9 = a9.fma(m, c);
            a10 = a10.fma(m, c);
            a11 = a11.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7).add(a8).add(a9).add(a10).add(a11)
                .reduceLanes(VectorOperators.ADD);
    }
}
