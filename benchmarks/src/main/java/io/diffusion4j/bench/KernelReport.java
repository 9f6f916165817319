package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.openjdk.jmh.results.BenchmarkResult;
import org.openjdk.jmh.results.IterationResult;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

/**
 * Runs every JMH benchmark of this project in one run (after {@link CoverageCheck}, which must pass) and prints
 * the README's table: per kernel family, benchmark and shape, the median time per call over the measurement
 * iterations, the achieved GFLOP/s and GB/s from the work the benchmark declares ({@link Work},
 * {@link KernelCatalog}), and that as a percentage of the machine's peak measured in the same run: the SGEMM peak
 * ({@link SgemmPeakBenchmark}, fastest iteration) for conv2d, linear and attention, the all-core copy
 * bandwidth ({@link CopyBandwidthBenchmark}, at the working set nearest the kernel's footprint) for the rest;
 * compute-bound rows also show their share of the processors' measured FMA throughput
 * ({@link FmaPeakBenchmark}), the hard limit.
 *
 * <p>Usage: {@code java -cp benchmarks/target/benchmarks.jar io.diffusion4j.bench.KernelReport [out.md]
 * [--backend cpu] [--include REGEX] [--warmup-iterations 2] [--iterations 3] [--seconds 0.25]}
 */
public final class KernelReport {
    private KernelReport() {}

    record Row(String family, int familyOrder, String benchmark, String shape, double us, Work work) {}

