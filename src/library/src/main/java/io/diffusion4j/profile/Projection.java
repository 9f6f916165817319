package io.diffusion4j.profile;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * A roofline projection of one launch's time on one GPU from its counters: the time each resource
 * needs at its peak, the longest of them is the projected time and names the bound. It is a model,
 * not a measurement: it assumes each resource runs at its peak for the whole launch (latency fully
 * hidden), that the L1 cache absorbs nothing, that a launch with fewer blocks than SMs gets only that
 * fraction of every resource, and it counts no integer, address or control instructions.
 *
 * <ul>
 *   <li>dram: unique bytes at the HBM bandwidth;
 *   <li>l2: every sector of every global request at the L2 bandwidth;
 *   <li>smem: shared-memory wavefronts, one per SM per clock;
 *   <li>fp32: FP32 warp instructions (FMA, add, mul; an FMA is one) on the SMs' FP32 lanes;
 *   <li>sfu: special-function warp instructions (division, square root, exp, log, ...), 16 lanes per SM;
 *   <li>tensor: tensor-core FLOPs at the dense peak of their input format (TF32 or BF16);
 *   <li>launch: the cost of a launch through a stream.
 * </ul>
 *
 * The floor is the kernel's useful work at the device's peak: its FP32 FLOPs at the FP32 peak plus its
 * tensor FLOPs at the tensor peak of their format, or its unique bytes at the HBM bandwidth, whichever is longer;
 * {@link #rooflineFraction()} is the floor over the projected time.
 */
public record Projection(GpuModel gpu, Map<String, Double> seconds, String bound, double projectedSeconds,
                         double floorSeconds, Optional<Occupancy> occupancy) {

    public static Projection of(KernelProfile k, GpuModel gpu, PtxasReport report) {
        double used = Math.min(1.0, (double) k.blocks() / gpu.sms()); // SMs with a block, as a fraction
        double clockSm = gpu.clockHz() * gpu.sms() * used;
        Map<String, Double> t = new LinkedHashMap<>();
        t.put("dram", k.uniqueBytes() / (gpu.hbmBytesPerSecond() * used));
        t.put("l2", k.sectorBytes() / (gpu.l2BytesPerSecond() * used));
        t.put("smem", k.smemWavefronts() / clockSm);
        t.put("fp32", k.fp32WarpInst() * 32 / (clockSm * gpu.fp32LanesPerSm()));
        t.put("sfu", k.specialWarpInst() * 32 / (clockSm * gpu.sfuPerSm()));
        double tensorSeconds = k.tensorTf32Flops() / gpu.tf32Flops() + k.tensorBf16Flops() / gpu.bf16Flops();
        t.put("tensor", tensorSeconds / used);
        t.put("launch", gpu.launchSeconds());
        String bound = "launch";
        double longest = 0;
        for (Map.Entry<String, Double> e : t.entrySet()) {
            if (e.getValue() > longest) {
                longest = e.getValue();
                bound = e.getKey();
            }
        }
        double floor = Math.max(k.fp32Flops() / gpu.fp32Flops() + tensorSeconds, k.uniqueBytes() / gpu.hbmBytesPerSecond());
        Optional<Occupancy> occ = report.usage(k.kernel(), gpu.arch()).map(u -> Occupancy.of(gpu,
                k.threadsPerBlock(), u.registers(), u.sharedBytes() + k.dynamicSharedBytes()));
        return new Projection(gpu, Map.copyOf(t), bound, longest, floor, occ);
    }

    /** The floor over the projected time (1 = the kernel runs at its roofline). */
    public double rooflineFraction() {
        return projectedSeconds == 0 ? Double.NaN : floorSeconds / projectedSeconds;
    }
}
