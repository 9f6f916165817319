package io.diffusion4j.profile;

import java.util.HashMap;
import java.util.Map;

/**
 * The kernel family each CUDA kernel belongs to (its name in the .cu source, as the profiling simulator
 * reports it), for reports of whole steps, where launches come from many families.
 * KernelFamiliesTest checks that every kernel the self-test's cases launch is listed under its family.
 */
public final class KernelFamilies {
    private KernelFamilies() {}

    private static final Map<String, String> FAMILY = new HashMap<>();

    private static void family(String family, String... kernels) {
        for (String k : kernels) FAMILY.put(k, family);
    }

    static {
        family("rng", "rng_uint32_kernel", "rng_normal_kernel");
        family("add_noise", "add_noise_kernel");
        family("diffusion_loss", "loss_partial_kernel", "loss_partial_shfl_kernel", "loss_final_kernel");
        family("reverse_step", "reverse_step_kernel");
        family("timestep_embedding", "embedding_kernel");
        family("conv2d", "conv_fwd_kernel", "conv_dx_kernel", "conv_dw_partial_kernel", "conv_sum_splits_kernel",
                "conv_db_partial_kernel", "conv_tc_fwd_kernel", "conv_tc_dx_kernel", "conv_tc_dw_kernel",
                "conv_fwd_gn_kernel", "conv_tc_fwd_gn_kernel");
        family("group_norm", "gn_stats_kernel", "gn_apply_kernel",
                "gn_bwd_partial_kernel", "gn_bwd_param_kernel", "gn_bwd_group_kernel", "gn_bwd_dx_kernel");
        family("silu", "silu_kernel", "silu_grad_kernel");
        family("residual_add", "residual_kernel", "residual_grad_kernel");
        family("linear", "gemm_simple_kernel", "gemm_tiled_kernel", "bias_partial_kernel", "bias_final_kernel");
        family("linear", "linear_tc_fwd_kernel", "linear_tc_dx_kernel", "linear_tc_dw_kernel", "linear_tc_sum_kernel");
        family("attention", "attn_fwd_kernel", "attn_bwd_rows_kernel", "attn_bwd_cols_kernel", "flash_fwd_kernel",
                "flash_dq_kernel", "flash_dkdv_kernel");
        family("grad_norm", "sumsq_partial_kernel", "sumsq_final_kernel");
        family("adamw", "adamw_kernel");
        family("ema", "ema_kernel");
        family("concat", "concat_kernel", "split_kernel");
        family("dropout", "dropout_kernel");
        family("sampler_step", "sampler_step_kernel");
        family("x0_threshold", "x0_threshold_kernel");
        family("vlb", "vlb_partial_kernel", "vlb_final_kernel");
        family("class_embedding", "class_embedding_forward_kernel", "class_embedding_backward_kernel");
        family("guidance", "guidance_kernel");
        family("renoise", "renoise_kernel");
        family("fill", "fill_kernel");
    }

    /** The family of a kernel (a template instantiation, kernel&lt;Tf32&gt;, as its template), or "?" for one this table does not list. */
    public static String of(String kernel) {
        int lt = kernel.indexOf('<');
        return FAMILY.getOrDefault(lt < 0 ? kernel : kernel.substring(0, lt), "?");
    }
}
