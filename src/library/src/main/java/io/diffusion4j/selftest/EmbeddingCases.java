package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;
import static io.diffusion4j.selftest.SelfTest.U;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** The timestep_embedding family: sines and cosines, rtol 2 u with M = 1. */
final class EmbeddingCases {
    private EmbeddingCases() {}

    static final double EMBEDDING_RTOL = 2 * U;

    static List<ParityCase> embeddingCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int batch = sh.batch(), dim = sh.n();
            float[] t = new float[batch];
            for (int b = 0; b < batch; b++) t[b] = (float) (rnd.nextDouble() * 1000.0);
            boolean flip = rnd.nextBoolean();
            float shift = rnd.nextBoolean() ? 1.0f : 0.0f;
            String kernel = "dim=" + dim + (flip ? " flip" : "") + " shift=" + (int) shift;
            out.add(ParityCase.of(kernel, sh, EMBEDDING_RTOL, () -> new Prepared() {
                Tensor e;

                @Override
                void allocate() {
                    e = keep(Tensor.allocate(be, DType.FLOAT32, batch, dim));
                }

                @Override
                void poison() {
                    e.fill(Float.NaN);
                }

                @Override
                void call() {
                    DiffusionKernels.timestepEmbedding(be, t, dim, flip, shift, 1.0f, 10000.0f, e);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.close("embedding", e.toFloatArray(), EMBEDDING_RTOL, 1.0));
                }
            }));
        }
        return out;
    }
}
