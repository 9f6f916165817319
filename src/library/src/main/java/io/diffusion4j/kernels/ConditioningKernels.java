package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.DiffusionKernels.ints;
import static io.diffusion4j.kernels.DiffusionKernels.longs;
import static io.diffusion4j.kernels.TensorChecks.batchOf;
import static io.diffusion4j.kernels.TensorChecks.requireFloat;
import static io.diffusion4j.kernels.TensorChecks.requireSameShape;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.Objects;

/**
 * The conditioning kernels (families "class_embedding", "guidance", "renoise"): the class embedding of a
 * class-conditional UNet, classifier-free guidance, and the renoising that image-to-image (SDEdit) and
 * inpainting (RePaint) do between scheduler steps. Each call is one native entry point of native/include/d4j.h
 * (section "conditioning"), whose comments give the exact semantics. Labels, timesteps and noise streams are
 * per sample on the host; tensors are float32 of one backend.
 */
public final class ConditioningKernels {
    private ConditioningKernels() {}

    /**
     * {@code emb[b, :] += table[labels[b], :]}: diffusers' {@code class_embedding(class_labels)} added to the time
     * embedding. {@code table} is float32 {@code [numClasses, dim]}, {@code emb} float32 {@code [batch, dim]}.
     */
    public static void classEmbeddingForward(Tensor table, int[] labels, Tensor emb) {
        int[] dims = classDims(table, labels, emb, "emb");
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_class_embedding_forward(emb.backend().handle(), table.handle(), ints(arena, labels),
                    labels.length, dims[0], dims[1], emb.handle()));
        }
    }

    /** {@code dTable[labels[b], :] += dEmb[b, :]}, rows in increasing b (the same bits on every backend). */
    public static void classEmbeddingBackward(Tensor dEmb, int[] labels, Tensor dTable) {
        int[] dims = classDims(dTable, labels, dEmb, "dEmb");
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_class_embedding_backward(dEmb.backend().handle(), dEmb.handle(), ints(arena, labels),
                    labels.length, dims[0], dims[1], dTable.handle()));
        }
    }

    /** [numClasses, dim] of a table and rows tensor [labels.length, dim] on the table's backend. */
    private static int[] classDims(Tensor table, int[] labels, Tensor rows, String rowsName) {
        Objects.requireNonNull(labels, "labels");
        requireFloat(table, "table");
        batchOf(rows, rowsName, labels, "labels");
        if (table.rank() != 2 || rows.rank() != 2 || table.dim(1) != rows.dim(1)) {
            throw new IllegalArgumentException("table must be float32[classes, dim] and " + rowsName + " float32[batch,"
                    + " dim], got " + table.describe() + " and " + rows.describe());
        }
        if (table.backend() != rows.backend()) {
            throw new IllegalArgumentException("table and " + rowsName + " are on different backends");
        }
        return new int[] {Math.toIntExact(table.dim(0)), Math.toIntExact(table.dim(1))};
    }

    /**
     * Classifier-free guidance, {@code out = uncond + scale * (cond - uncond)} element-wise; {@code out} may be
     * {@code cond} or {@code uncond}. {@code scale} finite and &gt;= 0 (1: the conditional prediction).
     */
    public static void classifierFreeGuidance(Tensor cond, Tensor uncond, float scale, Tensor out) {
        requireFloat(cond, "cond");
        requireSameShape(cond, uncond, "uncond");
        requireSameShape(cond, out, "out");
        Native.check(d4j_h.d4j_classifier_free_guidance(cond.backend().handle(), cond.handle(), uncond.handle(),
                cond.elementCount(), scale, out.handle()));
    }

    /**
     * A draw from {@code q(x_to | x_from)} per sample: {@code x = sqrt(ab[to] / ab[from]) src + sqrt(1 - ab[to] /
     * ab[from]) z}, {@code from[b] = -1} meaning the clean image (SDEdit's start), {@code from[b] >= 0} RePaint's
     * jump back; {@code to[b] > from[b]}. {@code x} may be {@code src}.
     */
    public static void noiseToTimestep(NativeSchedule schedule, Tensor src, int[] fromTimesteps, int[] toTimesteps,
                                       SampleNoise noise, Tensor x) {
        Objects.requireNonNull(schedule, "schedule");
        int batch = perSample(src, "src", fromTimesteps, "fromTimesteps", toTimesteps, "toTimesteps", noise);
        requireSameShape(src, x, "x");
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_noise_to_timestep(src.backend().handle(), schedule.handle(), src.handle(),
                    ints(arena, fromTimesteps), ints(arena, toTimesteps), batch, src.elementCount() / batch,
                    longs(arena, noise.seeds()), longs(arena, noise.offsets()), x.handle()));
        }
    }

    /**
     * RePaint's merge of the known region, per sample at {@code timesteps[b]} (-1: the clean image, no noise):
     * {@code x = mask (sqrt(ab) known + sqrt(1 - ab) z) + (1 - mask) x}; mask 1 keeps the known pixel (diffusers'
     * RePaintPipeline convention).
     */
    public static void inpaintMerge(NativeSchedule schedule, Tensor known, Tensor mask, int[] timesteps,
                                    SampleNoise noise, Tensor x) {
        Objects.requireNonNull(schedule, "schedule");
        int batch = perSample(x, "x", timesteps, "timesteps", timesteps, "timesteps", noise);
        requireSameShape(x, known, "known");
        requireSameShape(x, mask, "mask");
        try (Arena arena = Arena.ofConfined()) {
            Native.check(d4j_h.d4j_inpaint_merge(x.backend().handle(), schedule.handle(), known.handle(), mask.handle(),
                    ints(arena, timesteps), batch, x.elementCount() / batch, longs(arena, noise.seeds()),
                    longs(arena, noise.offsets()), x.handle()));
        }
    }

    private static int perSample(Tensor x, String xName, int[] a, String aName, int[] b, String bName, SampleNoise noise) {
        Objects.requireNonNull(noise, "noise");
        int batch = batchOf(x, xName, a, aName);
        batchOf(x, xName, b, bName);
        if (batch < 1) throw new IllegalArgumentException(xName + " " + x.describe() + " has no samples");
        if (noise.seeds().length != batch) {
            throw new IllegalArgumentException("noise has " + noise.seeds().length + " streams, the batch is " + batch);
        }
        return batch;
    }
}
