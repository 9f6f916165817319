package io.diffusion4j.profile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The profiling simulator's counters equal the counts worked out by hand for kernels whose memory
 * pattern and arithmetic are known (native/tests/profile_teeth.cu, run by its driver
 * target/native-build/d4j_profile_teeth, or {@code -Ddiffusion4j.profile.teeth}). Exact equality, not
 * approximation: every expected value below is derived in its comment.
 */
class ProfileCountersTest {
    static Map<String, Map<String, String>> rows;

    @BeforeAll
    static void runDriver() throws IOException, InterruptedException {
        String p = System.getProperty("diffusion4j.profile.teeth");
        Path exe = (p != null ? Path.of(p) : Path.of("target/native-build/d4j_profile_teeth")).toAbsolutePath();
        assertTrue(Files.isExecutable(exe), exe + " was not built (mvn verify builds it in process-test-resources)");
        Process proc = new ProcessBuilder(exe.toString()).redirectErrorStream(true).start();
        String out = new String(proc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(proc.waitFor(120, TimeUnit.SECONDS), "driver timed out");
        assertEquals(0, proc.exitValue(), out);
        rows = new HashMap<>();
        for (String line : out.split("\n")) {
            String[] f = line.split("\t");
            Map<String, String> row = new HashMap<>();
            for (int i = 1; i < f.length; i++) {
                int eq = f[i].indexOf('=');
                row.put(f[i].substring(0, eq), f[i].substring(eq + 1));
            }
            rows.put(f[0], row);
        }
    }

    static double get(String label, String field) {
        Map<String, String> row = rows.get(label);
        assertTrue(row != null, "no output for " + label + ": " + rows.keySet());
        return Double.parseDouble(row.get(field));
    }

    @Test
    void unitStrideCopyIsPerfectlyCoalesced() {
        // 2048 threads = 64 warps: one load and one store request each; a warp's 32 floats are 128
        // aligned bytes = 4 sectors (cudaMalloc memory is 256-byte aligned, as on a GPU)
        assertEquals(64, get("copy_stride1", "gld_requests"));
        assertEquals(256, get("copy_stride1", "gld_sectors"));
        assertEquals(256, get("copy_stride1", "gld_ideal_sectors"));
        assertEquals(256, get("copy_stride1", "gst_sectors"));
        assertEquals(2048 * 4, get("copy_stride1", "unique_read_bytes"));
        assertEquals(2048 * 4, get("copy_stride1", "unique_write_bytes"));
    }

    @Test
    void stride32CopyTouchesEightTimesTheSectorsItNeeds() {
        // each lane reads a float 128 bytes past its neighbour's: 32 sectors per request where the
        // 128 bytes asked for fit in 4, so the load efficiency is exactly 1/8 (not worse: each
        // sector holds one useful float of its 8); the stores stay unit-stride
        assertEquals(64, get("copy_stride32", "gld_requests"));
        assertEquals(64 * 32, get("copy_stride32", "gld_sectors"));
        assertEquals(64 * 4, get("copy_stride32", "gld_ideal_sectors"));
        assertEquals(1.0 / 8, get("copy_stride32", "gld_ideal_sectors") / get("copy_stride32", "gld_sectors"));
        assertEquals(256, get("copy_stride32", "gst_sectors"));
        assertEquals(2048 * 32, get("copy_stride32", "unique_read_bytes"));
    }

    @Test
    void sampledBlocksScaleToTheFullCountOnAUniformGrid() {
        // 2 of the 16 blocks simulated (blocks 4 and 12, the middle of each half), every count scaled by 8: equal to the full run
        assertEquals(2, get("copy_stride1_sampled", "blocks_counted"));
        assertEquals(16, get("copy_stride1_sampled", "blocks"));
        for (String f : new String[] {"gld_requests", "gld_sectors", "gld_ideal_sectors", "gst_requests", "gst_sectors",
                "unique_read_bytes", "unique_write_bytes", "warp_basic_blocks", "active_lanes"}) {
            assertEquals(get("copy_stride1", f), get("copy_stride1_sampled", f), f);
        }
    }

    @Test
    void unpaddedTransposeHas32WayConflictsAndPaddingRemovesThem() {
        // 4 blocks x 32 warps; each warp stores one tile row (32 consecutive words: 1 wavefront) and
        // loads one tile column: 32 words 32 apart, all in one bank: 32 wavefronts
        assertEquals(256, get("transpose_unpadded", "smem_requests"));
        assertEquals(128 * 1 + 128 * 32, get("transpose_unpadded", "smem_wavefronts"));
        assertEquals(256, get("transpose_unpadded", "smem_ideal_wavefronts"));
        // rows of 33 words: the column's words fall in 32 different banks
        assertEquals(256, get("transpose_padded", "smem_requests"));
        assertEquals(256, get("transpose_padded", "smem_wavefronts"));
        // one __syncthreads per warp
        assertEquals(128, get("transpose_padded", "barriers"));
    }

    @Test
    void fmaCountIsExact() {
        // 96 threads x 37 fmaf; the 48 odd lanes add once more
        assertEquals(96 * 37, get("fma", "fp32_fma"));
        assertEquals(48, get("fma", "fp32_add"));
        assertEquals(0, get("fma", "fp32_mul"));
        // warp instructions: 3 warps x 37 FMAs, and the add once per warp (half its lanes active)
        assertEquals(3 * 37 + 3, get("fma", "fp32_warp_inst"));
    }

    @Test
    void integerDivisionsByAVariableAreCounted() {
        // 160 threads (2 blocks x 80: 3 warps each, the last of 16 lanes), one 64-bit division and one
        // 32-bit remainder each; per warp: 2 blocks x 3 warps = 6 warp instructions of each
        assertEquals(160, get("div", "int_div64"));
        assertEquals(160, get("div", "int_div32"));
        assertEquals(6, get("div", "int_div64_warp_inst"));
    }

    @Test
    void tensorCoreOperationsAndFragmentLoadBankConflictsAreCounted() {
        // 2 blocks of one warp, 3 tf32 m16n16k8 multiply-accumulates each: 2 x 3 x 2 x 16 x 16 x 8
        assertEquals(2 * 3 * 2 * 16 * 16 * 8, get("wmma_pitch8", "tensor_flops"));
        assertEquals(get("wmma_pitch8", "tensor_flops"), get("wmma_pitch12", "tensor_flops"));
        assertEquals(0, get("wmma_pitch8", "tensor_bf16_flops"));
        // 3 blocks of one warp, 2 bf16 m16n16k16 each: all of them bf16
        assertEquals(3 * 2 * 2 * 16 * 16 * 16, get("wmma_bf16", "tensor_flops"));
        assertEquals(3 * 2 * 2 * 16 * 16 * 16, get("wmma_bf16", "tensor_bf16_flops"));
        // shared requests per warp: the staging stores (16 * pitch / 32 of them) and the fragment load
        // (4 elements per lane: 4 instructions); the staging stores are conflict-free
        double stores8 = 2 * 16 * 8 / 32, stores12 = 2 * 16 * 12 / 32;
        assertEquals(stores8 + 2 * 4, get("wmma_pitch8", "smem_requests"));
        assertEquals(stores12 + 2 * 4, get("wmma_pitch12", "smem_requests"));
        // 8-float rows: rows g and g + 4 of the fragment's 8 x 4 lane grid share banks, 2 wavefronts a load
        assertEquals(stores8 + 2 * 4 * 2, get("wmma_pitch8", "smem_wavefronts"));
        // 12-float rows: the 32 words fall in 32 banks
        assertEquals(stores12 + 2 * 4, get("wmma_pitch12", "smem_wavefronts"));
    }

    @Test
    void asynchronousCopiesCountAsAGlobalLoadAndASharedStore() {
        // 2 warps, one 16-byte cp.async per lane: per warp one load request of 512 contiguous aligned
        // bytes (16 sectors) and one shared store of 128 words, 4 per bank (4 wavefronts, the ideal)
        assertEquals(2, get("cp_async", "gld_requests"));
        assertEquals(32, get("cp_async", "gld_sectors"));
        assertEquals(32, get("cp_async", "gld_ideal_sectors"));
        assertEquals(2, get("cp_async", "smem_requests"));
        assertEquals(8, get("cp_async", "smem_wavefronts"));
        assertEquals(8, get("cp_async", "smem_ideal_wavefronts"));
        assertEquals(64 * 16, get("cp_async", "unique_read_bytes"));
        assertEquals(0, get("cp_async", "gst_requests"));
        // odd lanes zero-fill: no global read of theirs, so each even lane's 16 bytes sit alone in a
        // 32-byte sector (16 sectors a warp where its 256 bytes fit in 8); the shared store is unchanged
        assertEquals(2, get("cp_async_zfill", "gld_requests"));
        assertEquals(32, get("cp_async_zfill", "gld_sectors"));
        assertEquals(16, get("cp_async_zfill", "gld_ideal_sectors"));
        assertEquals(8, get("cp_async_zfill", "smem_wavefronts"));
        assertEquals(32 * 32, get("cp_async_zfill", "unique_read_bytes"));  // whole sectors
    }
}
