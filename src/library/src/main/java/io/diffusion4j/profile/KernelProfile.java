package io.diffusion4j.profile;

import io.diffusion4j.bindings.d4j_kernel_profile;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The counters of one kernel launch, as the profiling simulator counted them (see
 * {@code d4j_kernel_profile} in d4j.h for each field). Requests and instructions are per warp,
 * floating-point operations per thread; a sampled launch ({@code blocksCounted < blocks}) is scaled to
 * the whole grid.
 */
public record KernelProfile(String kernel, int[] grid, int[] block, long dynamicSharedBytes, long blocks,
                            long blocksCounted, double gldRequests, double gldSectors, double gldIdealSectors,
                            double gstRequests, double gstSectors, double gstIdealSectors, double atomRequests,
                            double atomSectors, double uniqueReadBytes, double uniqueWriteBytes, double smemRequests,
                            double smemWavefronts, double smemIdealWavefronts, double fp32Fma, double fp32Add,
                            double fp32Mul, double fp32Special, double fp64Ops, double fp32WarpInst,
                            double specialWarpInst, double tensorFlops, double tensorBf16Flops, double barriers, double warpBasicBlocks,
                            double activeLanes, double intDiv32, double intDiv64, double intDiv32WarpInst,
                            double intDiv64WarpInst) {

    static KernelProfile of(MemorySegment s) {
        MemorySegment name = d4j_kernel_profile.kernel(s);
        byte[] bytes = name.toArray(ValueLayout.JAVA_BYTE);
        int len = 0;
        while (len < bytes.length && bytes[len] != 0) len++;
        int[] grid = d4j_kernel_profile.grid(s).toArray(ValueLayout.JAVA_INT);
        int[] block = d4j_kernel_profile.block(s).toArray(ValueLayout.JAVA_INT);
        return new KernelProfile(new String(bytes, 0, len, java.nio.charset.StandardCharsets.US_ASCII), grid, block,
                d4j_kernel_profile.dynamic_shared_bytes(s), d4j_kernel_profile.blocks(s),
                d4j_kernel_profile.blocks_counted(s), d4j_kernel_profile.gld_requests(s),
                d4j_kernel_profile.gld_sectors(s), d4j_kernel_profile.gld_ideal_sectors(s),
                d4j_kernel_profile.gst_requests(s), d4j_kernel_profile.gst_sectors(s),
                d4j_kernel_profile.gst_ideal_sectors(s), d4j_kernel_profile.atom_requests(s),
                d4j_kernel_profile.atom_sectors(s), d4j_kernel_profile.unique_read_bytes(s),
                d4j_kernel_profile.unique_write_bytes(s), d4j_kernel_profile.smem_requests(s),
                d4j_kernel_profile.smem_wavefronts(s), d4j_kernel_profile.smem_ideal_wavefronts(s),
                d4j_kernel_profile.fp32_fma(s), d4j_kernel_profile.fp32_add(s), d4j_kernel_profile.fp32_mul(s),
                d4j_kernel_profile.fp32_special(s), d4j_kernel_profile.fp64_ops(s),
                d4j_kernel_profile.fp32_warp_inst(s), d4j_kernel_profile.special_warp_inst(s),
                d4j_kernel_profile.tensor_flops(s), d4j_kernel_profile.tensor_bf16_flops(s),
                d4j_kernel_profile.barriers(s),
                d4j_kernel_profile.warp_basic_blocks(s), d4j_kernel_profile.active_lanes(s),
                d4j_kernel_profile.int_div32(s), d4j_kernel_profile.int_div64(s),
                d4j_kernel_profile.int_div32_warp_inst(s), d4j_kernel_profile.int_div64_warp_inst(s));
    }

    /** The tensor-core operations with TF32 inputs (the rest of {@link #tensorFlops} is BF16). */
    public double tensorTf32Flops() {
        return tensorFlops - tensorBf16Flops;
    }

    /** Threads per block. */
    public int threadsPerBlock() {
        return block[0] * block[1] * block[2];
    }

    /** Ideal sectors / sectors touched by global loads (1 = perfectly coalesced); NaN without loads. */
    public double gldEfficiency() {
        return gldSectors == 0 ? Double.NaN : gldIdealSectors / gldSectors;
    }

    /** The same for global stores. */
    public double gstEfficiency() {
        return gstSectors == 0 ? Double.NaN : gstIdealSectors / gstSectors;
    }

    /** Shared-memory wavefronts beyond the conflict-free ones, per request; NaN without shared accesses. */
    public double smemConflictsPerRequest() {
        return smemRequests == 0 ? Double.NaN : (smemWavefronts - smemIdealWavefronts) / smemRequests;
    }

    /** Distinct sectors read plus distinct sectors written, in bytes: the stand-in for DRAM traffic. */
    public double uniqueBytes() {
        return uniqueReadBytes + uniqueWriteBytes;
    }

    /** Bytes of every sector every global request touched: the L2 traffic. */
    public double sectorBytes() {
        return 32.0 * (gldSectors + gstSectors + atomSectors);
    }

    /** Thread-level FP32 FLOPs: an FMA is two. */
    public double fp32Flops() {
        return 2 * fp32Fma + fp32Add + fp32Mul;
    }

    /** Active lanes per warp-executed basic block (32 = no divergence). */
    public double activeLanesPerWarpBlock() {
        return warpBasicBlocks == 0 ? Double.NaN : activeLanes / warpBasicBlocks;
    }

    /** Integer divisions and remainders by a variable (32- and 64-bit) per launched thread. */
    public double intDivisionsPerThread() {
        double threads = (double) blocks * threadsPerBlock();
        return threads == 0 ? Double.NaN : (intDiv32 + intDiv64) / threads;
    }

    /** True when every block was simulated (counts are exact, not scaled from a sample). */
    public boolean complete() {
        return blocksCounted == blocks;
    }
}
