package io.diffusion4j.profile;

import java.util.List;

/**
 * The launches one call of a kernel family made, as counted by the profiling simulator.
 *
 * @param family          the kernel family ("conv2d", ...)
 * @param variant         the family's variant that ran
 * @param call            the call within the family ("forward 3x3", ...)
 * @param shape           the shape of its inputs
 * @param launches        its kernel launches, in order
 * @param measuredSeconds the median time of the same call measured on a real GPU, NaN when none was used
 * @param measuredOn      the GPU it was measured on ("" when none)
 */
public record ProfiledCase(String family, String variant, String call, String shape, List<KernelProfile> launches,
                           double measuredSeconds, String measuredOn) {
    public ProfiledCase {
        launches = List.copyOf(launches);
    }

    /** The sum of the launches' projected times on {@code gpu}. */
    public double projectedSeconds(GpuModel gpu, PtxasReport report) {
        double s = 0;
        for (KernelProfile k : launches) s += Projection.of(k, gpu, report).projectedSeconds();
        return s;
    }
}
