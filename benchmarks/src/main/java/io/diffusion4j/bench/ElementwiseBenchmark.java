package io.diffusion4j.bench;

import io.diffusion4j.kernels.ConcatKernels;
import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * The element-wise UNet kernels on NHWC activations "NxHxWxC" (Fashion-MNIST model at batch 64, ddpm-cifar10-32
 * at batch 8): SiLU, the residual sum, channel concatenation of two such tensors (up blocks' skip connections)
 * and dropout (p = 0.1), each forward and backward.
 *
 * <p>Bytes per call, n = N*H*W*C, 4 bytes per float: silu 8n (x in, y out), siluBackward 12n (dy, x in, dx out),
 * residualAdd 12n (a, b in, out out), residualAddBackward 12n (dout in, da, db out), concat and its backward 16n
 * (two n-element tensors in and one 2n-element tensor out, or the reverse), dropout and its backward 8n (the
 * mask is regenerated from the RNG, not read).
 */
public class ElementwiseBenchmark extends BenchSupport {
    @Param({"64x28x28x32", "8x32x32x128"})
    public String shape;

    Tensor a, b, out, da, db, cat;
    int c;
    long step;

    static Work work(String method, String shape) {
        double n = Shapes.elements(dims(shape));
        return switch (method) {
            case "silu", "dropout", "dropoutBackward" -> Work.memory(8 * n);
            case "siluBackward", "residualAdd", "residualAddBackward" -> Work.memory(12 * n);
            case "concat", "concatBackward" -> Work.memory(16 * n);
            default -> null;
        };
    }

    @Override
    void allocate() {
        long[] s = dims(shape);
        c = (int) s[3];
        a = normal(s);
        b = normal(s);
        out = normal(s);
        da = normal(s);
        db = normal(s);
        cat = normal(s[0], s[1], s[2], 2 * s[3]);
    }

    @Benchmark
    @Kernel(family = "silu", entryPoints = "d4j_silu_forward")
    public void silu() {
        NormKernels.silu(a, out);
        sync();
    }

    @Benchmark
    @Kernel(family = "silu", entryPoints = "d4j_silu_backward")
    public void siluBackward() {
        NormKernels.siluBackward(b, a, out);
        sync();
    }

    @Benchmark
    @Kernel(family = "residual_add", entryPoints = "d4j_residual_add")
    public void residualAdd() {
        NormKernels.residualAdd(a, b, 0.70710677f, out);
        sync();
    }

    @Benchmark
    @Kernel(family = "residual_add", entryPoints = "d4j_residual_add_backward")
    public void residualAddBackward() {
        NormKernels.residualAddBackward(a, 0.70710677f, da, db);
        sync();
    }

    @Benchmark
    @Kernel(family = "concat", entryPoints = "d4j_concat_channels_forward")
    public void concat() {
        ConcatKernels.concatChannels(a, b, cat);
        sync();
    }

    @Benchmark
    @Kernel(family = "concat", entryPoints = "d4j_concat_channels_backward")
    public void concatBackward() {
        ConcatKernels.concatChannelsBackward(cat, da, db, c, c);
        sync();
    }

    @Benchmark
    @Kernel(family = "dropout", entryPoints = "d4j_dropout_forward")
    public void dropout() {
        DropoutKernels.forward(a, 0.1, 5, step++, out);
        sync();
    }

    @Benchmark
    @Kernel(family = "dropout", entryPoints = "d4j_dropout_backward")
    public void dropoutBackward() {
        DropoutKernels.backward(a, 0.1, 5, step++, out);
        sync();
    }
}
