package io.diffusion4j.cli;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * Where a command runs: {@code --backend}, {@code --threads} and {@code --precision}, the same for every command
 * that computes.
 */
final class DeviceOptions {
    @Option(names = "--backend", paramLabel = "NAME",
            description = "cpu, cuda or cuda-sim (default: cuda when a GPU is usable, else cpu)")
    String backend;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads (default: one per core)")
    Integer threads;

    @Option(names = "--precision", paramLabel = "P",
            description = {"number format of the matrix kernels (conv2d, linear, attention): fp32, tf32 or bf16; tf32 "
                    + "and bf16 round the inputs of each product and accumulate in fp32, tensors stay fp32 in memory "
                    + "(default: tf32 on the GPU backends cuda and cuda-sim, fp32 on cpu, which computes fp32 only)"})
    String precision;

    /** The thread count to set, 0 for the backend's default; a given count must be >= 1. */
    int threads(CommandSpec spec) {
        return threads == null ? 0 : Main.atLeast(spec, "--threads", threads, 1);
    }

    /**
     * The precision given on the command line, null when none (each backend then gets its device's default). A
     * name other than fp32, tf32 or bf16, or tf32 or bf16 with {@code --backend cpu}, is a command-line error.
     */
    Precision precision(CommandSpec spec) {
        if (precision == null) return null;
        Precision p;
        try {
            p = Precision.parse(precision);
        } catch (IllegalArgumentException e) {
            throw Main.bad(spec, "--precision: " + e.getMessage());
        }
        Device device = explicitDevice();
        if (device != null && !p.supportedOn(device)) throw Main.bad(spec, unsupported(p, device));
        return p;
    }

    /** The device {@code --backend} names, null when it picks one (absent or "auto") or names none (refused later). */
    private Device explicitDevice() {
        if (backend == null || backend.equals("auto")) return null;
        try {
            return Device.fromName(backend);
        } catch (IllegalArgumentException unknown) {
            return null; // Backend.open reports it
        }
    }

    /**
     * Sets the precision of a backend a command has just opened: the one asked for, else its device's default
     * ({@link Precision#defaultFor}). A precision the backend cannot compute in (tf32 or bf16 on cpu, which the
     * automatic choice may have opened) is an {@link IllegalArgumentException}: a command-line error, exit code 2.
     *
     * @return the precision set
     */
    static Precision apply(Backend backend, Precision asked) {
        Device device = backend.kind();
        Precision p = asked != null ? asked : Precision.defaultFor(device);
        if (!p.supportedOn(device)) throw new IllegalArgumentException(unsupported(p, device));
        backend.setPrecision(p);
        return p;
    }

    static String unsupported(Precision p, Device device) {
        return "--precision " + p.cliName() + ": the " + device.cliName() + " backend computes fp32 only";
    }
}
