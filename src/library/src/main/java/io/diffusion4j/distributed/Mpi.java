package io.diffusion4j.distributed;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The MPI library of a data-parallel job, reached through jextract bindings of {@code mpi.h}: Open MPI's
 * ({@code io.diffusion4j.bindings.mpi}) or MPICH's ({@code io.diffusion4j.bindings.mpich}), whichever the job's
 * launcher belongs to ({@link MpiAbi}). Nothing here is touched unless a job asks for it, so the library needs no MPI
 * installed otherwise. One process initialises MPI once ({@link #init}); every call checks its return code and
 * turns an error into an {@link MpiException} with MPI's own message (the world communicator is switched to
 * {@code MPI_ERRORS_RETURN} for that, instead of the default that aborts the job from inside the call).
 */
public final class Mpi {
    /**
     * The system property naming the MPI shared library (default: by the launcher's variables, Open MPI's
     * {@code libmpi.so.40} or MPICH's {@code libmpich.so.12}, then the other).
     */
    public static final String LIBRARY_PROPERTY = "diffusion4j.mpi.library";

    /** Environment variables a launcher sets for its ranks (Open MPI's mpirun, PMIx, Hydra/PMI, Slurm). */
    private static final List<String> LAUNCHER_VARIABLES = List.of("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
            "PMI_RANK", "SLURM_NTASKS");

    private static final int RTLD_NOW = 2, RTLD_GLOBAL = 0x100;

    private static Mpi instance; // guarded by Mpi.class

    private final MpiAbi abi;
    private final int rank, size;
    private final String libraryVersion;
    private boolean finalized; // guarded by this

    private Mpi(MpiAbi abi) {
        this.abi = abi;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ValueLayout.JAVA_INT);
            check(abi.rank(out), "MPI_Comm_rank");
            this.rank = out.get(ValueLayout.JAVA_INT, 0);
            check(abi.size(out), "MPI_Comm_size");
            this.size = out.get(ValueLayout.JAVA_INT, 0);
            MemorySegment text = a.allocate(abi.maxLibraryVersion() + 1L);
            check(abi.libraryVersion(text, out), "MPI_Get_library_version");
            String v = text.getString(0).strip();
            int nl = v.indexOf('\n');
            this.libraryVersion = nl < 0 ? v : v.substring(0, nl).strip();
        }
    }

    /**
     * Loads the MPI library and initialises MPI for this process (once; later calls return the same instance).
     *
     * @param environment the process environment (to tell a launcher's rank from a process started by hand)
     * @throws MpiException when no launcher started this process, the library is missing or initialisation fails
     */
    public static synchronized Mpi init(Map<String, String> environment) {
        if (instance != null) return instance;
        if (LAUNCHER_VARIABLES.stream().noneMatch(environment::containsKey)) {
            throw new MpiException("this process was not started by an MPI launcher (none of "
                    + String.join(", ", LAUNCHER_VARIABLES) + " is set): run it as mpirun -np N java ... --distributed");
        }
        // UCX (MPICH's transport, and Open MPI's where present) installs a SIGSEGV handler by default that turns the
        // JVM's own use of the signal (implicit null checks) into a crash: off, unless the user set these variables.
        // Before the library is opened: UCX reads its configuration when it is loaded.
        setenv("UCX_ERROR_SIGNALS", "", false);
        setenv("UCX_HANDLE_ERRORS", "none", false);
        load(environment);
        SymbolLookup symbols = SymbolLookup.loaderLookup();
        MpiAbi abi = symbols.find(OpenMpiAbi.MARKER).isPresent() ? new OpenMpiAbi(symbols) : new MpichAbi();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment flag = a.allocate(ValueLayout.JAVA_INT);
            check(abi, abi.initialized(flag), "MPI_Initialized");
            if (flag.get(ValueLayout.JAVA_INT, 0) == 0) {
                // FUNNELED: only the thread that initialised MPI calls it (the trainer's thread)
                MemorySegment provided = a.allocate(ValueLayout.JAVA_INT);
                check(abi, abi.initThreadFunneled(provided), "MPI_Init_thread");
                int level = provided.get(ValueLayout.JAVA_INT, 0);
                if (level < abi.funneled()) {
                    throw new MpiException("the MPI library provides thread level " + level + ", below MPI_THREAD_FUNNELED ("
                            + abi.funneled() + "): the JVM has other threads, so it needs at least that");
                }
            }
            check(abi, abi.errorsReturn(), "MPI_Comm_set_errhandler");
        }
        instance = new Mpi(abi);
        return instance;
    }

    /**
     * Opens the library with RTLD_GLOBAL first: Open MPI loads its components as plugins that resolve symbols of
     * libmpi and libopen-pal from the global namespace, which System.load's private (RTLD_LOCAL) open would hide.
     */
    private static void load(Map<String, String> environment) {
        String asked = System.getProperty(LIBRARY_PROPERTY);
        List<String> openMpi = List.of("libmpi.so.40", "libmpi.so"), mpich = List.of("libmpich.so.12", "libmpich.so");
        // Open MPI's mpirun sets OMPI_*; MPICH's Hydra sets PMI_* without them
        boolean hydra = !environment.containsKey("OMPI_COMM_WORLD_SIZE") && environment.containsKey("PMI_SIZE");
        List<String> candidates = new ArrayList<>();
        if (asked != null) {
            candidates.add(asked);
        } else {
            candidates.addAll(hydra ? mpich : openMpi);
            candidates.addAll(hydra ? openMpi : mpich);
        }
        Linker linker = Linker.nativeLinker();
        MethodHandle dlopen = linker.downcallHandle(linker.defaultLookup().findOrThrow("dlopen"),
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        MethodHandle dlerror = linker.downcallHandle(linker.defaultLookup().findOrThrow("dlerror"),
                FunctionDescriptor.of(ValueLayout.ADDRESS));
        List<String> failures = new ArrayList<>();
        for (String name : candidates) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment h = (MemorySegment) dlopen.invokeExact(a.allocateFrom(name), RTLD_NOW | RTLD_GLOBAL);
                if (h.equals(MemorySegment.NULL)) {
                    MemorySegment e = (MemorySegment) dlerror.invokeExact();
                    failures.add(e.equals(MemorySegment.NULL) ? name : e.reinterpret(4096).getString(0));
                    continue;
                }
            } catch (Throwable t) {
                throw new MpiException("cannot call dlopen: " + t, t);
            }
            // the same library again through System.load (a second open of the same file: no new copy), so that
            // this class loader's lookup, which the jextract bindings use, sees its symbols
            Path resolved = resolve(name);
            if (resolved == null) {
                throw new MpiException("MPI library " + name + " was opened but its file was not found on the "
                        + "library path; set -D" + LIBRARY_PROPERTY + "=/path/to/libmpi.so");
            }
            System.load(resolved.toString());
            return;
        }
        throw new MpiException("no MPI library could be loaded (" + String.join("; ", failures) + "): install Open MPI "
                + "(Debian: openmpi-bin and libopenmpi-dev) or MPICH (mpich, libmpich-dev), or set -D" + LIBRARY_PROPERTY
                + "=/path/to/libmpi.so");
    }

    /**
     * libc's setenv, for libraries that read the process environment when they start (System.getenv is a copy taken
     * at JVM start that setenv does not change).
     */
    public static void setenv(String name, String value, boolean overwrite) {
        Linker linker = Linker.nativeLinker();
        MethodHandle h = linker.downcallHandle(linker.defaultLookup().findOrThrow("setenv"),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        int rc;
        try (Arena a = Arena.ofConfined()) {
            rc = (int) h.invokeExact(a.allocateFrom(name), a.allocateFrom(value), overwrite ? 1 : 0);
        } catch (Throwable t) {
            throw new MpiException("setenv(" + name + ") failed: " + t, t);
        }
        if (rc != 0) throw new MpiException("setenv(" + name + ") failed");
    }

    /** The file dlopen found for {@code name}: read back from /proc/self/maps, where the mapping names it. */
    private static Path resolve(String name) {
        if (name.indexOf('/') >= 0) return Path.of(name);
        try {
            String base = name.endsWith(".so") ? name : name.substring(0, name.indexOf(".so") + 3);
            for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
                int slash = line.indexOf('/');
                if (slash < 0) continue;
                String file = line.substring(slash);
                if (Path.of(file).getFileName().toString().startsWith(base)) return Path.of(file);
            }
        } catch (java.io.IOException | RuntimeException e) {
            return null;
        }
        return null;
    }

    /** This process's rank in the world communicator. */
    public int rank() {
        return rank;
    }

    /** The number of ranks. */
    public int size() {
        return size;
    }

    /** "Open MPI" or "MPICH": whose binary interface the loaded library has. */
    public String implementation() {
        return abi.name();
    }

    /** The first line of MPI_Get_library_version, e.g. "Open MPI v4.1.4, ...". */
    public String libraryVersion() {
        return libraryVersion;
    }

    /**
     * Starts an all-to-all of {@code count} floats per rank: block {@code j} of {@code send} goes to rank {@code j},
     * block {@code i} of {@code recv} comes from rank {@code i}. Non-blocking, so that the caller can give up on a
     * rank that never joins (a blocking collective would wait forever).
     */
    MemorySegment allToAll(MemorySegment send, MemorySegment recv, int count, Arena a) {
        MemorySegment request = a.allocate(abi.requestBytes(), 8);
        check(abi.allToAllFloats(send, recv, count, request), "MPI_Ialltoall");
        return request;
    }

    /** Starts an all-gather of {@code count} floats per rank into {@code recv} (rank order). */
    MemorySegment allGather(MemorySegment send, MemorySegment recv, int count, Arena a) {
        MemorySegment request = a.allocate(abi.requestBytes(), 8);
        check(abi.allGatherFloats(send, recv, count, request), "MPI_Iallgather");
        return request;
    }

    /** Starts an all-gather of {@code count} longs per rank into {@code recv} (rank order). */
    MemorySegment allGatherLongs(MemorySegment send, MemorySegment recv, int count, Arena a) {
        MemorySegment request = a.allocate(abi.requestBytes(), 8);
        check(abi.allGatherLongs(send, recv, count, request), "MPI_Iallgather");
        return request;
    }

    /** Starts a send of {@code count} longs; the returned request is polled with {@link #test}. */
    MemorySegment isend(MemorySegment buf, int count, int dest, int tag, Arena a) {
        MemorySegment request = a.allocate(abi.requestBytes(), 8);
        check(abi.sendLongs(buf, count, dest, tag, request), "MPI_Isend");
        return request;
    }

    /** Starts a receive of {@code count} longs from {@code source}. */
    MemorySegment irecv(MemorySegment buf, int count, int source, int tag, Arena a) {
        MemorySegment request = a.allocate(abi.requestBytes(), 8);
        check(abi.receiveLongs(buf, count, source, tag, request), "MPI_Irecv");
        return request;
    }

    /** Whether the request has completed (then MPI has freed it); {@code flag} is an int of scratch. */
    boolean test(MemorySegment request, MemorySegment flag) {
        check(abi.test(request, flag), "MPI_Test");
        return flag.get(ValueLayout.JAVA_INT, 0) != 0;
    }

    /**
     * Ends the whole job: MPI_Abort makes the launcher kill every rank, which is how a rank that found another one
     * dead or hung stops the job instead of waiting forever. Does not return.
     */
    public void abort(int code) {
        abi.abort(code);
        Runtime.getRuntime().halt(code); // MPI_Abort should not return; if it does, this process still ends
    }

    /** Shuts MPI down (all ranks must call it); idempotent. */
    public synchronized void finish() {
        if (finalized) return;
        finalized = true;
        check(abi.finish(), "MPI_Finalize");
    }

    private void check(int code, String call) {
        check(abi, code, call);
    }

    private static void check(MpiAbi abi, int code, String call) {
        if (code == 0) return;
        String text;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(abi.maxErrorString() + 1L);
            MemorySegment len = a.allocate(ValueLayout.JAVA_INT);
            text = abi.errorString(code, s, len) == 0 ? s.getString(0) : "error " + code;
        } catch (RuntimeException e) {
            text = "error " + code;
        }
        throw new MpiException(String.format(Locale.ROOT, "%s failed: %s", call, text));
    }
}
