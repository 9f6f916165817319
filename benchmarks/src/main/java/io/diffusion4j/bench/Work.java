package io.diffusion4j.bench;

/**
 * The work of one benchmark call, counted from its shape: floating-point operations (a multiply-add is 2; only
 * the matrix products of conv2d, linear and attention are counted, element-wise arithmetic is not) and the bytes
 * every implementation must move (each input tensor read once, each output tensor written once, an accumulated
 * (+=) output read and written; per-sample scalars and statistics ignored). A kernel that makes more passes than
 * that (GroupNorm reads its input twice) moves more than it is credited with. {@code bound} says which of the
 * machine's measured peaks the row is compared with: the SGEMM peak for the matrix-product kernels, the copy
 * bandwidth for the rest. {@code footprint} is the distinct memory a call touches (less than {@code bytes} when
 * outputs are updated in place): KernelReport compares a memory-bound kernel with a copy of that working set, so
 * a kernel whose data stay in a cache level is held to that level's bandwidth.
 */
public record Work(double flops, double bytes, double footprint, Bound bound) {
    public enum Bound { COMPUTE, MEMORY }

    public Work {
        if (!(flops >= 0 && bytes > 0 && footprint > 0)) {
            throw new IllegalArgumentException("work must be positive: " + flops + ", " + bytes + ", " + footprint);
        }
        if (bound == Bound.COMPUTE && flops <= 0) throw new IllegalArgumentException("a compute-bound kernel needs FLOPs");
    }

    static Work memory(double bytes) {
        return new Work(0, bytes, bytes, Bound.MEMORY);
    }

    /** A memory-bound kernel that updates some of its data in place: moves bytes, touches footprint. */
    static Work memoryInPlace(double bytes, double footprint) {
        return new Work(0, bytes, footprint, Bound.MEMORY);
    }

    static Work compute(double flops, double bytes) {
        return new Work(flops, bytes, bytes, Bound.COMPUTE);
    }
}
