package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.requireFloat;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

/**
 * Optimiser kernels over one flat float32 parameter buffer (llm.c style): the global gradient norm,
 * one fused AdamW step and the EMA update. Each call is one native entry point of
 * native/include/d4j.h, whose comments define the semantics. A parameter group with other
 * hyper-parameters (biases and norm weights without weight decay) is updated by calling
 * {@link #adamw} on views ({@link Tensor#view}) of the flat buffers; the tensors of one call must
 * have the same element count, be on one backend and not overlap.
 */
public final class OptimKernels {
    private OptimKernels() {}

    /** torch.nn.utils.clip_grad_norm_'s guard against a zero norm: max_norm / (norm + 1e-6). */
    public static final double CLIP_EPS = 1e-6;

    /** AdamW hyper-parameters, validated as torch.optim.AdamW does (plus finiteness). */
    public record AdamW(double lr, double beta1, double beta2, double eps, double weightDecay) {
        public AdamW {
            if (!(Double.isFinite(lr) && lr >= 0)) throw new IllegalArgumentException("lr must be finite and >= 0, got " + lr);
            if (!(beta1 >= 0 && beta1 < 1)) throw new IllegalArgumentException("beta1 must be in [0, 1), got " + beta1);
            if (!(beta2 >= 0 && beta2 < 1)) throw new IllegalArgumentException("beta2 must be in [0, 1), got " + beta2);
            if (!(Double.isFinite(eps) && eps > 0)) throw new IllegalArgumentException("eps must be finite and > 0, got " + eps);
            if (!(Double.isFinite(weightDecay) && weightDecay >= 0)) {
                throw new IllegalArgumentException("weightDecay must be finite and >= 0, got " + weightDecay);
            }
        }

        /** torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2. */
        public static AdamW defaults(double lr) {
            return new AdamW(lr, 0.9, 0.999, 1e-8, 1e-2);
        }

        /** The same hyper-parameters with another weight decay (e.g. 0 for biases and norm weights). */
        public AdamW withWeightDecay(double wd) {
            return new AdamW(lr, beta1, beta2, eps, wd);
        }
    }

    /** sqrt(sum of grad^2) over the whole tensor, accumulated in float64 in a fixed order. */
    public static double gradNorm(Tensor grad) {
        requireFloat(grad, "grad");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_DOUBLE);
            Native.check(d4j_h.d4j_grad_norm(grad.backend().handle(), grad.handle(), grad.elementCount(), out));
            return out.get(ValueLayout.JAVA_DOUBLE, 0);
        }
    }

    /**
     * The gradient scale that clips to {@code maxNorm} as torch.nn.utils.clip_grad_norm_:
     * {@code min(1, maxNorm / (norm + 1e-6))}; pass it to {@link #adamw} as {@code gradScale}.
     */
    public static double clipScale(double norm, double maxNorm) {
        if (!(Double.isFinite(maxNorm) && maxNorm > 0)) throw new IllegalArgumentException("maxNorm must be finite and > 0, got " + maxNorm);
        if (!(Double.isFinite(norm) && norm >= 0)) {
            throw new IllegalArgumentException("norm must be finite and >= 0, got " + norm + " (non-finite gradients)");
        }
        return Math.min(1.0, maxNorm / (norm + CLIP_EPS));
    }

    /**
     * One AdamW step in place on {@code param}, {@code m} (exp_avg) and {@code v} (exp_avg_sq), with
     * gradient {@code grad * gradScale}. {@code step} is the 1-based step count used by the bias
     * corrections.
     */
    public static void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, AdamW hp, long step, double gradScale) {
        Objects.requireNonNull(hp, "hp");
        requireFloat(param, "param");
        requireLike(param, grad, "grad");
        requireLike(param, m, "m");
        requireLike(param, v, "v");
        if (step < 1) throw new IllegalArgumentException("step must be >= 1 (1-based), got " + step);
        if (!(Double.isFinite(gradScale) && gradScale >= 0)) {
            throw new IllegalArgumentException("gradScale must be finite and >= 0, got " + gradScale);
        }
        Native.check(d4j_h.d4j_adamw(param.backend().handle(), param.handle(), grad.handle(), m.handle(), v.handle(),
                param.elementCount(), hp.lr(), hp.beta1(), hp.beta2(), hp.eps(), hp.weightDecay(), step, gradScale));
    }

    /** {@code ema = decay * ema + (1 - decay) * param} in place (diffusers EMAModel.step); decay in [0, 1]. */
    public static void ema(Tensor ema, Tensor param, double decay) {
        requireFloat(ema, "ema");
        requireLike(ema, param, "param");
        if (!(decay >= 0 && decay <= 1)) throw new IllegalArgumentException("decay must be in [0, 1], got " + decay);
        Native.check(d4j_h.d4j_ema_update(ema.backend().handle(), ema.handle(), param.handle(), ema.elementCount(), decay));
    }


    private static void requireLike(Tensor ref, Tensor t, String name) {
        requireFloat(t, name);
        if (t.elementCount() != ref.elementCount()) {
            throw new IllegalArgumentException(name + " is " + t.describe() + " but must have the "
                    + ref.elementCount() + " elements of " + ref.describe());
        }
        if (t.backend() != ref.backend()) {
            throw new IllegalArgumentException(name + " is on backend " + t.backend().kind().cliName()
                    + ", other tensors on " + ref.backend().kind().cliName());
        }
    }
}
