package io.diffusion4j.cli;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.backend.NativeLibraries;
import io.diffusion4j.Precision;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** The {@code info} command: the native libraries, the backends found here, and why any cannot run. */
@Command(name = "info", mixinStandardHelpOptions = true, synopsisHeading = "usage: ",
        versionProvider = Main.Version.class,
        description = "The native libraries, the backends found here, and why any cannot run.")
final class InfoCommand implements Callable<Integer> {
    @Option(names = "--backend", paramLabel = "NAME", description = "only this backend: cpu, cuda or cuda-sim")
    String backend;

    private final PrintStream out;

    InfoCommand(Main.Io io) {
        this.out = io.out();
    }

    @Override
    public Integer call() {
        // refuses an unknown name instead of listing nothing
        String only = backend == null ? null : Device.fromName(backend).cliName();
        NativeLibraries libs = NativeLibraries.load();
        out.println("diffusion4j " + NativeLibraries.version());
        out.println("java        " + System.getProperty("java.version") + " (" + System.getProperty("java.vm.name") + ")");
        out.println("platform    " + NativeLibraries.platform());
        out.println("natives     " + libs.directory() + (libs.extracted() ? " (extracted from the jar, SHA-256 verified)"
                : " (from -D" + NativeLibraries.NATIVE_DIR_PROPERTY + ")"));
        out.println();
        out.println("backends:");
        for (Backend.Probe p : Backend.probeAll()) {
            if (only != null && !p.kind().cliName().equals(only)) continue;
            out.printf("  %-9s %-13s %s%n", p.kind().cliName(), p.available() ? "available" : "unavailable", p.detail());
            out.printf("  %-9s %-13s %s%n", "", "library", p.library() == null ? "(not built)" : p.library());
            if (p.available()) out.printf("  %-9s %-13s %s%n", "", "precision", precisions(p.kind()));
        }
        if (only == null || only.equals(Device.CUDA_SIM.cliName())) {
            // the simulator's profiling build (selftest --profile)
            String detail;
            try (Backend prof = Backend.openProfiling()) {
                detail = "available     " + prof.description();
            } catch (RuntimeException e) {
                detail = "unavailable   " + e.getMessage();
            }
            out.printf("  %-9s %s%n", "profiling", detail);
            out.printf("  %-9s %-13s %s%n", "", "library", libs.profilingLibrary().map(Object::toString).orElse("(not built)"));
        }
        String chosen;
        try (Backend best = Backend.openBest()) {
            chosen = best.kind().cliName();
        }
        out.println();
        out.println("default backend: " + chosen);
        return 0;
    }

    /**
     * The precisions of the matrix kernels a backend computes in, asked of the backend itself, and the command
     * line's default: "fp32 (cpu computes fp32 only)" or "tf32 default, supports fp32,tf32,bf16".
     */
    static String precisions(Device device) {
        List<String> supported = new ArrayList<>();
        try (Backend b = Backend.open(device)) {
            for (Precision p : Precision.values()) {
                try {
                    b.setPrecision(p);
                    supported.add(p.cliName());
                } catch (D4jException refused) {
                    // not computed by this backend
                }
            }
        }
        Precision def = Precision.defaultFor(device);
        if (supported.equals(List.of(Precision.FP32.cliName()))) {
            return def.cliName() + " (" + device.cliName() + " computes fp32 only)";
        }
        return def.cliName() + " default, supports " + String.join(",", supported);
    }
}
