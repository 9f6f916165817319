package io.diffusion4j.backend;

import io.diffusion4j.Device;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Optional;
import java.util.Properties;

/**
 * Finds the native libraries and loads the front library {@code libd4j.so}.
 *
 * <p>By default the libraries packed in the jar under
 * {@code io/diffusion4j/native/<os>-<arch>/} are extracted into a per-user,
 * per-version cache directory ({@code $XDG_CACHE_HOME/diffusion4j} or
 * {@code ~/.cache/diffusion4j}, overridable with the system property
 * {@code diffusion4j.cache.dir}), each verified against the SHA-256 sum packed
 * beside it. Each file is written to a temporary name and atomically renamed,
 * so two JVMs extracting at once both end with a complete, verified file.
 *
 * <p>The system property {@code diffusion4j.native.dir} names a directory of
 * libraries to use instead (for developers of the native code); nothing is
 * extracted then.
 */
public final class NativeLibraries {
    /** System property: a directory holding libd4j.so and the backend libraries. */
    public static final String NATIVE_DIR_PROPERTY = "diffusion4j.native.dir";
    /** System property: the root of the extraction cache. */
    public static final String CACHE_DIR_PROPERTY = "diffusion4j.cache.dir";
    static final String FRONT_LIBRARY = "libd4j.so";

    private static volatile NativeLibraries loaded;

    private final Path directory;
    private final boolean extracted;

    private NativeLibraries(Path directory, boolean extracted) {
        this.directory = directory;
        this.extracted = extracted;
    }

    /** Loads the front library once per JVM and returns where the libraries are. */
    public static NativeLibraries load() {
        NativeLibraries l = loaded;
        if (l != null) return l;
        synchronized (NativeLibraries.class) {
            if (loaded == null) {
                NativeLibraries found = locate();
                Path front = found.directory.resolve(FRONT_LIBRARY);
                if (!Files.isRegularFile(front)) {
                    throw new NativeLibrariesUnavailableException("the native front library " + front
                            + " does not exist");
                }
                // The jextract bindings look symbols up with SymbolLookup.loaderLookup(),
                // which sees libraries loaded by this class loader through System.load.
                try {
                    System.load(front.toString());
                } catch (UnsatisfiedLinkError e) {
                    // e.g. a truncated or foreign file in diffusion4j.native.dir: one clear message, not a raw linker error
                    throw new NativeLibrariesUnavailableException("the native front library " + front
                            + " cannot be loaded (" + e.getMessage() + ")");
                }
                loaded = found;
            }
            return loaded;
        }
    }

    /** Directory the libraries are loaded from. */
    public Path directory() {
        return directory;
    }

    /** True when the libraries were extracted from the jar (not from {@value #NATIVE_DIR_PROPERTY}). */
    public boolean extracted() {
        return extracted;
    }

    /** System property prefix naming one backend's library explicitly, e.g. {@code diffusion4j.library.cuda-sim}. */
    public static final String LIBRARY_PROPERTY_PREFIX = "diffusion4j.library.";

    /**
     * Path of a backend's library, if this build contains it. The system property
     * {@code diffusion4j.library.<backend>} overrides it (the sanitized simulator runs this way).
     */
    public Optional<Path> library(Device kind) {
        String override = System.getProperty(LIBRARY_PROPERTY_PREFIX + kind.cliName());
        if (override != null && !override.isBlank()) {
            Path p = Path.of(override).toAbsolutePath();
            return Files.isRegularFile(p) ? Optional.of(p) : Optional.empty();
        }
        Path p = directory.resolve(libraryName(kind));
        return Files.isRegularFile(p) ? Optional.of(p) : Optional.empty();
    }

    /** File name of the profiling build of the simulator (see {@link Backend#openProfiling()}). */
    public static final String PROFILING_LIBRARY = "libd4j_cudasim_prof.so";

    /** The profiling simulator's library, if this build contains it. */
    public Optional<Path> profilingLibrary() {
        Path p = directory.resolve(PROFILING_LIBRARY);
        return Files.isRegularFile(p) ? Optional.of(p) : Optional.empty();
    }

    /** File name of a backend's native library. */
    static String libraryName(Device device) {
        return switch (device) {
            case CPU -> "libd4j_cpu.so";
            case CUDA -> "libd4j_cuda.so";
            case CUDA_SIM -> "libd4j_cudasim.so";
        };
    }

