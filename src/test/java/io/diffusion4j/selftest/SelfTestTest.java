package io.diffusion4j.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.cli.Main;
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
 * The parity engine on cuda-sim (every family, default and v2 variants, all passing), the
 * {@code selftest} command, and the engine's comparison on hand-made outputs (so a mismatch, a NaN
 * left by an unwritten element and a flipped bit are known to fail). The deliberately broken kernels
 * of the test-only simulator are in io.diffusion4j.kernels.SimulatorTeethTest.
 */
class SelfTestTest {
    record Run(int exit, String out, String err) {
        @Override
        public String toString() {
            return "exit " + exit + "\n--- stdout\n" + out + "--- stderr\n" + err;
        }
    }

    static Run main(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
        int code;
        try (PrintStream out = new PrintStream(o, true, StandardCharsets.UTF_8);
                PrintStream err = new PrintStream(e, true, StandardCharsets.UTF_8)) {
            code = Main.run(args, out, err);
        }
        return new Run(code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
    }

    static boolean cudaUsable() {
        try {
            Backend.open(Device.CUDA).close();
            return true;
        } catch (D4jException.BackendUnavailableException e) {
            return false;
        }
    }

    static String table(SelfTest.Report r) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        try (PrintStream p = new PrintStream(o, true, StandardCharsets.UTF_8)) {
            SelfTestCommand.print(r, p);
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
                for (String v : sim.kernelVariants(f)) {
                    if (v.equals(sim.kernelVariants(f).get(0)) || v.equals("v2")) want.add(f + "/" + v);
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

    @Test
    void selftestCommandOnCudaSimPrintsTheTableAndExitsZero() {
        Run r = main("selftest", "--backend", "cuda-sim");
        System.out.println(r);
        assertEquals(0, r.exit(), r.toString());
        assertEquals("", r.err(), r.toString());
        String out = r.out();
        assertTrue(Pattern.compile("(?m)^family +variant +kernel +shape +max rel err +tol +result +time/call +GB/s +% peak$").matcher(out).find(), out);
        // every timed row carries a positive traffic figure; % peak is "-" without a known device peak
        assertTrue(Pattern.compile("(?m)^conv2d .* PASS +[0-9.]+ [mu]?s +[0-9]+\\.[0-9]{2} +-$").matcher(out).find(), out);
        for (String f : FAMILIES) {
            assertTrue(Pattern.compile("(?m)^" + f + " +v1 .* PASS ").matcher(out).find(), "no passing " + f + " row:\n" + out);
        }
        assertTrue(Pattern.compile("(?m)^diffusion_loss +v2 .* PASS ").matcher(out).find(), out);
        assertTrue(Pattern.compile("(?m)^linear +v2 .* PASS ").matcher(out).find(), out);
        assertFalse(out.contains("FAIL"), out);
        var summary = Pattern.compile("(?m)^(\\d+) passed, 0 failed$").matcher(out);
        assertTrue(summary.find(), out);
        assertTrue(Integer.parseInt(summary.group(1)) >= 80, out);
        assertTrue(out.contains("simulator times") && out.contains("not GPU times"), out);
        assertTrue(out.contains("device peak: unknown on cuda-sim"), out);
        assertTrue(out.contains("cache flushed before each repeat"), out);
        // aligned: every table row has the result column at the same offset as the header's
        String[] lines = out.split("\n");
        int header = -1;
        for (int i = 0; i < lines.length; i++) if (lines[i].startsWith("family ")) header = i;
        int col = lines[header].indexOf("result");
        for (int i = header + 2; i < lines.length && !lines[i].isEmpty(); i++) {
            assertEquals("PASS", lines[i].substring(col, col + 4), "misaligned row: " + lines[i] + "\n" + out);
        }
    }

    @Test
    void selftestWithoutBackendPicksCudaOrSaysWhyItRunsOnCudaSim() {
        Run r = main("selftest", "--variants", "default");
        assertEquals(0, r.exit(), r.toString());
        if (cudaUsable()) {
            assertTrue(r.out().startsWith("GPU found: running the CUDA kernels on cuda"), r.toString());
        } else {
            assertTrue(r.out().startsWith("no GPU: running the CUDA kernels on cuda-sim ("), r.toString());
            assertTrue(r.out().contains("device    cuda-sim: "), r.toString());
        }
        assertFalse(Pattern.compile("(?m)^diffusion_loss +v2 ").matcher(r.out()).find(), "--variants default ran v2:\n" + r);
        assertTrue(Pattern.compile("(?m)^\\d+ passed, 0 failed$").matcher(r.out()).find(), r.toString());
    }

    @Test
    void selftestOnCudaWithoutAGpuFailsWithAOneLineReason() {
        assumeFalse(cudaUsable(), "a CUDA device is usable here");
        Run r = main("selftest", "--backend", "cuda");
        assertNotEquals(0, r.exit(), r.toString());
        assertEquals("", r.out(), r.toString());
        List<String> errLines = Arrays.stream(r.err().split("\n")).filter(l -> !l.isBlank()).toList();
        assertEquals(1, errLines.size(), r.toString());
        assertTrue(errLines.get(0).startsWith("selftest: the cuda backend cannot run here: "), r.toString());
        assertTrue(errLines.get(0).length() > "selftest: the cuda backend cannot run here: ".length() + 10, r.toString());
    }

    @Test
    void badOptionsAreRefusedAndTheCommandIsInTheUsage() {
        assertEquals(2, main("selftest", "--backend", "cpu").exit());
        assertEquals(2, main("selftest", "--variants", "some").exit());
        assertEquals(2, main("selftest", "--frobnicate").exit());
        assertEquals(2, main("selftest", "--backend").exit());
        Run help = main("help");
        assertEquals(0, help.exit());
        assertTrue(help.out().contains("selftest [--backend cuda|cuda-sim] [--variants all|default]"), help.toString());
    }

    // ---- the comparison on hand-made outputs ---------------------------------------------------

    static List<SelfTest.Output> close(float... v) {
        return List.of(SelfTest.Output.close("x", v, 8 * SelfTest.U, 1.0));
    }

    @Test
    void comparisonPassesWithinAndFailsBeyondTheTolerance() {
        float c = 1.5f;
        // within: a few ulps of 1.5 (ulp = 2u * 1 here) against 8u * (1.5 + 1) = 20u
        SelfTest.Comparison ok = SelfTest.compare(close(c, 0f), close(Math.nextUp(Math.nextUp(c)), 0f));
        assertTrue(ok.passed(), ok.toString());
        assertTrue(ok.maxRel() > 0 && ok.maxRel() <= 8 * SelfTest.U, ok.toString());
        // beyond: 16 ulps of 1.5 = 32u > 20u
        float far = c;
        for (int i = 0; i < 16; i++) far = Math.nextUp(far);
        SelfTest.Comparison bad = SelfTest.compare(close(c, 0f), close(far, 0f));
        assertFalse(bad.passed(), bad.toString());
        assertTrue(bad.detail().contains("1 of 2 elements violate"), bad.detail());
        // an element left at its NaN poison fails, and so does an infinity
        assertFalse(SelfTest.compare(close(c, 0f), close(c, Float.NaN)).passed());
        assertFalse(SelfTest.compare(close(c, 0f), close(c, Float.POSITIVE_INFINITY)).passed());
        assertEquals("non-finite", SelfTest.compare(close(c, 0f), close(c, Float.NaN)).error());
        // identical bits
        assertEquals("bit-exact", SelfTest.compare(close(c, -0f), close(c, -0f)).error());
    }

    @Test
    void bitExactOutputsFailOnOneFlippedBit() {
        int[] ref = {1, 2, 3, 0x7fffffff};
        int[] got = ref.clone();
        got[3] ^= 1;
        SelfTest.Comparison words = SelfTest.compare(List.of(SelfTest.Output.bits("uint32", ref)),
                List.of(SelfTest.Output.bits("uint32", got)));
        assertFalse(words.passed(), words.toString());
        assertEquals("bits differ", words.error());
        assertTrue(words.detail().contains("1 of 4 elements differ in bits (first at 3"), words.detail());
        float[] n = {0.25f, -1.0f}, m = {0.25f, Math.nextDown(-1.0f)};
        assertFalse(SelfTest.compare(List.of(SelfTest.Output.bits("normal", n)), List.of(SelfTest.Output.bits("normal", m))).passed());
        // -0 vs +0 differ in bits
        assertFalse(SelfTest.compare(List.of(SelfTest.Output.bits("normal", new float[] {0f})),
                List.of(SelfTest.Output.bits("normal", new float[] {-0f}))).passed());
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
