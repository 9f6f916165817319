package io.diffusion4j.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The simulator's warp matrix operations (native/cudasim/mma.h) checked by their native driver
 * (native/tests/wmma_sim_test.cu, built as target/native-build/d4j_wmma_test, or
 * {@code -Ddiffusion4j.wmma.test}): tf32 and bf16 products bit for bit against independent host
 * references, scrambled fragment layouts that change per launch and defeat a kernel assuming one, and
 * the faults a GPU leaves undefined. Every check the driver makes must be reported and pass.
 */
class WmmaSimulatorTest {
    @Test
    void everyCheckOfTheDriverPasses() throws IOException, InterruptedException {
        String p = System.getProperty("diffusion4j.wmma.test");
        Path exe = (p != null ? Path.of(p) : Path.of("target/native-build/d4j_wmma_test")).toAbsolutePath();
        assertTrue(Files.isExecutable(exe), exe + " was not built (mvn verify builds it in process-test-resources)");
        Process proc = new ProcessBuilder(exe.toString()).redirectErrorStream(true).start();
        String out = new String(proc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(proc.waitFor(120, TimeUnit.SECONDS), "driver timed out");
        assertEquals(0, proc.exitValue(), out);
        List<String> expected = List.of(
                "ok rounding of special and random values",
                "ok tf32 a=row b=row c=row d=row",
                "ok tf32 a=col b=col c=col d=col",
                "ok bf16 a=row b=col",
                "ok scrambled layouts: a permutation, different per launch",
                "ok a kernel assuming a fragment layout computes a wrong product",
                "ok fault: misaligned pointer",
                "ok fault: ldm not a multiple of 16 bytes",
                "ok fault: divergent load",
                "ok fault: mma_sync in a partial warp");
        for (String line : expected) assertTrue(out.contains(line + "\n"), "missing '" + line + "' in:\n" + out);
        assertTrue(out.contains("\n0 failure(s)\n"), out);
    }
}
