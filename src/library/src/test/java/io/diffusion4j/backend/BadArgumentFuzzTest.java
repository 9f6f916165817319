package io.diffusion4j.backend;

import io.diffusion4j.Device;
import static io.diffusion4j.backend.BadArgumentFuzz.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Throws thousands of random bad argument combinations at the public Java API and, directly through
 * the generated bindings, at the C API. Every one must end in a typed exception or an error status
 * whose message names the offending parameter or value; afterwards no memory is leaked. The seed is
 * fresh each run (override with -Ddiffusion4j.fuzz.seed=N) and printed on failure.
 *
 * <p>Only NULL or real-but-freed handles are passed to native code, never invented addresses. A freed
 * handle is used right after being freed, before any other buffer or schedule is created, so the
 * front's registry cannot have handed its address to a new object.
 *
 * <p>The fixture and assertions are in {@link BadArgumentFuzz}, the generators in
 * {@link JavaApiBadArguments} (the public Java API) and {@link RawBindingBadArguments} (the C API
 * through the bindings); one run draws from all of them with one seed.
 */
class BadArgumentFuzzTest {
    static final int ITERATIONS = Integer.getInteger("diffusion4j.fuzz.iterations", 3600);

    @BeforeAll
    static void setUp() {
        BadArgumentFuzz.setUp();
    }

    @AfterAll
    static void tearDown() {
        BadArgumentFuzz.tearDown();
    }

    @Test
    void thousandsOfBadArgumentsAreRefusedWithUsefulMessages() throws Exception {
        // the closed backend's raw handle, captured from a fresh instance (its memory is not reused:
        // no backend is opened during the fuzz)
        Backend victim = Backend.open(Device.CPU);
        closedHandleCache = victim.handle();
        victim.close();

        List<Named> gens = List.of(
                new Named("Tensor.allocate bad shape", JavaApiBadArguments::allocateBadShape),
                new Named("Tensor misuse", JavaApiBadArguments::tensorMisuse),
                new Named("addNoise", JavaApiBadArguments::addNoise),
                new Named("diffusionLoss", JavaApiBadArguments::diffusionLoss),
                new Named("ddpmStep", (r, s) -> JavaApiBadArguments.reverseStep(r, s, false)),
                new Named("ddimStep", (r, s) -> JavaApiBadArguments.reverseStep(r, s, true)),
                new Named("timestepEmbedding", JavaApiBadArguments::embedding),
                new Named("random", JavaApiBadArguments::rng),
                new Named("NativeSchedule.ofAlphasCumprod", JavaApiBadArguments::schedules),
                new Named("Backend misuse", JavaApiBadArguments::backendMisuse),
                new Named("raw d4j_buffer_alloc", RawBindingBadArguments::rawAlloc),
                new Named("raw d4j_buffer_free/size", RawBindingBadArguments::rawFreeAndSize),
                new Named("raw d4j_buffer_write/read", RawBindingBadArguments::rawCopy),
                new Named("raw d4j_rng_*", RawBindingBadArguments::rawRng),
                new Named("raw d4j_add_noise", RawBindingBadArguments::rawAddNoise),
                new Named("raw d4j_diffusion_loss", RawBindingBadArguments::rawLoss),
                new Named("raw d4j_ddpm/ddim_step", RawBindingBadArguments::rawSteps),
                new Named("raw d4j_timestep_embedding", RawBindingBadArguments::rawEmbedding),
                new Named("raw d4j_schedule_*", RawBindingBadArguments::rawSchedules),
                new Named("raw d4j_backend_*", RawBindingBadArguments::rawBackends));

        long seed = Long.getLong("diffusion4j.fuzz.seed", System.nanoTime() ^ System.identityHashCode(this));
        long startBytes = a.liveBytes(), startBuffers = a.liveBuffers();
        long startBytesB = b.liveBytes(), startBuffersB = b.liveBuffers();
        int[] counts = new int[gens.size()];
        int i = 0;
        String current = "";
        try {
            Random master = new Random(seed);
            for (i = 0; i < ITERATIONS; i++) {
                int g = master.nextInt(gens.size());
                long caseSeed = master.nextLong();
                current = gens.get(g).name() + " (case seed " + caseSeed + ")";
                try (Scope s = new Scope()) {
                    gens.get(g).gen().run(new Random(caseSeed), s);
                }
                counts[g]++;
                if (i % 500 == 0) {
                    assertEquals(startBuffers, a.liveBuffers(), "live buffers of backend a");
                    assertEquals(startBytes, a.liveBytes(), "live bytes of backend a");
                }
            }
            assertEquals(startBytes, a.liveBytes(), "live bytes of backend a after the fuzz");
            assertEquals(startBuffers, a.liveBuffers(), "live buffers of backend a after the fuzz");
            assertEquals(startBytesB, b.liveBytes(), "live bytes of backend b after the fuzz");
            assertEquals(startBuffersB, b.liveBuffers(), "live buffers of backend b after the fuzz");
            assertFalse(a.isClosed());
            // both backends still work after thousands of refusals
            try (Tensor x = Tensor.of(a, new float[] {1, 2, 3}, 3); Tensor y = Tensor.allocate(b, DType.UINT32, 4)) {
                assertEquals(3f, x.toFloatArray()[2]);
                DiffusionKernels.randomBits(b, 1, 2, y);
            }
        } catch (AssertionError | Exception e) {
            throw new AssertionError("BadArgumentFuzzTest failed at iteration " + i + " in " + current + "; rerun with -Ddiffusion4j.fuzz.seed="
                    + seed + ": " + e.getMessage(), e);
        }
        for (int g = 0; g < counts.length; g++) {
            assertTrue(counts[g] > 50, "generator " + gens.get(g).name() + " ran only " + counts[g] + " times (seed " + seed + ")");
        }
        assertTrue(Arrays.stream(counts).sum() >= 3000);
    }
}
