package io.diffusion4j.profile;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.SplittableRandom;
import java.util.function.BiConsumer;
import java.util.function.Predicate;

/**
 * Single calls of every kernel family at the dimensions of google/ddpm-cifar10-32 ({@link StepProfiles#cifar10()}:
 * channels 128/256/256/256 on a 32x32 input, 32 GroupNorm groups, one-head attention at 16x16 with 256 channels),
 * counted on the profiling simulator for every variant the backend lists. Training-side families run at batch
 * {@value #TRAIN_BATCH}, sampler-side ones at batch {@value #SAMPLE_BATCH}. Where the whole steps of
 * {@link StepProfiles#cifar10Steps} show which kernels a step spends its time in (default variants only), these
 * rows put the variants of a family side by side at the same real shape.
 *
 * <p>The cases themselves ({@link #all()}) allocate nothing until run, so the list can be inspected cheaply.
 * Inputs hold finite values; with {@code maxBlocks > 0} the outputs are left as garbage by the blocks that
 * did not run, so no call reads a result back for a host-side decision (values that kernels return to the
 * host, such as the gradient norm or the VLB terms, are dropped).
 */
public final class Cifar10Cases {
    private Cifar10Cases() {}

    /** The batch of the training-side families (noising, the loss, the UNet layers' forward and backward). */
    public static final int TRAIN_BATCH = 128;
    /** The batch of the sampler-side families (reverse steps, thresholding). */
    public static final int SAMPLE_BATCH = 64;
    /** The parameter count of google/ddpm-cifar10-32's UNet (35,746,307): the optimiser families' vector length. */
    public static final long PARAMETERS = UNet2DLayout.of(StepProfiles.cifar10()).parameterCount();

    /**
     * One call of a kernel family: {@code setup} allocates its tensors through the {@link Inputs} it is given
     * (which closes them afterwards) and returns the call to count.
     *
     * @param family the kernel family, as {@link Backend#kernelFamilies()} names it
     * @param call   what the call is ("forward 3x3", "uint32", ...)
     * @param shape  its dimensions
     */
    public record Case(String family, String call, String shape, Setup setup) {
        public Case {
            Objects.requireNonNull(family, "family");
            Objects.requireNonNull(call, "call");
            Objects.requireNonNull(shape, "shape");
            Objects.requireNonNull(setup, "setup");
        }
    }

    /** Allocates a case's tensors and returns its call. */
    @FunctionalInterface
    public interface Setup {
        Runnable prepare(Inputs in);
    }

    /** Every case, grouped by family. */
    public static List<Case> all() {
        List<Case> out = new ArrayList<>(Cifar10DiffusionCases.cases());
        out.addAll(Cifar10LayerCases.cases());
        return List.copyOf(out);
    }

    /** The cases of {@code family} (none for a family this class does not know). */
    public static List<Case> of(String family) {
        return all().stream().filter(c -> c.family().equals(family)).toList();
    }

    /**
     * Counts the cases of every family {@code profiling} lists, for each of its variants (only the default, its
     * first, unless {@code allVariants}), and selects again the variant that was selected before.
     * {@code started} hears each family and variant before its cases run.
     */
    public static List<ProfiledCase> profile(Backend profiling, boolean allVariants, long maxBlocks,
                                             BiConsumer<String, String> started) {
        return profile(profiling, allVariants, maxBlocks, family -> true, started);
    }

    /** {@link #profile(Backend, boolean, long, BiConsumer)} of the families {@code families} accepts. */
    public static List<ProfiledCase> profile(Backend profiling, boolean allVariants, long maxBlocks,
                                             Predicate<String> families, BiConsumer<String, String> started) {
        return profile(profiling, null, allVariants, maxBlocks, families, started);
    }

    /**
     * {@link #profile(Backend, boolean, long, Predicate, BiConsumer)}, and with a real GPU backend {@code gpu} (not
     * null) each case is also timed there with the same variant and precision ({@link #time}), so the projection
     * reads beside a measurement.
     */
    public static List<ProfiledCase> profile(Backend profiling, Backend gpu, boolean allVariants, long maxBlocks,
                                             Predicate<String> families, BiConsumer<String, String> started) {
        List<ProfiledCase> out = new ArrayList<>();
        try (NativeSchedule schedule = NativeSchedule.of(NoiseSchedule.defaults())) {
            for (String family : profiling.kernelFamilies()) {
                List<Case> cases = families.test(family) ? of(family) : List.of();
                if (cases.isEmpty()) continue;
                List<VariantRun> runs = profiling.variantRuns(family);
                if (!allVariants) runs = runs.subList(0, 1);
                for (VariantRun run : runs) {
                    try (Backend.Selection before = profiling.use(run)) {
                        started.accept(family, run.label());
                        for (Case c : cases) {
                            ProfiledCase counted = run(profiling, schedule, c, maxBlocks);
                            if (gpu != null) {
                                try (Backend.Selection onGpu = gpu.use(run); NativeSchedule gs = NativeSchedule.of(NoiseSchedule.defaults())) {
                                    counted = new ProfiledCase(counted.family(), counted.variant(), counted.call(),
                                            counted.shape(), counted.launches(), time(gpu, gs, c, 5), gpu.description());
                                }
                            }
                            out.add(counted);
                        }
                    }
                }
            }
        }
        return out;
    }

