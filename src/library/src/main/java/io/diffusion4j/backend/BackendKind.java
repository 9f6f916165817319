package io.diffusion4j.backend;

import java.util.Locale;

/** The backends diffusion4j can run on, by their command-line names. */
public enum BackendKind {
    /** C++ kernels on the host CPU; always available. */
    CPU("cpu", "libd4j_cpu.so"),
    /** CUDA kernels on an NVIDIA GPU. */
    CUDA("cuda", "libd4j_cuda.so"),
    /** The CUDA kernels' sources executed on CPU threads by the project's CUDA simulator. */
    CUDA_SIM("cuda-sim", "libd4j_cudasim.so");

    private final String cliName;
    private final String library;

    BackendKind(String cliName, String library) {
        this.cliName = cliName;
        this.library = library;
    }

    /** The name used by {@code --backend}. */
    public String cliName() {
        return cliName;
    }

    /** File name of the backend's native library. */
    public String libraryName() {
        return library;
    }

    /** Parses {@code cpu}, {@code cuda} or {@code cuda-sim}. */
    public static BackendKind fromName(String name) {
        String n = name.trim().toLowerCase(Locale.ROOT);
        for (BackendKind k : values()) {
            if (k.cliName.equals(n)) return k;
        }
        throw new IllegalArgumentException("unknown backend '" + name + "': expected cpu, cuda or cuda-sim");
    }
}
