package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The conditioning families: class_embedding, guidance and renoise. Every element is a few operations each
 * rounded once (no fused multiply-add on a device) from coefficients the front computes on the host, and the
 * class-embedding gradient adds rows in a fixed order, so all are compared bit for bit.
 */
final class ConditioningCases {
    private ConditioningCases() {}

    /** Forward (added to a random embedding) and backward (accumulated into a random gradient); labels repeat. */
    static List<ParityCase> classEmbeddingCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        int[][] sizes = {{1, 1, 7}, {5, 11, 129}, {37, 10, 513}, {130, 3, 33}}; // batch, classes, dim
        for (int[] sz : sizes) {
            int batch = sz[0], classes = sz[1], dim = sz[2];
            int[] labels = new int[batch];
            for (int b = 0; b < batch; b++) labels[b] = rnd.nextInt(classes);
            float[] table = gaussians(rnd, classes * dim), emb = gaussians(rnd, batch * dim);
            float[] dEmb = gaussians(rnd, batch * dim), dTable = gaussians(rnd, classes * dim);
            Shape sh = dims(dimsText(batch, classes, dim), batch, classes, dim);
            out.add(tensorCase("forward + backward", sh, 0,
                    List.of(Arg.in(table, classes, dim), Arg.reset(emb, batch, dim), Arg.in(dEmb, batch, dim),
                            Arg.reset(dTable, classes, dim)),
                    t -> {
                        ConditioningKernels.classEmbeddingForward(t[0], labels, t[1]);
                        ConditioningKernels.classEmbeddingBackward(t[2], labels, t[3]);
                    },
                    o -> List.of(Output.bits("emb", o[1]), Output.bits("d_table", o[3]))));
        }
        return out;
    }

    /** Guidance into a fresh output and in place over the conditional prediction. */
    static List<ParityCase> guidanceCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            float scale = rnd.nextBoolean() ? 3f : (float) (8 * rnd.nextDouble());
            float[] c = gaussians(rnd, count), u = gaussians(rnd, count);
            out.add(tensorCase(String.format(Locale.ROOT, "scale=%.3f + in place", scale), sh, 0,
                    List.of(Arg.in(c, count), Arg.in(u, count), Arg.out(count), Arg.reset(c, count)),
                    t -> {
                        ConditioningKernels.classifierFreeGuidance(t[0], t[1], scale, t[2]);
                        ConditioningKernels.classifierFreeGuidance(t[3], t[1], scale, t[3]);
                    },
                    o -> List.of(Output.bits("out", o[2]), Output.bits("out in place", o[3]))));
        }
        return out;
    }

    /**
     * noise_to_timestep from the clean image and from a random timestep (in place), and inpaint_merge with a mask
     * of 0, 1 and fractional values at random timesteps and at -1 (no noise).
     */
    static List<ParityCase> renoiseCases(SplittableRandom rnd, CaseContext ctx) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), n = sh.n();
            float[] src = gaussians(rnd, batch * n), x = gaussians(rnd, batch * n), known = gaussians(rnd, batch * n);
            float[] mask = new float[batch * n];
            for (int i = 0; i < mask.length; i++) {
                int k = rnd.nextInt(5);
                mask[i] = k < 2 ? 0f : k < 4 ? 1f : (float) rnd.nextDouble();
            }
            int[] clean = new int[batch], to = new int[batch], from = new int[batch], at = new int[batch];
            long[] seeds = new long[batch], offsets = new long[batch];
            for (int b = 0; b < batch; b++) {
                clean[b] = -1;
                from[b] = rnd.nextInt(ctx.steps() - 1);
                to[b] = from[b] + 1 + rnd.nextInt(ctx.steps() - 1 - from[b]);
                at[b] = b % 3 == 0 ? -1 : rnd.nextInt(ctx.steps());
                seeds[b] = rnd.nextLong();
                offsets[b] = rnd.nextLong();
            }
            SampleNoise noise = new SampleNoise(seeds, offsets);
            out.add(tensorCase("noise_to_timestep from clean + jump back in place", sh, 0,
                    List.of(Arg.in(src, batch, n), Arg.out(batch, n), Arg.reset(x, batch, n)),
                    t -> {
                        ConditioningKernels.noiseToTimestep(ctx.handle(), t[0], clean, to, noise, t[1]);
                        ConditioningKernels.noiseToTimestep(ctx.handle(), t[2], from, to, noise, t[2]);
                    },
                    o -> List.of(Output.bits("x from clean", o[1]), Output.bits("x jumped", o[2]))));
            out.add(tensorCase("inpaint_merge", sh, 0,
                    List.of(Arg.in(known, batch, n), Arg.in(mask, batch, n), Arg.reset(x, batch, n)),
                    t -> ConditioningKernels.inpaintMerge(ctx.handle(), t[0], t[1], at, noise, t[2]),
                    o -> List.of(Output.bits("x", o[2]))));
        }
        return out;
    }
}
