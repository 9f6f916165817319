package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.backend.Backend;
import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * Runs a main class in a child JVM with the AddressSanitizer runtime preloaded, for the tests that prove a
 * sanitized native library catches a planted out-of-bounds access: the access aborts the child (which would
 * take the test JVM with it), the parent reads its exit status and ASan's report.
 */
final class AsanChildJvm {
    static final long TIMEOUT_SECONDS = 60;

    private AsanChildJvm() {}

    /** What the child did: its exit status, standard output and standard error. */
    record Child(int exit, String out, String err) {
        @Override
        public String toString() {
            return "exit " + exit + "\n--- child stdout\n" + out + "--- child stderr\n" + tail(err, 6000);
        }
    }

    static String tail(String s, int max) {
        return s.length() <= max ? s : "...\n" + s.substring(s.length() - max);
    }

    /** Runs {@code main} with {@code args} and the extra environment {@code env}; fails the test on a time-out. */
    static Child run(Class<?> main, Map<String, String> env, String... args)
            throws IOException, InterruptedException, URISyntaxException {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> cmd = new ArrayList<>(List.of(java.toString(), "--enable-native-access=ALL-UNNAMED", "-Xss4m",
                "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"));
        for (String p : List.of("diffusion4j.cache.dir", "diffusion4j.native.dir")) {
            String v = System.getProperty(p);
            if (v != null) cmd.add("-D" + p + "=" + v);
        }
        cmd.addAll(List.of("-cp", classPath(main), main.getName()));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().put("LD_PRELOAD", asanRuntime());
        pb.environment().put("ASAN_OPTIONS", "detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:"
                + "allow_user_segv_handler=1:detect_stack_use_after_return=0");
        pb.environment().remove("UBSAN_OPTIONS");
        pb.environment().putAll(env);
        Path outFile = Files.createTempFile("d4j-asan-child", ".out"), errFile = Files.createTempFile("d4j-asan-child", ".err");
        pb.redirectOutput(outFile.toFile()).redirectError(errFile.toFile());
        Process p = pb.start();
        try {
            if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                fail("the ASan child " + main.getSimpleName() + " " + List.of(args) + " " + env + " did not finish in "
                        + TIMEOUT_SECONDS + " s; stderr:\n" + tail(Files.readString(errFile), 4000));
            }
            return new Child(p.exitValue(), Files.readString(outFile), Files.readString(errFile));
        } finally {
            if (p.isAlive()) p.destroyForcibly();
            Files.deleteIfExists(outFile);
            Files.deleteIfExists(errFile);
        }
    }

    /** target/classes and target/test-classes (where the main class and the library's classes were loaded from). */
    static String classPath(Class<?> main) throws URISyntaxException {
        Set<String> cp = new LinkedHashSet<>();
        cp.add(Path.of(Backend.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString());
        cp.add(Path.of(main.getProtectionDomain().getCodeSource().getLocation().toURI()).toString());
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            if (e.endsWith("classes") || e.endsWith("test-classes")) cp.add(e);
        }
        return String.join(File.pathSeparator, cp);
    }

    /** The ASan runtime of the compiler that built the sanitized libraries ({@code g++ -print-file-name=libasan.so}). */
    static String asanRuntime() throws IOException, InterruptedException {
        Process p = new ProcessBuilder("g++", "-print-file-name=libasan.so").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertTrue(p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0, "g++ -print-file-name failed: " + out);
        assertTrue(Path.of(out).isAbsolute() && Files.exists(Path.of(out)), "no ASan runtime: g++ says '" + out + "'");
        return out;
    }

    /** True inside the sanitized surefire execution (the test JVM itself runs under ASan). */
    static boolean sanitized() {
        return Boolean.getBoolean("diffusion4j.sanitized");
    }
}
