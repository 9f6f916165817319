package io.diffusion4j.bench;

import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * GroupNorm + SiLU (ResnetBlock2D's norm1 + act) and the time-embedding add fused into GroupNorm + SiLU (norm2),
 * forward and backward, on NHWC activations "NxHxWxC-gG" (G groups) of the Fashion-MNIST model at batch 16 and
 * 64 (8 groups) and of ddpm-cifar10-32 at batch 8 (32 groups).
 *
 * <p>Work per call, n = N*H*W*C elements: forward reads x and writes y, 8n bytes (+ 4NC for tb); backward reads
 * dy and x and writes dx, 12n bytes (+ 4NC for dtb). gamma, beta, their gradients and the statistics are
 * ignored (C or N*G floats). The kernels make two passes over x (statistics, then normalisation), which this
 * minimum does not count.
 */
public class NormBenchmark extends BenchSupport {
    @Param({"16x28x28x32-g8", "64x28x28x32-g8", "8x32x32x128-g32"})
    public String shape;

    int groups;
    Tensor x, tb, gamma, beta, y, mean, rstd, dy, dx, dtb, dgamma, dbeta;

    static long[] nhwc(String shape) {
        return dims(shape.split("-")[0]);
    }

    static Work work(String method, String shape) {
        long[] s = nhwc(shape);
        double n = Shapes.elements(s);
        double nc = s[0] * s[3];
        return switch (method) {
            case "groupNormSilu" -> Work.memory(8 * n);
            case "groupNormSiluBackward" -> Work.memory(12 * n);
            case "biasGroupNormSilu" -> Work.memory(8 * n + 4 * nc);
            case "biasGroupNormSiluBackward" -> Work.memory(12 * n + 4 * nc);
            default -> null;
        };
    }

    @Override
    void allocate() {
        long[] s = nhwc(shape);
        groups = Integer.parseInt(shape.split("-g")[1]);
        long c = s[3];
        x = normal(s);
        tb = normal(s[0], c);
        gamma = normal(c);
        beta = normal(c);
        y = normal(s);
        dy = normal(s);
        dx = normal(s);
        dtb = normal(s[0], c);
        mean = normal(s[0], groups);
        rstd = normal(s[0], groups);
        dgamma = filled(0f, c);
        dbeta = filled(0f, c);
        NormKernels.biasGroupNorm(x, tb, gamma, beta, groups, 1e-5f, true, y, mean, rstd);
    }

    @Benchmark
    @Kernel(family = "group_norm", entryPoints = "d4j_group_norm_forward")
    public void groupNormSilu() {
        NormKernels.groupNorm(x, gamma, beta, groups, 1e-5f, true, y, mean, rstd);
        sync();
    }

    @Benchmark
    @Kernel(family = "group_norm", entryPoints = "d4j_group_norm_backward")
    public void groupNormSiluBackward() {
        NormKernels.groupNormBackward(dy, x, gamma, beta, mean, rstd, groups, true, dx, dgamma, dbeta);
        sync();
    }

    @Benchmark
    @Kernel(family = "group_norm", entryPoints = "d4j_bias_group_norm_forward")
    public void biasGroupNormSilu() {
        NormKernels.biasGroupNorm(x, tb, gamma, beta, groups, 1e-5f, true, y, mean, rstd);
        sync();
    }

    @Benchmark
    @Kernel(family = "group_norm", entryPoints = "d4j_bias_group_norm_backward")
    public void biasGroupNormSiluBackward() {
        NormKernels.biasGroupNormBackward(dy, x, tb, gamma, beta, mean, rstd, groups, true, dx, dtb, dgamma, dbeta);
        sync();
    }
}
