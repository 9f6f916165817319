package io.diffusion4j;

import java.util.Locale;

/**
 * Where the kernels run: the host CPU, an NVIDIA GPU, or the CUDA simulator (the CUDA kernels executed on CPU
 * threads, for testing). Every device computes the same results within float32 rounding; random numbers are
 * bit-identical on all of them.
 */
public enum Device {
    /** C++ kernels on the host CPU; always available on linux-x86_64. */
    CPU("cpu"),
    /** CUDA kernels on an NVIDIA GPU (sm_80 or sm_90); needs the NVIDIA driver. */
    CUDA("cuda"),
    /** The CUDA kernels run by the project's CUDA simulator on CPU threads: slow, for tests only. */
    CUDA_SIM("cuda-sim");

    private final String cliName;

    Device(String cliName) {
        this.cliName = cliName;
    }

    /**
     * The name the command line uses for this device.
     *
     * @return {@code "cpu"}, {@code "cuda"} or {@code "cuda-sim"}
     */
    public String cliName() {
        return cliName;
    }

    /**
     * Parses a command-line device name.
     *
     * @param name {@code cpu}, {@code cuda} or {@code cuda-sim} (case-insensitive, surrounding blanks ignored)
     * @return the device
     * @throws IllegalArgumentException if the name is unknown (the message lists the valid names)
     */
    public static Device fromName(String name) {
        if (name == null) throw new IllegalArgumentException("device name must not be null: expected cpu, cuda or cuda-sim");
        String n = name.trim().toLowerCase(Locale.ROOT);
        for (Device d : values()) {
            if (d.cliName.equals(n)) return d;
        }
        throw new IllegalArgumentException("unknown backend '" + name + "': expected cpu, cuda or cuda-sim");
    }
}
