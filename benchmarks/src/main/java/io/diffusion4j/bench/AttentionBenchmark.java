package io.diffusion4j.bench;

import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.LinearKernels.AttentionShape;
import io.diffusion4j.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * Multi-head attention forward (with the log-sum-exp saved for training) and backward, shape "BxLxHxD": batch
 * B, L tokens, H heads of D channels. Cases: the Fashion-MNIST model's attention at 7x7 (64 channels in 8
 * heads of 8: TrainingDefaults.config() keeps UNet2DConfig's attention_head_dim 8) at batch 16 and 64, and
 * ddpm-cifar10-32's at 16x16 (256 channels, one head: its attention_head_dim is null) at batch 8.
 *
 * <p>Work: forward 4 * B * H * L^2 * D FLOPs (q k^T and P v; the softmax's exponentials not counted), bytes
 * q, k, v, out (16BLHD); backward 10 * B * H * L^2 * D FLOPs (q k^T recomputed, dv = P^T dout, dP = dout v^T,
 * dq = dS k, dk = dS^T q), bytes q, k, v, out, dout, dq, dk, dv (32BLHD). lse ignored.
 */
public class AttentionBenchmark extends BenchSupport {
    @Param({"16x49x8x8", "64x49x8x8", "8x256x1x256"})
    public String shape;

    AttentionShape s;
    float scale;
    Tensor q, k, v, out, lse, dout, dq, dk, dv;

    static Work work(String method, String shape) {
        long[] d = dims(shape);
        double b = d[0], l = d[1], h = d[2], hd = d[3];
        double act = b * l * h * hd;
        return switch (method) {
            case "forward" -> Work.compute(4 * b * h * l * l * hd, 16 * act);
            case "backward" -> Work.compute(10 * b * h * l * l * hd, 32 * act);
            default -> null;
        };
    }

    @Override
    void allocate() {
        long[] d = dims(shape);
        s = new AttentionShape((int) d[0], (int) d[1], (int) d[2], (int) d[3]);
        scale = s.defaultScale();
        q = normal(d);
        k = normal(d);
        v = normal(d);
        out = normal(d);
        dout = normal(d);
        dq = normal(d);
        dk = normal(d);
        dv = normal(d);
        lse = normal(d[0], d[2], d[1]);
        LinearKernels.attention(s, scale, q, k, v, out, lse);
    }

    @Benchmark
    @Kernel(family = "attention", entryPoints = "d4j_attention_forward")
    public void forward() {
        LinearKernels.attention(s, scale, q, k, v, out, lse);
        sync();
    }

    @Benchmark
    @Kernel(family = "attention", entryPoints = "d4j_attention_backward")
    public void backward() {
        LinearKernels.attentionBackward(s, scale, q, k, v, out, lse, dout, dq, dk, dv);
        sync();
    }
}
