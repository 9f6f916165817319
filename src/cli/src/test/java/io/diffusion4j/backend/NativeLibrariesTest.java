package io.diffusion4j.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import java.io.IOException;
import java.io.InputStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Extraction of the native libraries from the classpath into the cache, exercised in separate JVMs
 * (the front library can be loaded only once per JVM): concurrent extraction, a corrupted cache, and
 * a {@code diffusion4j.native.dir} without usable libraries.
 */
class NativeLibrariesTest {
    /** The library module's classes: the packed natives and their sums as the jar holds them. */
    static final Path CLASSES = Path.of(System.getProperty("diffusion4j.repo.root", "../.."), "src", "library", "target",
            "classes").toAbsolutePath().normalize();
    static final String RESOURCE_DIR = "/io/diffusion4j/native/" + NativeLibraries.platform() + "/";

    record Result(int exit, String out, String err) {
        @Override
        public String toString() {
            return "exit " + exit + "\n--- stdout\n" + out + "--- stderr\n" + err;
        }
    }

    static ProcessBuilder cli(Map<String, String> props, Path logDir, String name, String... args) {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> cmd = new ArrayList<>();
        cmd.add(java.toString());
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.add("-cp");
        // the command-line tool as `java -jar` runs it: the library, this module's classes and picocli
        cmd.add(System.getProperty("java.class.path"));
        props.forEach((k, v) -> cmd.add("-D" + k + "=" + v));
        cmd.add("io.diffusion4j.cli.Main");
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.redirectOutput(logDir.resolve(name + ".out").toFile());
        pb.redirectError(logDir.resolve(name + ".err").toFile());
        return pb;
    }

