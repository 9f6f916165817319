package io.diffusion4j.cli;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.profile.Cifar10Cases;
import io.diffusion4j.profile.ProfileReport;
import io.diffusion4j.profile.ProfiledCase;
import io.diffusion4j.profile.PtxasReport;
import io.diffusion4j.profile.StepProfiles;
import io.diffusion4j.selftest.ReportTable;
import io.diffusion4j.selftest.SelfTest;
import java.io.IOException;
import java.io.PrintStream;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.function.Predicate;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The {@code selftest} command: runs {@link SelfTest} on the device backend against the CPU backend, prints the
 * table and a line "N passed, M failed", and returns 1 if anything failed (or the backend cannot run), else 0.
 */
@Command(name = "selftest", mixinStandardHelpOptions = true, synopsisHeading = "usage: ",
        versionProvider = Main.Version.class,
        description = {"Every kernel family and variant on a device backend against the CPU backend.", "",
            "Fresh random inputs, outputs poisoned with NaN before every call, each kernel timed; exit 1 on a failure."})
final class SelfTestCommand implements Callable<Integer> {
    @Option(names = "--backend", paramLabel = "NAME",
            description = "cuda or cuda-sim (default: cuda if a GPU is usable, else cuda-sim)")
    String backend;

    @Option(names = "--variants", paramLabel = "WHICH", description = "all or default (default: all)")
    String variantsName;

    @Option(names = "--families", paramLabel = "LIST", split = ",",
            description = "only these kernel families, comma-separated (default: every family; with --shapes cifar10 "
                    + "the whole-step profiles run only without it)")
    List<String> families;

    @Option(names = "--profile", description = {"Count every launch on the profiling simulator (coalescing, bank "
            + "conflicts, FLOPs, occupancy) and project its time on A100 and H100 instead of the parity check.",
        "With a usable GPU each call is also timed there, beside its projection."})
    boolean profile;

    @Option(names = "--csv", paramLabel = "FILE", description = "with --profile: also write one CSV line per launch to FILE")
    java.nio.file.Path csv;

    @Option(names = "--max-blocks", paramLabel = "N", description = "with --profile: simulate at most N blocks of "
            + "each launch and scale the counts (0 = every block; default: 0 for small, 8 for cifar10)")
    Long maxBlocks;

    @Option(names = "--shapes", paramLabel = "WHICH", description = {"with --profile: small (the self-test's cases, "
            + "every family and variant) or cifar10 (google/ddpm-cifar10-32's UNet: one call of every family and "
            + "variant at the model's dimensions, then one DDIM step at batch 1 and 64 and one training step at batch "
            + "128 with default variants; minutes)", "(default: small)"})
    String shapes;

    @Spec
    CommandSpec spec;

    private final PrintStream out, err;

    SelfTestCommand(Main.Io io) {
        this.out = io.out();
        this.err = io.err();
    }

    @Override
    public Integer call() {
        Device kind = backend == null ? null : Device.fromName(backend);
        if (kind == Device.CPU) {
            throw Main.bad(spec, "--backend must be a device backend (cuda or cuda-sim); the cpu backend is the reference");
        }
        SelfTest.Variants variants = variantsName == null ? SelfTest.Variants.ALL : SelfTest.Variants.fromName(variantsName);
        if (!profile && (csv != null || maxBlocks != null || shapes != null)) {
            throw Main.bad(spec, "--csv, --max-blocks and --shapes need --profile");
        }
        if (maxBlocks != null && maxBlocks < 0) throw Main.bad(spec, "--max-blocks must be >= 0, got " + maxBlocks);
        boolean cifar = shapes != null && switch (shapes) {
            case "small" -> false;
            case "cifar10" -> true;
            default -> throw Main.bad(spec, "unknown --shapes value '" + shapes + "': expected small or cifar10");
        };
        Predicate<String> wanted = families == null ? f -> true : Set.copyOf(families)::contains;
        if (profile) return profile(kind, variants, cifar, wanted);

        Backend device;
        String why;
        if (kind != null) {
            try {
                device = Backend.open(kind);
            } catch (D4jException.BackendUnavailableException e) {
                err.println("selftest: the " + kind.cliName() + " backend cannot run here: " + e.getMessage());
                return 1;
            }
            why = "backend " + kind.cliName() + " (--backend)";
        } else {
            try {
                device = Backend.open(Device.CUDA);
                why = "GPU found: running the CUDA kernels on cuda";
            } catch (D4jException.BackendUnavailableException e) {
                try {
                    device = Backend.open(Device.CUDA_SIM);
                } catch (D4jException.BackendUnavailableException e2) {
                    err.println("selftest: no device backend can run here: cuda: " + e.getMessage() + "; cuda-sim: "
                            + e2.getMessage());
                    return 1;
                }
                why = "no GPU: running the CUDA kernels on cuda-sim (cuda: " + e.getMessage() + ")";
            }
        }

        SelfTest.Report report;
        Backend.Peak peak;
        try (Backend dev = device; Backend cpu = Backend.open(Device.CPU)) {
            checkFamilies(dev);
            peak = dev.devicePeak();
            out.println(why);
            out.println("device    " + dev.kind().cliName() + ": " + dev.description());
            out.println("reference cpu: " + cpu.description());
            SelfTest.Options options = SelfTest.Options.defaults().withVariants(variants)
                    .withFilter((f, v) -> wanted.test(f));
            out.printf(Locale.ROOT, "inputs    fresh random, seed 0x%016x; outputs poisoned with NaN before every call; variants: %s%n",
                    options.seed(), variants.name().toLowerCase(Locale.ROOT));
            out.flush();
            report = SelfTest.run(dev, cpu, options);
        }
        ReportTable.print(report, peak, out);
        return report.allPassed() ? 0 : 1;
    }

