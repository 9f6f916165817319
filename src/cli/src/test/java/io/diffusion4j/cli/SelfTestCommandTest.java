package io.diffusion4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.diffusion4j.Device;
import io.diffusion4j.testutil.DeviceBackends;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The {@code selftest} command: its table on cuda-sim, the device it picks, and its errors. */
class SelfTestCommandTest {
    static CliRun main(String... args) {
        return CliRun.of(args);
    }

    static boolean cudaUsable() {
        return DeviceBackends.usable(Device.CUDA);
    }

    /** Every family of the library. */
    static final List<String> FAMILIES = List.of("rng", "add_noise", "diffusion_loss", "reverse_step", "timestep_embedding",
            "conv2d", "group_norm", "silu", "residual_add", "linear", "attention", "grad_norm", "adamw", "ema");

    @Test
    void selftestCommandOnCudaSimPrintsTheTableAndExitsZero() {
        CliRun r = main("selftest", "--backend", "cuda-sim");
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
        CliRun r = main("selftest", "--variants", "default");
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
        CliRun r = main("selftest", "--backend", "cuda");
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
        CliRun help = main("help");
        assertEquals(0, help.exit());
        assertTrue(help.out().contains("  selftest "), help.toString());
        CliRun usage = main("selftest", "--help");
        assertEquals(0, usage.exit());
        assertTrue(usage.out().contains("usage: diffusion4j selftest") && usage.out().contains("--backend=NAME")
                && usage.out().contains("--variants=WHICH"), usage.toString());
    }

    @Test
    void profileWritesTheTableAndTheCsvOfEveryFamily() throws java.io.IOException {
        java.nio.file.Path csv = java.nio.file.Files.createTempDirectory("d4j-profile").resolve("profile.csv");
        CliRun r = main("selftest", "--profile", "--backend", "cuda-sim", "--csv", csv.toString());
        assertEquals(0, r.exit(), r.toString());
        String out = r.out();
        assertTrue(out.contains("PROJECTIONS, NOT MEASUREMENTS"), out);
        assertTrue(Pattern.compile("(?m)^family +variant +kernel +call / shape +gld eff +gst eff +smem confl/req").matcher(out).find(), out);
        List<String> lines = java.nio.file.Files.readAllLines(csv);
        assertTrue(lines.get(0).startsWith("family,variant,kernel,shape,gld_efficiency,gst_efficiency,"
                + "smem_conflicts_per_request,unique_bytes,sector_bytes,fp32_flops,tensor_flops,occupancy_h100,"
                + "projected_us_a100,projected_us_h100,roofline_fraction_h100,bound,"), lines.get(0));
        for (String f : FAMILIES) {
            assertTrue(lines.stream().anyMatch(l -> l.startsWith(f + ",v1,")), "no CSV line of " + f);
        }
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("linear,v2,")), "every variant");
        // the bound column names a resource on every line
        int bound = Arrays.asList(lines.get(0).split(",")).indexOf("bound");
        for (String l : lines.subList(1, lines.size())) {
            String[] f = l.replaceAll("\"[^\"]*\"", "q").split(",", -1);
            assertTrue(List.of("dram", "l2", "smem", "fp32", "sfu", "tensor", "launch").contains(f[bound]), l);
        }
        assertEquals(2, main("selftest", "--csv", csv.toString()).exit(), "--csv needs --profile");
        assertEquals(2, main("selftest", "--profile", "--shapes", "imagenet").exit());
    }
}