    static Result finish(Process p, Path logDir, String name) throws Exception {
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("the JVM '" + name + "' did not finish within 60 s");
        }
        return new Result(p.exitValue(), Files.readString(logDir.resolve(name + ".out")),
                Files.readString(logDir.resolve(name + ".err")));
    }

    static Result run(Map<String, String> props, Path logDir, String name, String... args) throws Exception {
        return finish(cli(props, logDir, name, args).start(), logDir, name);
    }

    /** The SHA-256 sums packed beside the libraries, by library file name. */
    static Map<String, String> expectedSums() throws IOException {
        Map<String, String> sums = new TreeMap<>();
        for (Device k : Device.values()) addSum(sums, NativeLibraries.libraryName(k));
        addSum(sums, NativeLibraries.FRONT_LIBRARY);
        addSum(sums, NativeLibraries.PROFILING_LIBRARY);
        assertTrue(sums.containsKey("libd4j.so") && sums.containsKey("libd4j_cpu.so"), "packed sums: " + sums);
        return sums;
    }

    static void addSum(Map<String, String> sums, String lib) throws IOException {
        try (InputStream in = NativeLibrariesTest.class.getResourceAsStream(RESOURCE_DIR + lib + ".sha256")) {
            if (in == null) return;
            String text = new String(in.readAllBytes(), StandardCharsets.US_ASCII).trim();
            sums.put(lib, text.split("\\s+")[0].toLowerCase(Locale.ROOT));
        }
    }

    /** The single per-version platform directory the cache root holds after extraction. */
    static Path extractedDir(Path cacheRoot) throws IOException {
        try (Stream<Path> s = Files.walk(cacheRoot)) {
            List<Path> dirs = s.filter(p -> p.getFileName().toString().equals("libd4j.so")).map(Path::getParent).toList();
            assertEquals(1, dirs.size(), "expected exactly one extraction directory under " + cacheRoot + ": " + dirs);
            return dirs.get(0);
        }
    }

    static void assertExtractedMatchSums(Path dir) throws IOException {
        Map<String, String> sums = expectedSums();
        for (Map.Entry<String, String> e : sums.entrySet()) {
            Path f = dir.resolve(e.getKey());
            assertTrue(Files.isRegularFile(f), "missing " + f);
            assertEquals(e.getValue(), NativeLibraries.sha256(Files.readAllBytes(f)), "SHA-256 of " + f);
        }
        try (Stream<Path> s = Files.list(dir)) {
            List<String> stray = s.map(p -> p.getFileName().toString()).filter(n -> !sums.containsKey(n)).toList();
            assertTrue(stray.isEmpty(), "temporary or unexpected files left in " + dir + ": " + stray);
        }
    }

    @Test
    void concurrentExtractionByThreeJvmsEndsWithVerifiedLibraries(@TempDir Path tmp) throws Exception {
        Path cache = tmp.resolve("cache");
        Map<String, String> props = Map.of(NativeLibraries.CACHE_DIR_PROPERTY, cache.toString());
        List<Process> procs = new ArrayList<>();
        for (int i = 0; i < 3; i++) procs.add(cli(props, tmp, "jvm" + i, "info").start());
        for (int i = 0; i < 3; i++) {
            Result r = finish(procs.get(i), tmp, "jvm" + i);
            assertEquals(0, r.exit(), "JVM " + i + ": " + r);
            assertTrue(r.out().contains("SHA-256 verified"), r.toString());
            assertTrue(r.out().matches("(?s).*\\n  cpu +available .*"), r.toString());
        }
        assertExtractedMatchSums(extractedDir(cache));
    }

    @Test
    void aCorruptedCachedLibraryIsDetectedAndReplaced(@TempDir Path tmp) throws Exception {
        Path cache = tmp.resolve("cache");
        Map<String, String> props = Map.of(NativeLibraries.CACHE_DIR_PROPERTY, cache.toString());
        Result first = run(props, tmp, "first", "info");
        assertEquals(0, first.exit(), first.toString());
        Path dir = extractedDir(cache);
        Map<String, String> sums = expectedSums();

        // flip bytes in the middle of the CPU backend and truncate the front library
        Path cpu = dir.resolve("libd4j_cpu.so");
        try (RandomAccessFile f = new RandomAccessFile(cpu.toFile(), "rw")) {
            long mid = f.length() / 2;
            f.seek(mid);
            byte[] junk = new byte[256];
            f.readFully(junk);
            for (int i = 0; i < junk.length; i++) junk[i] ^= (byte) 0x5A;
            f.seek(mid);
            f.write(junk);
        }
        Path front = dir.resolve("libd4j.so");
        try (RandomAccessFile f = new RandomAccessFile(front.toFile(), "rw")) {
            f.setLength(f.length() / 3);
        }
        assertNotEquals(sums.get("libd4j_cpu.so"), NativeLibraries.sha256(Files.readAllBytes(cpu)));
        assertNotEquals(sums.get("libd4j.so"), NativeLibraries.sha256(Files.readAllBytes(front)));

        Result second = run(props, tmp, "second", "info");
        assertEquals(0, second.exit(), "a fresh JVM on a corrupted cache: " + second);
        assertTrue(second.out().matches("(?s).*\\n  cpu +available .*"), second.toString());
        assertEquals(dir, extractedDir(cache), "the same cache directory is reused");
        assertExtractedMatchSums(dir);

        // a cached file replaced wholesale by another library (same size class, wrong content) too
        Files.copy(dir.resolve("libd4j.so"), cpu, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Result third = run(props, tmp, "third", "info");
        assertEquals(0, third.exit(), third.toString());
        assertTrue(third.out().matches("(?s).*\\n  cpu +available .*"), third.toString());
        assertExtractedMatchSums(dir);
    }

    static void assertCleanError(Result r, String... tokens) {
        assertEquals(1, r.exit(), r.toString());
        for (String t : tokens) assertTrue(r.err().contains(t), "stderr should mention '" + t + "': " + r);
        assertFalse(r.err().contains("Exception in thread"), "a crash, not a clear error: " + r);
        assertFalse(r.err().contains("\tat "), "a stack trace, not a clear error: " + r);
        assertFalse(r.err().contains("UnsatisfiedLinkError"), "a raw linker error: " + r);
        assertFalse(r.err().contains("hs_err"), "the JVM crashed: " + r);
    }

    @Test
    void nativeDirWithoutLibrariesGivesAClearError(@TempDir Path tmp) throws Exception {
        Path empty = Files.createDirectory(tmp.resolve("empty"));
        Result r = run(Map.of(NativeLibraries.NATIVE_DIR_PROPERTY, empty.toString()), tmp, "empty", "info");
        assertCleanError(r, "error (UNAVAILABLE)", empty.resolve("libd4j.so").toString(), "does not exist");
        assertEquals(1, r.err().strip().lines().count(), "one line: " + r);
    }

    @Test
    void nativeDirWithAnUnloadableFrontLibraryGivesAClearError(@TempDir Path tmp) throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("garbage"));
        Files.writeString(dir.resolve("libd4j.so"), "this is not an ELF file\n");
        Result r = run(Map.of(NativeLibraries.NATIVE_DIR_PROPERTY, dir.toString()), tmp, "garbage", "info");
        assertCleanError(r, "error (UNAVAILABLE)", dir.resolve("libd4j.so").toString(), "cannot be loaded");
    }

    @Test
    void nativeDirWithOnlyTheFrontLibrarySaysTheCpuBackendIsMissing(@TempDir Path tmp) throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("frontonly"));
        try (InputStream in = NativeLibrariesTest.class.getResourceAsStream(RESOURCE_DIR + "libd4j.so")) {
            assertTrue(in != null, "libd4j.so is not on the test classpath");
            Files.copy(in, dir.resolve("libd4j.so"));
        }
        Result r = run(Map.of(NativeLibraries.NATIVE_DIR_PROPERTY, dir.toString()), tmp, "frontonly", "info");
        assertCleanError(r, "the cpu backend is not part of this build", "libd4j_cpu.so");
        assertTrue(r.out().contains("(from -D" + NativeLibraries.NATIVE_DIR_PROPERTY + ")"), r.toString());
    }
}
