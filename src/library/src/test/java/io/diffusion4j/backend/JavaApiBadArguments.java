package io.diffusion4j.backend;

import static io.diffusion4j.backend.BadArgumentFuzz.*;
import static org.junit.jupiter.api.Assertions.assertFalse;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;

/**
 * The generators of {@link BadArgumentFuzzTest} that go through the public Java API (Tensor, the kernel
 * classes, NativeSchedule, Backend): each draws one bad call and expects a typed exception naming it.
 */
final class JavaApiBadArguments {
    private JavaApiBadArguments() {}

    static void allocateBadShape(Random r, Scope s) {
        DType dt = DType.values()[r.nextInt(DType.values().length)];
        switch (r.nextInt(7)) {
            case 0 -> {
                long[] shape = randomShape(r, 1 + r.nextInt(4));
                int i = r.nextInt(shape.length);
                shape[i] = 0;
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, shape), "dimension " + i, "is 0");
            }
            case 1 -> {
                long[] shape = randomShape(r, 1 + r.nextInt(4));
                int i = r.nextInt(shape.length);
                long v = r.nextBoolean() ? -1 - r.nextInt(100) : Long.MIN_VALUE + r.nextInt(100);
                shape[i] = v;
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, shape), "is " + v);
            }
            case 2 -> {
                long[] shape = {1L << (32 + r.nextInt(8)), 1L << (32 + r.nextInt(8)), 1 + r.nextInt(3)};
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, shape), "overflows");
            }
            case 3 -> {
                long v = Long.MAX_VALUE / 8 + 1 + (r.nextLong() >>> 8);
                expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt, v), "too large");
            }
            case 4 -> expectThrows(IllegalArgumentException.class, () -> Tensor.allocate(a, dt), "at least one dimension");
            case 5 -> {
                // fine for Java, refused by the native size limit (more than 64 TiB)
                long n = (1L << 44) + 1 + r.nextInt(1 << 20);
                long bytes = n * 4;
                expectThrows(D4jException.InvalidArgumentException.class, () -> Tensor.allocate(a, dt, n),
                        Long.toString(bytes), "64 TiB");
            }
            default -> expectThrows(IllegalStateException.class, () -> Tensor.allocate(closed, dt, randomShape(r, 2)),
                    "backend cpu is closed");
        }
    }

    static void tensorMisuse(Random r, Scope s) {
        long[] shape = randomShape(r, 1 + r.nextInt(4));
        Tensor x = f(s, shape);
        int n = (int) x.elementCount();
        switch (r.nextInt(5)) {
            case 0 -> {
                int len = r.nextBoolean() ? n + 1 + r.nextInt(5) : r.nextInt(n);
                expectThrows(IllegalArgumentException.class, () -> x.copyFrom(new float[len]), "array of " + len + " elements");
            }
            case 1 -> expectThrows(IllegalArgumentException.class, () -> x.copyFrom(new int[n]), "not an integer tensor");
            case 2 -> {
                Tensor i = t(s, a, r.nextBoolean() ? DType.INT32 : DType.UINT32, shape);
                expectThrows(IllegalArgumentException.class, i::toFloatArray, i.dtype().name(), "not FLOAT32");
            }
            case 3 -> {
                Tensor y = Tensor.allocate(a, DType.FLOAT32, shape);
                String d = y.describe();
                y.close();
                Runnable op = switch (r.nextInt(5)) {
                    case 0 -> () -> y.copyFrom(new float[n]);
                    case 1 -> y::toFloatArray;
                    case 2 -> y::handle;
                    case 3 -> () -> y.fill(1f);
                    default -> () -> DiffusionKernels.randomNormal(a, 1, 2, y);
                };
                expectThrows(IllegalStateException.class, op, d, "closed");
                y.close(); // harmless
            }
            default -> {
                int len = n + 1 + r.nextInt(3);
                expectThrows(IllegalArgumentException.class, () -> Tensor.of(a, new float[len], shape), "array of " + len);
            }
        }
    }

    static void addNoise(Random r, Scope s) {
        int batch = 1 + r.nextInt(4);
        long[] shape = randomShape(r, batch);
        int T = big.numTrainTimesteps();
        int[] ts = timesteps(r, batch, T);
        Tensor x0 = f(s, shape), xT = f(s, shape), eps = f(s, shape);
        long seed = r.nextLong(), off = r.nextLong();
        switch (r.nextInt(9)) {
            case 0 -> {
                int[] wrong = timesteps(r, batch + 1 + r.nextInt(3), T);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, wrong, seed, off, xT, eps), "timesteps has " + wrong.length);
            }
            case 1 -> {
                long[] other = shape.clone();
                other[other.length - 1] += 1;
                Tensor xT2 = f(s, other);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT2, eps), "xT is", xT2.describe());
            }
            case 2 -> {
                Tensor eps2 = t(s, a, DType.INT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, eps2), "eps is", "int32");
            }
            case 3 -> {
                Tensor x02 = t(s, a, DType.UINT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x02, ts, seed, off, xT, eps), "must be float32");
            }
            case 4 -> {
                int i = r.nextInt(batch);
                ts[i] = badTimestep(r, T);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, eps), "timesteps[" + i + "] = " + ts[i]);
            }
            case 5 -> {
                Tensor epsB = t(s, b, DType.FLOAT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, epsB), "eps is on backend");
            }
            case 6 -> {
                Tensor[] all = {x0, xT, eps};
                Tensor victim = all[r.nextInt(3)];
                victim.close();
                expectThrows(IllegalStateException.class,
                        () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, eps), victim.describe(), "closed");
            }
            case 7 -> expectThrows(IllegalStateException.class,
                    () -> DiffusionKernels.addNoise(closedSchedule, x0, ts, seed, off, xT, eps), "schedule is closed");
            default -> expectThrows(D4jException.InvalidArgumentException.class,
                    () -> DiffusionKernels.addNoise(big, x0, ts, seed, off, xT, xT), "x_t and eps");
        }
    }

    static void diffusionLoss(Random r, Scope s) {
        NativeSchedule sch = smallSchedule(s, r);
        int T = sch.numTrainTimesteps();
        int batch = 1 + r.nextInt(4);
        long[] shape = randomShape(r, batch);
        PredictionType p = PredictionType.values()[r.nextInt(3)];
        Tensor mo = f(s, shape), x0 = f(s, shape), eps = f(s, shape), loss = f(s, batch), grad = f(s, shape);
        int[] ts = timesteps(r, batch, T);
        float[] w = new float[T];
        for (int i = 0; i < T; i++) w[i] = r.nextFloat() * 5;
        float[] weights = r.nextBoolean() ? w : null;
        switch (r.nextInt(9)) {
            case 0 -> {
                Tensor loss2 = f(s, batch + 1 + r.nextInt(3));
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss2, grad),
                        "loss must have " + batch + " elements");
            }
            case 1 -> {
                float[] w2 = new float[r.nextBoolean() ? T + 1 + r.nextInt(5) : r.nextInt(T)];
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, w2, loss, grad),
                        "lossWeights has " + w2.length, "T = " + T);
            }
            case 2 -> {
                int i = r.nextInt(T);
                w[i] = badFloat(r, true);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, w, loss, r.nextBoolean() ? grad : null),
                        "loss_weights[" + i + "]");
            }
            case 3 -> {
                int i = r.nextInt(batch);
                ts[i] = badTimestep(r, T);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss, grad),
                        "timesteps[" + i + "] = " + ts[i]);
            }
            case 4 -> {
                Tensor g2 = f(s, batch, 7, 3);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss, g2), "grad is");
            }
            case 5 -> {
                Tensor lossB = t(s, b, DType.FLOAT32, batch);
                expectThrows(D4jException.InvalidHandleException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, lossB, grad),
                        "loss:", "another 'cpu' backend");
            }
            case 6 -> {
                Tensor x0B = t(s, b, DType.FLOAT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0B, eps, ts, weights, loss, grad), "x0 is on backend");
            }
            case 7 -> {
                Tensor moI = t(s, a, DType.INT32, shape);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, moI, x0, eps, ts, weights, loss, grad), "must be float32");
            }
            default -> {
                loss.close();
                expectThrows(IllegalStateException.class,
                        () -> DiffusionKernels.diffusionLoss(sch, p, mo, x0, eps, ts, weights, loss, grad), "closed");
            }
        }
    }

    /** Shared bad cases of the two reverse steps; {@code ddim} selects which one is called. */
    static void reverseStep(Random r, Scope s, boolean ddim) {
        NativeSchedule sch = r.nextBoolean() ? big : smallSchedule(s, r);
        int T = sch.numTrainTimesteps();
        int batch = 1 + r.nextInt(4);
        long[] shape = randomShape(r, batch);
        Tensor xT = f(s, shape), mo = f(s, shape), xPrev = f(s, shape);
        int[] ts = timesteps(r, batch, T);
        int[] prev = prevOf(r, ts);
        SampleNoise nz = noise(r, batch);
        PredictionType p = PredictionType.values()[r.nextInt(3)];
        VarianceType v = VarianceType.values()[r.nextInt(2)];
        boolean clip = r.nextBoolean();
        float range = 0.5f + r.nextFloat();
        float eta = r.nextFloat();
        boolean useClipped = r.nextBoolean();
        double fac = r.nextBoolean() ? 1.0 : 0.5 + 0.5 * r.nextDouble();

        // one step call with the (possibly broken) arguments above, overridable per case
        final class Call {
            Tensor x = xT, m = mo, out = xPrev;
            int[] t = ts, pv = prev;
            SampleNoise noise = nz;
            boolean cl = clip;
            float rg = range, e = eta;
            double fa = fac;

            Runnable runnable() {
                return ddim
                        ? () -> DiffusionKernels.ddimStep(sch, p, e, cl, rg, useClipped, fa, x, m, t, pv, noise, out)
                        : () -> DiffusionKernels.ddpmStep(sch, p, v, cl, rg, x, m, t, pv, noise, out);
            }
        }
        Call c = new Call();
        int variants = ddim ? 12 : 10;
        switch (r.nextInt(variants)) {
            case 0 -> {
                int i = r.nextInt(batch);
                c.pv[i] = ts[i] + r.nextInt(T - ts[i]);
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(),
                        "prev_timesteps[" + i + "] = " + c.pv[i], "below timesteps[" + i + "] = " + ts[i]);
            }
            case 1 -> {
                int i = r.nextInt(batch);
                c.pv[i] = r.nextBoolean() ? -2 - r.nextInt(1000) : Integer.MIN_VALUE;
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(),
                        "prev_timesteps[" + i + "] = " + c.pv[i], "outside [-1, " + T + ")");
            }
            case 2 -> {
                int i = r.nextInt(batch);
                c.t[i] = badTimestep(r, T);
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "timesteps[" + i + "] = " + c.t[i]);
            }
            case 3 -> {
                c.cl = true;
                float[] bad = {0f, -0f, -r.nextFloat() - 1e-6f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
                c.rg = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "clip_sample_range");
            }
            case 4 -> {
                c.noise = noise(r, batch + 1 + r.nextInt(2));
                expectThrows(IllegalArgumentException.class, c.runnable(), "noise has " + c.noise.seeds().length,
                        "batch of " + batch);
            }
            case 5 -> {
                int k = batch + 1;
                expectThrows(IllegalArgumentException.class, () -> new SampleNoise(new long[batch], new long[k]),
                        "seeds has " + batch, "offsets has " + k);
            }
            case 6 -> {
                c.pv = prevOf(r, timesteps(r, batch + 1, T));
                expectThrows(IllegalArgumentException.class, c.runnable(), "prevTimesteps has " + (batch + 1));
            }
            case 7 -> {
                c.out = mo;
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "x_prev must not alias model_output");
            }
            case 8 -> {
                c.m = t(s, b, DType.FLOAT32, shape);
                expectThrows(IllegalArgumentException.class, c.runnable(), "modelOutput is on backend");
            }
            case 9 -> {
                if (r.nextBoolean()) {
                    xT.close();
                    expectThrows(IllegalStateException.class, c.runnable(), xT.describe(), "closed");
                } else {
                    long[] other = shape.clone();
                    other[0] += 1;
                    c.out = f(s, other);
                    expectThrows(IllegalArgumentException.class, c.runnable(), "xPrev is");
                }
            }
            case 10 -> {
                c.e = badFloat(r, true);
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "eta must be finite");
            }
            default -> {
                double[] bad = {0.0, -0.0, -r.nextDouble(), 1.0 + 1e-12 + r.nextDouble(), Double.NaN,
                    Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY};
                c.fa = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, c.runnable(), "final_alpha_cumprod");
            }
        }
    }

    static void embedding(Random r, Scope s) {
        int batch = 1 + r.nextInt(4);
        int dim = 2 + r.nextInt(9);
        float[] ts = new float[batch];
        for (int i = 0; i < batch; i++) ts[i] = r.nextFloat() * 1000;
        boolean flip = r.nextBoolean();
        float shift = r.nextFloat();
        float scale = 1f + r.nextFloat();
        float maxPeriod = 10000f;
        Tensor out = f(s, batch, dim);
        switch (r.nextInt(10)) {
            case 0 -> {
                Tensor o1 = f(s, batch, 1);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, 1, flip, 0f, scale, maxPeriod, o1), "embedding dim", "got 1");
            }
            case 1 -> {
                int d = -r.nextInt(5);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, d, flip, shift, scale, maxPeriod, out),
                        "out must be float32[" + batch + ", " + d + "]");
            }
            case 2 -> {
                float[] ts2 = Arrays.copyOf(ts, batch + 1);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts2, dim, flip, shift, scale, maxPeriod, out),
                        "out must be float32[" + (batch + 1) + ", " + dim + "]");
            }
            case 3 -> {
                int i = r.nextInt(batch);
                ts[i] = badFloat(r, false);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, scale, maxPeriod, out),
                        "timesteps[" + i + "] is not finite");
            }
            case 4 -> {
                float mp = r.nextBoolean() ? badFloat(r, true) : 0f;
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, scale, mp, out), "max_period");
            }
            case 5 -> {
                float sh = r.nextBoolean() ? dim / 2 + r.nextFloat() * 10 : badFloat(r, false);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, sh, scale, maxPeriod, out),
                        "downscale_freq_shift", "dim/2 = " + dim / 2);
            }
            case 6 -> {
                float sc = badFloat(r, false);
                expectThrows(D4jException.InvalidArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, sc, maxPeriod, out), "scale");
            }
            case 7 -> expectThrows(D4jException.InvalidHandleException.class,
                    () -> DiffusionKernels.timestepEmbedding(b, ts, dim, flip, shift, scale, maxPeriod, out),
                    "out:", "another 'cpu' backend");
            case 8 -> expectThrows(IllegalStateException.class,
                    () -> DiffusionKernels.timestepEmbedding(closed, ts, dim, flip, shift, scale, maxPeriod, out),
                    "backend cpu is closed");
            default -> {
                Tensor oi = t(s, a, DType.INT32, batch, dim);
                expectThrows(IllegalArgumentException.class,
                        () -> DiffusionKernels.timestepEmbedding(a, ts, dim, flip, shift, scale, maxPeriod, oi),
                        "out must be float32");
            }
        }
    }

    static void rng(Random r, Scope s) {
        long[] shape = randomShape(r, 1 + r.nextInt(4));
        long seed = r.nextLong(), off = r.nextLong();
        switch (r.nextInt(5)) {
            case 0 -> {
                Tensor o = f(s, shape);
                expectThrows(IllegalArgumentException.class, () -> DiffusionKernels.randomBits(a, seed, off, o), "must be uint32");
            }
            case 1 -> {
                Tensor o = t(s, a, DType.UINT32, shape);
                expectThrows(IllegalArgumentException.class, () -> DiffusionKernels.randomNormal(a, seed, off, o), "must be float32");
            }
            case 2 -> {
                boolean bits = r.nextBoolean();
                Tensor o = t(s, b, bits ? DType.UINT32 : DType.FLOAT32, shape);
                expectThrows(D4jException.InvalidHandleException.class, bits
                        ? () -> DiffusionKernels.randomBits(a, seed, off, o)
                        : () -> DiffusionKernels.randomNormal(a, seed, off, o), "out:", "another 'cpu' backend");
            }
            case 3 -> {
                Tensor o = t(s, a, DType.UINT32, shape);
                expectThrows(IllegalStateException.class, () -> DiffusionKernels.randomBits(closed, seed, off, o), "closed");
            }
            default -> {
                Tensor o = f(s, shape);
                o.close();
                expectThrows(IllegalStateException.class, () -> DiffusionKernels.randomNormal(a, seed, off, o), "closed");
            }
        }
    }

    static void schedules(Random r, Scope s) {
        int T = 1 + r.nextInt(50);
        double[] ac = validTable(r, T);
        switch (r.nextInt(50) == 0 ? 4 : r.nextInt(4)) {
            case 0 -> {
                int i = r.nextInt(T);
                double[] bad = {Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY};
                ac[i] = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(ac)),
                        "alphas_cumprod[" + i + "] is not finite");
            }
            case 1 -> {
                int i = r.nextInt(T);
                double[] bad = {0.0, -0.0, 1.0, -r.nextDouble(), 1.0 + r.nextDouble(), Double.MIN_VALUE * -1};
                ac[i] = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(ac)),
                        "alphas_cumprod[" + i + "]", "outside (0, 1)");
            }
            case 2 -> {
                if (T < 2) {
                    expectThrows(D4jException.InvalidArgumentException.class,
                            () -> s.add(NativeSchedule.ofAlphasCumprod(new double[0])), "num_train_timesteps", "got 0");
                    return;
                }
                int i = 1 + r.nextInt(T - 1);
                ac[i] = r.nextBoolean() ? ac[i - 1] : Math.min(0.999999, ac[i - 1] + r.nextDouble() * (1 - ac[i - 1]));
                if (!(ac[i] >= ac[i - 1])) ac[i] = ac[i - 1];
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(ac)),
                        "not strictly decreasing at t = " + i);
            }
            case 3 -> expectThrows(D4jException.InvalidArgumentException.class,
                    () -> s.add(NativeSchedule.ofAlphasCumprod(new double[0])), "num_train_timesteps", "got 0");
            default -> {
                double[] huge = new double[1_000_001];
                Arrays.fill(huge, 0.5);
                expectThrows(D4jException.InvalidArgumentException.class, () -> s.add(NativeSchedule.ofAlphasCumprod(huge)),
                        "num_train_timesteps", "1000001");
            }
        }
    }

    static void backendMisuse(Random r, Scope s) {
        switch (r.nextInt(4)) {
            case 0 -> {
                int[] bad = {0, -1 - r.nextInt(100), 1025 + r.nextInt(100000), Integer.MIN_VALUE, Integer.MAX_VALUE};
                int v = bad[r.nextInt(bad.length)];
                expectThrows(D4jException.InvalidArgumentException.class, () -> (r.nextBoolean() ? a : b).setThreads(v),
                        "threads", "got " + v);
            }
            case 1 -> {
                String name = "gpu" + r.nextInt(100);
                expectThrows(IllegalArgumentException.class, () -> Backend.open(name), "unknown backend '" + name + "'");
            }
            case 2 -> {
                Runnable op = switch (r.nextInt(5)) {
                    case 0 -> closed::liveBytes;
                    case 1 -> closed::description;
                    case 2 -> closed::synchronize;
                    case 3 -> () -> closed.setThreads(2);
                    default -> closed::handle;
                };
                expectThrows(IllegalStateException.class, op, "backend cpu is closed");
            }
            default -> {
                long live = a.liveBuffers();
                expectThrows(D4jException.InvalidArgumentException.class, a::close, "still has " + live + " live buffers");
                assertFalse(a.isClosed(), "a failed close must leave the backend open");
            }
        }
    }
}
