package io.diffusion4j.cli;

import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/** Where a command runs: {@code --backend} and {@code --threads}, the same for every command that computes. */
final class DeviceOptions {
    @Option(names = "--backend", paramLabel = "NAME",
            description = "cpu, cuda or cuda-sim (default: cuda when a GPU is usable, else cpu)")
    String backend;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads (default: one per core)")
    Integer threads;

    /** The thread count to set, 0 for the backend's default; a given count must be >= 1. */
    int threads(CommandSpec spec) {
        return threads == null ? 0 : Main.atLeast(spec, "--threads", threads, 1);
    }
}
