package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.BackendKind;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.openjdk.jmh.results.BenchmarkResult;
import org.openjdk.jmh.results.IterationResult;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;

/**
 * Runs the kernel, copy-bandwidth and downcall benchmarks in one JMH run and
 * prints the README's table: median time per call over the measurement
 * iterations, achieved GB/s, and that as a fraction of the copy bandwidth
 * measured in the same run at the same working-set size.
 *
 * <p>Usage: {@code java -cp benchmarks/target/benchmarks.jar io.diffusion4j.bench.KernelReport [out.md]}
 */
public final class KernelReport {
    private KernelReport() {}

    /** Bytes moved per element of the batch tensor, per kernel (see DiffusionKernelBenchmark). */
    static final Map<String, Integer> BYTES_PER_ELEMENT = Map.of(
            "addNoise", 12, "diffusionLoss", 16, "ddpmStep", 12, "randomNormal", 4);

    public static void main(String[] args) throws RunnerException, IOException {
        Options opt = new OptionsBuilder()
                .include(DiffusionKernelBenchmark.class.getSimpleName())
                .include(CopyBandwidthBenchmark.class.getSimpleName())
                .include(DowncallBenchmark.class.getSimpleName())
                .build();
        Collection<RunResult> results = new Runner(opt).run();

        Map<Long, Double> copyUs = new LinkedHashMap<>();
        List<String> rows = new ArrayList<>();
        Map<String, Double> downcall = new LinkedHashMap<>();
        for (RunResult rr : results) {
            String name = rr.getParams().getBenchmark();
            String method = name.substring(name.lastIndexOf('.') + 1);
            double median = median(rr);
            if (name.contains("CopyBandwidth")) {
                copyUs.put(Long.parseLong(rr.getParams().getParam("bytes")), median);
            } else if (name.contains("Downcall")) {
                downcall.put(method, median);
            }
        }
        String cpu;
        try (Backend b = Backend.open(BackendKind.CPU)) {
            cpu = b.description();
        }
        StringBuilder md = new StringBuilder();
        md.append("Machine: ").append(cpuModel()).append(", ").append(Runtime.getRuntime().availableProcessors())
                .append(" cores; backend: ").append(cpu).append("; JDK ").append(System.getProperty("java.version"))
                .append('\n').append('\n');
        md.append("| kernel | shape | median us/call | GB/s | copy GB/s at that size | fraction of copy |\n");
        md.append("|---|---|---:|---:|---:|---:|\n");
        for (RunResult rr : results) {
            String name = rr.getParams().getBenchmark();
            if (!name.contains("DiffusionKernel")) continue;
            String method = name.substring(name.lastIndexOf('.') + 1);
            String shape = rr.getParams().getParam("shape");
            long n = Shapes.elements(Shapes.parse(shape));
            double us = median(rr);
            double gbs = BYTES_PER_ELEMENT.get(method) * (double) n / (us * 1e3);
            long tensorBytes = 4 * n;
            Double cUs = copyUs.get(tensorBytes);
            double copyGbs = cUs == null ? Double.NaN : 2.0 * tensorBytes / (cUs * 1e3);
            rows.add(String.format(Locale.ROOT, "| %s | %s | %.1f | %.1f | %.1f | %.2f |", method, shape, us, gbs, copyGbs,
                    gbs / copyGbs));
        }
        rows.forEach(r -> md.append(r).append('\n'));
        Double dram = copyUs.get(268435456L);
        if (dram != null) {
            md.append('\n').append(String.format(Locale.ROOT, "DRAM copy bandwidth (256 MiB memcpy, one thread): %.1f GB/s%n",
                    2.0 * 268435456L / (dram * 1e3)));
        }
        md.append(String.format(Locale.ROOT, "Empty downcall: %.1f ns plain, %.1f ns with Linker.Option.critical%n",
                downcall.getOrDefault("plain", Double.NaN), downcall.getOrDefault("critical", Double.NaN)));
        System.out.println();
        System.out.print(md);
        if (args.length > 0) {
            Path out = Path.of(args[0]);
            Path tmp = Files.createTempFile(out.toAbsolutePath().getParent(), "report", ".tmp");
            Files.writeString(tmp, md);
            Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    static double median(RunResult rr) {
        List<Double> v = new ArrayList<>();
        for (BenchmarkResult br : rr.getBenchmarkResults()) {
            for (IterationResult ir : br.getIterationResults()) v.add(ir.getPrimaryResult().getScore());
        }
        v.sort(Double::compare);
        int m = v.size();
        return m == 0 ? Double.NaN : m % 2 == 1 ? v.get(m / 2) : (v.get(m / 2 - 1) + v.get(m / 2)) / 2;
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
