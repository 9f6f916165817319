package io.diffusion4j.cli;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.selftest.ReportTable;
import io.diffusion4j.selftest.SelfTest;
import java.io.PrintStream;
import java.util.Locale;
import java.util.concurrent.Callable;
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
            peak = dev.devicePeak();
            out.println(why);
            out.println("device    " + dev.kind().cliName() + ": " + dev.description());
            out.println("reference cpu: " + cpu.description());
            SelfTest.Options options = SelfTest.Options.defaults().withVariants(variants);
            out.printf(Locale.ROOT, "inputs    fresh random, seed 0x%016x; outputs poisoned with NaN before every call; variants: %s%n",
                    options.seed(), variants.name().toLowerCase(Locale.ROOT));
            out.flush();
            report = SelfTest.run(dev, cpu, options);
        }
        ReportTable.print(report, peak, out);
        return report.allPassed() ? 0 : 1;
    }
}