    /**
     * The median seconds of {@code repeats} calls of a case on {@code gpu} with the variant selected there now, after
     * one warm-up call, the L2 cache flushed before each (CUDA events around each call).
     */
    public static double time(Backend gpu, NativeSchedule schedule, Case c, int repeats) {
        try (Inputs in = new Inputs(gpu, schedule)) {
            Runnable call = c.setup().prepare(in);
            call.run();
            double[] ms = new double[repeats];
            for (int r = 0; r < repeats; r++) {
                gpu.flushCache();
                gpu.timerBegin();
                call.run();
                ms[r] = gpu.timerEnd();
            }
            java.util.Arrays.sort(ms);
            return ms[repeats / 2] * 1e-3;
        }
    }

    /** Counts one case with the variant of its family that is selected now. */
    public static ProfiledCase run(Backend profiling, NativeSchedule schedule, Case c, long maxBlocks) {
        try (Inputs in = new Inputs(profiling, schedule)) {
            Runnable call = c.setup().prepare(in);
            List<KernelProfile> launches = KernelCounters.count(profiling, maxBlocks, b -> call.run());
            return new ProfiledCase(c.family(), selectedLabel(profiling, c.family()), c.call(), c.shape(), launches,
                    Double.NaN, "");
        }
    }

    /**
     * The selected variant of a family as reports name it: a tensor-core variant with the precision it runs at
     * ({@link VariantRun#label()}).
     */
    public static String selectedLabel(Backend backend, String family) {
        String v = backend.selectedKernel(family);
        Precision p = backend.tensorCoreVariants(family).contains(v) ? backend.precision() : Precision.FP32;
        return new VariantRun(family, v, p).label();
    }

    /**
     * The tensors of one case on the profiling backend, closed together. Float tensors hold finite values, a
     * fixed pseudo-random pattern in [-1, 1), so data-dependent kernels (the quantile threshold's radix select)
     * see spread values. They are copied from the host: on the profiling simulator the fill kernel runs
     * instrumented, far slower than a copy of the optimiser's vectors.
     */
    public static final class Inputs implements AutoCloseable {
        private static final float[] PATTERN = new float[4099]; // a prime: no period of a tensor dimension

        static {
            SplittableRandom r = new SplittableRandom(0x5EEDL);
            for (int i = 0; i < PATTERN.length; i++) PATTERN[i] = (float) (2 * r.nextDouble() - 1);
        }

        private final Backend backend;
        private final NativeSchedule schedule;
        private final List<Tensor> owned = new ArrayList<>();

        Inputs(Backend backend, NativeSchedule schedule) {
            this.backend = backend;
            this.schedule = schedule;
        }

        public Backend backend() {
            return backend;
        }

        /** The default noise schedule (1000 linear steps), for the schedule-dependent families. */
        public NativeSchedule schedule() {
            return schedule;
        }

        /** A float32 tensor of finite values (the pattern). */
        public Tensor floats(long... shape) {
            Tensor t = keep(Tensor.allocate(backend, DType.FLOAT32, shape));
            float[] v = new float[Math.toIntExact(t.elementCount())];
            for (int i = 0; i < v.length; i += PATTERN.length) {
                System.arraycopy(PATTERN, 0, v, i, Math.min(PATTERN.length, v.length - i));
            }
            t.copyFrom(v);
            return t;
        }

        /** A float32 tensor holding {@code value} everywhere (thresholds, standard deviations). */
        public Tensor constant(float value, long... shape) {
            Tensor t = keep(Tensor.allocate(backend, DType.FLOAT32, shape));
            float[] v = new float[Math.toIntExact(t.elementCount())];
            Arrays.fill(v, value);
            t.copyFrom(v);
            return t;
        }

        /** A uint32 tensor of {@code count} words, not initialised: for a kernel that writes every word. */
        public Tensor words(long count) {
            return keep(Tensor.allocate(backend, DType.UINT32, count));
        }

        private Tensor keep(Tensor t) {
            owned.add(t);
            return t;
        }

        @Override
        public void close() {
            for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
            owned.clear();
        }
    }
}
