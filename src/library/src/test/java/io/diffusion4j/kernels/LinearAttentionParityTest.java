package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.LinearAttentionReference.TOL_FACTOR;
import static io.diffusion4j.kernels.LinearAttentionReference.UNDERFLOW;
import static io.diffusion4j.testutil.Tolerance.U;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.LinearAttentionReference.Attn;
import io.diffusion4j.kernels.LinearAttentionReference.Out;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * Linear (both CUDA variants) and attention on the device backends (CUDA, CUDA_SIM) against the CPU
 * backend and the float64 reference. Skipped with the backend's reason where it cannot run.
 *
 * <p>Tolerance: the device output must meet the same first-order bound as the CPU against the
 * float64 reference ({@code 2 u scale}, LinearAttentionReference), and device and CPU may then differ
 * by at most the sum of the two bounds ({@code 4 u scale}); plus 1e-30 absolute for float32 underflow of
 * probabilities with logits ~1000. Shapes are small: the simulator costs
 * about a millisecond per block with barriers.
 */
class LinearAttentionParityTest {
    static Backend cpu;
    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    /** dev within the bound of the reference, and within twice the bound of the CPU result. */
    static void parity(String what, float[] dev, float[] host, Out ref, String ctx) {
        Tolerance.log(Tolerance.assertCloseScaled(what + " (device vs float64)", dev, ref.ref(), ref.scale(), UNDERFLOW,
                TOL_FACTOR * U, ctx));
        double[] h = new double[host.length];
        for (int i = 0; i < h.length; i++) h[i] = host[i];
        Tolerance.log(Tolerance.assertCloseScaled(what + " (device vs cpu)", dev, h, ref.scale(), 2 * UNDERFLOW,
                2 * TOL_FACTOR * U, ctx));
    }

    // rows, in, out: odd sizes, partial 64-tiles and 16-deep slices, one shape over two 64-row tiles
    static final List<int[]> LINEAR_SHAPES = List.of(new int[] {1, 3, 3}, new int[] {7, 13, 70},
            new int[] {33, 70, 13}, new int[] {130, 17, 5});

    @OnDevices
    void linearMatchesCpuInEveryVariant(Backend dev, Device kind) {
        assertEquals(List.of("v1", "v2", "v3"), dev.kernelVariants("linear"), "linear variants of " + kind.cliName());
        assertEquals(List.of("v3"), dev.tensorCoreVariants("linear"), "tensor-core linear variants of " + kind.cliName());
        // the SIMT variants, at FP32 (v3 rounds its inputs: TensorCoreLinearParityTest)
        List<String> variants = List.of("v1", "v2");
        try {
            for (String variant : variants) {
                dev.selectKernel("linear", variant);
                for (int[] sh : LINEAR_SHAPES) {
                    int rows = sh[0], in = sh[1], out = sh[2];
                    TestRandom r = TestRandom.fresh();
                    String c = kind.cliName() + " linear " + variant + " rows=" + rows + " in=" + in + " out=" + out + "; "
                            + r.describe();
                    float[] x = r.gaussians(rows * in, 1.0), w = r.gaussians(out * in, 0.5), b = r.gaussians(out, 1.0);
                    float[] dy = r.gaussians(rows * out, 1.0), dw0 = r.gaussians(out * in, 1.0), db0 = r.gaussians(out, 1.0);
                    parity("linear y", LinearAttentionReference.linear(dev, x, w, b, rows, in, out),
                            LinearAttentionReference.linear(cpu, x, w, b, rows, in, out),
                            LinearAttentionReference.linear(x, w, b, rows, in, out), c);
                    float[][] d = LinearAttentionReference.linearBackward(dev, x, w, dy, dw0, db0, rows, in, out);
                    float[][] h = LinearAttentionReference.linearBackward(cpu, x, w, dy, dw0, db0, rows, in, out);
                    parity("linear dx", d[0], h[0], LinearAttentionReference.linearDx(w, dy, rows, in, out), c);
                    parity("linear dw", d[1], h[1], LinearAttentionReference.linearDw(x, dy, dw0, rows, in, out), c);
                    parity("linear db", d[2], h[2], LinearAttentionReference.linearDb(dy, db0, rows, out), c);
                    float[][] again = LinearAttentionReference.linearBackward(dev, x, w, dy, dw0, db0, rows, in, out);
                    for (int i = 0; i < 3; i++) Tolerance.assertBitIdentical("device linear backward is deterministic", d[i], again[i], c);
                }
            }
        } finally {
            dev.selectKernel("linear", "v1");
        }
    }

    @OnDevices
    void attentionMatchesCpu(Backend dev, Device kind) {
        // B*H*L blocks per kernel: at most 98 here
        Attn[] shapes = {new Attn(1, 1, 2, 4, 0.5f), new Attn(2, 9, 2, 5, (float) (1 / Math.sqrt(5))),
            new Attn(1, 49, 2, 8, (float) (1 / Math.sqrt(8))), new Attn(2, 7, 1, 8, 0.35f)};
        for (Attn a : shapes) {
            for (double magnitude : new double[] {1.0, 31.6}) {  // 31.6: logits ~ 1000
                TestRandom r = TestRandom.fresh();
                String c = kind.cliName() + " " + a + " |q|,|k| ~ " + magnitude + "; " + r.describe();
                float[] q = r.gaussians(a.size(), magnitude), k = r.gaussians(a.size(), magnitude);
                float[] v = r.gaussians(a.size(), 1.0), g = r.gaussians(a.size(), 1.0);
                var ref = LinearAttentionReference.attention(a, q, k, v);
                var d = LinearAttentionReference.attention(dev, a, q, k, v);
                var h = LinearAttentionReference.attention(cpu, a, q, k, v);
                parity("attention out", d.out(), h.out(), new Out(ref.out(), ref.outScale()), c);
                parity("attention lse", d.lse(), h.lse(), new Out(ref.lse(), ref.lseScale()), c);
                var bref = LinearAttentionReference.attentionBackward(a, q, k, v, g, ref);
                var dg = LinearAttentionReference.attentionBackward(dev, a, q, k, v, g);
                var hg = LinearAttentionReference.attentionBackward(cpu, a, q, k, v, g);
                parity("attention dq", dg.dq(), hg.dq(), bref.dq(), c);
                parity("attention dk", dg.dk(), hg.dk(), bref.dk(), c);
                parity("attention dv", dg.dv(), hg.dv(), bref.dv(), c);
                var again = LinearAttentionReference.attentionBackward(dev, a, q, k, v, g);
                Tolerance.assertBitIdentical("device dk is deterministic", dg.dk(), again.dk(), c);
                Tolerance.assertBitIdentical("device dv is deterministic", dg.dv(), again.dv(), c);
            }
        }
    }
}
