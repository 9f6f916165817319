package io.diffusion4j.bench;

import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * Linear layer forward and backward (dx, dweight, dbias), shape "RxIxO": x [R, I], weight [O, I]. Cases: the
 * attention q/k/v/out projections of the Fashion-MNIST model at batch 64 (64 * 7 * 7 tokens, 64 channels) and
 * of ddpm-cifar10-32 at batch 8 (8 * 16 * 16 tokens, 256 channels), and the time-embedding MLP's second layer
 * at batch 64 (128 -> 128).
 *
 * <p>Work: forward 2RIO FLOPs, bytes x + weight + bias + y; backward 4RIO FLOPs (dx = dy W and dW += dy^T x),
 * bytes x + weight + dy + dx + 2 * (dweight + dbias).
 */
public class LinearBenchmark extends BenchSupport {
    @Param({"3136x64x64", "2048x256x256", "64x128x128"})
    public String shape;

    Tensor x, w, bias, y, dx, dw, dbias;

    static Work work(String method, String shape) {
        long[] s = dims(shape);
        double r = s[0], i = s[1], o = s[2];
        return switch (method) {
            case "forward" -> Work.compute(2 * r * i * o, 4 * (r * i + o * i + o + r * o));
            case "backward" -> Work.compute(4 * r * i * o, 4 * (2 * r * i + o * i + r * o + 2 * (o * i + o)));
            default -> null;
        };
    }

    @Override
    void allocate() {
        long[] s = dims(shape);
        x = normal(s[0], s[1]);
        w = normal(s[2], s[1]);
        bias = normal(s[2]);
        y = normal(s[0], s[2]);
        dx = normal(s[0], s[1]);
        dw = filled(0f, s[2], s[1]);
        dbias = filled(0f, s[2]);
    }

    @Benchmark
    @Kernel(family = "linear", entryPoints = "d4j_linear_forward")
    public void forward() {
        LinearKernels.linear(x, w, bias, y);
        sync();
    }

    /** y serves as dy. */
    @Benchmark
    @Kernel(family = "linear", entryPoints = "d4j_linear_backward")
    public void backward() {
        LinearKernels.linearBackward(x, w, y, dx, dw, dbias);
        sync();
    }
}
