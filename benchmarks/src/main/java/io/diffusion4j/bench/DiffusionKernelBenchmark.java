package io.diffusion4j.bench;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * The fused diffusion kernels on image batches "BxCxHxW": Fashion-MNIST at batch 16 and 64, CIFAR-10 at batch
 * 128: noising (add_noise), the training loss and its gradient, the DDPM and DDIM posterior updates (reverse
 * steps; DDIM with eta 0), the counter-based RNG (normals and raw bits), and the sinusoidal timestep embedding
 * (dim 128 for 28x28 samples, the Fashion model's 4 * 32; 512 for 32x32, ddpm-cifar10-32's 4 * 128).
 *
 * <p>Bytes per call, n = B*C*H*W, 4 bytes per float: addNoise 12n (x0 in, x_t and eps out), diffusionLoss 16n
 * (model output, x0, eps in, grad out), ddpmStep and ddimStep 12n (x_t, model output in, x_prev out),
 * randomNormal and randomBits 4n (out), timestepEmbedding 4 * B * dim (out).
 */
public class DiffusionKernelBenchmark extends BenchSupport {
    @Param({"16x1x28x28", "64x1x28x28", "128x3x32x32"})
    public String shape;

    NativeSchedule schedule;
    Tensor x0, xt, eps, out, loss, grad, xprev, bits, temb;
    int[] t, prev;
    float[] tf;
    int dim;
    DiffusionKernels.SampleNoise noise;
    long step;

    static int embeddingDim(long[] s) {
        return s[2] == 28 ? 128 : 512;
    }

    static Work work(String method, String shape) {
        long[] s = dims(shape);
        double n = Shapes.elements(s);
        return switch (method) {
            case "addNoise", "ddpmStep", "ddimStep" -> Work.memory(12 * n);
            case "diffusionLoss" -> Work.memory(16 * n);
            case "randomNormal", "randomBits" -> Work.memory(4 * n);
            case "timestepEmbedding" -> Work.memory(4.0 * s[0] * embeddingDim(s));
            default -> null;
        };
    }

    @Override
    void allocate() {
        schedule = defaultSchedule();
        long[] s = dims(shape);
        int batch = (int) s[0];
        dim = embeddingDim(s);
        x0 = normal(s);
        out = normal(s);
        xt = normal(s);
        eps = normal(s);
        grad = normal(s);
        xprev = normal(s);
        bits = own(Tensor.allocate(device, DType.UINT32, s));
        loss = filled(0f, batch);
        temb = filled(0f, batch, dim);
        SplittableRandom r = new SplittableRandom(42);
        t = new int[batch];
        prev = new int[batch];
        tf = new float[batch];
        for (int b = 0; b < batch; b++) {
            t[b] = 1 + r.nextInt(999);
            prev[b] = t[b] - 1;
            tf[b] = t[b];
        }
        noise = noisePerSample(batch);
    }

    @Benchmark
    @Kernel(family = "add_noise", entryPoints = "d4j_add_noise")
    public void addNoise() {
        DiffusionKernels.addNoise(schedule, x0, t, 1234L, step++, xt, eps);
        sync();
    }

    @Benchmark
    @Kernel(family = "diffusion_loss", entryPoints = "d4j_diffusion_loss")
    public void diffusionLoss() {
        DiffusionKernels.diffusionLoss(schedule, PredictionType.EPSILON, out, x0, eps, t, null, loss, grad);
        sync();
    }

    @Benchmark
    @Kernel(family = "reverse_step", entryPoints = "d4j_ddpm_step")
    public void ddpmStep() {
        DiffusionKernels.ddpmStep(schedule, PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1.0f, xt, out, t,
                prev, noise, xprev);
        sync();
    }

    @Benchmark
    @Kernel(family = "reverse_step", entryPoints = "d4j_ddim_step")
    public void ddimStep() {
        DiffusionKernels.ddimStep(schedule, PredictionType.EPSILON, 0f, true, 1.0f, false, 1.0, xt, out, t, prev,
                noise, xprev);
        sync();
    }

    @Benchmark
    @Kernel(family = "rng", entryPoints = "d4j_rng_normal")
    public void randomNormal() {
        DiffusionKernels.randomNormal(device, 99L, step++, eps);
        sync();
    }

    @Benchmark
    @Kernel(family = "rng", entryPoints = "d4j_rng_uint32")
    public void randomBits() {
        DiffusionKernels.randomBits(device, 99L, step++, bits);
        sync();
    }

    @Benchmark
    @Kernel(family = "timestep_embedding", entryPoints = "d4j_timestep_embedding")
    public void timestepEmbedding() {
        DiffusionKernels.timestepEmbedding(device, tf, dim, true, 0f, 1f, 10000f, temb);
        sync();
    }
}
