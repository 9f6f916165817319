package io.diffusion4j;

import io.diffusion4j.backend.BackendKind;
import java.util.Locale;

/**
 * Where the kernels run: the host CPU, an NVIDIA GPU, or the CUDA simulator (the CUDA kernels executed on CPU
 * threads, for testing). Every device computes the same results within float32 rounding; random numbers are
 * bit-identical on all of them.
 */
public enum Device {
    /** C++ kernels on the host CPU; always available on linux-x86_64. */
    CPU(BackendKind.CPU),
    /** CUDA kernels on an NVIDIA GPU (sm_80 or sm_90); needs the NVIDIA driver. */
    CUDA(BackendKind.CUDA),
    /** The CUDA kernels run by the project's CUDA simulator on CPU threads: slow, for tests only. */
    CUDA_SIM(BackendKind.CUDA_SIM);

    private final BackendKind kind;

    Device(BackendKind kind) {
        this.kind = kind;
    }

    BackendKind kind() {
        return kind;
    }

    /**
     * The name the command line uses for this device.
     *
     * @return {@code "cpu"}, {@code "cuda"} or {@code "cuda-sim"}
     */
    public String cliName() {
        return kind.cliName();
    }

    /**
     * Parses a command-line device name.
     *
     * @param name {@code cpu}, {@code cuda} or {@code cuda-sim} (case-insensitive)
     * @return the device
     * @throws IllegalArgumentException if the name is unknown (the message lists the valid names)
     */
    public static Device fromName(String name) {
        if (name == null) throw new IllegalArgumentException("device name must not be null: expected cpu, cuda or cuda-sim");
        BackendKind k = BackendKind.fromName(name.toLowerCase(Locale.ROOT));
        for (Device d : values()) if (d.kind == k) return d;
        throw new AssertionError(k); // every BackendKind has a Device
    }

    static Device of(BackendKind kind) {
        for (Device d : values()) if (d.kind == kind) return d;
        throw new AssertionError(kind);
    }
}
