package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The rng family: raw Philox words and normals, which d4j.h specifies bit for bit on every backend,
 * so the device must match the CPU in every bit.
 */
final class RngCases {
    private RngCases() {}

    static List<ParityCase> rngCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        for (Shape sh : SHAPES) {
            int count = sh.batch() * sh.n();
            long seed = rnd.nextLong(), offset = rnd.nextLong();
            out.add(ParityCase.of("uint32", sh, 0, () -> new Prepared() {
                Tensor t;

                @Override
                void allocate() {
                    t = keep(Tensor.allocate(be, DType.UINT32, count));
                }

                @Override
                void poison() {
                    int[] p = new int[count];
                    Arrays.fill(p, UINT32_POISON);
                    t.copyFrom(p);
                }

                @Override
                void call() {
                    DiffusionKernels.randomBits(be, seed, offset, t);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.bits("uint32", t.toIntArray()));
                }
            }));
            long seed2 = rnd.nextLong(), offset2 = rnd.nextLong();
            out.add(ParityCase.of("normal", sh, 0, () -> new Prepared() {
                Tensor t;

                @Override
                void allocate() {
                    t = keep(Tensor.allocate(be, DType.FLOAT32, count));
                }

                @Override
                void poison() {
                    t.fill(Float.NaN);
                }

                @Override
                void call() {
                    DiffusionKernels.randomNormal(be, seed2, offset2, t);
                }

                @Override
                List<Output> read() {
                    return List.of(Output.bits("normal", t.toFloatArray()));
                }
            }));
        }
        return out;
    }
}
