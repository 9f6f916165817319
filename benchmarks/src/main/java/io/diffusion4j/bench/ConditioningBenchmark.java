package io.diffusion4j.bench;

import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * The conditioning kernels on image batches "BxCxHxW" (Fashion-MNIST sampling batch 16, CIFAR-10 batch 128):
 * classifier-free guidance, inpainting's merge of the known region and the jump back to a noisier timestep
 * (renoise), and the class embedding of a batch of B labels into a 4 x 32-channel time embedding, 11 classes
 * (class_embedding forward and backward).
 *
 * <p>Bytes per call, n = B*C*H*W, 4 bytes per float: guidance 12n (cond, uncond in, out), inpaintMerge 16n
 * (known, mask, x in, x out), noiseToTimestep 8n (src in, x out), classEmbedding forward 12 B d and backward
 * 12 B d (d = 128: a row of the table, of the embedding and the embedding written; the backward's table rows
 * read and written, the gradient rows read).
 */
public class ConditioningBenchmark extends BenchSupport {
    @Param({"16x1x28x28", "128x3x32x32"})
    public String shape;

    static final int CLASSES = 11, DIM = 128;

    NativeSchedule schedule;
    Tensor cond, uncond, out, known, mask, x, table, emb, dTable;
    int[] t, prev, labels;
    io.diffusion4j.kernels.DiffusionKernels.SampleNoise noise;

    static Work work(String method, String shape) {
        long[] s = dims(shape);
        double n = Shapes.elements(s);
        return switch (method) {
            case "guidance" -> Work.memory(12 * n);
            case "inpaintMerge" -> Work.memory(16 * n);
            case "noiseToTimestep" -> Work.memory(8 * n);
            case "classEmbeddingForward", "classEmbeddingBackward" -> Work.memory(12.0 * s[0] * DIM);
            default -> null;
        };
    }

    @Override
    void allocate() {
        schedule = defaultSchedule();
        long[] s = dims(shape);
        int batch = (int) s[0];
        SplittableRandom r = new SplittableRandom(42);
        cond = normal(s);
        uncond = normal(s);
        out = normal(s);
        known = normal(s);
        x = normal(s);
        float[] m = new float[(int) Shapes.elements(s)];
        for (int i = 0; i < m.length; i++) m[i] = r.nextBoolean() ? 1f : 0f;
        mask = of(m, s);
        table = normal(CLASSES, DIM);
        emb = normal(batch, DIM);
        dTable = normal(CLASSES, DIM);
        t = new int[batch];
        prev = new int[batch];
        labels = new int[batch];
        for (int b = 0; b < batch; b++) {
            t[b] = 1 + r.nextInt(998);
            prev[b] = t[b] - 1;
            labels[b] = r.nextInt(CLASSES);
        }
        noise = noisePerSample(batch);
    }

    @Benchmark
    @Kernel(family = "guidance", entryPoints = "d4j_classifier_free_guidance")
    public void guidance() {
        ConditioningKernels.classifierFreeGuidance(cond, uncond, 3f, out);
        sync();
    }

    @Benchmark
    @Kernel(family = "renoise", entryPoints = "d4j_inpaint_merge")
    public void inpaintMerge() {
        ConditioningKernels.inpaintMerge(schedule, known, mask, prev, noise, x);
        sync();
    }

    @Benchmark
    @Kernel(family = "renoise", entryPoints = "d4j_noise_to_timestep")
    public void noiseToTimestep() {
        ConditioningKernels.noiseToTimestep(schedule, known, prev, t, noise, x);
        sync();
    }

    @Benchmark
    @Kernel(family = "class_embedding", entryPoints = "d4j_class_embedding_forward")
    public void classEmbeddingForward() {
        ConditioningKernels.classEmbeddingForward(table, labels, emb);
        sync();
    }

    @Benchmark
    @Kernel(family = "class_embedding", entryPoints = "d4j_class_embedding_backward")
    public void classEmbeddingBackward() {
        ConditioningKernels.classEmbeddingBackward(emb, labels, dTable);
        sync();
    }
}
