package io.diffusion4j.selftest;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.TextTable;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** The self-test's report as a text table: one row per kernel check, the notes, the failures and the summary. */
public final class ReportTable {
    private ReportTable() {}

    /** Prints the table, the notes, the failures and the summary line. */
    public static void print(SelfTest.Report report, PrintStream out) {
        print(report, null, out);
    }

    /** Prints the table, the notes (with the device peak when known), the failures and the summary line. */
    public static void print(SelfTest.Report report, Backend.Peak peak, PrintStream out) {
        String[] head = {"family", "variant", "kernel", "shape", "max rel err", "tol", "result", "time/call", "GB/s",
            "% peak"};
        List<String[]> lines = new ArrayList<>();
        for (SelfTest.Row r : report.rows()) {
            double gbs = r.gigabytesPerSecond();
            String gbsText = Double.isNaN(gbs) ? "-" : String.format(Locale.ROOT, "%.2f", gbs);
            String peakText = Double.isNaN(gbs) || peak == null || !peak.known() ? "-"
                    : String.format(Locale.ROOT, "%.1f", 100 * gbs * 1e9 / peak.bytesPerSecond());
            lines.add(new String[] {r.family(), r.variant(), r.kernel(), r.shape(), r.error(), r.toleranceText(),
                r.passed() ? "PASS" : "FAIL", r.timeText(), gbsText, peakText});
        }
        TextTable.print(head, lines, c -> c >= 4 && c != 6, out); // numbers right-aligned
        out.println();
        out.println("max rel err: max |dev - cpu| / (|cpu| + M) over the outputs, held to tol (u = 2^-24); "
                + "atol = tol * M, M a bound on the terms' magnitude; \"bit-exact\": identical bits (required for rng and eps)");
        boolean sim = report.device().equals(Device.CUDA_SIM.cliName());
        out.println("GB/s: bytes of all the call's tensors (each moved once, a lower bound of the traffic) per second; "
                + "% peak: that against the device's DRAM peak");
        out.println("time/call: median over repeats of the backend's timer (CUDA events on a GPU, host clock on cuda-sim), "
                + "cache flushed before each repeat" + (sim ? "; on cuda-sim these are simulator times (CUDA kernels on CPU "
                + "threads), not GPU times" : ""));
        if (peak != null && peak.known()) {
            out.printf(java.util.Locale.ROOT, "device peak: %.0f GB/s DRAM, %.1f TFLOP/s float32 (from device attributes)%n",
                    peak.bytesPerSecond() / 1e9, peak.flops() / 1e12);
        } else {
            out.println("device peak: unknown on " + report.device() + " (no device attributes); GB/s against a GPU's peak needs a GPU");
        }
        List<SelfTest.Row> failed = report.rows().stream().filter(r -> !r.passed()).toList();
        if (!failed.isEmpty()) {
            out.println();
            out.println("failures:");
            for (SelfTest.Row r : failed) {
                out.println("  " + r.family() + " " + r.variant() + " " + r.kernel() + " [" + r.shape() + "]: " + r.detail());
            }
        }
        out.println();
        out.println(report.passed() + " passed, " + report.failed() + " failed");
    }
}
