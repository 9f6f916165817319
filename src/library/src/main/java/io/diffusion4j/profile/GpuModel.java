package io.diffusion4j.profile;

import java.util.List;
import java.util.Locale;

/**
 * Published figures of a GPU, for projecting a kernel's time from its counters.
 *
 * <p>Sources. A100-80GB SXM: NVIDIA A100 Tensor Core GPU datasheet (FP32 19.5 TFLOPS, TF32 156 and
 * BF16 312 TFLOPS dense, HBM2e 2,039 GB/s) and the NVIDIA A100 Tensor Core GPU Architecture
 * whitepaper (108 SMs, 1410 MHz boost, 64 FP32 lanes and 16 special-function units per SM, 65,536
 * registers, 2,048 threads, 32 blocks and up to 164 KB of shared memory per SM, 40 MB L2 with a read
 * bandwidth of 5,120 bytes per clock). H100 SXM5: NVIDIA H100 Tensor Core GPU datasheet (FP32 67
 * TFLOPS; TF32 989 and BF16 1,979 TFLOPS with sparsity, so 494.5 and 989.5 dense; HBM3 3.35 TB/s)
 * and the NVIDIA H100 Tensor Core GPU Architecture whitepaper (132 SMs, 128 FP32 lanes and 16
 * special-function units per SM, 65,536 registers, 2,048 threads, 32 blocks and up to 228 KB of
 * shared memory per SM, 50 MB L2); its clock, 1.98 GHz, is the one at which 132 SMs x 128 lanes x 2
 * give the datasheet's 67 TFLOPS. Shared memory delivers one 128-byte wavefront per SM per clock
 * (32 banks of 4 bytes) on both.
 *
 * <p>Assumptions, not published figures: NVIDIA gives no L2 bandwidth for H100, so it is taken at
 * the A100's 5,120 bytes per clock; the cost of a kernel launch is taken as 2.5 us through a stream
 * and 1.0 us as a node of a CUDA graph (typical measured values, not data-sheet ones).
 */
public record GpuModel(String name, String arch, int sms, double clockHz, int fp32LanesPerSm, int sfuPerSm,
                       double hbmBytesPerSecond, double l2BytesPerSecond, double tf32Flops, double bf16Flops,
                       int registersPerSm, int maxThreadsPerSm, int maxBlocksPerSm, int sharedBytesPerSm,
                       double launchSeconds, double graphNodeSeconds) {

    public static final GpuModel A100 = new GpuModel("A100-80GB-SXM", "sm_80", 108, 1.41e9, 64, 16, 2.039e12,
            5120 * 1.41e9, 156e12, 312e12, 65536, 2048, 32, 164 * 1024, 2.5e-6, 1.0e-6);
    public static final GpuModel H100 = new GpuModel("H100-SXM5", "sm_90", 132, 1.98e9, 128, 16, 3.35e12,
            5120 * 1.98e9, 494.5e12, 989.5e12, 65536, 2048, 32, 228 * 1024, 2.5e-6, 1.0e-6);

    /** The models every projection reports, A100 first. */
    public static final List<GpuModel> ALL = List.of(A100, H100);

    /** FP32 FLOP/s of the CUDA cores (an FMA is two FLOPs). */
    public double fp32Flops() {
        return 2.0 * sms * fp32LanesPerSm * clockHz;
    }

    /** Shared-memory bytes per second (one 128-byte wavefront per SM per clock). */
    public double sharedBytesPerSecond() {
        return 128.0 * sms * clockHz;
    }

    public int maxWarpsPerSm() {
        return maxThreadsPerSm / 32;
    }

    /** The short name used in CSV columns ("a100", "h100"). */
    public String key() {
        return name.substring(0, 4).toLowerCase(Locale.ROOT);
    }
}
