package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.selftest.SelfTest;
import io.diffusion4j.selftest.ReportTable;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Proves the kernel harness has teeth: the test-only simulator library (libd4j_cudasim_teeth.so,
 * built with -DD4J_SIM_TEETH) carries deliberately broken variants of the loss kernel, and each must
 * be caught, while v1 and v2 of the same library pass.
 * <ul>
 *   <li>broken_divergent_sync (a __syncthreads inside a branch): the simulator reports the barrier
 *       not reached / the deadlock as a launch failure naming the kernel; the call throws, the JVM
 *       lives on and the backend still computes the right loss with v1;
 *   <li>broken_missing_sync (a shared-memory race) and broken_off_by_one (reads element i + 1): the
 *       self-test reports a mismatch against the CPU;
 *   <li>broken_off_by_one under AddressSanitizer (libd4j_cudasim_teeth_asan.so in a child JVM with
 *       the ASan runtime preloaded): the read one past the last sample's buffer is a
 *       heap-buffer-overflow and kills the child; the same child with v1 exits 0.
 * </ul>
 * The library is {@code -Ddiffusion4j.teeth.library} if set, else target/native-build/libd4j_cudasim_teeth.so.
 */
class SimulatorTeethTest {
    static final String TEETH_PROPERTY = "diffusion4j.teeth.library";
    static final List<String> BROKEN = List.of("broken_divergent_sync", "broken_missing_sync", "broken_off_by_one");

    static Backend teeth;
    static Backend cpu;
    static NoiseSchedule schedule;
    static NativeSchedule nativeSchedule;

    static Path teethLibrary() {
        String p = System.getProperty(TEETH_PROPERTY);
        return (p != null ? Path.of(p) : Path.of("target/native-build/libd4j_cudasim_teeth.so")).toAbsolutePath();
    }

    static boolean sanitized() {
        return Boolean.getBoolean("diffusion4j.sanitized");
    }

    @BeforeAll
    static void open() {
        Path lib = teethLibrary();
        assertTrue(Files.isRegularFile(lib), "the test-only simulator library " + lib + " is missing (built by mvn package "
                + "with D4J_WITH_SANITIZED_SIM=ON); set -D" + TEETH_PROPERTY + " to point at it");
        teeth = Backend.openLibrary(Device.CUDA_SIM, lib);
        cpu = Backend.open(Device.CPU);
        schedule = NoiseSchedule.defaults();
        nativeSchedule = NativeSchedule.of(schedule);
    }

    @AfterAll
    static void close() {
        if (nativeSchedule != null) nativeSchedule.close();
        if (teeth != null) teeth.close();
        if (cpu != null) cpu.close();
    }

    static SelfTest.Report selfTest(String variant) {
        SelfTest.Report r = SelfTest.run(teeth, cpu, SelfTest.Options.defaults().withRepeats(1)
                .withFilter((f, v) -> f.equals("diffusion_loss") && v.equals(variant)));
        System.out.println("teeth library, diffusion_loss " + variant + ":\n" + table(r));
        return r;
    }

