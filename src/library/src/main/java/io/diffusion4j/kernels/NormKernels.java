package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.requireFloat;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;

/**
 * The normalisation and activation kernels of diffusers' ResnetBlock2D: GroupNorm with optional
 * fused SiLU, the time-embedding bias add fused into GroupNorm + SiLU ({@code norm2(h + tb)}), SiLU,
 * and the scaled residual sum, each with its backward. Activations are NHWC float32
 * {@code [N, H, W, C]}; {@code gamma}, {@code beta} have C elements, the saved statistics
 * {@code mean}, {@code rstd} have {@code N * numGroups} elements ({@code [N, G]}), the time-embedding
 * bias {@code tb} is {@code [N, C]}. Backward calls write {@code dx} / {@code dtb} and accumulate
 * ({@code +=}) into {@code dgamma} / {@code dbeta}; any of these may be null when not needed.
 * Semantics, memory passes and aliasing rules are documented in native/include/d4j.h.
 */
public final class NormKernels {
    private NormKernels() {}

    /**
     * {@code y = act(GroupNorm(x))}; saves mean and rstd ({@code [N, G]}) for the backward. {@code y} may be
     * null: then only the statistics are computed (the same bits as with {@code y}, one pass over
     * {@code x} instead of two).
     */
    public static void groupNorm(Tensor x, Tensor gamma, Tensor beta, int numGroups, float eps, boolean silu, Tensor y,
                                 Tensor mean, Tensor rstd) {
        Dims d = forwardChecks(x, null, gamma, beta, numGroups, eps, y, mean, rstd);
        Native.check(d4j_h.d4j_group_norm_forward(x.backend().handle(), x.handle(), gamma.handle(), beta.handle(),
                d.n, d.h, d.w, d.c, numGroups, eps, silu ? 1 : 0, handleOrNull(y), mean.handle(), rstd.handle()));
    }

    /**
     * {@code y = act(GroupNorm(x + tb[n, :]))}, the time-embedding add fused into norm2; {@code y} may be null
     * for the statistics only, as in {@link #groupNorm}.
     */
    public static void biasGroupNorm(Tensor x, Tensor tb, Tensor gamma, Tensor beta, int numGroups, float eps,
                                     boolean silu, Tensor y, Tensor mean, Tensor rstd) {
        Objects.requireNonNull(tb, "tb");
        Dims d = forwardChecks(x, tb, gamma, beta, numGroups, eps, y, mean, rstd);
        Native.check(d4j_h.d4j_bias_group_norm_forward(x.backend().handle(), x.handle(), tb.handle(), gamma.handle(),
                beta.handle(), d.n, d.h, d.w, d.c, numGroups, eps, silu ? 1 : 0, handleOrNull(y), mean.handle(),
                rstd.handle()));
    }

    /** Backward of {@link #groupNorm}; {@code beta} is needed only with {@code silu}. */
    public static void groupNormBackward(Tensor dy, Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor rstd,
                                         int numGroups, boolean silu, Tensor dx, Tensor dgamma, Tensor dbeta) {
        Dims d = backwardChecks(dy, x, null, gamma, beta, mean, rstd, numGroups, silu, dx, null, dgamma, dbeta);
        Native.check(d4j_h.d4j_group_norm_backward(x.backend().handle(), dy.handle(), x.handle(), gamma.handle(),
                handleOrNull(beta), mean.handle(), rstd.handle(), d.n, d.h, d.w, d.c, numGroups, silu ? 1 : 0,
                handleOrNull(dx), handleOrNull(dgamma), handleOrNull(dbeta)));
    }

    /** Backward of {@link #biasGroupNorm}: also {@code dtb[n, c] = sum over h, w of dx} (written). */
    public static void biasGroupNormBackward(Tensor dy, Tensor x, Tensor tb, Tensor gamma, Tensor beta, Tensor mean,
                                             Tensor rstd, int numGroups, boolean silu, Tensor dx, Tensor dtb,
                                             Tensor dgamma, Tensor dbeta) {
        Objects.requireNonNull(tb, "tb");
        Dims d = backwardChecks(dy, x, tb, gamma, beta, mean, rstd, numGroups, silu, dx, dtb, dgamma, dbeta);
        Native.check(d4j_h.d4j_bias_group_norm_backward(x.backend().handle(), dy.handle(), x.handle(), tb.handle(),
                gamma.handle(), handleOrNull(beta), mean.handle(), rstd.handle(), d.n, d.h, d.w, d.c, numGroups,
                silu ? 1 : 0, handleOrNull(dx), handleOrNull(dtb), handleOrNull(dgamma), handleOrNull(dbeta)));
    }

    /** {@code y = x * sigmoid(x)}; {@code y} may be {@code x}. */
    public static void silu(Tensor x, Tensor y) {
        requireFloat(x, "x");
        requireSameShape(x, y, "y");
        Native.check(d4j_h.d4j_silu_forward(x.backend().handle(), x.handle(), x.elementCount(), y.handle()));
    }

    /** {@code dx = dy * silu'(x)}; {@code dx} may be {@code dy} or {@code x}. */
    public static void siluBackward(Tensor dy, Tensor x, Tensor dx) {
        requireFloat(x, "x");
        requireSameShape(x, dy, "dy");
        requireSameShape(x, dx, "dx");
        Native.check(d4j_h.d4j_silu_backward(x.backend().handle(), dy.handle(), x.handle(), x.elementCount(),
                dx.handle()));
    }

