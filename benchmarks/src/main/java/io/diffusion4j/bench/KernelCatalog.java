package io.diffusion4j.bench;

import java.util.Map;

/**
 * The work model of each kernel benchmark class: {@code work(method, shape)} gives the FLOPs and bytes of one
 * call of that {@code @Benchmark} method at that {@code shape} parameter, counted as the class's comment says
 * (null for a method it does not know, which {@link CoverageCheck} reports).
 */
final class KernelCatalog {
    private KernelCatalog() {}

    interface WorkModel {
        Work work(String method, String shape);
    }

    static final Map<Class<?>, WorkModel> MODELS = Map.of(
            ConvBenchmark.class, ConvBenchmark::work,
            NormBenchmark.class, NormBenchmark::work,
            ElementwiseBenchmark.class, ElementwiseBenchmark::work,
            LinearBenchmark.class, LinearBenchmark::work,
            AttentionBenchmark.class, AttentionBenchmark::work,
            OptimBenchmark.class, OptimBenchmark::work,
            DiffusionKernelBenchmark.class, DiffusionKernelBenchmark::work,
            SamplerBenchmark.class, SamplerBenchmark::work,
            ConditioningBenchmark.class, ConditioningBenchmark::work);

    /** The work of one call, or null when the class has no model or the model does not know the method. */
    static Work work(Class<?> benchmarkClass, String method, String shape) {
        WorkModel m = MODELS.get(benchmarkClass);
        return m == null ? null : m.work(method, shape);
    }
}
