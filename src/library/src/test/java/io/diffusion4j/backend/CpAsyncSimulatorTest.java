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
 * The simulator's asynchronous global-to-shared copies (native/cudasim/cuda_pipeline_primitives.h) checked by
 * their native driver (native/tests/cp_async_sim_test.cu, built as target/native-build/d4j_cp_async_test, or
 * {@code -Ddiffusion4j.cpasync.test}): copies of 4, 8 and 16 bytes with every zero-fill, copies that land only
 * when a wait retires their batch, wait_prior(N) leaving the newest N batches pending, and every misuse a GPU
 * leaves undefined stopping the launch. Every check the driver makes must be reported and pass.
 */
class CpAsyncSimulatorTest {
    @Test
    void everyCheckOfTheDriverPasses() throws IOException, InterruptedException {
        String p = System.getProperty("diffusion4j.cpasync.test");
        Path exe = (p != null ? Path.of(p) : Path.of("target/native-build/d4j_cp_async_test")).toAbsolutePath();
        assertTrue(Files.isExecutable(exe), exe + " was not built (mvn verify builds it in process-test-resources)");
        Process proc = new ProcessBuilder(exe.toString()).redirectErrorStream(true).start();
        String out = new String(proc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(proc.waitFor(120, TimeUnit.SECONDS), "driver timed out");
        assertEquals(0, proc.exitValue(), out);
        List<String> expected = List.of(
                "ok copies of 4 bytes with every zfill",
                "ok copies of 8 bytes with every zfill",
                "ok copies of 16 bytes with every zfill",
                "ok a read before the wait sees poison, not the old value or the copy",
                "ok wait_prior(0) leaves the newest 0 batches pending",
                "ok wait_prior(1) leaves the newest 1 batches pending",
                "ok wait_prior(2) leaves the newest 2 batches pending",
                "ok wait_prior(3) leaves the newest 3 batches pending",
                "ok wait_prior(4) leaves the newest 4 batches pending",
                "ok wait_prior(9) leaves the newest 4 batches pending",
                "ok wait_prior leaves uncommitted copies queued",
                "ok fault: destination in global memory",
                "ok fault: source in shared memory",
                "ok fault: source in a thread's local memory",
                "ok fault: destination not aligned to the size",
                "ok fault: source not aligned to the size",
                "ok fault: size not 4, 8 or 16",
                "ok fault: zfill larger than the size",
                "ok fault: uncommitted copies at thread exit",
                "ok fault: copies not waited for at thread exit",
                "ok a launch after a fault starts with empty queues");
        for (String line : expected) assertTrue(out.contains(line + "\n"), "missing '" + line + "' in:\n" + out);
        assertTrue(out.contains("\n0 failure(s)\n"), out);
    }
}
