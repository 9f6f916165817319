package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.requireFloat;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.MemorySegment;

/**
 * Channel concatenation of NHWC activations, {@code torch.cat([h, skip], dim=1)} of diffusers' up
 * blocks (the NCHW channel dimension is the last one in NHWC), and its backward, a split. See
 * {@code d4j_concat_channels_forward} in native/include/d4j.h. Shapes: a {@code [N, H, W, C1]},
 * b {@code [N, H, W, C2]}, out {@code [N, H, W, C1 + C2]}; all float32 on one backend.
 */
public final class ConcatKernels {
    private ConcatKernels() {}

    /** {@code out[..., 0:C1] = a}, {@code out[..., C1:] = b}; out is overwritten. */
    public static void concatChannels(Tensor a, Tensor b, Tensor out) {
        Dims d = dims(a, b, out, "out");
        Native.check(d4j_h.d4j_concat_channels_forward(a.backend().handle(), a.handle(), b.handle(), d.rows, d.c1,
                d.c2, out.handle()));
    }

    /** {@code da = dout[..., 0:C1]}, {@code db = dout[..., C1:]} (written); either may be null, then a/b give the shape. */
    public static void concatChannelsBackward(Tensor dout, Tensor da, Tensor db, int c1, int c2) {
        requireFloat(dout, "dout");
        if (dout.rank() < 2) throw new IllegalArgumentException("dout must be [..., C1 + C2], got " + dout.describe());
        if (c1 < 1 || c2 < 1) throw new IllegalArgumentException("c1 and c2 must be >= 1, got " + c1 + ", " + c2);
        if (dout.dim(dout.rank() - 1) != (long) c1 + c2) {
            throw new IllegalArgumentException("dout " + dout.describe() + " must end in c1 + c2 = " + ((long) c1 + c2));
        }
        long rows = dout.elementCount() / dout.dim(dout.rank() - 1);
        if (da != null) requireRows(dout, da, "da", c1);
        if (db != null) requireRows(dout, db, "db", c2);
        Native.check(d4j_h.d4j_concat_channels_backward(dout.backend().handle(), dout.handle(), rows, c1, c2,
                da == null ? MemorySegment.NULL : da.handle(), db == null ? MemorySegment.NULL : db.handle()));
    }

    private record Dims(long rows, int c1, int c2) {}

    private static Dims dims(Tensor a, Tensor b, Tensor out, String outName) {
        requireFloat(a, "a");
        if (a.rank() < 2) throw new IllegalArgumentException("a must be [..., C1], got " + a.describe());
        long c1 = a.dim(a.rank() - 1);
        requireFloat(b, "b");
        if (b.rank() != a.rank()) throw new IllegalArgumentException("b " + b.describe() + " must have the rank of a " + a.describe());
        for (int i = 0; i < a.rank() - 1; i++) {
            if (b.dim(i) != a.dim(i)) {
                throw new IllegalArgumentException("b " + b.describe() + " must match a " + a.describe()
                        + " in every dimension but the last");
            }
        }
        long c2 = b.dim(b.rank() - 1);
        if (c1 > Integer.MAX_VALUE || c2 > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("channel counts " + c1 + ", " + c2 + " are too large");
        }
        requireRows(a, out, outName, c1 + c2);
        sameBackend(a, b, "b");
        return new Dims(a.elementCount() / c1, (int) c1, (int) c2);
    }

    /** t has ref's leading dimensions and last dimension c. */
    private static void requireRows(Tensor ref, Tensor t, String name, long c) {
        requireFloat(t, name);
        boolean ok = t.rank() == ref.rank() && t.dim(t.rank() - 1) == c;
        for (int i = 0; ok && i < ref.rank() - 1; i++) ok = t.dim(i) == ref.dim(i);
        if (!ok) {
            long[] s = ref.shape();
            s[s.length - 1] = c;
            throw new IllegalArgumentException(name + " must be float32" + java.util.Arrays.toString(s) + ", got "
                    + t.describe());
        }
        sameBackend(ref, t, name);
    }

    private static void sameBackend(Tensor ref, Tensor t, String name) {
        if (t.backend() != ref.backend()) {
            throw new IllegalArgumentException(name + " is on backend " + t.backend().kind().cliName()
                    + ", other tensors on " + ref.backend().kind().cliName());
        }
    }

}
