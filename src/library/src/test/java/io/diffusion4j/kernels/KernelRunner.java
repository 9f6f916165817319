package io.diffusion4j.kernels;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.Tensor;

/**
 * Runs one kernel on a backend from host arrays and returns its outputs as host arrays. Every
 * output tensor is poisoned with NaN before the call, so an element the kernel does not write
 * shows up as NaN in the comparison.
 */
final class KernelRunner {
    private KernelRunner() {}

    record NoiseOut(float[] xT, float[] eps) {}

    record LossOut(float[] loss, float[] grad) {}

    static Tensor poisoned(Backend be, int batch, int n) {
        Tensor t = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, batch, n);
        t.fill(Float.NaN);
        return t;
    }

    static NoiseOut addNoise(Backend be, NativeSchedule s, float[] x0, int[] t, int n, long seed, long offset) {
        int batch = t.length;
        try (Tensor x = Tensor.of(be, x0, batch, n); Tensor xt = poisoned(be, batch, n);
             Tensor eps = poisoned(be, batch, n)) {
            DiffusionKernels.addNoise(s, x, t, seed, offset, xt, eps);
            return new NoiseOut(xt.toFloatArray(), eps.toFloatArray());
        }
    }

    static LossOut loss(Backend be, NativeSchedule s, PredictionType p, float[] out, float[] x0, float[] eps, int[] t,
                        float[] weights, int n, boolean withGrad) {
        int batch = t.length;
        try (Tensor o = Tensor.of(be, out, batch, n); Tensor x = Tensor.of(be, x0, batch, n);
             Tensor e = Tensor.of(be, eps, batch, n); Tensor loss = Tensor.allocate(be, io.diffusion4j.tensor.DType.FLOAT32, batch);
             Tensor grad = withGrad ? poisoned(be, batch, n) : null) {
            loss.fill(Float.NaN);
            DiffusionKernels.diffusionLoss(s, p, o, x, e, t, weights, loss, grad);
            return new LossOut(loss.toFloatArray(), grad == null ? null : grad.toFloatArray());
        }
    }

    /** DDPM step; inPlace passes the x_t tensor as x_prev. */
    static float[] ddpm(Backend be, NativeSchedule s, PredictionType p, VarianceType v, boolean clip, float range,
                        float[] xT, float[] out, int[] t, int[] prev, long[] seeds, long[] offsets, int n,
                        boolean inPlace) {
        int batch = t.length;
        var noise = new DiffusionKernels.SampleNoise(seeds, offsets);
        try (Tensor x = Tensor.of(be, xT, batch, n); Tensor o = Tensor.of(be, out, batch, n);
             Tensor xp = inPlace ? null : poisoned(be, batch, n)) {
            Tensor dst = inPlace ? x : xp;
            DiffusionKernels.ddpmStep(s, p, v, clip, range, x, o, t, prev, noise, dst);
            return dst.toFloatArray();
        }
    }

    /** DDIM step; inPlace passes the x_t tensor as x_prev. */
    static float[] ddim(Backend be, NativeSchedule s, PredictionType p, float eta, boolean clip, float range,
                        boolean useClipped, double finalAlpha, float[] xT, float[] out, int[] t, int[] prev,
                        long[] seeds, long[] offsets, int n, boolean inPlace) {
        int batch = t.length;
        var noise = new DiffusionKernels.SampleNoise(seeds, offsets);
        try (Tensor x = Tensor.of(be, xT, batch, n); Tensor o = Tensor.of(be, out, batch, n);
             Tensor xp = inPlace ? null : poisoned(be, batch, n)) {
            Tensor dst = inPlace ? x : xp;
            DiffusionKernels.ddimStep(s, p, eta, clip, range, useClipped, finalAlpha, x, o, t, prev, noise, dst);
            return dst.toFloatArray();
        }
    }

    static float[] embedding(Backend be, float[] t, int dim, boolean flip, float shift, float scale, float maxPeriod) {
        try (Tensor out = poisoned(be, t.length, dim)) {
            DiffusionKernels.timestepEmbedding(be, t, dim, flip, shift, scale, maxPeriod, out);
            return out.toFloatArray();
        }
    }
}