    /** The os-arch resource directory name of this platform, e.g. {@code linux-x86_64}. */
    public static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        String o = os.contains("linux") ? "linux" : os.contains("mac") ? "macos" : os.contains("win") ? "windows" : os;
        String a = switch (arch) {
            case "amd64", "x86_64" -> "x86_64";
            case "aarch64", "arm64" -> "aarch64";
            default -> arch;
        };
        return o + "-" + a;
    }

    /** The library version, from the jar's build properties. */
    public static String version() {
        try (InputStream in = NativeLibraries.class.getResourceAsStream("/io/diffusion4j/version.properties")) {
            if (in == null) return "unknown";
            Properties p = new Properties();
            p.load(in);
            return p.getProperty("version", "unknown");
        } catch (IOException e) {
            return "unknown";
        }
    }

    private static NativeLibraries locate() {
        String dir = System.getProperty(NATIVE_DIR_PROPERTY);
        if (dir != null && !dir.isBlank()) {
            return new NativeLibraries(Path.of(dir).toAbsolutePath(), false);
        }
        String resourceDir = "/io/diffusion4j/native/" + platform() + "/";
        if (NativeLibraries.class.getResource(resourceDir + FRONT_LIBRARY) == null) {
            throw new NativeLibrariesUnavailableException("this jar has no native libraries for " + platform()
                    + " (expected resource " + resourceDir + FRONT_LIBRARY + ")");
        }
        Path target = cacheRoot().resolve(version() + "-" + frontDigestPrefix(resourceDir)).resolve(platform());
        try {
            Files.createDirectories(target);
            for (Device kind : Device.values()) {
                extract(resourceDir, libraryName(kind), target);
            }
            extract(resourceDir, PROFILING_LIBRARY, target);
            extract(resourceDir, FRONT_LIBRARY, target);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot extract native libraries into " + target, e);
        }
        return new NativeLibraries(target, true);
    }

    private static Path cacheRoot() {
        String prop = System.getProperty(CACHE_DIR_PROPERTY);
        if (prop != null && !prop.isBlank()) return Path.of(prop).toAbsolutePath();
        String xdg = System.getenv("XDG_CACHE_HOME");
        if (xdg != null && !xdg.isBlank()) return Path.of(xdg, "diffusion4j");
        return Path.of(System.getProperty("user.home"), ".cache", "diffusion4j");
    }

    // A different build of the same version gets its own directory, so a stale
    // cache is never mixed with new libraries.
    private static String frontDigestPrefix(String resourceDir) {
        String sum = expectedSum(resourceDir, FRONT_LIBRARY);
        return sum == null ? "nosum" : sum.substring(0, 12);
    }

    private static String expectedSum(String resourceDir, String name) {
        try (InputStream in = NativeLibraries.class.getResourceAsStream(resourceDir + name + ".sha256")) {
            if (in == null) return null;
            String text = new String(in.readAllBytes(), StandardCharsets.US_ASCII).trim();
            int space = text.indexOf(' ');
            return (space < 0 ? text : text.substring(0, space)).toLowerCase(Locale.ROOT);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void extract(String resourceDir, String name, Path target) throws IOException {
        byte[] bytes;
        try (InputStream in = NativeLibraries.class.getResourceAsStream(resourceDir + name)) {
            if (in == null) return; // this backend was not built into the jar
            bytes = in.readAllBytes();
        }
        String expected = expectedSum(resourceDir, name);
        if (expected == null) {
            throw new NativeLibrariesUnavailableException("the jar has " + name + " but no SHA-256 sum for it");
        }
        String actual = sha256(bytes);
        if (!actual.equals(expected)) {
            throw new NativeLibrariesUnavailableException("the jar's copy of " + name + " is corrupt: SHA-256 " + actual
                    + ", expected " + expected);
        }
        Path file = target.resolve(name);
        if (Files.isRegularFile(file) && sha256(Files.readAllBytes(file)).equals(expected)) return;
        Path tmp = Files.createTempFile(target, name + ".", ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                ch.write(java.nio.ByteBuffer.wrap(bytes));
                ch.force(true);
            }
            try {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
        if (!sha256(Files.readAllBytes(file)).equals(expected)) {
            throw new NativeLibrariesUnavailableException("extracted " + file + " does not match its SHA-256 sum");
        }
    }

    static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * The native libraries cannot be found or loaded at all, so no backend can run: thrown by {@link #load()}
     * (and so by every {@code Backend.open}). The public API reports it as a {@code DeviceUnavailableException}.
     */
    public static final class NativeLibrariesUnavailableException extends D4jException {
        NativeLibrariesUnavailableException(String message) {
            super(Status.UNAVAILABLE, message);
        }
    }
}
