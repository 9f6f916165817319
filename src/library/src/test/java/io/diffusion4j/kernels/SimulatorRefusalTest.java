package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.backend.Status;
import io.diffusion4j.kernels.LinearKernels.AttentionShape;
import io.diffusion4j.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Launches a GPU refuses are refused by the simulator too, as a clear error from the call, never a crash, and the
 * backend goes on working: over 48 KiB of dynamic shared memory without the kernel's opt-in
 * (cudaFuncSetAttribute), more registers than the SM's register file (registers per thread from ptxas), and a
 * driver older than the CUDA 13 runtime needs. The test-only simulator (libd4j_cudasim_teeth.so, see
 * {@link SimulatorTeethTest}) carries the variants that make such launches, and plays an old driver when the
 * environment variable D4J_SIM_DRIVER_VERSION is set.
 */
class SimulatorRefusalTest {
    static Backend teeth;

    @BeforeAll
    static void open() {
        Path lib = SimulatorTeethTest.teethLibrary();
        assertTrue(Files.isRegularFile(lib), "the test-only simulator library " + lib + " is missing");
        teeth = Backend.openLibrary(Device.CUDA_SIM, lib);
    }

    @AfterAll
    static void close() {
        if (teeth != null) {
            teeth.selectKernel("attention", "v1");
            teeth.selectKernel("residual_add", "v1");
            teeth.close();
        }
    }

    static float[] random(SplittableRandom r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (2 * r.nextDouble() - 1);
        return v;
    }

    /** Attention forward on the teeth library with the given variant; returns out. */
    static float[] attention(String variant, float[] q, float[] k, float[] v, AttentionShape s) {
        teeth.selectKernel("attention", variant);
        long[] shape = {s.batch(), s.tokens(), s.heads() * (long) s.headDim()};
        try (Tensor tq = Tensor.of(teeth, q, shape); Tensor tk = Tensor.of(teeth, k, shape);
                Tensor tv = Tensor.of(teeth, v, shape); Tensor out = Tensor.of(teeth, new float[q.length], shape)) {
            LinearKernels.attention(s, s.defaultScale(), tq, tk, tv, out, null);
            return out.toFloatArray();
        } finally {
            teeth.selectKernel("attention", "v1");
        }
    }

    @Test
    void dynamicSharedMemoryOver48KiBNeedsTheKernelsOptIn() {
        AttentionShape s = new AttentionShape(2, 9, 2, 4);
        SplittableRandom r = new SplittableRandom(7);
        int n = s.batch() * s.tokens() * s.heads() * s.headDim();
        float[] q = random(r, n), k = random(r, n), v = random(r, n);
        float[] expected = attention("v1", q, k, v, s);

        D4jException e = assertThrows(D4jException.class, () -> attention("broken_smem_not_allowed", q, k, v, s));
        String m = e.getMessage();
        System.out.println("broken_smem_not_allowed: " + e.status() + ": " + m);
        assertTrue(m.contains("attn_fwd_smem_not_allowed_kernel"), "the message does not name the kernel: " + m);
        assertTrue(m.contains("65536 bytes of dynamic shared memory") && m.contains("48 KiB")
                && m.contains("cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)"), m);
        assertTrue(m.contains("cudaErrorInvalidValue"), m);

        // the same launch after cudaFuncSetAttribute runs, and computes what v1 computes
        assertArrayEquals(expected, attention("smem_allowed", q, k, v, s));
        // and the backend is fine afterwards
        assertArrayEquals(expected, attention("v1", q, k, v, s));
    }

