package io.diffusion4j.kernels;

import io.diffusion4j.schedule.PredictionType;

/** Public access to {@link SamplerReference}'s x0 / eps formulas for tests in other packages. */
public final class SamplerReferenceAccess {
    private SamplerReferenceAccess() {}

    public static double x0(PredictionType p, double ab, double x, double o) {
        return SamplerReference.x0(p, ab, x, o);
    }

    public static double eps(PredictionType p, double ab, double x, double o) {
        return SamplerReference.eps(p, ab, x, o);
    }
}
