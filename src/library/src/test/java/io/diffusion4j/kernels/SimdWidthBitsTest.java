package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.testutil.TestRandom;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The CPU convolutions give the same bits whatever SIMD width runs: a machine only ever runs its widest clone of
 * each kernel (picked at load time), so the AVX2 and baseline (SSE2) paths are checked here through test-only
 * builds with one path each (libd4j_cpu_avx2.so, libd4j_cpu_baseline.so, -DD4J_NO_CLONES). Every output of the
 * convolution (all geometries; the direct, one-channel, upsampling-phase and Winograd F(2x2) / F(4x4) paths;
 * forward, dX, dW, dB) must equal the loaded backend's bit for bit: the kernels are written on 16-float vectors
 * whose lane order does not depend on the hardware's width, without FMA contraction. (The linear layer and
 * attention contract into FMA where the path has it, so their bits depend on the path, as their file says; that
 * is not checked here.)
 */
class SimdWidthBitsTest {
    static Backend widest;
    static final List<Backend> others = new ArrayList<>();

    @BeforeAll
    static void open() {
        widest = Backend.open(Device.CPU);
        Path dir = Path.of("target", "native-build").toAbsolutePath();
        for (String lib : List.of("libd4j_cpu_avx2.so", "libd4j_cpu_baseline.so")) {
            Path p = dir.resolve(lib);
            assertTrue(Files.isRegularFile(p), p + " is missing (a test-only native target)");
            others.add(Backend.openLibrary(Device.CPU, p));
        }
    }

    @AfterAll
    static void close() {
        for (Backend b : others) b.close();
        others.clear();
        if (widest != null) widest.close();
    }

    /** Runs {@code op} on every backend and requires the bits of the widest one. */
    static void sameBits(String what, Function<Backend, float[]> op) {
        float[] ref = op.apply(widest);
        for (Backend b : others) {
            float[] got = op.apply(b);
            assertEquals(ref.length, got.length, what);
            for (int i = 0; i < ref.length; i++) {
                if (Float.floatToRawIntBits(ref[i]) != Float.floatToRawIntBits(got[i])) {
                    throw new AssertionError(what + " on " + b.library().getFileName() + ": element " + i + " is " + got[i]
                            + ", the widest path gives " + ref[i]);
                }
            }
        }
    }

    static float[] concat(float[]... parts) {
        int n = 0;
        for (float[] p : parts) n += p == null ? 0 : p.length;
        float[] out = new float[n];
        int at = 0;
        for (float[] p : parts) {
            if (p == null) continue;
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    @Test
    void convolutionBitsDoNotDependOnTheSimdWidth() {
        List<ConvReference.Problem> problems = new ArrayList<>(ConvKernelsTest.problems(ConvKernelsTest.SHAPES));
        problems.addAll(ConvKernelsTest.problems(new int[][] {{2, 9, 11, 19, 1}, {1, 9, 11, 1, 21}, {1, 15, 13, 48, 64}}));
        // the Winograd tiles: >= 128 channels, F(2x2) from 8 x 8, F(4x4) from 28 x 28
        problems.add(new ConvReference.Problem(Conv2dSpec.same3x3(), 1, 9, 11, 131, 129));
        problems.add(new ConvReference.Problem(Conv2dSpec.same3x3(), 1, 29, 28, 128, 133));
        for (ConvReference.Problem p : problems) {
            TestRandom r = TestRandom.fresh();
            float[] x = r.gaussians(p.xSize(), 1.0), w = r.gaussians(p.wSize(), 0.5), b = r.gaussians(p.cOut(), 1.0);
            float[] dy = r.gaussians(p.ySize(), 1.0), dw0 = r.gaussians(p.wSize(), 1.0), db0 = r.gaussians(p.cOut(), 1.0);
            String c = "conv2d " + p + " " + r.describe();
            sameBits(c + " forward", be -> ConvRunner.forward(be, p, x, w, b));
            sameBits(c + " backward", be -> {
                ConvRunner.BackwardOut o = ConvRunner.backward(be, p, x, w, dy, true, dw0, db0, 1);
                return concat(o.dx(), o.dw(), o.db());
            });
        }
    }
}
