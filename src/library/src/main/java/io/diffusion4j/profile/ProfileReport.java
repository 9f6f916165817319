package io.diffusion4j.profile;

import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.io.TextTable;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** The profile of a set of calls as a text table and as CSV, one row per kernel launch. */
public final class ProfileReport {
    private ProfileReport() {}

    /** The CSV header: the columns every consumer relies on first, then the details. */
    public static final List<String> CSV_COLUMNS = List.of("family", "variant", "kernel", "shape", "gld_efficiency",
            "gst_efficiency", "smem_conflicts_per_request", "unique_bytes", "sector_bytes", "fp32_flops", "tensor_flops",
            "occupancy_h100", "projected_us_a100", "projected_us_h100", "roofline_fraction_h100", "bound", "call",
            "grid", "block", "blocks", "blocks_counted", "active_lanes_per_warp", "barriers", "fp32_warp_inst",
            "special_warp_inst", "occupancy_a100", "bound_a100", "roofline_fraction_a100", "measured_us", "measured_on", "int_div32", "int_div64");

    /** The CSV text (header and one line per launch). */
    public static String csv(List<ProfiledCase> cases, PtxasReport report) {
        StringBuilder b = new StringBuilder(String.join(",", CSV_COLUMNS)).append('\n');
        for (ProfiledCase c : cases) {
            for (int i = 0; i < c.launches().size(); i++) {
                KernelProfile k = c.launches().get(i);
                Projection a = Projection.of(k, GpuModel.A100, report), h = Projection.of(k, GpuModel.H100, report);
                // the measured time belongs to the whole call: on its first launch's line
                String measured = i == 0 && !Double.isNaN(c.measuredSeconds()) ? num(c.measuredSeconds() * 1e6) : "";
                List<String> f = List.of(c.family(), c.variant(), k.kernel(), c.shape(), num(k.gldEfficiency()),
                        num(k.gstEfficiency()), num(k.smemConflictsPerRequest()), num(k.uniqueBytes()),
                        num(k.sectorBytes()), num(k.fp32Flops()), num(k.tensorFlops()), occ(h), num(a.projectedSeconds() * 1e6),
                        num(h.projectedSeconds() * 1e6), num(h.rooflineFraction()), h.bound(), c.call(),
                        dims(k.grid()), dims(k.block()), Long.toString(k.blocks()), Long.toString(k.blocksCounted()),
                        num(k.activeLanesPerWarpBlock()), num(k.barriers()), num(k.fp32WarpInst()),
                        num(k.specialWarpInst()), occ(a), a.bound(), num(a.rooflineFraction()), measured,
                        i == 0 ? c.measuredOn() : "", num(k.intDiv32()), num(k.intDiv64()));
                for (int j = 0; j < f.size(); j++) b.append(j == 0 ? "" : ",").append(quote(f.get(j)));
                b.append('\n');
            }
        }
        return b.toString();
    }

    /** Writes {@link #csv} to {@code file} atomically. */
    public static void writeCsv(Path file, List<ProfiledCase> cases, PtxasReport report) throws IOException {
        AtomicFiles.writeString(file, csv(cases, report));
    }

    /** Prints one line per launch and the notes saying what the numbers are. */
    public static void print(List<ProfiledCase> cases, PtxasReport report, PrintStream out) {
        boolean measured = cases.stream().anyMatch(c -> !Double.isNaN(c.measuredSeconds()));
        List<String> head = new ArrayList<>(List.of("family", "variant", "kernel", "call / shape", "gld eff", "gst eff",
                "smem confl/req", "lanes", "div/thread", "unique MB", "MFLOP", "occ H100", "A100 us", "H100 us", "roofline H100",
                "bound H100"));
        if (measured) head.add("measured us");
        List<String[]> lines = new ArrayList<>();
        for (ProfiledCase c : cases) {
            for (int i = 0; i < c.launches().size(); i++) {
                KernelProfile k = c.launches().get(i);
                Projection a = Projection.of(k, GpuModel.A100, report), h = Projection.of(k, GpuModel.H100, report);
                List<String> l = new ArrayList<>(List.of(c.family(), c.variant(), k.kernel() + (k.complete() ? "" : "*"),
                        c.call() + " " + c.shape(), fixed(k.gldEfficiency(), 2), fixed(k.gstEfficiency(), 2),
                        fixed(k.smemConflictsPerRequest(), 2), fixed(k.activeLanesPerWarpBlock(), 1),
                        fixed(k.intDivisionsPerThread(), 1),
                        fixed(k.uniqueBytes() / 1e6, 3), fixed(k.fp32Flops() / 1e6, 3), occ(h),
                        fixed(a.projectedSeconds() * 1e6, 1), fixed(h.projectedSeconds() * 1e6, 1),
                        percent(h.rooflineFraction()), h.bound()));
                if (measured) l.add(i == 0 ? fixed(c.measuredSeconds() * 1e6, 1) + " (call)" : "");
                lines.add(l.toArray(String[]::new));
            }
        }
        TextTable.print(head.toArray(String[]::new), lines, c -> false, out);
        out.println();
        out.println("PROJECTIONS, NOT MEASUREMENTS: the A100/H100 times are a roofline model applied to counts the "
                + "profiling simulator took from the CUDA sources on CPU threads; no GPU ran them"
                + (measured ? " (\"measured us\": the whole call timed on the GPU named in the CSV)" : "") + ".");
        out.println("gld/gst eff: sectors a perfect access would touch / sectors touched (1 = coalesced); smem confl/req: "
                + "extra shared-memory wavefronts per request (bank conflicts); lanes: active lanes per warp-executed "
                + "basic block (32 = no divergence); div/thread: integer divisions and remainders by a variable per "
                + "thread (a GPU runs a routine for each, not in the projection); unique MB: distinct 32-byte sectors read + written (DRAM stand-in); "
                + "MFLOP: FP32, an FMA is 2.");
        out.println("occ H100: resident warps per SM / 64 from the ptxas report" + (report.isEmpty()
                ? " (\"-\": this build had no nvcc, so no ptxas report)" : "") + "; roofline H100: the kernel's floor "
                + "(its FP32 FLOPs at the FP32 peak plus its tensor FLOPs at the TF32 or BF16 peak, or its unique bytes at HBM bandwidth, the longer) / its projected time; "
                + "bound: the resource that takes longest (dram, l2, smem, fp32, sfu, tensor, launch).");
        if (lines.stream().anyMatch(l -> l[2].endsWith("*"))) {
            out.println("*: a representative subset of the launch's blocks was simulated and the counts scaled to the "
                    + "whole grid.");
        }
        out.println("Model and sources: docs/profiling.md.");
    }

    private static String occ(Projection p) {
        return p.occupancy().map(o -> fixed(o.fraction(), 2)).orElse("-");
    }

    static String dims(int[] d) {
        return d[0] + "x" + d[1] + "x" + d[2];
    }

    static String num(double v) {
        if (Double.isNaN(v)) return "";
        if (v == Math.rint(v) && Math.abs(v) < 1e15) return Long.toString((long) v);
        return String.format(Locale.ROOT, "%.6g", v);
    }

    static String fixed(double v, int digits) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, "%." + digits + "f", v);
    }

    static String percent(double v) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, "%.1f%%", 100 * v);
    }

    /** A CSV field: quoted when it holds a comma or a quote. */
    static String quote(String s) {
        return s.contains(",") || s.contains("\"") ? "\"" + s.replace("\"", "\"\"") + "\"" : s;
    }
}
