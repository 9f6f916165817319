package io.diffusion4j.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The JMH suite covers every kernel family and kernel entry point of d4j.h, and the check can fail. */
class CoverageCheckTest {
    static List<String> families;

    @BeforeAll
    static void families() {
        try (Backend b = Backend.open(Device.CPU)) {
            families = b.kernelFamilies();
        }
    }

    @Test
    void everyKernelFamilyAndEntryPointHasABenchmarkWithDeclaredWork() {
        assertTrue(families.contains("conv2d") && families.contains("adamw"), "d4j_kernel_families lists only " + families);
        assertEquals(List.of(), CoverageCheck.problems(families, CoverageCheck.entryPoints(), CoverageCheck.benchmarks()));
    }

    @Test
    void aFamilyWithoutBenchmarkIsReported() {
        for (String family : List.of("adamw", "conv2d", "vlb")) {
            List<CoverageCheck.BenchmarkMethod> without = new ArrayList<>();
            for (CoverageCheck.BenchmarkMethod bm : CoverageCheck.benchmarks()) {
                if (bm.kernel() == null || !bm.kernel().family().equals(family)) without.add(bm);
            }
            List<String> problems = CoverageCheck.problems(families, CoverageCheck.entryPoints(), without);
            assertTrue(problems.stream().anyMatch(p -> p.contains("family '" + family + "'")),
                    "missing " + family + " not reported: " + problems);
        }
    }

    @Test
    void aNewEntryPointWithoutBenchmarkIsReported() {
        Set<String> entries = new TreeSet<>(CoverageCheck.entryPoints());
        entries.add("d4j_fancy_new_kernel");
        List<String> problems = CoverageCheck.problems(families, entries, CoverageCheck.benchmarks());
        assertEquals(List.of("kernel entry point d4j_fancy_new_kernel of d4j.h has no JMH benchmark (@Kernel)"), problems);
    }

    @Test
    void aNewFamilyWithoutBenchmarkIsReported() {
        List<String> more = new ArrayList<>(families);
        more.add("flash_conv");
        List<String> problems = CoverageCheck.problems(more, CoverageCheck.entryPoints(), CoverageCheck.benchmarks());
        assertEquals(List.of("kernel family 'flash_conv' has no JMH benchmark (@Kernel)"), problems);
    }

    @Test
    void everyKernelBenchmarkDeclaresPositiveWorkForEveryShape() {
        int rows = 0;
        for (CoverageCheck.BenchmarkMethod bm : CoverageCheck.benchmarks()) {
            if (bm.kernel() == null) continue;
            for (String shape : CoverageCheck.shapes(bm.owner())) {
                Work w = KernelCatalog.work(bm.owner(), bm.method(), shape);
                assertTrue(w != null && w.bytes() > 0, bm.name() + " " + shape + ": " + w);
                if (w.bound() == Work.Bound.COMPUTE) assertTrue(w.flops() > 0, bm.name() + " " + shape);
                rows++;
            }
        }
        assertTrue(rows >= 60, "only " + rows + " kernel rows");
    }
}