    static String table(SelfTest.Report r) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        try (PrintStream p = new PrintStream(o, true, StandardCharsets.UTF_8)) {
            ReportTable.print(r, p);
        }
        return o.toString(StandardCharsets.UTF_8);
    }

    static float[] gaussians(java.util.SplittableRandom r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (Math.sqrt(-2 * Math.log(1 - r.nextDouble())) * Math.cos(2 * Math.PI * r.nextDouble()));
        return v;
    }

    @Test
    void theTeethLibraryListsTheBrokenVariants() {
        List<String> v = teeth.kernelVariants("diffusion_loss");
        assertEquals("v1", v.get(0), v.toString());
        assertTrue(v.containsAll(List.of("v1", "v2")) && v.containsAll(BROKEN), v.toString());
        assertEquals("v1", teeth.selectedKernel("diffusion_loss"));
    }

    /**
     * In a JVM with only the ASan runtime preloaded, libstdc++ is loaded after ASan initialised, so
     * ASan's __cxa_throw interceptor has no real __cxa_throw to call: the simulator's block abort (it
     * unwinds the simulated threads with a C++ throw) would then kill the JVM with "AddressSanitizer: CHECK
     * failed: asan_interceptors.cpp:320 ((__interception::real___cxa_throw)) != (0)". The pom preloads
     * libstdc++.so.6 after libasan.so; this guards that setting.
     */
    @Test
    void asanJvmPreloadsLibstdcxxToo() {
        String preload = System.getenv("LD_PRELOAD");
        if (preload != null && preload.contains("libasan")) {
            assertTrue(preload.contains("libstdc++"), "LD_PRELOAD=" + preload + " lacks libstdc++.so.6");
        }
    }

    @Test
    void divergentBarrierIsReportedAsALaunchFailureNamingTheKernel() {
        java.util.SplittableRandom r = new java.util.SplittableRandom(SelfTest.freshSeed());
        int batch = 3, n = 28 * 28 + 1;
        float[] o = gaussians(r, batch * n), x0 = gaussians(r, batch * n), eps = gaussians(r, batch * n);
        int[] t = {0, 500, 999};
        double[] ac = schedule.alphasCumprod();
        teeth.selectKernel("diffusion_loss", "broken_divergent_sync");
        try {
            D4jException e = assertThrows(D4jException.class, () -> KernelRunner.loss(teeth, nativeSchedule,
                    PredictionType.EPSILON, o, x0, eps, t, null, n, true));
            String m = e.getMessage();
            System.out.println("broken_divergent_sync: " + e.status() + ": " + m);
            assertTrue(m.contains("loss_partial_divergent_sync_kernel"), "the message does not name the kernel: " + m);
            String lower = m.toLowerCase(Locale.ROOT);
            assertTrue(lower.contains("is not reached") || lower.contains("deadlock"),
                    "the message does not say the barrier is not reached / deadlock: " + m);
            assertTrue(m.contains("__syncthreads") || lower.contains("barrier"), m);
            // the self-test turns the same failure into a FAIL row carrying the message, instead of crashing
            SelfTest.Report rep = selfTest("broken_divergent_sync");
            assertTrue(rep.rows().size() >= 4, table(rep));
            for (SelfTest.Row row : rep.rows()) {
                assertTrue(!row.passed() && row.error().equals("error"), "not a failed row: " + row);
                assertTrue(row.detail().contains("loss_partial_divergent_sync_kernel"), row.detail());
            }
        } finally {
            teeth.selectKernel("diffusion_loss", "v1");
        }
        // the JVM is alive and the backend still works: v1 on the same inputs matches the CPU
        assertEquals(0, teeth.liveBuffers(), "buffers leaked after the failed launch");
        KernelRunner.LossOut d = KernelRunner.loss(teeth, nativeSchedule, PredictionType.EPSILON, o, x0, eps, t, null, n, true);
        KernelRunner.LossOut h = KernelRunner.loss(cpu, nativeSchedule, PredictionType.EPSILON, o, x0, eps, t, null, n, true);
        for (int b = 0; b < batch; b++) {
            assertTrue(Math.abs(d.loss()[b] - h.loss()[b]) <= 64 * SelfTest.U * Math.abs(h.loss()[b]),
                    "v1 after the failure: sample " + b + " device " + d.loss()[b] + " cpu " + h.loss()[b]);
        }
        assertTrue(selfTest("v1").allPassed());
    }

    @Test
    void missingBarrierIsAMismatch() {
        assertMismatch("broken_missing_sync");
    }

    @Test
    void offByOneIsAMismatch() {
        assertMismatch("broken_off_by_one");
    }

    static void assertMismatch(String variant) {
        SelfTest.Report r = selfTest(variant);
        String shown = table(r);
        assertTrue(r.failed() > 0, variant + " was not caught:\n" + shown);
        assertEquals(r.rows().size(), r.failed(), variant + " passed on some shapes:\n" + shown);
        for (SelfTest.Row row : r.rows()) {
            assertEquals(variant, row.variant());
            // a wrong result, not a launch failure
            assertNotEquals("error", row.error(), row.toString());
            assertTrue(row.detail().contains("loss: ") || row.detail().contains("grad: "), row.detail());
        }
        assertEquals("v1", teeth.selectedKernel("diffusion_loss"), "the self-test did not restore the default");
    }

    @Test
    void v1AndV2OfTheTeethLibraryPass() {
        for (String v : List.of("v1", "v2")) {
            SelfTest.Report r = selfTest(v);
            assertTrue(r.allPassed(), table(r));
            assertTrue(r.rows().size() >= 4, table(r));
        }
    }

    // ---- AddressSanitizer ----------------------------------------------------------------------

    @Test
    void offByOneIsAHeapBufferOverflowUnderAddressSanitizer() throws Exception {
        if (sanitized()) {
            // Inside the asan execution the parent JVM itself runs the sanitized simulator
            // (no ASan-in-ASan child): check that it really is the sanitized library, under ASan.
            try (Backend sim = Backend.open(Device.CUDA_SIM)) {
                assertEquals("libd4j_cudasim_asan.so", sim.library().getFileName().toString(), sim.library().toString());
            }
            String maps = Files.readString(Path.of("/proc/self/maps"));
            assertTrue(maps.contains("libasan"), "the ASan runtime is not loaded in the sanitized execution");
            assertTrue(maps.contains("libd4j_cudasim_asan.so"), "libd4j_cudasim_asan.so is not mapped");
            return;
        }
        Path asanLib = teethLibrary().resolveSibling("libd4j_cudasim_teeth_asan.so");
        assertTrue(Files.isRegularFile(asanLib), asanLib + " is missing");

        AsanChildJvm.Child broken = child(asanLib, "broken_off_by_one");
        System.out.println("ASan child with broken_off_by_one: exit " + broken.exit());
        assertNotEquals(0, broken.exit(), broken.toString());
        assertTrue(broken.err().contains("AddressSanitizer"), broken.toString());
        assertTrue(broken.err().contains("heap-buffer-overflow"), broken.toString());
        assertTrue(!broken.out().contains(AsanChild.DONE), "the child finished the call: " + broken);

        AsanChildJvm.Child control = child(asanLib, "v1");
        assertEquals(0, control.exit(), control.toString());
        assertTrue(control.out().contains(AsanChild.DONE), control.toString());
        assertTrue(!control.err().contains("AddressSanitizer"), control.toString());
    }

    static AsanChildJvm.Child child(Path library, String variant) throws Exception {
        return AsanChildJvm.run(AsanChild.class, Map.of(), library.toString(), variant);
    }

    /**
     * Child JVM: opens the given simulator library, selects a diffusion_loss variant and runs the loss
     * once on buffers sized exactly batch * n floats, so a read of element i + 1 in the last sample
     * is one float past the allocation. Prints {@link #DONE} when the call returned.
     */
    public static final class AsanChild {
        static final String DONE = "asan-child: loss call returned";

        public static void main(String[] args) {
            Path lib = Path.of(args[0]);
            String variant = args[1];
            int batch = 3, n = 105;
            java.util.SplittableRandom r = new java.util.SplittableRandom(42);
            float[] o = gaussians(r, batch * n), x0 = gaussians(r, batch * n), eps = gaussians(r, batch * n);
            int[] t = {1, 10, 100};
            try (Backend be = Backend.openLibrary(Device.CUDA_SIM, lib);
                 NativeSchedule s = NativeSchedule.of(NoiseSchedule.defaults());
                 Tensor mo = Tensor.of(be, o, batch, n); Tensor xx = Tensor.of(be, x0, batch, n);
                 Tensor ee = Tensor.of(be, eps, batch, n); Tensor loss = Tensor.allocate(be, DType.FLOAT32, batch)) {
                be.selectKernel("diffusion_loss", variant);
                loss.fill(Float.NaN);
                DiffusionKernels.diffusionLoss(s, PredictionType.EPSILON, mo, xx, ee, t, null, loss, null);
                float[] l = loss.toFloatArray();
                System.out.println(DONE + ": " + java.util.Arrays.toString(l));
                for (float v : l) {
                    if (!Float.isFinite(v)) {
                        System.out.println("asan-child: non-finite loss");
                        System.exit(3);
                    }
                }
            }
            System.exit(0);
        }
    }
}
