package io.diffusion4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.diffusion4j.Device;
import io.diffusion4j.testutil.DeviceBackends;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MainTest {
    static CliRun run(String... args) {
        return CliRun.of(args);
    }

    /** The backend line of info's output: "  <name> <available|unavailable> <detail>". */
    static Matcher backendLine(String out, String name) {
        Matcher m = Pattern.compile("(?m)^  " + Pattern.quote(name) + " +(available|unavailable) +(\\S.*)$").matcher(out);
        assertTrue(m.find(), "no line for backend " + name + " in:\n" + out);
        return m;
    }

    /** One sentence: one line, no second sentence, no exception class names or stack frames. */
    static void assertOneSentence(String s) {
        assertFalse(s.isBlank(), "empty reason");
        assertFalse(s.contains("\n") || s.contains("\r"), "several lines: " + s);
        assertFalse(Pattern.compile("[.!?]\\s+\\S").matcher(s).find(), "more than one sentence: " + s);
        assertFalse(s.contains("Exception") || s.contains("Error:") || s.contains("UnsatisfiedLinkError") || s.contains("\tat "),
                "stack-trace-like text: " + s);
        assertTrue(s.length() < 300, "too long for one sentence: " + s);
    }

    static boolean cudaUsable() {
        return DeviceBackends.usable(Device.CUDA);
    }

    /** An explicit --backend cuda that cannot start is an error with the reason, never a run on another backend. */
    @Test
    void anExplicitCudaThatCannotStartIsAnErrorWithTheReason(@TempDir Path tmp) {
        assumeFalse(cudaUsable(), "a CUDA device is usable here");
        for (String[] args : List.of(new String[] {"demo", "--backend", "cuda", "--steps", "1", "--out", tmp.toString()},
                new String[] {"selftest", "--backend", "cuda"})) {
            CliRun r = run(args);
            assertEquals(1, r.exit(), r.toString());
            assertEquals("", r.out(), r.toString());
            List<String> lines = r.err().strip().lines().toList();
            assertEquals(1, lines.size(), r.toString());
            assertTrue(lines.get(0).contains("the cuda backend cannot run here: "), r.toString());
            assertFalse(lines.get(0).contains("Exception") || lines.get(0).contains("\tat "), r.toString());
        }
    }

    @Test
    void infoListsTheBackendsAndTheDefault() {
        CliRun r = run("info");
        assertEquals(0, r.exit(), r.toString());
        assertEquals("", r.err(), r.toString());
        Matcher cpu = backendLine(r.out(), "cpu");
        assertEquals("available", cpu.group(1), r.toString());
        assertTrue(cpu.group(2).startsWith("CPU"), "cpu description: " + cpu.group(2));

        Matcher cuda = backendLine(r.out(), "cuda");
        boolean cudaHere = cudaUsable();
        assertEquals(cudaHere ? "available" : "unavailable", cuda.group(1), r.toString());
        if (!cudaHere) assertOneSentence(cuda.group(2));

        Matcher sim = backendLine(r.out(), "cuda-sim");
        if (sim.group(1).equals("unavailable")) assertOneSentence(sim.group(2));

        assertTrue(r.out().contains("\ndefault backend: " + (cudaHere ? "cuda" : "cpu") + "\n"), r.toString());
        assertTrue(r.out().startsWith("diffusion4j "), r.toString());
    }

    @Test
    void infoForOneBackend() {
        CliRun r = run("info", "--backend", "cpu");
        assertEquals(0, r.exit(), r.toString());
        backendLine(r.out(), "cpu");
        assertFalse(r.out().contains("  cuda "), "only the cpu backend was asked for: " + r);
        assertFalse(r.out().contains("  cuda-sim "), r.toString());
    }

    @Test
    void unknownCommandReturns2WithUsage() {
        CliRun r = run("frobnicate");
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("unknown command 'frobnicate'"), r.toString());
        assertTrue(r.err().contains("usage:") && r.err().contains("info"), "usage expected on stderr: " + r);
        assertEquals("", r.out(), r.toString());
    }

    @Test
    void noArgumentsPrintsUsageAndReturns2HelpReturns0() {
        CliRun none = run();
        assertEquals(2, none.exit(), none.toString());
        assertTrue(none.out().contains("usage:"), none.toString());
        for (String h : List.of("help", "--help", "-h")) {
            CliRun r = run(h);
            assertEquals(0, r.exit(), r.toString());
            assertTrue(r.out().contains("usage:") && r.out().contains("commands:"), r.toString());
        }
    }

    @Test
    void infoWithAnUnknownOptionReturns2WithAMessage() {
        CliRun r = run("info", "--bogus");
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().startsWith("error: "), r.toString());
        assertTrue(r.err().contains("unknown option '--bogus'"), r.toString());
        assertEquals("", r.out(), "nothing printed before the option error: " + r);
    }

    @Test
    void infoWithABadBackendOptionReturns2WithAMessage() {
        CliRun missing = run("info", "--backend");
        assertEquals(2, missing.exit(), missing.toString());
        assertTrue(missing.err().contains("--backend needs a value"), missing.toString());

        CliRun unknown = run("info", "--backend", "tpu");
        assertEquals(2, unknown.exit(), unknown.toString());
        assertTrue(unknown.err().contains("unknown backend 'tpu'"), unknown.toString());
        assertEquals("", unknown.out(), unknown.toString());
    }

    /** Every command's help, usage and option errors come from one mechanism (picocli), in one format. */
    @Test
    void everyCommandHasGeneratedHelpAndTheSameErrorFormat() {
        var commands = Main.commandLine(System.out, System.err).getSubcommands();
        assertEquals(List.of("info", "selftest", "train", "sample", "eval-nll", "demo", "serve", "help"),
                List.copyOf(commands.keySet()));
        CliRun top = run("--help");
        for (String name : commands.keySet()) {
            assertTrue(top.out().contains("\n  " + name + " "), "top-level help lists " + name + ": " + top);
            if (name.equals("help")) continue;
            CliRun help = run(name, "--help");
            assertEquals(0, help.exit(), help.toString());
            assertTrue(help.out().startsWith("usage: diffusion4j " + name + " "), help.toString());
            assertTrue(help.out().contains("-h, --help"), help.toString());
            CliRun bad = run(name, "--no-such-option");
            assertEquals(2, bad.exit(), bad.toString());
            // the first problem picocli meets: the unknown option, or a required option that is missing
            assertTrue(bad.err().startsWith("error: " + name + ": unknown option '--no-such-option'\n")
                    || bad.err().matches("(?s)error: " + name + ": --\\S+ \\S+ is required\n.*"), bad.toString());
            assertTrue(bad.err().contains("usage: diffusion4j " + name + " "), bad.toString());
        }
    }
}
