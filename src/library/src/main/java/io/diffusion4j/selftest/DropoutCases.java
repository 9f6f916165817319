package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.SelfTest.SHAPES;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/** The dropout family. */
final class DropoutCases {
    private DropoutCases() {}

    /**
     * Dropout forward and backward with one (p, seed, offset), and the forward in place: the mask is an
     * integer comparison of the same Philox words and a kept value one correctly rounded multiply, so
     * bit-exact. p random in (0, 1) and 0.1 (diffusers' usual value); a full 64-bit seed and offset.
     */
    static List<ParityCase> dropoutCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        List<Shape> shapes = new ArrayList<>(SHAPES);
        shapes.add(new Shape("2x(16x16x64)", 2, 16 * 16 * 64)); // 32 blocks of 256 threads x 4 elements
        for (Shape sh : shapes) {
            int count = sh.batch() * sh.n();
            double p = rnd.nextBoolean() ? 0.1 : 0.01 + 0.98 * rnd.nextDouble();
            long seed = rnd.nextLong(), offset = rnd.nextLong();
            float[] x = gaussians(rnd, count), dy = gaussians(rnd, count);
            String kernel = String.format(Locale.ROOT, "p=%.3f forward + backward + in place", p);
            out.add(tensorCase(kernel, sh, 0,
                    List.of(Arg.in(x, count), Arg.out(count), Arg.in(dy, count), Arg.out(count), Arg.reset(x, count)),
                    t -> {
                        DropoutKernels.forward(t[0], p, seed, offset, t[1]);
                        DropoutKernels.backward(t[2], p, seed, offset, t[3]);
                        DropoutKernels.forward(t[4], p, seed, offset, t[4]);
                    },
                    o -> List.of(Output.bits("y", o[1]), Output.bits("dx", o[3]), Output.bits("y in place", o[4]))));
        }
        return out;
    }
}