    /** {@code out = (a + b) * invScale}, {@code invScale = 1 / output_scale_factor}; out may be a or b. */
    public static void residualAdd(Tensor a, Tensor b, float invScale, Tensor out) {
        requireFloat(a, "a");
        requireSameShape(a, b, "b");
        requireSameShape(a, out, "out");
        requireFinite(invScale, "invScale");
        Native.check(d4j_h.d4j_residual_add(a.backend().handle(), a.handle(), b.handle(), a.elementCount(), invScale,
                out.handle()));
    }

    /** {@code da = db = dout * invScale} (either may be null or {@code dout} itself). */
    public static void residualAddBackward(Tensor dout, float invScale, Tensor da, Tensor db) {
        requireFloat(dout, "dout");
        if (da != null) requireSameShape(dout, da, "da");
        if (db != null) requireSameShape(dout, db, "db");
        requireFinite(invScale, "invScale");
        Native.check(d4j_h.d4j_residual_add_backward(dout.backend().handle(), dout.handle(), dout.elementCount(),
                invScale, handleOrNull(da), handleOrNull(db)));
    }

    private record Dims(int n, int h, int w, int c) {}

    private static Dims forwardChecks(Tensor x, Tensor tb, Tensor gamma, Tensor beta, int numGroups, float eps,
                                      Tensor y, Tensor mean, Tensor rstd) {
        Dims d = nhwc(x, "x", numGroups);
        if (!(Float.isFinite(eps) && eps > 0f)) {
            throw new IllegalArgumentException("eps must be finite and > 0, got " + eps);
        }
        if (tb != null) requireElements(x, tb, "tb", (long) d.n * d.c, true);
        requireElements(x, gamma, "gamma", d.c, false);
        requireElements(x, beta, "beta", d.c, false);
        if (y != null) requireSameShape(x, y, "y"); // null: the statistics only
        requireElements(x, mean, "mean", (long) d.n * numGroups, false);
        requireElements(x, rstd, "rstd", (long) d.n * numGroups, false);
        return d;
    }

    private static Dims backwardChecks(Tensor dy, Tensor x, Tensor tb, Tensor gamma, Tensor beta, Tensor mean,
                                       Tensor rstd, int numGroups, boolean silu, Tensor dx, Tensor dtb, Tensor dgamma,
                                       Tensor dbeta) {
        Dims d = nhwc(x, "x", numGroups);
        requireSameShape(x, dy, "dy");
        if (tb != null) requireElements(x, tb, "tb", (long) d.n * d.c, true);
        requireElements(x, gamma, "gamma", d.c, false);
        if (silu) Objects.requireNonNull(beta, "beta (needed with silu)");
        if (beta != null) requireElements(x, beta, "beta", d.c, false);
        requireElements(x, mean, "mean", (long) d.n * numGroups, false);
        requireElements(x, rstd, "rstd", (long) d.n * numGroups, false);
        if (dx != null) requireSameShape(x, dx, "dx");
        if (dtb != null) requireElements(x, dtb, "dtb", (long) d.n * d.c, true);
        if (dgamma != null) requireElements(x, dgamma, "dgamma", d.c, false);
        if (dbeta != null) requireElements(x, dbeta, "dbeta", d.c, false);
        return d;
    }

    /** x must be float32 [N, H, W, C] with dimensions in int range and numGroups dividing C. */
    private static Dims nhwc(Tensor x, String name, int numGroups) {
        requireFloat(x, name);
        if (x.rank() != 4) {
            throw new IllegalArgumentException(name + " must be NHWC [N, H, W, C], got " + x.describe());
        }
        for (int i = 0; i < 4; i++) {
            if (x.dim(i) > Integer.MAX_VALUE) {
                throw new IllegalArgumentException(name + " dimension " + i + " of " + x.describe() + " exceeds 2^31 - 1");
            }
        }
        int c = (int) x.dim(3);
        if (numGroups < 1) throw new IllegalArgumentException("numGroups must be >= 1, got " + numGroups);
        if (c % numGroups != 0) {
            throw new IllegalArgumentException("numGroups = " + numGroups + " must divide the channel count C = " + c
                    + " of " + x.describe());
        }
        return new Dims((int) x.dim(0), (int) x.dim(1), (int) x.dim(2), c);
    }

    /** t: float32 on x's backend with `elements` elements; as [N, C] when rank2 (N, C from x). */
    private static void requireElements(Tensor x, Tensor t, String name, long elements, boolean rank2) {
        requireFloat(t, name);
        requireBackend(x, t, name);
        if (rank2) {
            if (t.rank() != 2 || t.dim(0) != x.dim(0) || t.dim(1) != x.dim(3)) {
                throw new IllegalArgumentException(name + " must be float32[" + x.dim(0) + ", " + x.dim(3) + "], got "
                        + t.describe());
            }
        } else if (t.elementCount() != elements) {
            throw new IllegalArgumentException(name + " must have " + elements + " elements, got " + t.describe());
        }
    }

    private static void requireSameShape(Tensor ref, Tensor t, String name) {
        requireFloat(t, name);
        if (!Arrays.equals(ref.shape(), t.shape())) {
            throw new IllegalArgumentException(name + " is " + t.describe() + " but must match " + ref.describe());
        }
        requireBackend(ref, t, name);
    }

    private static void requireBackend(Tensor ref, Tensor t, String name) {
        if (t.backend() != ref.backend()) {
            throw new IllegalArgumentException(name + " is on backend " + t.backend().kind().cliName()
                    + ", other tensors on " + ref.backend().kind().cliName());
        }
    }


    private static void requireFinite(float v, String name) {
        if (!Float.isFinite(v)) throw new IllegalArgumentException(name + " must be finite, got " + v);
    }

    private static MemorySegment handleOrNull(Tensor t) {
        return t == null ? MemorySegment.NULL : t.handle();
    }
}
