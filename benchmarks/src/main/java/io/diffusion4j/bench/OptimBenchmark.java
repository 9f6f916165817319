package io.diffusion4j.bench;

import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * The optimiser kernels over one flat parameter buffer of "count" floats: the Fashion-MNIST model's 1,112,801
 * parameters and ddpm-cifar10-32's 35,746,307. AdamW with TrainCommand's hyper-parameters (betas 0.95, 0.999,
 * weight decay 1e-6) at a fixed step; the global gradient norm; the EMA update (decay 0.999).
 *
 * <p>Bytes per call, n = count: adamw 28n (param, grad, m, v read; param, m, v written), gradNorm 4n (grad
 * read), ema 12n (ema, param read; ema written). In place, adamw touches 16n distinct bytes and ema 8n (the
 * footprint KernelReport matches with a copy of the same working set).
 */
public class OptimBenchmark extends BenchSupport {
    @Param({"1112801", "35746307"})
    public String shape;

    static final OptimKernels.AdamW HP = new OptimKernels.AdamW(1e-4, 0.95, 0.999, 1e-8, 1e-6);

    Tensor param, grad, m, v, ema;

    static Work work(String method, String shape) {
        double n = Long.parseLong(shape);
        return switch (method) {
            case "adamw" -> Work.memoryInPlace(28 * n, 16 * n);
            case "gradNorm" -> Work.memory(4 * n);
            case "ema" -> Work.memoryInPlace(12 * n, 8 * n);
            default -> null;
        };
    }

    @Override
    void allocate() {
        long n = Long.parseLong(shape);
        param = normal(n);
        grad = normal(n);
        m = filled(1e-3f, n);
        v = filled(1e-4f, n);
        ema = normal(n);
    }

    @Benchmark
    @Kernel(family = "adamw", entryPoints = "d4j_adamw")
    public void adamw() {
        OptimKernels.adamw(param, grad, m, v, HP, 100, 0.5);
        sync();
    }

    @Benchmark
    @Kernel(family = "grad_norm", entryPoints = "d4j_grad_norm")
    public double gradNorm() {
        return OptimKernels.gradNorm(grad);
    }

    @Benchmark
    @Kernel(family = "ema", entryPoints = "d4j_ema_update")
    public void ema() {
        OptimKernels.ema(ema, param, 0.999);
        sync();
    }
}
