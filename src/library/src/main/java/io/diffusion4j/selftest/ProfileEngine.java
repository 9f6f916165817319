package io.diffusion4j.selftest;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.profile.KernelCounters;
import io.diffusion4j.profile.KernelProfile;
import io.diffusion4j.profile.ProfiledCase;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.selftest.ParityEngine.FamilyPlan;
import io.diffusion4j.selftest.SelfTest.Options;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs the self-test's cases (the same families, variants, shapes and inputs as the parity run) on the
 * profiling simulator and collects each call's launches with their counters; when a real GPU backend
 * is given, the same call is timed there too, so the projection can be read beside a measurement.
 */
final class ProfileEngine {
    private ProfileEngine() {}

    static List<ProfiledCase> run(Backend profiling, Backend gpu, Options options, long maxBlocks) {
        NoiseSchedule schedule = NoiseSchedule.defaults();
        List<ProfiledCase> out = new ArrayList<>();
        try (NativeSchedule ns = NativeSchedule.of(schedule)) {
            for (FamilyPlan plan : ParityEngine.plan(profiling, options, new CaseContext(schedule, ns))) {
                if (plan.cases() == null) continue;
                for (VariantRun run : plan.runs()) {
                    try (Backend.Selection before = profiling.use(run)) {
                        for (ParityCase c : plan.cases()) out.add(profileCase(profiling, gpu, run, c, options.repeats(),
                                maxBlocks));
                    }
                }
            }
        }
        return out;
    }

    private static ProfiledCase profileCase(Backend profiling, Backend gpu, VariantRun run, ParityCase c, int repeats,
                                            long maxBlocks) {
        List<KernelProfile> launches;
        try (Prepared p = c.prepare(profiling)) {
            p.poison();
            launches = KernelCounters.count(profiling, maxBlocks, b -> p.call());
        }
        double measured = Double.NaN;
        String on = "";
        if (gpu != null) {
            try (Backend.Selection before = gpu.use(run); Prepared p = c.prepare(gpu)) {
                measured = ParityEngine.time(p, gpu, Math.max(1, repeats));
                on = gpu.description();
            }
        }
        return new ProfiledCase(run.family(), run.label(), c.kernel(), c.shape().toString(), launches, measured, on);
    }
}
