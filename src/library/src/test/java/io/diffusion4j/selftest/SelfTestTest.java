package io.diffusion4j.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.Device;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * The parity engine on cuda-sim (every family, default and v2 variants, all passing) and the engine's comparison on hand-made outputs (so a mismatch, a NaN
 * left by an unwritten element and a flipped bit are known to fail). The deliberately broken kernels
 * of the test-only simulator are in io.diffusion4j.kernels.SimulatorTeethTest.
 */
class SelfTestTest {
    static String table(SelfTest.Report r) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        try (PrintStream p = new PrintStream(o, true, StandardCharsets.UTF_8)) {
            ReportTable.print(r, p);
        }
        return o.toString(StandardCharsets.UTF_8);
    }

    /** Every family of the library (a family the self-test does not know becomes a FAIL row). */
    static final List<String> FAMILIES = List.of("rng", "add_noise", "diffusion_loss", "reverse_step", "timestep_embedding",
            "conv2d", "group_norm", "silu", "residual_add", "linear", "attention", "grad_norm", "adamw", "ema");
    /** Families whose cases run on SelfTest.SHAPES. */
    static final Set<String> ELEMENTWISE = Set.of("rng", "add_noise", "diffusion_loss", "reverse_step",
            "timestep_embedding", "silu", "residual_add", "grad_norm", "adamw", "ema");
    static final Set<String> FORWARD_BACKWARD = Set.of("conv2d", "group_norm", "silu", "residual_add", "linear", "attention");
    /** Identical bits by construction on every backend. */
    static final Set<String> BIT_EXACT = Set.of("rng", "residual_add", "adamw", "ema");

    @Test
    void everyFamilyWithItsDefaultAndV2VariantsPassesOnCudaSim() {
        try (Backend sim = Backend.open(Device.CUDA_SIM); Backend cpu = Backend.open(Device.CPU)) {
            List<String> families = sim.kernelFamilies();
            assertTrue(families.containsAll(FAMILIES), families.toString());
            assertTrue(sim.kernelVariants("diffusion_loss").contains("v2"), sim.kernelVariants("diffusion_loss").toString());
            assertTrue(sim.kernelVariants("linear").contains("v2"), sim.kernelVariants("linear").toString());
            List<String> before = families.stream().map(sim::selectedKernel).toList();

            SelfTest.Options opts = SelfTest.Options.defaults().withRepeats(1)
                    .withFilter((f, v) -> v.equals(sim.kernelVariants(f).get(0)) || v.equals("v2"));
            SelfTest.Report report = SelfTest.run(sim, cpu, opts);
            String shown = table(report);
            System.out.println(shown);

            assertTrue(report.allPassed(), shown);
            assertEquals(0, report.failed(), shown);
            // every family and selected variant is there, on every shape
            Set<String> ran = report.rows().stream().map(r -> r.family() + "/" + r.variant()).collect(Collectors.toCollection(TreeSet::new));
            Set<String> want = new TreeSet<>();
            for (String f : families) {
                // a tensor-core variant runs at each precision it supports (v2/tf32, v2/bf16)
                for (VariantRun run : sim.variantRuns(f)) {
                    String v = run.variant();
                    if (v.equals(sim.kernelVariants(f).get(0)) || v.equals("v2")) want.add(f + "/" + run.label());
                }
            }
            assertEquals(want, ran, shown);
            assertTrue(ran.contains("diffusion_loss/v2"), shown);
            assertTrue(ran.contains("linear/v2"), shown);
            for (String fv : want) {
                String family = fv.substring(0, fv.indexOf('/'));
                Set<String> shapes = report.rows().stream().filter(r -> (r.family() + "/" + r.variant()).equals(fv))
                        .map(SelfTest.Row::shape).collect(Collectors.toSet());
                if (ELEMENTWISE.contains(family)) {
                    for (SelfTest.Shape sh : SelfTest.SHAPES) assertTrue(shapes.contains(sh.toString()), fv + " lacks " + sh + "\n" + shown);
                } else {
                    assertTrue(shapes.size() >= 2, fv + " runs fewer than two shapes\n" + shown);
                }
                if (fv.startsWith("diffusion_loss/")) assertTrue(shapes.contains(SelfTest.LOSS_CHUNKED.toString()), shown);
                // the layer families run their forward and their backward
                Set<String> kernels = report.rows().stream().filter(r -> (r.family() + "/" + r.variant()).equals(fv))
                        .map(SelfTest.Row::kernel).collect(Collectors.toSet());
                if (FORWARD_BACKWARD.contains(family)) {
                    assertTrue(kernels.stream().anyMatch(k -> k.contains("forward")), fv + " has no forward case\n" + shown);
                    assertTrue(kernels.stream().anyMatch(k -> k.contains("backward")), fv + " has no backward case\n" + shown);
                }
            }
            Set<String> convKernels = report.rows().stream().filter(r -> r.family().equals("conv2d")).map(SelfTest.Row::kernel)
                    .collect(Collectors.toSet());
            for (String k : List.of("forward 3x3 stride2 pad1", "backward 3x3 stride2 pad1", "forward up2x 3x3",
                    "backward up2x 3x3", "forward 1x1", "backward 3x3")) {
                assertTrue(convKernels.contains(k), "conv2d lacks " + k + "\n" + shown);
            }
            Set<String> gnKernels = report.rows().stream().filter(r -> r.family().equals("group_norm")).map(SelfTest.Row::kernel)
                    .collect(Collectors.toSet());
            for (String k : List.of("group_norm forward", "group_norm+silu backward", "bias_group_norm+silu forward",
                    "bias_group_norm backward")) {
                assertTrue(gnKernels.contains(k), "group_norm lacks " + k + "\n" + shown);
            }
            for (SelfTest.Row r : report.rows()) {
                assertTrue(r.secondsPerCall() > 0 && Double.isFinite(r.secondsPerCall()), "untimed row " + r);
                assertTrue(r.bitExact() || r.maxRelError() <= r.rtol(), "row passes beyond its tolerance: " + r);
                if (BIT_EXACT.contains(r.family())) assertTrue(r.bitExact(), r.family() + " must be bit-exact: " + r);
                if (r.rtol() == 0) assertTrue(r.bitExact(), "a bits-only row that is not bit-exact: " + r);
            }
            // the variants selected before the run are selected again
            assertEquals(before, families.stream().map(sim::selectedKernel).toList());
            assertEquals(0, sim.liveBuffers(), "the self-test leaked device buffers");
            assertEquals(0, cpu.liveBuffers(), "the self-test leaked cpu buffers");
        }
    }

    @Test
    void theVariantSelectedBeforeTheRunIsRestored() {
        try (Backend sim = Backend.open(Device.CUDA_SIM); Backend cpu = Backend.open(Device.CPU)) {
            sim.selectKernel("diffusion_loss", "v2");
            SelfTest.Report r = SelfTest.run(sim, cpu, SelfTest.Options.defaults().withRepeats(0)
                    .withFilter((f, v) -> f.equals("diffusion_loss") && v.equals("v1")));
            assertTrue(r.allPassed(), table(r));
            assertEquals(List.of("v1"), r.rows().stream().map(SelfTest.Row::variant).distinct().toList());
            assertEquals("v2", sim.selectedKernel("diffusion_loss"));
        }
    }

    // ---- the comparison on hand-made outputs ---------------------------------------------------

    static List<Output> close(float... v) {
        return List.of(Output.close("x", v, 8 * SelfTest.U, 1.0));
    }

    @Test
    void comparisonPassesWithinAndFailsBeyondTheTolerance() {
        float c = 1.5f;
        // within: a few ulps of 1.5 (ulp = 2u * 1 here) against 8u * (1.5 + 1) = 20u
        Comparison ok = Comparison.compare(close(c, 0f), close(Math.nextUp(Math.nextUp(c)), 0f));
        assertTrue(ok.passed(), ok.toString());
        assertTrue(ok.maxRel() > 0 && ok.maxRel() <= 8 * SelfTest.U, ok.toString());
        // beyond: 16 ulps of 1.5 = 32u > 20u
        float far = c;
        for (int i = 0; i < 16; i++) far = Math.nextUp(far);
        Comparison bad = Comparison.compare(close(c, 0f), close(far, 0f));
        assertFalse(bad.passed(), bad.toString());
        assertTrue(bad.detail().contains("1 of 2 elements violate"), bad.detail());
        // an element left at its NaN poison fails, and so does an infinity
        assertFalse(Comparison.compare(close(c, 0f), close(c, Float.NaN)).passed());
        assertFalse(Comparison.compare(close(c, 0f), close(c, Float.POSITIVE_INFINITY)).passed());
        assertEquals("non-finite", Comparison.compare(close(c, 0f), close(c, Float.NaN)).error());
        // identical bits
        assertEquals("bit-exact", Comparison.compare(close(c, -0f), close(c, -0f)).error());
    }

    @Test
    void bitExactOutputsFailOnOneFlippedBit() {
        int[] ref = {1, 2, 3, 0x7fffffff};
        int[] got = ref.clone();
        got[3] ^= 1;
        Comparison words = Comparison.compare(List.of(Output.bits("uint32", ref)),
                List.of(Output.bits("uint32", got)));
        assertFalse(words.passed(), words.toString());
        assertEquals("bits differ", words.error());
        assertTrue(words.detail().contains("1 of 4 elements differ in bits (first at 3"), words.detail());
        float[] n = {0.25f, -1.0f}, m = {0.25f, Math.nextDown(-1.0f)};
        assertFalse(Comparison.compare(List.of(Output.bits("normal", n)), List.of(Output.bits("normal", m))).passed());
        // -0 vs +0 differ in bits
        assertFalse(Comparison.compare(List.of(Output.bits("normal", new float[] {0f})),
                List.of(Output.bits("normal", new float[] {-0f}))).passed());
    }

    @Test
    void tablesAreAlignedAndCountFailures() {
        List<SelfTest.Row> rows = List.of(
                new SelfTest.Row("rng", "v1", "normal", "1x105", "bit-exact", 0, 0, true, 1e-5, ""),
                new SelfTest.Row("diffusion_loss", "broken_x", "epsilon", "3x(1x28x28+1)", "error", Double.NaN,
                        64 * SelfTest.U, false, Double.NaN, "CUDA error in k: boom"));
        String t = table(new SelfTest.Report("cuda-sim", "sim", "cpu", 1, rows));
        assertTrue(Pattern.compile("(?m)^1 passed, 1 failed$").matcher(t).find(), t);
        assertTrue(t.contains("failures:\n  diffusion_loss broken_x epsilon [3x(1x28x28+1)]: CUDA error in k: boom"), t);
        String[] lines = t.split("\n");
        int h = Arrays.asList(lines).indexOf(Arrays.stream(lines).filter(l -> l.startsWith("family")).findFirst().orElseThrow());
        int col = lines[h].indexOf("result");
        assertEquals("PASS", lines[h + 2].substring(col, col + 4), t);
        assertEquals("FAIL", lines[h + 3].substring(col, col + 4), t);
    }
}
