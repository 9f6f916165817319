package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.CaseInputs.*;
import static io.diffusion4j.selftest.TensorCase.tensorCase;

import io.diffusion4j.kernels.ConcatKernels;
import io.diffusion4j.selftest.SelfTest.Shape;
import io.diffusion4j.selftest.TensorCase.Arg;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** The concat family: the channel concatenation of UNet's skip connections and its backward (the split). */
final class ConcatCases {
    private ConcatCases() {}

    /**
     * Channel concatenation and its split on NHWC shapes {n, h, w, c1, c2}: a single element, odd sizes
     * with c1 &lt; c2 and c1 &gt; c2, and one of UNet's 16x16 skip concatenations. Pure copies, so bit-exact.
     */
    static List<ParityCase> concatCases(SplittableRandom rnd) {
        List<ParityCase> out = new ArrayList<>();
        int[][] shapes = {{1, 1, 1, 1, 1}, {2, 5, 7, 3, 13}, {1, 7, 5, 13, 5}, {2, 16, 16, 64, 32}};
        for (int[] d : shapes) {
            int n = d[0], h = d[1], w = d[2], c1 = d[3], c2 = d[4];
            int rows = n * h * w;
            float[] a = gaussians(rnd, rows * c1), b = gaussians(rnd, rows * c2), g = gaussians(rnd, rows * (c1 + c2));
            Shape sh = dims(dimsText(d), n, h, w, c1 + c2);
            out.add(tensorCase("concat + split", sh, 0,
                    List.of(Arg.in(a, n, h, w, c1), Arg.in(b, n, h, w, c2), Arg.out(n, h, w, c1 + c2),
                            Arg.in(g, n, h, w, c1 + c2), Arg.out(n, h, w, c1), Arg.out(n, h, w, c2)),
                    t -> {
                        ConcatKernels.concatChannels(t[0], t[1], t[2]);
                        ConcatKernels.concatChannelsBackward(t[3], t[4], t[5], c1, c2);
                    },
                    o -> List.of(Output.bits("out", o[2]), Output.bits("da", o[4]), Output.bits("db", o[5]))));
        }
        return out;
    }
}
