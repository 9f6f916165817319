package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.requireFloat;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * Linear layers and multi-head scaled dot-product attention (diffusers' {@code nn.Linear} and
 * {@code Attention} as used by UNet2DModel's attention blocks and time-embedding MLP). Each call is
 * one native entry point of native/include/d4j.h, where the exact semantics are documented.
 *
 * <p>Layouts: a linear input is {@code [..., in]} (every leading dimension is a row), the weight is
 * {@code [out, in]} as stored by PyTorch, the bias {@code [out]}. Attention tensors are
 * {@code [batch, tokens, heads, headDim]}, i.e. NHWC activations {@code [N, H*W, C]} whose channel c
 * belongs to head {@code c / headDim}; they may be given as rank 4 or as rank 3
 * {@code [batch, tokens, heads*headDim]}. The log-sum-exp saved by the forward pass is
 * {@code [batch, heads, tokens]}. Backward calls write input gradients and accumulate (+=) into
 * parameter gradients.
 */
public final class LinearKernels {
    private LinearKernels() {}

    /** {@code y = x weight^T + bias}; {@code bias} may be null. */
    public static void linear(Tensor x, Tensor weight, Tensor bias, Tensor y) {
        Dims d = linearDims(x, weight, bias, y, "y");
        Native.check(d4j_h.d4j_linear_forward(x.backend().handle(), x.handle(), weight.handle(),
                bias == null ? MemorySegment.NULL : bias.handle(), d.rows, d.in, d.out, y.handle()));
    }

    /**
     * Backward of {@link #linear}: {@code dx = dy weight} (written), {@code dWeight += dy^T x},
     * {@code dBias += sum over rows of dy}. Any of the three outputs may be null.
     */
    public static void linearBackward(Tensor x, Tensor weight, Tensor dy, Tensor dx, Tensor dWeight, Tensor dBias) {
        Dims d = linearDims(x, weight, null, dy, "dy");
        if (dx != null) requireShape(dx, x.shape(), x, "dx");
        if (dWeight != null) requireShape(dWeight, weight.shape(), x, "dWeight");
        if (dBias != null) requireShape(dBias, new long[] {d.out}, x, "dBias");
        Native.check(d4j_h.d4j_linear_backward(x.backend().handle(), x.handle(), weight.handle(), dy.handle(), d.rows,
                d.in, d.out, handleOrNull(dx), handleOrNull(dWeight), handleOrNull(dBias)));
    }

    /** Shape of one attention call. */
    public record AttentionShape(int batch, int tokens, int heads, int headDim) {
        public AttentionShape {
            if (batch < 1 || tokens < 1 || heads < 1 || headDim < 1) {
                throw new IllegalArgumentException("attention shape must be positive, got batch=" + batch + " tokens="
                        + tokens + " heads=" + heads + " headDim=" + headDim);
            }
        }

        /** diffusers' default scale {@code 1 / sqrt(headDim)}. */
        public float defaultScale() {
            return (float) (1.0 / Math.sqrt(headDim));
        }
    }

    /**
     * {@code out = softmax(scale q k^T) v} per (batch, head); {@code lse} ({@code [batch, heads, tokens]},
     * needed by {@link #attentionBackward}) may be null for inference.
     */
    public static void attention(AttentionShape s, float scale, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse) {
        Objects.requireNonNull(s, "shape");
        requireTokens(s, q, "q");
        requireTokens(s, k, "k", q);
        requireTokens(s, v, "v", q);
        requireTokens(s, out, "out", q);
        if (lse != null) requireShape(lse, new long[] {s.batch(), s.heads(), s.tokens()}, q, "lse");
        requireFiniteScale(scale);
        Native.check(d4j_h.d4j_attention_forward(q.backend().handle(), q.handle(), k.handle(), v.handle(), s.batch(),
                s.tokens(), s.heads(), s.headDim(), scale, out.handle(), handleOrNull(lse)));
    }

    /** Backward of {@link #attention} from its {@code out} and {@code lse}: writes dq, dk, dv. */
    public static void attentionBackward(AttentionShape s, float scale, Tensor q, Tensor k, Tensor v, Tensor out,
                                         Tensor lse, Tensor dout, Tensor dq, Tensor dk, Tensor dv) {
        Objects.requireNonNull(s, "shape");
        requireTokens(s, q, "q");
        requireTokens(s, k, "k", q);
        requireTokens(s, v, "v", q);
        requireTokens(s, out, "out", q);
        Objects.requireNonNull(lse, "lse");
        requireShape(lse, new long[] {s.batch(), s.heads(), s.tokens()}, q, "lse");
        requireTokens(s, dout, "dout", q);
        requireTokens(s, dq, "dq", q);
        requireTokens(s, dk, "dk", q);
        requireTokens(s, dv, "dv", q);
        requireFiniteScale(scale);
        Native.check(d4j_h.d4j_attention_backward(q.backend().handle(), q.handle(), k.handle(), v.handle(),
                out.handle(), lse.handle(), dout.handle(), s.batch(), s.tokens(), s.heads(), s.headDim(), scale,
                dq.handle(), dk.handle(), dv.handle()));
    }

    private record Dims(long rows, int in, int out) {}

    private static Dims linearDims(Tensor x, Tensor weight, Tensor bias, Tensor y, String yName) {
        requireFloat(x, "x");
        requireFloat(weight, "weight");
        if (weight.rank() != 2) throw new IllegalArgumentException("weight must be [out, in], got " + weight.describe());
        long outF = weight.dim(0), inF = weight.dim(1);
        if (inF > (1 << 24) || outF > (1 << 24)) {
            throw new IllegalArgumentException("weight " + weight.describe() + " has more than 2^24 features");
        }
        if (x.dim(x.rank() - 1) != inF) {
            throw new IllegalArgumentException("x " + x.describe() + " must end in in_features = " + inF + " of weight "
                    + weight.describe());
        }
        sameBackend(weight, x, "weight");
        if (bias != null) requireShape(bias, new long[] {outF}, x, "bias");
        long[] yShape = x.shape();
        yShape[yShape.length - 1] = outF;
        requireShape(y, yShape, x, yName);
        return new Dims(x.elementCount() / inF, (int) inF, (int) outF);
    }

    private static void requireTokens(AttentionShape s, Tensor t, String name, Tensor... ref) {
        requireFloat(t, name);
        long c = (long) s.heads() * s.headDim();
        boolean ok = t.rank() == 4
                ? t.dim(0) == s.batch() && t.dim(1) == s.tokens() && t.dim(2) == s.heads() && t.dim(3) == s.headDim()
                : t.rank() == 3 && t.dim(0) == s.batch() && t.dim(1) == s.tokens() && t.dim(2) == c;
        if (!ok) {
            throw new IllegalArgumentException(name + " must be float32[" + s.batch() + ", " + s.tokens() + ", "
                    + s.heads() + ", " + s.headDim() + "] or [" + s.batch() + ", " + s.tokens() + ", " + c + "], got "
                    + t.describe());
        }
        if (ref.length > 0) sameBackend(t, ref[0], name);
    }

    private static void requireShape(Tensor t, long[] shape, Tensor ref, String name) {
        requireFloat(t, name);
        if (!java.util.Arrays.equals(t.shape(), shape)) {
            throw new IllegalArgumentException(name + " must be float32" + java.util.Arrays.toString(shape) + ", got "
                    + t.describe());
        }
        sameBackend(t, ref, name);
    }

    private static void sameBackend(Tensor t, Tensor ref, String name) {
        if (t.backend() != ref.backend()) {
            throw new IllegalArgumentException(name + " is on backend " + t.backend().kind().cliName()
                    + ", other tensors on " + ref.backend().kind().cliName());
        }
    }


    private static void requireFiniteScale(float scale) {
        if (!Float.isFinite(scale)) throw new IllegalArgumentException("scale must be finite, got " + scale);
    }

    private static MemorySegment handleOrNull(Tensor t) {
        return t == null ? MemorySegment.NULL : t.handle();
    }
}
