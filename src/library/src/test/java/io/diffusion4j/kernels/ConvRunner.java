package io.diffusion4j.kernels;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvReference.Problem;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;

/**
 * Runs the conv2d kernels on a backend from host arrays. Written outputs (y, dx) are poisoned with
 * NaN before the call, so an element the kernel skips fails the comparison; accumulated outputs
 * (dweight, dbias) start from caller-given values.
 */
final class ConvRunner {
    private ConvRunner() {}

    record BackwardOut(float[] dx, float[] dw, float[] db) {}

    static Tensor poisoned(Backend be, long... shape) {
        Tensor t = Tensor.allocate(be, DType.FLOAT32, shape);
        t.fill(Float.NaN);
        return t;
    }

    static float[] forward(Backend be, Problem p, float[] x, float[] w, float[] bias) {
        try (Tensor xt = Tensor.of(be, x, p.xShape()); Tensor wt = Tensor.of(be, w, p.wShape());
             Tensor bt = bias == null ? null : Tensor.of(be, bias, p.cOut()); Tensor y = poisoned(be, p.yShape())) {
            ConvKernels.forward(p.spec(), xt, wt, bt, y);
            return y.toFloatArray();
        }
    }

    /**
     * Backward; dx is computed when wantDx, dweight when dw0 (its initial value) is not null, dbias
     * when db0 is not null. `calls` repeats the call on the same output tensors.
     */
    static BackwardOut backward(Backend be, Problem p, float[] x, float[] w, float[] dy, boolean wantDx, float[] dw0,
                                float[] db0, int calls) {
        try (Tensor xt = Tensor.of(be, x, p.xShape()); Tensor wt = Tensor.of(be, w, p.wShape());
             Tensor dyt = Tensor.of(be, dy, p.yShape()); Tensor dx = wantDx ? poisoned(be, p.xShape()) : null;
             Tensor dw = dw0 == null ? null : Tensor.of(be, dw0, p.wShape());
             Tensor db = db0 == null ? null : Tensor.of(be, db0, p.cOut())) {
            for (int i = 0; i < calls; i++) ConvKernels.backward(p.spec(), xt, wt, dyt, dx, dw, db);
            return new BackwardOut(dx == null ? null : dx.toFloatArray(), dw == null ? null : dw.toFloatArray(),
                    db == null ? null : db.toFloatArray());
        }
    }
}
