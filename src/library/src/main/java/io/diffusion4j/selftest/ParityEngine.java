package io.diffusion4j.selftest;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.selftest.SelfTest.Options;
import io.diffusion4j.selftest.SelfTest.Report;
import io.diffusion4j.selftest.SelfTest.Row;
import io.diffusion4j.selftest.SelfTest.Variants;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Runs the families' cases on a device backend and on the CPU backend, compares them ({@link Comparison})
 * and times the device calls. {@link #plan} draws the cases; {@link #run} runs a whole plan for the
 * {@code selftest} command; {@link #runCase} runs one case of one variant, for callers that report each
 * case on its own (the JUnit parity test).
 */
final class ParityEngine {
    private ParityEngine() {}

    /**
     * The cases of one family on one device: the variant runs (each variant at each precision it supports,
     * {@link Backend#variantRuns}) after {@link Options#variants()} and {@link Options#filter()}, and the
     * cases, or null cases when the self-test does not know the family.
     */
    record FamilyPlan(String family, List<VariantRun> runs, List<ParityCase> cases) {}

    /**
     * The families the device lists, each with its variants and cases. Every family draws its inputs
     * from its own split of the seed's generator, whether or not it is filtered out, so a family's
     * inputs depend only on the seed.
     */
    static List<FamilyPlan> plan(Backend device, Options options, CaseContext ctx) {
        SplittableRandom root = new SplittableRandom(options.seed());
        List<FamilyPlan> plans = new ArrayList<>();
        for (String family : device.kernelFamilies()) {
            SplittableRandom rnd = root.split();
            List<VariantRun> runs = device.variantRuns(family);
            if (options.variants() == Variants.DEFAULT) runs = runs.subList(0, 1);
            runs = runs.stream().filter(r -> options.filter().test(family, r.variant())).toList();
            if (runs.isEmpty()) continue;
            plans.add(new FamilyPlan(family, runs, FamilyCases.of(family, rnd, ctx)));
        }
        return plans;
    }

    /** Runs the self-test of {@code device} against {@code cpu}. */
    static Report run(Backend device, Backend cpu, Options options) {
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(cpu, "cpu");
        Objects.requireNonNull(options, "options");
        requireCpu(cpu);
        NoiseSchedule schedule = NoiseSchedule.defaults();
        List<Row> rows = new ArrayList<>();
        try (NativeSchedule ns = NativeSchedule.of(schedule)) {
            for (FamilyPlan plan : plan(device, options, new CaseContext(schedule, ns))) {
                if (plan.cases() == null) {
                    for (VariantRun r : plan.runs()) rows.add(unknownFamily(plan.family(), r.label()));
                    continue;
                }
                runFamily(device, cpu, plan, options.repeats(), rows);
            }
        }
        return new Report(device.kind().cliName(), device.description(), cpu.description(), options.seed(),
                List.copyOf(rows));
    }

    static void requireCpu(Backend cpu) {
        if (cpu.kind() != Device.CPU) throw new IllegalArgumentException("the reference must be the cpu backend, got " + cpu);
    }

    /** The FAIL row of a family the device lists but the self-test has no cases for. */
    static Row unknownFamily(String family, String variant) {
        return new Row(family, variant, "-", "-", "error", Double.NaN, 0, false, Double.NaN,
                "the self-test has no cases for kernel family '" + family + "'");
    }

    private static void runFamily(Backend device, Backend cpu, FamilyPlan plan, int repeats, List<Row> rows) {
        String family = plan.family();
        List<ParityCase> cases = plan.cases();
        // The CPU reference once per case, shared by every variant (same inputs).
        List<List<Output>> reference = new ArrayList<>();
        for (ParityCase c : cases) reference.add(reference(cpu, c));
        for (VariantRun run : plan.runs()) {
            for (int i = 0; i < cases.size(); i++) rows.add(runCase(device, run, cases.get(i), reference.get(i), repeats));
        }
    }

    /** The CPU backend's outputs of a case. */
    static List<Output> reference(Backend cpu, ParityCase c) {
        requireCpu(cpu);
        try (Prepared p = c.prepare(cpu)) {
            return p.runOnce();
        }
    }

    /**
     * Runs one case with {@code run}'s variant and precision on the device against its CPU {@code reference},
     * then puts back the precision and selections from before.
     */
    static Row runCase(Backend device, VariantRun run, ParityCase c, List<Output> reference, int repeats) {
        Backend.Selection before;
        try {
            before = device.use(run);
        } catch (RuntimeException e) {
            return new Row(run.family(), run.label(), "-", "-", "error", Double.NaN, 0, false, Double.NaN,
                    "cannot select the variant: " + message(e));
        }
        try (before) {
            return runSelected(device, run, c, reference, repeats);
        }
    }

    private static Row runSelected(Backend device, VariantRun run, ParityCase c, List<Output> ref, int repeats) {
        String family = run.family(), variant = run.label();
        // the tolerance column: at TF32 / BF16 the products' input rounding widens the bound (Output.Close)
        double rtol = c.rtol() == 0 ? 0 : c.rtol() + run.precision().productError();
        String shape = c.shape().toString();
        List<Output> got;
        try (Prepared p = c.prepare(device)) {
            try {
                got = p.runOnce();
            } catch (RuntimeException e) {
                return new Row(family, variant, c.kernel(), shape, "error", Double.NaN, rtol, false, Double.NaN,
                        message(e));
            }
            Comparison cmp = Comparison.compare(ref, got, run.precision());
            double seconds = Double.NaN;
            String detail = cmp.detail();
            try {
                seconds = time(p, device, repeats);
            } catch (RuntimeException e) {
                return new Row(family, variant, c.kernel(), shape, "error", cmp.maxRel(), rtol, false,
                        Double.NaN, "timed call failed: " + message(e));
            }
            return new Row(family, variant, c.kernel(), shape, cmp.error(), cmp.maxRel(), rtol, cmp.passed(),
                    seconds, detail, p.bytes());
        } catch (RuntimeException e) { // allocation / upload failures
            return new Row(family, variant, c.kernel(), shape, "error", Double.NaN, rtol, false, Double.NaN, message(e));
        }
    }

    /** The median seconds of {@code repeats} calls, outputs re-poisoned and the cache flushed before each (NaN for 0). */
    static double time(Prepared p, Backend device, int repeats) {
        if (repeats == 0) return Double.NaN;
        double[] ms = new double[repeats];
        for (int r = 0; r < repeats; r++) {
            p.poison();
            device.flushCache(); // L2 (GPU) or last-level cache (CPU) evicted between repeats
            device.timerBegin(); // a CUDA event on the GPU; the host clock on cpu and cuda-sim
            p.call();
            ms[r] = device.timerEnd();
        }
        Arrays.sort(ms);
        double median = repeats % 2 == 1 ? ms[repeats / 2] : (ms[repeats / 2 - 1] + ms[repeats / 2]) / 2.0;
        return median * 1e-3;
    }

    private static String message(RuntimeException e) {
        String m = e.getMessage();
        String type = e.getClass().getSimpleName();
        return m == null || m.isBlank() ? type : m;
    }
}
