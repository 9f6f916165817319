package io.diffusion4j.cli;

import io.diffusion4j.backend.Backend;
import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/** The command line of a child JVM running the CLI, as the tests that start real processes need it. */
public final class ChildJava {
    private ChildJava() {}

    /**
     * {@code java} of this JVM with native access, the CLI's stack size and this JVM's library and cache folders,
     * then {@code jvmOptions}, the class path of {@link #classPath()}, {@code mainClass} and {@code args}.
     */
    public static List<String> command(List<String> jvmOptions, String mainClass, List<String> args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-Xss4m"));
        for (String p : List.of("diffusion4j.cache.dir", "diffusion4j.native.dir")) {
            String v = System.getProperty(p);
            if (v != null) cmd.add("-D" + p + "=" + v);
        }
        cmd.addAll(jvmOptions);
        cmd.addAll(List.of("-cp", classPath(), mainClass));
        cmd.addAll(args);
        return cmd;
    }

    /** A process builder for {@code cmd}, output and errors merged, without the ASan execution's LD_PRELOAD. */
    public static ProcessBuilder builder(List<String> cmd) {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().remove("LD_PRELOAD"); // the sanitizer runtime is for the test JVM, not its children
        return pb;
    }

    /** The library jar or classes, the CLI's classes and picocli: what {@code Main} needs. */
    public static String classPath() throws Exception {
        Set<String> cp = new LinkedHashSet<>();
        cp.add(Path.of(Backend.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString());
        cp.add(Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString());
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            if (e.endsWith("classes") || e.contains("picocli")) cp.add(e); // the CLI's own classes and its one dependency
        }
        return String.join(File.pathSeparator, cp);
    }
}
