package io.diffusion4j.build;

import io.diffusion4j.testutil.RepoPaths;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The build's ptxas check: the report of the real CUDA build lists every
 * kernel for sm_80 and sm_90 without spills, and the check script fails on a
 * spill unless the kernel is allow-listed.
 */
class PtxasReportTest {
    static final Path SCRIPT = RepoPaths.of("native/tools/check_ptxas.cmake");
    static final Path REPORT = Path.of("target/native-build/ptxas-report.tsv");

    @Test
    void realBuildReportCoversEveryKernelForBothArchitecturesWithoutSpills() throws IOException {
        assumeTrue(Files.exists(REPORT), "the CUDA backend was not built (no nvcc), so there is no ptxas report");
        List<String> rows = Files.readAllLines(REPORT);
        assertTrue(rows.get(0).startsWith("kernel\tarch\tregisters"), rows.get(0));
        long sm80 = rows.stream().skip(1).filter(r -> r.split("\t")[1].equals("sm_80")).count();
        long sm90 = rows.stream().skip(1).filter(r -> r.split("\t")[1].equals("sm_90")).count();
        assertEquals(sm80, sm90, "every kernel is compiled for both architectures");
        assertTrue(sm80 >= 8, "expected at least 8 kernels, report has " + sm80);
        for (String r : rows.subList(1, rows.size())) {
            String[] f = r.split("\t");
            assertEquals("0", f[5], "spill stores in " + r);
            assertEquals("0", f[6], "spill loads in " + r);
        }
    }

    @Test
    void spillFailsUnlessAllowListed(@TempDir Path dir) throws Exception {
        Path logs = Files.createDirectories(dir.resolve("logs"));
        Files.writeString(logs.resolve("k.log"), String.join("\n",
                "ptxas info    : Compiling entry function '_ZN3d4j4cuda11spilly_kernEv' for 'sm_90'",
                "ptxas info    : Function properties for _ZN3d4j4cuda11spilly_kernEv",
                "    48 bytes stack frame, 16 bytes spill stores, 12 bytes spill loads",
                "ptxas info    : Used 255 registers, used 0 barriers", ""));
        Path empty = Files.writeString(dir.resolve("allow-empty.txt"), "# none\n");
        Path allow = Files.writeString(dir.resolve("allow.txt"), "spilly_kern needs 300 live values, measured faster\n");
        Result bad = run(logs, dir.resolve("r1.tsv"), empty);
        assertNotEquals(0, bad.exit, bad.output);
        assertTrue(bad.output.contains("spilly_kern (sm_90): 16 bytes spill stores"), bad.output);
        Result ok = run(logs, dir.resolve("r2.tsv"), allow);
        assertEquals(0, ok.exit, ok.output);
        assertTrue(Files.readString(dir.resolve("r2.tsv")).contains("spilly_kern\tsm_90\t255\t0\t48\t16\t12"));
    }

    record Result(int exit, String output) {}

    static Result run(Path logs, Path report, Path allow) throws Exception {
        Process p = new ProcessBuilder("cmake", "-DLOGDIR=" + logs, "-DREPORT=" + report, "-DALLOWLIST=" + allow, "-P",
                SCRIPT.toString()).redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "cmake -P did not finish");
        return new Result(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
    }
}
