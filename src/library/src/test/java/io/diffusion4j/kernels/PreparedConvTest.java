package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.kernels.ConvKernels.GroupNormInput;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Prepared convolution weights ({@link ConvKernels#prepare}, d4j_conv2d_prepare) on the CPU backend: the forwards
 * that read them give the plain forwards' bits, for every path that has a prepared form (Winograd F(2x2) and
 * F(4x4), the upsampling phases), at batches other than the one they were made for, with and without bias and
 * with the GroupNorm input; the geometries without one answer 0 / null; a form made for another geometry, or a
 * buffer too small for it, is refused. Fresh random inputs, odd sizes and channel counts, NaN-poisoned outputs.
 */
class PreparedConvTest {
    static Backend cpu;

    /** {n, h, w, cIn, cOut} with the spec: F(2x2), F(4x4), the upsampling phases (twice: small and wide channels). */
    record Case(Conv2dSpec spec, int n, int h, int w, int cIn, int cOut) {}

    static final Case[] CASES = {new Case(Conv2dSpec.same3x3(), 2, 9, 11, 131, 133),
            new Case(Conv2dSpec.same3x3(), 3, 29, 31, 129, 130), new Case(Conv2dSpec.upsample3x3(), 3, 5, 7, 13, 37),
            new Case(Conv2dSpec.upsample3x3(), 1, 4, 5, 128, 131)};

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    static float[] random(TestRandom r, int n, double scale) {
        return r.gaussians(n, scale);
    }


    @Test
    void preparedForwardsGiveThePlainForwardsBits() {
        for (Case c : CASES) {
            TestRandom r = TestRandom.fresh();
            int k = c.spec().kernelSize();
            long[] ys = c.spec().outputShape(new long[] {c.n(), c.h(), c.w(), c.cIn()}, c.cOut());
            int groups = c.cIn() % 2 == 0 ? 2 : 1;
            try (Tensor x = Tensor.of(cpu, random(r, c.n() * c.h() * c.w() * c.cIn(), 1), c.n(), c.h(), c.w(), c.cIn());
                 Tensor w = Tensor.of(cpu, random(r, k * k * c.cIn() * c.cOut(), 0.05), k, k, c.cIn(), c.cOut());
                 Tensor b = Tensor.of(cpu, random(r, c.cOut(), 0.1), c.cOut());
                 Tensor tb = Tensor.of(cpu, random(r, c.n() * c.cIn(), 0.3), c.n(), c.cIn());
                 Tensor gamma = Tensor.of(cpu, random(r, c.cIn(), 1), c.cIn());
                 Tensor beta = Tensor.of(cpu, random(r, c.cIn(), 0.5), c.cIn());
                 Tensor mean = Tensor.of(cpu, random(r, c.n() * groups, 0.2), (long) c.n() * groups);
                 Tensor rstd = Tensor.of(cpu, positive(r, c.n() * groups), (long) c.n() * groups);
                 Tensor plain = Tensor.allocate(cpu, DType.FLOAT32, ys);
                 Tensor viaPrepared = Tensor.allocate(cpu, DType.FLOAT32, ys);
                 Tensor prepared = ConvKernels.prepare(c.spec(), c.h(), c.w(), w)) {
                assertNotNull(prepared, c + " has a prepared form on the CPU");
                assertEquals(ConvKernels.preparedBytes(cpu, c.spec(), c.h(), c.w(), c.cIn(), c.cOut()),
                        prepared.elementCount() * Float.BYTES);
                for (Tensor bias : Arrays.asList(b, null)) {
                    plain.fill(Float.NaN);
                    viaPrepared.fill(Float.NaN);
                    ConvKernels.forward(c.spec(), x, w, bias, plain);
                    ConvKernels.forward(c.spec(), x, w, prepared, bias, viaPrepared);
                    Tolerance.assertBitIdentical(c + " bias " + (bias != null), plain.toFloatArray(),
                            viaPrepared.toFloatArray(), r.describe());
                    GroupNormInput norm = new GroupNormInput(tb, gamma, beta, mean, rstd, groups, true);
                    plain.fill(Float.NaN);
                    viaPrepared.fill(Float.NaN);
                    ConvKernels.forward(c.spec(), norm, x, w, bias, plain);
                    ConvKernels.forward(c.spec(), norm, x, w, prepared, bias, viaPrepared);
                    Tolerance.assertBitIdentical(c + " GroupNorm input, bias " + (bias != null), plain.toFloatArray(),
                            viaPrepared.toFloatArray(), r.describe());
                }
                float[] y = plain.toFloatArray();
                for (float v : y) assertTrue(Float.isFinite(v), c + ": every output written");
                // the prepared forward reads the form, not the weights: with the form zeroed (header kept) it
                // gives the bias alone
                float[] form = prepared.toFloatArray();
                Arrays.fill(form, 16, form.length, 0f);
                prepared.copyFrom(form);
                ConvKernels.forward(c.spec(), x, w, prepared, b, viaPrepared);
                float[] biasOnly = viaPrepared.toFloatArray(), bias = b.toFloatArray();
                for (int i = 0; i < biasOnly.length; i++) {
                    assertEquals(bias[i % c.cOut()], biasOnly[i], c + ": output " + i + " from a zeroed form");
                }
            }
        }
    }

    static float[] positive(TestRandom r, int n) {
        return r.uniforms(n, 0.5, 1.5);
    }

    @Test
    void geometriesWithoutAPreparedFormAnswerZero() {
        Case[] none = {new Case(Conv2dSpec.pointwise(), 1, 9, 11, 131, 133),
                new Case(Conv2dSpec.downsample3x3(1), 1, 9, 11, 131, 133),
                new Case(Conv2dSpec.same3x3(), 1, 9, 11, 127, 133), // fewer than 128 input channels: direct path
                new Case(Conv2dSpec.same3x3(), 1, 5, 7, 131, 133), // below 8x8: direct path
                new Case(Conv2dSpec.upsample3x3(), 1, 5, 7, 13, 1)}; // one output channel: dot products
        for (Case c : none) {
            assertEquals(0, ConvKernels.preparedBytes(cpu, c.spec(), c.h(), c.w(), c.cIn(), c.cOut()), c.toString());
            int k = c.spec().kernelSize();
            try (Tensor w = Tensor.allocate(cpu, DType.FLOAT32, k, k, c.cIn(), c.cOut());
                 Tensor x = Tensor.allocate(cpu, DType.FLOAT32, 1, c.h(), c.w(), c.cIn());
                 Tensor y = Tensor.allocate(cpu, DType.FLOAT32,
                         c.spec().outputShape(new long[] {1, c.h(), c.w(), c.cIn()}, c.cOut()))) {
                w.fill(0.5f);
                assertNull(ConvKernels.prepare(c.spec(), c.h(), c.w(), w), c.toString());
                // the weights passed as if prepared: refused, naming the reason
                int st = d4j_h.d4j_conv2d_forward_prepared(cpu.handle(), x.handle(), 1, c.h(), c.w(), c.cIn(), w.handle(),
                        MemorySegment.NULL, c.cOut(), k, c.spec().stride(), c.spec().padTop(), c.spec().padLeft(),
                        c.spec().padBottom(), c.spec().padRight(), c.spec().upsample2x() ? 1 : 0, y.handle());
                ConvKernelsTest.assertStatus(st, d4j_h.D4J_ERR_UNSUPPORTED(), "no prepared weights");
                st = d4j_h.d4j_conv2d_prepare(cpu.handle(), w.handle(), c.h(), c.w(), c.cIn(), c.cOut(), k,
                        c.spec().stride(), c.spec().padTop(), c.spec().padLeft(), c.spec().padBottom(),
                        c.spec().padRight(), c.spec().upsample2x() ? 1 : 0, y.handle());
                ConvKernelsTest.assertStatus(st, d4j_h.D4J_ERR_UNSUPPORTED(), "no prepared weights");
            }
        }
    }

    @Test
    void aPreparedFormOfAnotherGeometryOrTooSmallIsRefused() {
        Conv2dSpec same = Conv2dSpec.same3x3();
        try (Tensor w = Tensor.of(cpu, random(TestRandom.fresh(), 9 * 131 * 133, 0.05), 3, 3, 131, 133);
             Tensor p9x11 = ConvKernels.prepare(same, 9, 11, w);
             Tensor x9x13 = Tensor.allocate(cpu, DType.FLOAT32, 1, 9, 13, 131);
             Tensor y9x13 = Tensor.allocate(cpu, DType.FLOAT32, 1, 9, 13, 133);
             Tensor x28 = Tensor.allocate(cpu, DType.FLOAT32, 1, 28, 28, 131);
             Tensor y28 = Tensor.allocate(cpu, DType.FLOAT32, 1, 28, 28, 133)) {
            x9x13.fill(1f);
            x28.fill(1f);
            // the same size of form (F(2x2) for both): the header tells them apart
            RuntimeException e = assertThrows(RuntimeException.class,
                    () -> ConvKernels.forward(same, x9x13, w, p9x11, null, y9x13));
            assertTrue(e.getMessage().contains("another geometry"), e.getMessage());
            // F(4x4) at 28x28 needs a larger form than the F(2x2) one given
            e = assertThrows(RuntimeException.class, () -> ConvKernels.forward(same, x28, w, p9x11, null, y28));
            assertTrue(e.getMessage().contains("prepared"), e.getMessage());
            // an upsampling conv's form of the same channels read by a Winograd conv
            try (Tensor pu = ConvKernels.prepare(Conv2dSpec.upsample3x3(), 9, 11, w);
                 Tensor x9x11 = Tensor.allocate(cpu, DType.FLOAT32, 1, 9, 11, 131);
                 Tensor y9x11 = Tensor.allocate(cpu, DType.FLOAT32, 1, 9, 11, 133)) {
                x9x11.fill(1f);
                assertNotNull(pu);
                RuntimeException e2 = assertThrows(RuntimeException.class,
                        () -> ConvKernels.forward(same, x9x11, w, pu, null, y9x11));
                assertTrue(e2.getMessage().contains("another geometry") || e2.getMessage().contains("prepared"),
                        e2.getMessage());
            }
            // a buffer one float short of the form
            try (Tensor shortBuf = Tensor.allocate(cpu, DType.FLOAT32, p9x11.elementCount() - 1);
                 Tensor x9x11 = Tensor.allocate(cpu, DType.FLOAT32, 1, 9, 11, 131);
                 Tensor y9x11 = Tensor.allocate(cpu, DType.FLOAT32, 1, 9, 11, 133)) {
                int st = d4j_h.d4j_conv2d_prepare(cpu.handle(), w.handle(), 9, 11, 131, 133, 3, 1, 1, 1, 1, 1, 0,
                        shortBuf.handle());
                ConvKernelsTest.assertStatus(st, d4j_h.D4J_ERR_INVALID_ARGUMENT(), "prepared");
                RuntimeException e3 = assertThrows(RuntimeException.class,
                        () -> ConvKernels.forward(same, x9x11, w, shortBuf, null, y9x11));
                assertTrue(e3.getMessage().contains("prepared"), e3.getMessage());
            }
        }
    }
}
