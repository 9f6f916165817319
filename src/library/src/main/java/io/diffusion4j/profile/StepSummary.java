package io.diffusion4j.profile;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The projected time of a whole step on one GPU: the sum of its launches' projections, either each
 * launched through a stream (at least {@link GpuModel#launchSeconds()} each) or all replayed as one
 * CUDA graph (at least {@link GpuModel#graphNodeSeconds()} per node, plus one launch), and the kernels
 * that take the most of it.
 */
public record StepSummary(String step, GpuModel gpu, int launches, double streamSeconds, double graphSeconds,
                          List<KernelShare> slowest) {

    /** One kernel's share of the step: its launches, their projected time, and the bound of most of it. */
    public record KernelShare(String kernel, String family, int launches, double seconds, String bound) {}

    public static StepSummary of(String step, List<KernelProfile> launches, GpuModel gpu, PtxasReport report) {
        double stream = 0, graph = gpu.launchSeconds();
        Map<String, double[]> perKernel = new LinkedHashMap<>(); // seconds, launches
        Map<String, Map<String, Double>> bounds = new LinkedHashMap<>();
        for (KernelProfile k : launches) {
            Projection p = Projection.of(k, gpu, report);
            stream += p.projectedSeconds();
            double work = 0;
            for (Map.Entry<String, Double> e : p.seconds().entrySet()) {
                if (!e.getKey().equals("launch")) work = Math.max(work, e.getValue());
            }
            graph += Math.max(work, gpu.graphNodeSeconds());
            double[] acc = perKernel.computeIfAbsent(k.kernel(), x -> new double[2]);
            acc[0] += p.projectedSeconds();
            acc[1] += 1;
            bounds.computeIfAbsent(k.kernel(), x -> new LinkedHashMap<>()).merge(p.bound(), p.projectedSeconds(), Double::sum);
        }
        List<KernelShare> shares = new ArrayList<>();
        for (Map.Entry<String, double[]> e : perKernel.entrySet()) {
            String bound = bounds.get(e.getKey()).entrySet().stream().max(Map.Entry.comparingByValue()).orElseThrow().getKey();
            shares.add(new KernelShare(e.getKey(), KernelFamilies.of(e.getKey()), (int) e.getValue()[1], e.getValue()[0], bound));
        }
        shares.sort(Comparator.comparingDouble(KernelShare::seconds).reversed());
        return new StepSummary(step, gpu, launches.size(), stream, graph, List.copyOf(shares));
    }

    /** Prints the step's totals on each GPU and its slowest kernels on the last one. */
    public static void print(String step, List<KernelProfile> launches, PtxasReport report, int top, PrintStream out) {
        out.println();
        out.printf(Locale.ROOT, "%s: %d launches (PROJECTION from simulator counts, not a measurement)%n", step,
                launches.size());
        StepSummary last = null;
        for (GpuModel gpu : GpuModel.ALL) {
            StepSummary s = of(step, launches, gpu, report);
            out.printf(Locale.ROOT, "  %-14s %10s through a stream, %10s as one CUDA graph%n", gpu.name(),
                    millis(s.streamSeconds()), millis(s.graphSeconds()));
            last = s;
        }
        if (last == null) return;
        out.printf(Locale.ROOT, "  slowest kernels on %s:%n", last.gpu().name());
        for (KernelShare k : last.slowest().subList(0, Math.min(top, last.slowest().size()))) {
            out.printf(Locale.ROOT, "    %-24s %-14s %4d launches %10s  %5.1f%%  bound: %s%n", k.kernel(), k.family(),
                    k.launches(), millis(k.seconds()), 100 * k.seconds() / last.streamSeconds(), k.bound());
        }
    }

    static String millis(double s) {
        return s >= 1e-3 ? String.format(Locale.ROOT, "%.2f ms", s * 1e3) : String.format(Locale.ROOT, "%.1f us", s * 1e6);
    }
}
