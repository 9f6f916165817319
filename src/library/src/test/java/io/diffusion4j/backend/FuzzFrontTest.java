package io.diffusion4j.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The libFuzzer harness of the C API (native/fuzz/fuzz_front.cpp, built with clang under ASan + UBSan into
 * target/native-build/fuzz): first every input of the committed corpus (native/fuzz/corpus: seeds and every input
 * that ever failed) is replayed, then it fuzzes for {@value #SECONDS} s from that corpus. Any crash, sanitizer report,
 * status outside the enum, failing call without a message or leaked buffer fails the test; the input is left in
 * target/fuzz-artifacts (add it to the corpus once fixed). The corpus grows in a copy under target, never in the
 * repository.
 */
class FuzzFrontTest {
    static final int SECONDS = 45;

    @Test
    void cApiSurvivesCoverageGuidedFuzzing() throws IOException, InterruptedException {
        Path build = Path.of("target", "native-build", "fuzz").toAbsolutePath();
        Path exe = build.resolve("d4j_fuzz_front"), lib = build.resolve("libd4j_cpu_fuzz.so");
        assertTrue(Files.isExecutable(exe) && Files.isRegularFile(lib), exe + " or " + lib + " is missing: the test-only "
                + "native build needs clang++ (Debian package clang) for the libFuzzer harness");
        Path root = Path.of(System.getProperty("diffusion4j.repo.root", "../..")).toAbsolutePath();
        Path seeds = root.resolve("native/fuzz/corpus");
        Path corpus = Path.of("target", "fuzz-corpus").toAbsolutePath(), artifacts = Path.of("target", "fuzz-artifacts").toAbsolutePath();
        Files.createDirectories(corpus);
        Files.createDirectories(artifacts);
        int committed = 0;
        try (Stream<Path> s = Files.list(seeds)) {
            for (Path p : s.toList()) {
                Files.copy(p, corpus.resolve(p.getFileName()), StandardCopyOption.REPLACE_EXISTING);
                committed++;
            }
        }
        assertTrue(committed > 0, "no committed corpus in " + seeds);
        ProcessBuilder pb = new ProcessBuilder(exe.toString(), corpus.toString(), "-max_total_time=" + SECONDS,
                "-timeout=20", "-rss_limit_mb=2048", "-print_final_stats=1", "-artifact_prefix=" + artifacts + "/");
        pb.environment().put("D4J_FUZZ_BACKEND", lib.toString());
        pb.environment().remove("LD_PRELOAD"); // the JVM's sanitizer runtime (gcc's) must not enter clang's fuzzer
        pb.environment().put("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1");
        pb.environment().put("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
        Path log = Files.createTempFile("d4j-fuzz-front", ".log");
        pb.redirectErrorStream(true).redirectOutput(log.toFile());
        Process p = pb.start();
        try {
            if (!p.waitFor(SECONDS + 120, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                fail("the fuzzer did not stop after " + SECONDS + " s:\n" + tail(Files.readString(log)));
            }
            String out = Files.readString(log, StandardCharsets.UTF_8);
            assertEquals(0, p.exitValue(), "the fuzzer found a failing input (see " + artifacts + "):\n" + tail(out));
            Matcher runs = Pattern.compile("stat::number_of_executed_units: (\\d+)").matcher(out);
            Matcher cov = Pattern.compile("DONE +cov: (\\d+)").matcher(out);
            assertTrue(runs.find() && cov.find(), tail(out));
            long executions = Long.parseLong(runs.group(1));
            assertTrue(executions > committed, "the fuzzer ran only the corpus: " + tail(out));
            String summary = String.format("fuzz_front: %d committed inputs replayed, %d executions in %d s, %s coverage "
                    + "edges, no failure", committed, executions, SECONDS, cov.group(1));
            System.out.println(summary);
            Files.writeString(Path.of("target", "fuzz-front-summary.txt"), summary + "\n");
        } finally {
            if (p.isAlive()) p.destroyForcibly();
            Files.deleteIfExists(log);
        }
    }

    static String tail(String s) {
        List<String> lines = s.lines().toList();
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 60), lines.size()));
    }
}
