package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.Precision;
import io.diffusion4j.backend.Status;
import io.diffusion4j.backend.VariantRun;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * How the precision setting selects kernel variants, on the test-only simulator (libd4j_cudasim_teeth.so), whose
 * linear family lists two tensor-core variants after its SIMT variants v1 and v2: v3 (the real one) and
 * "tensor_core_stub" (which runs v1's kernel). Setting tf32 or bf16 selects the first of them, v3, whatever was
 * selected before; setting fp32 moves the family back to v1; selecting either at fp32 is refused; and families
 * without a tensor-core variant keep their selection throughout.
 */
class PrecisionVariantRulesTest {
    static final String V3 = "v3";
    static final String STUB = "tensor_core_stub";

    Backend teeth;

    @BeforeEach
    void open() {
        teeth = Backend.openLibrary(Device.CUDA_SIM, SimulatorTeethTest.teethLibrary());
    }

    @AfterEach
    void close() {
        if (teeth != null) teeth.close();
    }

    /** Every family's selected variant. */
    Map<String, String> selections() {
        Map<String, String> m = new LinkedHashMap<>();
        for (String f : teeth.kernelFamilies()) m.put(f, teeth.selectedKernel(f));
        return m;
    }

    @Test
    void tensorCoreVariantsAreListedAfterTheSimtOnes() {
        assertEquals(List.of("v1", "v2", V3, STUB), teeth.kernelVariants("linear"));
        assertEquals(List.of(V3, STUB), teeth.tensorCoreVariants("linear"));
        assertEquals(List.of(), teeth.tensorCoreVariants("group_norm"));
        assertEquals(List.of(new VariantRun("linear", "v1", Precision.FP32), new VariantRun("linear", "v2", Precision.FP32),
                new VariantRun("linear", V3, Precision.TF32), new VariantRun("linear", V3, Precision.BF16),
                new VariantRun("linear", STUB, Precision.TF32), new VariantRun("linear", STUB, Precision.BF16)),
                teeth.variantRuns("linear"));
        assertEquals(STUB + "/bf16", teeth.variantRuns("linear").get(5).label());
        assertEquals("v1", teeth.selectedKernel("linear"));
        assertEquals(Precision.FP32, teeth.precision());
    }

    @Test
    void tf32AndBf16SelectTheTensorCoreVariantFp32MovesBackToV1() {
        Map<String, String> atFp32 = selections();
        for (Precision p : new Precision[] {Precision.TF32, Precision.BF16}) {
            teeth.setPrecision(p);
            assertEquals(V3, teeth.selectedKernel("linear"), "the first tensor-core variant at " + p);
            Map<String, String> expected = new LinkedHashMap<>(atFp32);
            for (String f : teeth.kernelFamilies()) {
                List<String> tc = teeth.tensorCoreVariants(f);
                if (!tc.isEmpty()) expected.put(f, tc.get(0));
            }
            assertEquals(V3, expected.get("linear"));
            assertEquals(expected, selections(), "only the families with a tensor-core variant change, at " + p);
            // the second tensor-core variant is selectable, and fp32 moves the family back from it too
            teeth.selectKernel("linear", STUB);
            assertEquals(STUB, teeth.selectedKernel("linear"));
            teeth.setPrecision(Precision.FP32);
            assertEquals("v1", teeth.selectedKernel("linear"));
            assertEquals(atFp32, selections());
        }
    }

    @Test
    void selectingTheTensorCoreVariantAtFp32IsRefused() {
        for (String variant : List.of(V3, STUB)) {
            D4jException e = assertThrows(D4jException.class, () -> teeth.selectKernel("linear", variant));
            assertEquals(Status.INVALID_ARGUMENT, e.status());
            String m = e.getMessage();
            assertTrue(m.contains("'" + variant + "'") && m.contains("'linear'") && m.contains("runs on tensor cores")
                    && m.contains("needs precision tf32 or bf16"), m);
            assertEquals("v1", teeth.selectedKernel("linear"), "the refused selection was kept");
        }
        // allowed once a tensor-core precision is set, and a SIMT variant may still be chosen there
        teeth.setPrecision(Precision.TF32);
        teeth.selectKernel("linear", "v2");
        assertEquals("v2", teeth.selectedKernel("linear"));
        teeth.selectKernel("linear", STUB);
        assertEquals(STUB, teeth.selectedKernel("linear"));
        teeth.selectKernel("linear", V3);
        assertEquals(V3, teeth.selectedKernel("linear"));
    }

    @Test
    void aSimtSelectionSurvivesFp32AndOtherFamiliesKeepTheirs() {
        teeth.selectKernel("diffusion_loss", "v2");
        teeth.setPrecision(Precision.BF16);
        assertEquals("v2", teeth.selectedKernel("diffusion_loss"), "a family without a tensor-core variant keeps its selection");
        teeth.selectKernel("linear", "v2");
        teeth.setPrecision(Precision.FP32);
        assertEquals("v2", teeth.selectedKernel("linear"), "a SIMT selection computes fp32 and is kept at fp32");
        assertEquals("v2", teeth.selectedKernel("diffusion_loss"));
        // setting tf32 again selects the first tensor-core variant whatever was chosen before
        teeth.setPrecision(Precision.TF32);
        assertEquals(V3, teeth.selectedKernel("linear"));
        teeth.selectKernel("linear", STUB);
        teeth.setPrecision(Precision.BF16);
        assertEquals(V3, teeth.selectedKernel("linear"), "from the second tensor-core variant as from a SIMT one");
    }

    /** The stub runs v1's kernel: at tf32 it gives v1's bits at fp32 (the precision changes nothing in a SIMT kernel). */
    @Test
    void theStubComputesWhatV1Computes() {
        SplittableRandom r = new SplittableRandom(7);
        int rows = 37, in = 70, out = 19;
        float[] x = new float[rows * in], w = new float[out * in], b = new float[out];
        for (float[] a : new float[][] {x, w, b}) {
            for (int i = 0; i < a.length; i++) a[i] = (float) (r.nextDouble() * 2 - 1);
        }
        float[] v1 = LinearAttentionReference.linear(teeth, x, w, b, rows, in, out);
        teeth.setPrecision(Precision.TF32);
        teeth.selectKernel("linear", STUB);
        assertEquals(STUB, teeth.selectedKernel("linear"));
        float[] stub = LinearAttentionReference.linear(teeth, x, w, b, rows, in, out);
        assertArrayEquals(v1, stub);
    }

    @Test
    void useAppliesARunAndClosingRestoresThePrecisionAndEverySelection() {
        teeth.selectKernel("diffusion_loss", "v2");
        Map<String, String> before = selections();
        try (Backend.Selection s = teeth.use(new VariantRun("linear", STUB, Precision.BF16))) {
            assertEquals(Precision.BF16, teeth.precision());
            assertEquals(STUB, teeth.selectedKernel("linear"));
        }
        assertEquals(Precision.FP32, teeth.precision());
        assertEquals(before, selections());
        teeth.selectKernel("diffusion_loss", "v1");
    }
}
