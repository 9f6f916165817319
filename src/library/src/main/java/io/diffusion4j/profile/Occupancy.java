package io.diffusion4j.profile;

/**
 * Resident blocks and warps per SM of a kernel, from its block size, its registers per thread and its
 * shared memory, as the CUDA occupancy calculator computes them: registers are allocated per warp in
 * units of 256, the SM reserves 1 KB of shared memory per block, and the limits are those of {@link
 * GpuModel}. {@code blocksPerSm == 0} means the launch cannot run at all (a GPU refuses it).
 */
public record Occupancy(int blocksPerSm, int warpsPerSm, double fraction, String limitedBy) {

    public static Occupancy of(GpuModel gpu, int threadsPerBlock, int registersPerThread, long sharedBytesPerBlock) {
        int warps = (threadsPerBlock + 31) / 32;
        int byWarps = gpu.maxWarpsPerSm() / warps;
        int regsPerWarp = ((registersPerThread * 32 + 255) / 256) * 256;
        int warpsByRegs = regsPerWarp == 0 ? Integer.MAX_VALUE : gpu.registersPerSm() / regsPerWarp;
        int byRegs = warpsByRegs / warps;
        int bySmem = sharedBytesPerBlock == 0 ? Integer.MAX_VALUE
                : (int) (gpu.sharedBytesPerSm() / (sharedBytesPerBlock + 1024));
        int blocks = Math.min(gpu.maxBlocksPerSm(), Math.min(byWarps, Math.min(byRegs, bySmem)));
        String limit = blocks == gpu.maxBlocksPerSm() ? "blocks" : blocks == byWarps ? "warps"
                : blocks == byRegs ? "registers" : "shared memory";
        return new Occupancy(blocks, blocks * warps, (double) (blocks * warps) / gpu.maxWarpsPerSm(), limit);
    }
}