    public static void main(String[] args) throws RunnerException, IOException {
        Path out = null;
        String backend = "cpu";
        String include = KernelReport.class.getPackageName().replace(".", "\\.") + "\\..*";
        int warmups = 2;
        int iterations = 3;
        double seconds = 0.25;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--backend" -> backend = args[++i];
                case "--include" -> include = args[++i];
                case "--warmup-iterations" -> warmups = Integer.parseInt(args[++i]);
                case "--iterations" -> iterations = Integer.parseInt(args[++i]);
                case "--seconds" -> seconds = Double.parseDouble(args[++i]);
                default -> {
                    if (args[i].startsWith("--") || out != null) {
                        System.err.println("usage: KernelReport [out.md] [--backend NAME] [--include REGEX] "
                                + "[--warmup-iterations N] [--iterations N] [--seconds S]");
                        System.exit(2);
                    }
                    out = Path.of(args[i]);
                }
            }
        }
        List<String> problems = CoverageCheck.problems();
        if (!problems.isEmpty()) {
            System.err.println("JMH coverage check FAILED (fix before measuring):");
            problems.forEach(p -> System.err.println("  - " + p));
            System.exit(1);
        }

        TimeValue t = TimeValue.milliseconds(Math.round(seconds * 1000));
        Options opt = new OptionsBuilder().include(include).param("backend", backend).forks(1)
                .warmupIterations(warmups).warmupTime(t).measurementIterations(iterations).measurementTime(t)
                .build();
        long start = System.nanoTime();
        Collection<RunResult> results = new Runner(opt).run();
        double wall = (System.nanoTime() - start) / 1e9;

        double fmaGflops = Double.NaN;
        int fmaThreads = 0;
        double sgemmGflops = Double.NaN;
        int sgemmN = 0;
        Map<Long, Double> copyGbs = new TreeMap<>();      // all cores: working set (2 * bytes * threads) -> GB/s
        Map<Long, Double> copyOneGbs = new TreeMap<>();   // one thread: bytes -> GB/s
        Map<Long, Double> copyLoopGbs = new TreeMap<>();  // all cores, vector loop
        Map<Long, Double> memcpyGbs = new TreeMap<>();    // all cores, MemorySegment.copy
        int copyThreads = 0;
        double plainNs = Double.NaN, criticalNs = Double.NaN;
        List<Row> rows = new ArrayList<>();
        List<String> families;
        String description;
        try (Backend b = Backend.open(backend)) {
            families = b.kernelFamilies();
            description = b.description();
        }
        for (RunResult rr : results) {
            String name = rr.getParams().getBenchmark();
            String cls = name.substring(0, name.lastIndexOf('.'));
            String method = name.substring(name.lastIndexOf('.') + 1);
            Class<?> owner;
            try {
                owner = Class.forName(cls);
            } catch (ClassNotFoundException e) {
                throw new IllegalStateException(e);
            }
            if (owner == FmaPeakBenchmark.class) {
                fmaThreads = rr.getParams().getThreads();
                for (BenchmarkResult br : rr.getBenchmarkResults()) {
                    for (IterationResult ir : br.getIterationResults()) {
                        double g = ir.getSecondaryResults().get("flops").getScore() / 1e9;
                        if (Double.isNaN(fmaGflops) || g > fmaGflops) fmaGflops = g;
                    }
                }
            } else if (owner == SgemmPeakBenchmark.class) {
                int n = Integer.parseInt(rr.getParams().getParam("n"));
                double g = 2.0 * n * n * n / (best(rr) * 1e3);
                if (Double.isNaN(sgemmGflops) || g > sgemmGflops) {
                    sgemmGflops = g;
                    sgemmN = n;
                }
            } else if (owner == CopyBandwidthBenchmark.class) {
                long bytes = Long.parseLong(rr.getParams().getParam("bytes"));
                int threads = rr.getParams().getThreads();
                double gbs = threads * 2.0 * bytes / (median(rr) * 1e3);
                if (method.equals("copy")) {
                    copyOneGbs.put(bytes, gbs);
                } else {
                    (method.equals("copyAllCores") ? copyLoopGbs : memcpyGbs).put(threads * 2L * bytes, gbs);
                    copyGbs.merge(threads * 2L * bytes, gbs, Math::max);
                    copyThreads = threads;
                }
            } else if (owner == DowncallBenchmark.class) {
                if (method.equals("plain")) plainNs = median(rr);
                else criticalNs = median(rr);
            } else {
                Kernel k = CoverageCheck.annotation(owner, method);
                if (k == null) continue;
                String shape = rr.getParams().getParam("shape");
                Work w = KernelCatalog.work(owner, method, shape);
                int order = families.indexOf(k.family());
                rows.add(new Row(k.family(), order < 0 ? Integer.MAX_VALUE : order,
                        owner.getSimpleName().replace("Benchmark", "") + "." + method, shape, median(rr), w));
            }
        }
        // stable: JMH runs benchmarks sorted by name and parameters; group them by family in the header's order
        rows.sort(Comparator.comparingInt(Row::familyOrder));

        StringBuilder md = new StringBuilder();
        md.append("Machine: ").append(cpuModel()).append(", ").append(Runtime.getRuntime().availableProcessors())
                .append(" cores; backend: ").append(description).append("; JDK ")
                .append(System.getProperty("java.version")).append('\n');
        md.append(String.format(Locale.ROOT, "Measured %s in one JMH run of %.0f s (1 fork per benchmark and shape, "
                        + "%d x %.2f s warm-up, %d x %.2f s measurement; times are medians of the measurement "
                        + "iterations).%n%n",
                ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm 'UTC'")), wall,
                warmups, seconds, iterations, seconds));
        md.append("Peaks measured in the same run:\n");
        md.append(String.format(Locale.ROOT, "- float32 FMA throughput: **%.1f GFLOP/s** (%d threads of independent "
                + "Vector API FMA chains, fastest iteration: the hardware's arithmetic limit)%n", fmaGflops, fmaThreads));
        md.append(String.format(Locale.ROOT, "- SGEMM: **%.1f GFLOP/s** (LinearKernels.linear %d x %d x %d, all "
                + "threads, fastest iteration)%n", sgemmGflops, sgemmN, sgemmN, sgemmN));
        md.append(String.format(Locale.ROOT, "- copy bandwidth, %d threads at once, each its own buffers, by working "
                + "set (2 x bytes x threads): the faster of a vector load/store loop and MemorySegment.copy "
                + "(non-temporal stores for large blocks):", copyThreads));
        String sep = " ";
        for (Map.Entry<Long, Double> e : copyGbs.entrySet()) {
            md.append(sep).append(String.format(Locale.ROOT, "%s **%.1f GB/s** (%.1f / %.1f)", size(e.getKey()),
                    e.getValue(), copyLoopGbs.getOrDefault(e.getKey(), Double.NaN),
                    memcpyGbs.getOrDefault(e.getKey(), Double.NaN)));
            sep = ", ";
        }
        md.append("\n- copy bandwidth, one thread, vector loop (bytes copied):");
        sep = " ";
        for (Map.Entry<Long, Double> e : copyOneGbs.entrySet()) {
            md.append(sep).append(String.format(Locale.ROOT, "%s %.1f GB/s", size(e.getKey()), e.getValue()));
            sep = ", ";
        }
        md.append('\n');
        md.append(String.format(Locale.ROOT, "- empty downcall: %.1f ns plain, %.1f ns with Linker.Option.critical%n%n",
                plainNs, criticalNs));
        md.append("| family | benchmark | shape | us/call | GFLOP/s | GB/s | compared with | % of it | % of FMA peak |\n");
        md.append("|---|---|---|---:|---:|---:|---|---:|---:|\n");
        for (Row r : rows) {
            double gflops = r.work.flops() / (r.us * 1e3);
            double gbs = r.work.bytes() / (r.us * 1e3);
            String peak;
            double pct;
            if (r.work.bound() == Work.Bound.COMPUTE) {
                peak = "SGEMM";
                pct = 100 * gflops / sgemmGflops;
            } else {
                long copy = nearestCopy(copyGbs, r.work.footprint());
                peak = copy < 0 ? "copy ?" : "copy " + size(copy);  // all-core copy of that much traffic
                pct = copy < 0 ? Double.NaN : 100 * gbs / copyGbs.get(copy);
            }
            String fmaPct = r.work.flops() > 0 ? String.format(Locale.ROOT, "%.0f%%", 100 * gflops / fmaGflops) : "-";
            md.append(String.format(Locale.ROOT, "| %s | %s | %s | %s | %s | %.1f | %s | %.0f%% | %s |%n", r.family,
                    r.benchmark, r.shape, fmt(r.us), r.work.flops() > 0 ? String.format(Locale.ROOT, "%.1f", gflops) : "-",
                    gbs, peak, pct, fmaPct));
        }
        System.out.println();
        System.out.print(md);
        if (out != null) {
            Path parent = out.toAbsolutePath().getParent();
            Files.createDirectories(parent);
            Path tmp = Files.createTempFile(parent, "report", ".tmp");
            Files.writeString(tmp, md);
            Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            System.out.println("written to " + out);
        }
    }

    /** The all-core copy whose working set is nearest, on a log scale, the kernel's footprint. */
    static long nearestCopy(Map<Long, Double> copyGbs, double bytes) {
        long best = -1;
        double bestDist = Double.POSITIVE_INFINITY;
        for (long traffic : copyGbs.keySet()) {
            double d = Math.abs(Math.log(traffic / bytes));
            if (d < bestDist) {
                bestDist = d;
                best = traffic;
            }
        }
        return best;
    }

    static String size(long bytes) {
        return bytes >= 1 << 20 ? (bytes >> 20) + " MiB" : (bytes >> 10) + " KiB";
    }

    static String fmt(double us) {
        return us >= 100 ? String.format(Locale.ROOT, "%.0f", us) : String.format(Locale.ROOT, "%.1f", us);
    }

    static List<Double> scores(RunResult rr) {
        List<Double> v = new ArrayList<>();
        for (BenchmarkResult br : rr.getBenchmarkResults()) {
            for (IterationResult ir : br.getIterationResults()) v.add(ir.getPrimaryResult().getScore());
        }
        v.sort(Double::compare);
        return v;
    }

    static double median(RunResult rr) {
        List<Double> v = scores(rr);
        int m = v.size();
        return m == 0 ? Double.NaN : m % 2 == 1 ? v.get(m / 2) : (v.get(m / 2 - 1) + v.get(m / 2)) / 2;
    }

    /** The fastest measurement iteration (its mean time per call). */
    static double best(RunResult rr) {
        List<Double> v = scores(rr);
        return v.isEmpty() ? Double.NaN : v.get(0);
    }

    static String cpuModel() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).trim();
            }
        } catch (IOException ignored) {
            // not Linux: fall through
        }
        return System.getProperty("os.arch");
    }
}
