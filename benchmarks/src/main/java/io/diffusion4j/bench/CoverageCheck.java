package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.bindings.d4j_h;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.runner.BenchmarkList;
import org.openjdk.jmh.runner.BenchmarkListEntry;

/**
 * Fails (exit status 1, or a non-empty {@link #problems()}) when the JMH suite does not cover the native
 * kernels: a kernel family that {@code d4j_kernel_families} lists (D4J_KERNEL_FAMILIES) without a
 * {@link Kernel @Kernel} benchmark, a kernel entry point of d4j.h (every {@code d4j_*} function of the
 * generated bindings except the {@link #NOT_KERNELS infrastructure}) without one, a {@code @Kernel} naming an
 * unknown family or function, or a benchmark whose work (FLOPs, bytes) is not declared for one of its shapes.
 * KernelReport runs it first; CoverageCheckTest runs it in {@code mvn verify}.
 *
 * <p>Usage: {@code java -cp benchmarks/target/benchmarks.jar io.diffusion4j.bench.CoverageCheck}
 */
public final class CoverageCheck {
    private CoverageCheck() {}

    /** d4j.h functions that are not kernels: library, backends, variants, timing, buffers, schedules, graphs, profiling. */
    static final Set<String> NOT_KERNELS = Set.of(
            "d4j_abi_version", "d4j_last_error", "d4j_noop",
            "d4j_backend_open", "d4j_backend_close", "d4j_backend_name", "d4j_backend_describe", "d4j_backend_live",
            "d4j_backend_synchronize", "d4j_backend_set_threads", "d4j_backend_set_precision", "d4j_backend_precision",
            "d4j_kernel_families", "d4j_kernel_variants", "d4j_kernel_variant", "d4j_kernel_select",
            "d4j_kernel_tensor_core_variants",
            "d4j_timer_begin", "d4j_timer_end", "d4j_flush_cache", "d4j_device_peak",
            "d4j_buffer_alloc", "d4j_buffer_free", "d4j_buffer_size", "d4j_buffer_view", "d4j_buffer_write",
            "d4j_buffer_read", "d4j_buffer_fill_f32",
            "d4j_schedule_create", "d4j_schedule_free",
            "d4j_capture_supported", "d4j_capture_begin", "d4j_capture_end", "d4j_graph_launch", "d4j_graph_info",
            "d4j_graph_free", "d4j_profile_begin", "d4j_profile_read", "d4j_profile_end");

    /** One {@code @Benchmark} method with its {@code @Kernel} annotation (null when it has none). */
    record BenchmarkMethod(Class<?> owner, String method, Kernel kernel) {
        String name() {
            return owner.getSimpleName() + "." + method;
        }
    }

    public static void main(String[] args) {
        List<String> problems = problems();
        if (!problems.isEmpty()) {
            System.err.println("JMH coverage check FAILED:");
            problems.forEach(p -> System.err.println("  - " + p));
            System.exit(1);
        }
        System.out.println("JMH coverage check passed: every kernel family and kernel entry point has a benchmark.");
    }

    /** The problems of the suite compiled into this jar, against the native library's families. */
    public static List<String> problems() {
        List<String> families;
        try (Backend b = Backend.open(Device.CPU)) {
            families = b.kernelFamilies();
        }
        return problems(families, entryPoints(), benchmarks());
    }

    /** The pure check, separated so a test can feed it a suite with a hole. */
    static List<String> problems(Collection<String> families, Collection<String> entryPoints,
                                 Collection<BenchmarkMethod> benchmarks) {
        List<String> problems = new ArrayList<>();
        Set<String> kernelEntries = new TreeSet<>(entryPoints);
        kernelEntries.removeAll(NOT_KERNELS);
        Map<String, List<String>> byFamily = new LinkedHashMap<>();
        Map<String, List<String>> byEntry = new LinkedHashMap<>();
        for (BenchmarkMethod bm : benchmarks) {
            Kernel k = bm.kernel();
            if (k == null) continue;
            if (!families.contains(k.family())) {
                problems.add(bm.name() + " names family '" + k.family() + "', which d4j_kernel_families does not list "
                        + families);
            }
            if (k.entryPoints().length == 0) problems.add(bm.name() + " names no entry point");
            for (String e : k.entryPoints()) {
                if (!kernelEntries.contains(e)) {
                    problems.add(bm.name() + " names '" + e + "', which is not a kernel entry point of d4j.h");
                }
                byEntry.computeIfAbsent(e, x -> new ArrayList<>()).add(bm.name());
            }
            byFamily.computeIfAbsent(k.family(), x -> new ArrayList<>()).add(bm.name());
            for (String shape : shapes(bm.owner())) {
                Work w;
                try {
                    w = KernelCatalog.work(bm.owner(), bm.method(), shape);
                } catch (RuntimeException e) {
                    problems.add(bm.name() + " at shape " + shape + ": its work model fails: " + e);
                    continue;
                }
                if (w == null) problems.add(bm.name() + " at shape " + shape + " declares no work (KernelCatalog)");
            }
        }
        for (String f : families) {
            if (!byFamily.containsKey(f)) problems.add("kernel family '" + f + "' has no JMH benchmark (@Kernel)");
        }
        for (String e : kernelEntries) {
            if (!byEntry.containsKey(e)) problems.add("kernel entry point " + e + " of d4j.h has no JMH benchmark (@Kernel)");
        }
        return problems;
    }

    /** Every {@code d4j_*} function of the jextract bindings, i.e. of native/include/d4j.h. */
    static Set<String> entryPoints() {
        Set<String> out = new TreeSet<>();
        for (Method m : d4j_h.class.getMethods()) {
            String n = m.getName();
            if (Modifier.isStatic(m.getModifiers()) && n.startsWith("d4j_") && !n.contains("$")) out.add(n);
        }
        return out;
    }

    /** Every benchmark method compiled into this jar (JMH's generated list), with its annotation. */
    static List<BenchmarkMethod> benchmarks() {
        List<BenchmarkMethod> out = new ArrayList<>();
        Set<String> seen = new LinkedHashSet<>();
        try (InputStream in = CoverageCheck.class.getResourceAsStream(BenchmarkList.BENCHMARK_LIST)) {
            if (in == null) throw new IllegalStateException(BenchmarkList.BENCHMARK_LIST + " is not on the class path");
            for (BenchmarkListEntry e : BenchmarkList.readBenchmarkList(in)) {
                String user = e.getUsername();
                if (!seen.add(user)) continue;
                Class<?> owner = Class.forName(e.getUserClassQName());
                String method = user.substring(user.lastIndexOf('.') + 1);
                out.add(new BenchmarkMethod(owner, method, annotation(owner, method)));
            }
        } catch (IOException | ClassNotFoundException e) {
            throw new IllegalStateException("cannot read the JMH benchmark list", e);
        }
        return out;
    }

    static Kernel annotation(Class<?> owner, String method) {
        for (Method m : owner.getMethods()) {
            if (m.getName().equals(method) && m.isAnnotationPresent(Benchmark.class)) return m.getAnnotation(Kernel.class);
        }
        throw new IllegalStateException(owner.getName() + "." + method + " is not a @Benchmark method");
    }

    /** The values of the class's {@code shape} parameter (one empty shape when it has none). */
    static List<String> shapes(Class<?> owner) {
        try {
            Param p = owner.getField("shape").getAnnotation(Param.class);
            if (p != null) return Arrays.asList(p.value());
        } catch (NoSuchFieldException ignored) {
            // no shape parameter
        }
        return List.of("");
    }
}
