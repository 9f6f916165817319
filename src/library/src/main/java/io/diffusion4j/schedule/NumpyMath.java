package io.diffusion4j.schedule;

/**
 * The few NumPy operations diffusers' beta schedules and {@code set_timesteps} use, with NumPy's float64
 * semantics, so betas and timesteps match bit for bit: {@code np.linspace}, {@code np.arange} with a float step,
 * and {@code np.round} (round half to even).
 */
public final class NumpyMath {
    private NumpyMath() {}

    /**
     * {@code np.linspace(start, stop, num)} (endpoint included): {@code y[i] = i * step + start} with
     * {@code step = (stop - start) / (num - 1)} (when that step is 0, {@code (i / (num - 1)) * (stop - start)
     * + start}, as NumPy does), and the last element set to {@code stop} exactly.
     */
    public static double[] linspace(double start, double stop, int num) {
        if (num < 1) throw new IllegalArgumentException("linspace needs num >= 1, got " + num);
        double[] y = new double[num];
        if (num == 1) {
            y[0] = start;
            return y;
        }
        int div = num - 1;
        double delta = stop - start;
        double step = delta / div;
        for (int i = 0; i < num; i++) {
            y[i] = (step == 0.0 ? ((double) i / div) * delta : i * step) + start;
        }
        y[num - 1] = stop;
        return y;
    }

    /**
     * {@code np.arange(start, stop, step)} for float64: length {@code ceil((stop - start) / step)}, elements
     * {@code start + i * delta} with {@code delta = (start + step) - start} (NumPy fills from its first two values).
     */
    public static double[] arange(double start, double stop, double step) {
        if (step == 0 || !Double.isFinite(step)) throw new IllegalArgumentException("arange step must be finite and non-zero");
        double len = Math.ceil((stop - start) / step);
        if (!(len > 0)) return new double[0];
        if (len > 1_000_000) throw new IllegalArgumentException("arange of " + len + " elements");
        int n = (int) len;
        double[] y = new double[n];
        y[0] = start;
        if (n > 1) {
            double second = start + step;
            double delta = second - start;
            y[1] = second;
            for (int i = 2; i < n; i++) y[i] = start + i * delta;
        }
        return y;
    }

    /** {@code np.round} to an integer value: round half to even. */
    public static long round(double v) {
        return (long) Math.rint(v);
    }
}
