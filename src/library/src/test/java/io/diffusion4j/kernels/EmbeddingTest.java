package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.testutil.KernelReference;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.Locale;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * d4j_timestep_embedding of the CPU backend against diffusers' get_timestep_embedding in float64.
 *
 * <p>Tolerance: |out - ref| <= 2^-24 (6.0e-8) absolute. The kernel computes the argument and
 * sin/cos in float64 and rounds once to float32; values lie in [-1, 1], so the rounding error is at
 * most 2^-25 and float64 errors (arguments up to ~1e6, relative error ~1e-16) are below 1e-9. The
 * stated bound is twice the rounding bound; measured worst is about 3.0e-8.
 */
class EmbeddingTest {
    static final double ATOL = 0x1p-24;
    static Backend cpu;
    static double worst;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        System.out.printf(Locale.ROOT, "[d4j-error] worst timestep_embedding max|err| = %.3g%n", worst);
        if (cpu != null) cpu.close();
    }

    static Stream<Arguments> cases() {
        return IntStream.of(2, 7, 33, 64, 321).boxed().flatMap(dim -> Stream.of(false, true).flatMap(flip ->
                Stream.of(0.0f, 1.0f).filter(shift -> dim / 2 - shift > 0).flatMap(shift ->
                        Stream.of(1.0f, 1000.0f).map(scale -> Arguments.of(dim, flip, shift, scale)))));
    }

    @ParameterizedTest(name = "dim={0}, flip_sin_to_cos={1}, downscale_freq_shift={2}, scale={3}")
    @MethodSource("cases")
    void embeddingMatchesReference(int dim, boolean flip, float shift, float scale) {
        for (int batch : new int[] {1, 129}) {
            TestRandom r = TestRandom.fresh();
            // scale 1: integer-like and fractional timesteps in [0, 1000); scale 1000: t in [0, 1) as flow models use
            float[] t = scale == 1.0f ? r.uniforms(batch, 0, 1000) : r.uniforms(batch, 0, 1);
            for (int b = 0; b < batch; b += 3) t[b] = (float) Math.floor(t[b]);
            t[0] = 0.0f;
            if (batch > 1) t[batch - 1] = scale == 1.0f ? 999.0f : 1.0f;
            check(dim, flip, shift, scale, 10000.0f, t, r);
        }
    }

    @Test
    void otherMaxPeriods() {
        TestRandom r = TestRandom.fresh();
        float[] t = r.uniforms(17, 0, 1000);
        for (float maxPeriod : new float[] {10.0f, 100.0f, 12345.0f}) {
            check(128, true, 1.0f, 1.0f, maxPeriod, t, r);
            check(31, false, 0.0f, 1.0f, maxPeriod, t, r);
        }
    }

    static void check(int dim, boolean flip, float shift, float scale, float maxPeriod, float[] t, TestRandom r) {
        String ctx = String.format(Locale.ROOT, "dim=%d flip=%b shift=%s scale=%s maxPeriod=%s batch=%d; %s", dim, flip,
                shift, scale, maxPeriod, t.length, r.describe());
        float[] out = KernelRunner.embedding(cpu, t, dim, flip, shift, scale, maxPeriod);
        double[] ref = KernelReference.timestepEmbedding(t, dim, flip, shift, scale, maxPeriod);
        Tolerance.Report rep = Tolerance.assertClose("timestep_embedding", out, ref, ATOL, 0.0, ctx);
        synchronized (EmbeddingTest.class) {
            worst = Math.max(worst, rep.maxAbsError());
        }
        if (dim % 2 == 1) {
            for (int b = 0; b < t.length; b++) {
                assertEquals(0, Float.floatToRawIntBits(out[b * dim + dim - 1]), "zero pad column, row " + b + "; " + ctx);
            }
        }
    }
}