    /** Refuses a --families name the backend does not list. */
    private void checkFamilies(Backend b) {
        if (families == null) return;
        List<String> known = b.kernelFamilies();
        for (String f : families) {
            if (!known.contains(f)) {
                throw Main.bad(spec, "unknown kernel family '" + f + "' in --families (known: " + String.join(",", known)
                        + ")");
            }
        }
    }

    /** --profile: the self-test's calls on the profiling simulator, and on a real GPU when there is one. */
    private Integer profile(Device kind, SelfTest.Variants variants, boolean cifar, Predicate<String> wanted) {
        long blocks = maxBlocks != null ? maxBlocks : cifar ? 8 : 0;
        Backend gpu = null;
        if (kind != Device.CUDA_SIM) {
            try {
                gpu = Backend.open(Device.CUDA);
            } catch (D4jException.BackendUnavailableException e) {
                if (kind == Device.CUDA) {
                    err.println("selftest: the cuda backend cannot run here: " + e.getMessage());
                    return 1;
                }
                out.println("no GPU (" + e.getMessage() + "): projections only");
            }
        }
        List<ProfiledCase> cases, steps = List.of();
        try (Backend prof = Backend.openProfiling(); Backend measured = gpu) {
            checkFamilies(prof);
            out.println("profiling " + prof.description());
            if (measured != null) out.println("measuring on " + measured.description());
            String perLaunch = blocks == 0 ? "all" : "at most " + blocks + " (counts scaled to the grid)";
            if (cifar) {
                out.println("model     google/ddpm-cifar10-32's UNet2DModel (35.7 M parameters): every family at its "
                        + "dimensions, variants: " + variants.name().toLowerCase(Locale.ROOT) + "; whole steps with the "
                        + "default variants; blocks per launch: " + perLaunch);
                out.flush();
                cases = Cifar10Cases.profile(prof, measured, variants == SelfTest.Variants.ALL, blocks, wanted, (family, variant) -> {
                    out.println("counted   " + family + " " + variant);
                    out.flush();
                });
                if (families == null) {
                    steps = StepProfiles.cifar10Steps(prof, blocks, step -> {
                        out.println("counted   " + step);
                        out.flush();
                    });
                }
            } else {
                SelfTest.Options options = SelfTest.Options.defaults().withVariants(variants)
                        .withFilter((f, v) -> wanted.test(f));
                out.printf(Locale.ROOT, "inputs    the self-test's cases, seed 0x%016x; variants: %s; blocks per launch: %s%n",
                        options.seed(), variants.name().toLowerCase(Locale.ROOT), perLaunch);
                out.flush();
                cases = SelfTest.profile(prof, measured, options, blocks);
            }
        } catch (D4jException.BackendUnavailableException e) {
            err.println("selftest: the profiling simulator cannot run here: " + e.getMessage());
            return 1;
        }
        PtxasReport report = PtxasReport.packed();
        ProfileReport.print(cases, report, out);
        if (cifar && !steps.isEmpty()) StepProfiles.printSummaries(steps, report, out);
        if (csv != null) {
            try {
                ProfileReport.writeCsv(csv, Stream.concat(cases.stream(), steps.stream()).toList(), report);
            } catch (IOException e) {
                err.println("selftest: cannot write " + csv + ": " + e.getMessage());
                return 1;
            }
            out.println("wrote " + csv);
        }
        return 0;
    }
}