    @Test
    void moreRegistersThanTheRegisterFileIsRefused() {
        SplittableRandom r = new SplittableRandom(11);
        int n = 3000;
        float[] a = random(r, n), b = random(r, n);
        float[] expected = new float[n];
        for (int i = 0; i < n; i++) expected[i] = (a[i] + b[i]) * 0.5f;
        try (Tensor ta = Tensor.of(teeth, a, n); Tensor tb = Tensor.of(teeth, b, n);
                Tensor out = Tensor.of(teeth, new float[n], n)) {
            teeth.selectKernel("residual_add", "broken_too_many_registers");
            try {
                D4jException e = assertThrows(D4jException.class, () -> NormKernels.residualAdd(ta, tb, 0.5f, out));
                String m = e.getMessage();
                System.out.println("broken_too_many_registers: " + e.status() + ": " + m);
                assertTrue(m.contains("residual_register_hog_kernel"), "the message does not name the kernel: " + m);
                assertTrue(m.contains("too many resources requested for launch") && m.contains("128 registers per thread")
                        && m.contains("1024 threads") && m.contains("65536"), m);
                assertTrue(m.contains("cudaErrorLaunchOutOfResources"), m);
            } finally {
                teeth.selectKernel("residual_add", "v1");
            }
            NormKernels.residualAdd(ta, tb, 0.5f, out);
            assertArrayEquals(expected, out.toFloatArray());
        }
    }

    @Test
    void aDriverOlderThanCuda13IsUnavailableWithOneSentence() throws Throwable {
        Linker linker = Linker.nativeLinker();
        MethodHandle setenv = linker.downcallHandle(linker.defaultLookup().find("setenv").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        MethodHandle unsetenv = linker.downcallHandle(linker.defaultLookup().find("unsetenv").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS));
        try (Arena arena = Arena.ofConfined()) {
            var name = arena.allocateFrom("D4J_SIM_DRIVER_VERSION");
            assertEquals(0, (int) setenv.invokeExact(name, arena.allocateFrom("12080"), 1));
            try {
                D4jException.BackendUnavailableException e = assertThrows(D4jException.BackendUnavailableException.class,
                        () -> Backend.openLibrary(Device.CUDA_SIM, SimulatorTeethTest.teethLibrary()));
                String m = e.getMessage();
                System.out.println("driver 12.8: " + m);
                assertEquals(Status.UNAVAILABLE, e.status());
                assertTrue(m.contains("needs an NVIDIA driver of the r580 series or newer (CUDA 13)")
                        && m.contains("this one supports CUDA 12.8"), m);
                assertFalse(m.contains("\n"), m);
            } finally {
                assertEquals(0, (int) unsetenv.invokeExact(name));
            }
        }
        try (Backend again = Backend.openLibrary(Device.CUDA_SIM, SimulatorTeethTest.teethLibrary())) {
            assertTrue(again.description().contains("cuda-sim"), again.description());
        }
    }

    /**
     * The simulator's register table is the ptxas report's, the most over the architectures, for every kernel
     * (when nvcc built the CUDA backend and so the report exists).
     */
    @Test
    void theSimulatorsRegisterTableIsThePtxasReport() throws IOException {
        Path report = Path.of("target/native-build/ptxas-report.tsv");
        assumeTrue(Files.isRegularFile(report), "no ptxas report: the CUDA backend was not built with nvcc here");
        Map<String, int[]> most = new HashMap<>();
        List<String> lines = Files.readAllLines(report);
        for (String line : lines.subList(1, lines.size())) {
            String[] f = line.split("\t");
            // a template's instantiations (conv_tc_fwd_kernel<Tf32x64>, ...) count for the template: the largest
            int[] m = most.computeIfAbsent(f[0].replaceAll("<.*>$", ""), x -> new int[2]);
            m[0] = Math.max(m[0], Integer.parseInt(f[2]));
            m[1] = Math.max(m[1], Integer.parseInt(f[3]));
        }
        assertFalse(most.isEmpty(), "empty ptxas report");
        String table = Files.readString(Path.of("target/native-build/cudasim_kernel_resources.cpp"));
        Map<String, int[]> generated = new HashMap<>();
        Matcher row = Pattern.compile("\\{\"(\\w+)\", (\\d+)u, (\\d+)u\\}").matcher(table);
        while (row.find()) {
            generated.put(row.group(1), new int[] {Integer.parseInt(row.group(2)), Integer.parseInt(row.group(3))});
        }
        assertEquals(most.keySet(), generated.keySet(), table);
        for (var e : most.entrySet()) assertArrayEquals(e.getValue(), generated.get(e.getKey()), e.getKey());
    }
}
