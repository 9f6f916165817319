package io.diffusion4j.bench;

import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * conv2d forward, dX (backward with only dx) and dW (backward with dweight and dbias), at convolutions of the
 * Fashion-MNIST model (TrainingDefaults.config(): 28x28, channels 32/64/64) at batch 16 and 64 and of
 * google/ddpm-cifar10-32 (32x32, 128 channels) at batch 8. Shape "NxHxWxCin-Cout-kind": input
 * [N, H, W, Cin], kind 3x3 (stride 1, padding 1), 1x1, down (3x3 stride 2) or up (nearest 2x upsampling then
 * 3x3).
 *
 * <p>Work per call: FLOPs = 2 * N * Hout * Wout * k^2 * Cin * Cout for each of the three (each is one matrix
 * product of that size); bytes: forward x + weight + bias + y; dX dy + weight + dx; dW x + dy + 2 * (dweight +
 * dbias) (accumulated: read and written), 4 bytes per float. forwardGroupNorm: the forward of the GroupNorm
 * (+ time-embedding bias, + SiLU, {@value #GROUPS} groups) of x, normalised as the convolution reads it; bytes as
 * the forward plus the statistics, gamma, beta and the bias tb. forwardPrepared / forwardGroupNormPrepared: the
 * same two forwards reading the backend's prepared weights ({@link ConvKernels#prepare}, made once in setup; where
 * the backend has none for the shape, the plain forwards run); work as theirs. prepare: making the prepared
 * weights (allocation included), bytes = the weights read (the form written is 16/9 to 4x larger; 0 where there
 * is none).
 */
public class ConvBenchmark extends BenchSupport {
    @Param({"16x28x28x32-32-3x3", "64x28x28x32-32-3x3", "64x7x7x64-64-3x3", "64x7x7x64-64-up", "64x14x14x64-64-down",
            "8x32x32x128-128-3x3"})
    public String shape;

    static final int GROUPS = 8; // divides every channel count above

    Conv2dSpec spec;
    Tensor x, weight, bias, y, dx, dWeight, dBias, tb, gamma, beta, mean, rstd, prepared;
    int h, w;

    /** Geometry of a shape string. */
    record Geometry(long n, long h, long w, long cIn, long cOut, Conv2dSpec spec) {
        long outPixels() {
            return n * spec.outputHeight(h) * spec.outputWidth(w);
        }

        double flops() {
            return 2.0 * outPixels() * spec.kernelSize() * spec.kernelSize() * cIn * cOut;
        }

        long xElems() {
            return n * h * w * cIn;
        }

        long yElems() {
            return outPixels() * cOut;
        }

        long wElems() {
            return (long) spec.kernelSize() * spec.kernelSize() * cIn * cOut;
        }
    }

    static Geometry geometry(String shape) {
        String[] p = shape.split("-");
        long[] in = dims(p[0]);
        Conv2dSpec spec = switch (p[2]) {
            case "3x3" -> Conv2dSpec.same3x3();
            case "1x1" -> Conv2dSpec.pointwise();
            case "down" -> Conv2dSpec.downsample3x3(1);
            case "up" -> Conv2dSpec.upsample3x3();
            default -> throw new IllegalArgumentException("unknown conv kind " + p[2]);
        };
        return new Geometry(in[0], in[1], in[2], in[3], Long.parseLong(p[1]), spec);
    }

    static Work work(String method, String shape) {
        Geometry g = geometry(shape);
        double f = g.flops();
        return switch (method) {
            case "forward" -> Work.compute(f, 4.0 * (g.xElems() + g.wElems() + g.cOut + g.yElems()));
            case "forwardGroupNorm" -> Work.compute(f, 4.0 * (g.xElems() + g.wElems() + g.cOut + g.yElems()
                    + g.n * g.cIn + 2 * g.cIn + 2 * g.n * GROUPS));
            case "forwardPrepared" -> work("forward", shape);
            case "forwardGroupNormPrepared" -> work("forwardGroupNorm", shape);
            case "prepare" -> Work.memory(4.0 * g.wElems());
            case "backwardData" -> Work.compute(f, 4.0 * (g.yElems() + g.wElems() + g.xElems()));
            case "backwardWeight" -> Work.compute(f, 4.0 * (g.xElems() + g.yElems() + 2 * (g.wElems() + g.cOut)));
            default -> null;
        };
    }

    @Override
    void allocate() {
        Geometry g = geometry(shape);
        spec = g.spec;
        long[] yShape = spec.outputShape(new long[] {g.n, g.h, g.w, g.cIn}, g.cOut);
        x = normal(g.n, g.h, g.w, g.cIn);
        weight = normal(spec.kernelSize(), spec.kernelSize(), g.cIn, g.cOut);
        bias = normal(g.cOut);
        y = normal(yShape);
        dx = normal(g.n, g.h, g.w, g.cIn);
        dWeight = filled(0f, spec.kernelSize(), spec.kernelSize(), g.cIn, g.cOut);
        dBias = filled(0f, g.cOut);
        tb = normal(g.n, g.cIn);
        gamma = normal(g.cIn);
        beta = normal(g.cIn);
        mean = filled(0f, g.n, GROUPS);
        rstd = filled(1f, g.n, GROUPS);
        h = (int) g.h;
        w = (int) g.w;
        prepared = ConvKernels.prepare(spec, h, w, weight); // null: no prepared form here
        if (prepared != null) own(prepared);
    }

    @Benchmark
    @Kernel(family = "conv2d", entryPoints = "d4j_conv2d_forward")
    public void forward() {
        ConvKernels.forward(spec, x, weight, bias, y);
        sync();
    }

    @Benchmark
    @Kernel(family = "conv2d", entryPoints = "d4j_group_norm_conv2d_forward")
    public void forwardGroupNorm() {
        ConvKernels.forward(spec, new ConvKernels.GroupNormInput(tb, gamma, beta, mean, rstd, GROUPS, true), x, weight,
                bias, y);
        sync();
    }

    @Benchmark
    @Kernel(family = "conv2d", entryPoints = "d4j_conv2d_forward_prepared")
    public void forwardPrepared() {
        ConvKernels.forward(spec, x, weight, prepared, bias, y);
        sync();
    }

    @Benchmark
    @Kernel(family = "conv2d", entryPoints = "d4j_group_norm_conv2d_forward_prepared")
    public void forwardGroupNormPrepared() {
        ConvKernels.forward(spec, new ConvKernels.GroupNormInput(tb, gamma, beta, mean, rstd, GROUPS, true), x, weight,
                prepared, bias, y);
        sync();
    }

    @Benchmark
    @Kernel(family = "conv2d", entryPoints = {"d4j_conv2d_prepared_size", "d4j_conv2d_prepare"})
    public void prepare() {
        Tensor p = ConvKernels.prepare(spec, h, w, weight);
        if (p != null) p.close();
        sync();
    }

    /** dX only; y serves as dy. */
    @Benchmark
    @Kernel(family = "conv2d", entryPoints = "d4j_conv2d_backward")
    public void backwardData() {
        ConvKernels.backward(spec, x, weight, y, dx, null, null);
        sync();
    }

    /** dW and dbias only; y serves as dy. */
    @Benchmark
    @Kernel(family = "conv2d", entryPoints = "d4j_conv2d_backward")
    public void backwardWeight() {
        ConvKernels.backward(spec, x, weight, y, null, dWeight, dBias);
        sync();
    }
}
