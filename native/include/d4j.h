/*
 * d4j.h — the whole public C API of diffusion4j's native layer.
 *
 * One small front library (libd4j.so) exports these functions. It validates
 * every argument, owns buffer handles and schedules, and forwards the work to
 * a backend library loaded at run time (libd4j_cpu.so, libd4j_cuda.so, later
 * libd4j_cudasim.so), all of which implement the same internal interface
 * (native/common/backend_iface.h). The Java bindings in bindings/ are
 * generated from this file by jextract and nothing else.
 *
 * Conventions
 *   - Every function returns a d4j_status; D4J_OK is 0. On failure a message
 *     for the calling thread is available from d4j_last_error() until the
 *     next failing call on that thread.
 *   - Buffers are opaque handles to backend memory. Their contents are only
 *     reachable through d4j_buffer_write / d4j_buffer_read.
 *   - Small per-sample metadata (timesteps, seeds, RNG offsets) is passed as
 *     host arrays: the front validates it completely before any backend runs,
 *     so a bad timestep is an error status, never an out-of-bounds read on a
 *     device.
 *   - float32 tensors are dense and contiguous; a batch of B samples of
 *     n_per_sample elements each is B * n_per_sample floats.
 */
#ifndef D4J_H
#define D4J_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define D4J_API __declspec(dllexport)
#else
#define D4J_API __attribute__((visibility("default")))
#endif

/* ABI version of this header; bumped on every incompatible change. */
#define D4J_ABI_VERSION 1

typedef enum d4j_status {
    D4J_OK = 0,
    D4J_ERR_INVALID_ARGUMENT = 1,  /* bad size, shape, range, NaN, null pointer, ... */
    D4J_ERR_INVALID_HANDLE = 2,    /* freed buffer, foreign handle, wrong backend */
    D4J_ERR_OUT_OF_MEMORY = 3,
    D4J_ERR_UNAVAILABLE = 4,       /* backend cannot run here (no driver, no device) */
    D4J_ERR_DEVICE = 5,            /* a device or runtime call failed */
    D4J_ERR_INTERNAL = 6,
    D4J_ERR_UNSUPPORTED = 7        /* the backend cannot do this at all (e.g. graph capture on cpu) */
} d4j_status;

/* What the model output means; names as diffusers' prediction_type. */
typedef enum d4j_prediction_type {
    D4J_PREDICTION_EPSILON = 0,
    D4J_PREDICTION_SAMPLE = 1,
    D4J_PREDICTION_V = 2
} d4j_prediction_type;

/* DDPM reverse-step variance; names as diffusers' variance_type. */
typedef enum d4j_variance_type {
    D4J_VARIANCE_FIXED_SMALL = 0,  /* posterior variance beta-tilde_t */
    D4J_VARIANCE_FIXED_LARGE = 1   /* beta_t */
} d4j_variance_type;

typedef struct d4j_backend d4j_backend;
typedef struct d4j_buffer d4j_buffer;
typedef struct d4j_schedule d4j_schedule;

/* ---- library ---------------------------------------------------------- */

D4J_API int32_t d4j_abi_version(void);

/* Message of the last failure on this thread ("" if none). Never NULL. */
D4J_API const char *d4j_last_error(void);

/* Does nothing; measures the cost of one downcall. */
D4J_API void d4j_noop(void);

/* ---- backends ----------------------------------------------------------- */

/* Loads the backend library at library_path (an absolute path to
 * libd4j_cpu.so, libd4j_cuda.so, ...) and initialises it. D4J_ERR_UNAVAILABLE
 * with a one-sentence reason when it cannot run on this machine. */
D4J_API d4j_status d4j_backend_open(const char *library_path, d4j_backend **out);

/* Fails with D4J_ERR_INVALID_ARGUMENT while buffers of the backend are live. */
D4J_API d4j_status d4j_backend_close(d4j_backend *backend);

/* Short name ("cpu", "cuda", "cuda-sim") and a human description (device,
 * SIMD level, threads), written NUL-terminated into dst (truncated to cap). */
D4J_API d4j_status d4j_backend_name(const d4j_backend *backend, char *dst, size_t cap);
D4J_API d4j_status d4j_backend_describe(const d4j_backend *backend, char *dst, size_t cap);

/* Bytes currently allocated by live buffers of this backend, and their count. */
D4J_API d4j_status d4j_backend_live(const d4j_backend *backend, int64_t *live_bytes, int64_t *live_buffers);

/* Waits until all work queued on the backend has finished. */
D4J_API d4j_status d4j_backend_synchronize(d4j_backend *backend);

/* Worker threads used by the CPU backend's kernels (>= 1). Results never depend
 * on it. Other backends accept and ignore it. */
D4J_API d4j_status d4j_backend_set_threads(d4j_backend *backend, int32_t threads);

/* ---- kernel variants ---------------------------------------------------- */

/* A kernel family may have several numbered implementations (as llm.c's
 * dev/cuda), chosen at run time by name, per backend (the choice applies to
 * later calls on every thread). The families are what d4j_kernel_families
 * returns (one list, D4J_KERNEL_FAMILIES in native/common/backend_iface.h);
 * each entry point's comment below names its family. Every variant of a
 * family computes the same function; the self-test compares each with the
 * CPU backend.
 * d4j_kernel_families: the family names, comma-separated.
 * d4j_kernel_variants: a family's variant names, comma-separated, the default first.
 * d4j_kernel_variant: the variant currently selected. */
D4J_API d4j_status d4j_kernel_families(const d4j_backend *backend, char *dst, size_t cap);
D4J_API d4j_status d4j_kernel_variants(const d4j_backend *backend, const char *family, char *dst, size_t cap);
D4J_API d4j_status d4j_kernel_variant(const d4j_backend *backend, const char *family, char *dst, size_t cap);
D4J_API d4j_status d4j_kernel_select(d4j_backend *backend, const char *family, const char *variant);
/* The family's variants that run on tensor cores (see d4j_backend_set_precision), comma-separated, a
 * subset of d4j_kernel_variants; an empty string when it has none. */
D4J_API d4j_status d4j_kernel_tensor_core_variants(const d4j_backend *backend, const char *family, char *dst,
                                                   size_t cap);

/* ---- numeric precision of the matrix families ------------------------- */

/* Names as PyTorch's: float32 matmul precision "highest" (fp32), TF32
 * (allow_tf32) and bfloat16. */
typedef enum d4j_precision {
    D4J_PRECISION_FP32 = 0,
    D4J_PRECISION_TF32 = 1,
    D4J_PRECISION_BF16 = 2
} d4j_precision;

/* The number format the matrix families (conv2d, linear, attention) compute
 * in on this backend. TF32 and BF16 round the inputs of each product to that
 * format (as tensor cores do) and accumulate in FP32; tensors stay FP32 in
 * memory, and every other family computes FP32 whatever the setting. A
 * backend opens at FP32. The CPU backend computes FP32 only: asked for TF32
 * or BF16 it answers D4J_ERR_UNSUPPORTED with a message and stays at FP32. A
 * value outside the enum is D4J_ERR_INVALID_ARGUMENT.
 * Variants: a family lists its SIMT variants first and its tensor-core
 * variants after them (d4j_kernel_variants). SIMT variants compute FP32 at
 * any setting (TF32 and BF16 are permissions, as torch's allow_tf32);
 * tensor-core variants run only at TF32 or BF16. Setting TF32 or BF16
 * selects each family's first tensor-core variant (a family without one
 * keeps its selection); setting FP32 moves every family whose selection is a
 * tensor-core variant back to its default. d4j_kernel_select of a
 * tensor-core variant at FP32 is D4J_ERR_INVALID_ARGUMENT. Like a selection,
 * the setting applies to later calls on every thread; a captured graph
 * replays the kernels it recorded. */
D4J_API d4j_status d4j_backend_set_precision(d4j_backend *backend, d4j_precision precision);
D4J_API d4j_status d4j_backend_precision(const d4j_backend *backend, d4j_precision *out);

/* ---- timing (self-test, benchmarks) ------------------------------------ */

/* One timing region per backend at a time: d4j_timer_begin marks the point in
 * the backend's queue (a CUDA event on the GPU; the host clock on cpu and
 * cuda-sim, whose work is synchronous), d4j_timer_end marks the end, waits for
 * the work in between and gives its duration in milliseconds.
 * d4j_flush_cache evicts the last-level cache (CUDA: writes a buffer of twice
 * the L2 size; CPU: writes 64 MiB) so a repeat does not time cached data.
 * d4j_device_peak: the device's theoretical DRAM bandwidth (bytes/s) and
 * float32 FMA throughput (FLOP/s) from its attributes; 0 when not known (cpu,
 * cuda-sim). */
D4J_API d4j_status d4j_timer_begin(d4j_backend *backend);
D4J_API d4j_status d4j_timer_end(d4j_backend *backend, double *milliseconds);
D4J_API d4j_status d4j_flush_cache(d4j_backend *backend);
D4J_API d4j_status d4j_device_peak(const d4j_backend *backend, double *bytes_per_second, double *flops);

/* ---- profiling (the profiling build of cuda-sim) ----------------------- */

/* What a GPU profiler would count for one kernel launch, counted by the
 * profiling simulator (libd4j_cudasim_prof.so) running the CUDA sources; see
 * docs/cuda-simulator.md for the method. Requests and instructions are per
 * warp; floating-point operations per thread. When a large grid was sampled
 * (blocks_counted < blocks) every count is the sampled blocks' count scaled by
 * blocks / blocks_counted; the unique bytes are scaled per allocation and
 * capped at its size. */
typedef struct d4j_kernel_profile {
    char kernel[64];                 /* the kernel's name in the .cu source */
    uint32_t grid[3];
    uint32_t block[3];
    int64_t dynamic_shared_bytes;
    int64_t blocks;                  /* blocks in the launch */
    int64_t blocks_counted;          /* blocks simulated and counted */
    /* global memory: requests (warp instructions), 32-byte sectors they touch,
     * and the sectors the distinct bytes they ask for need (ideal) */
    double gld_requests, gld_sectors, gld_ideal_sectors;
    double gst_requests, gst_sectors, gst_ideal_sectors;
    double atom_requests, atom_sectors;
    /* distinct sectors read and written, in bytes: a stand-in for DRAM traffic */
    double unique_read_bytes, unique_write_bytes;
    /* shared memory: requests, bank wavefronts, wavefronts without conflicts */
    double smem_requests, smem_wavefronts, smem_ideal_wavefronts;
    /* thread-level float operations; special = division, square root, exp, log, ... */
    double fp32_fma, fp32_add, fp32_mul, fp32_special, fp64_ops;
    /* warp-level instructions of the FP32 pipe (FMA, add, mul) and of the special-function unit */
    double fp32_warp_inst, special_warp_inst;
    double tensor_flops;             /* tensor-core multiply-adds x 2, every input format */
    double tensor_bf16_flops;        /* the part of tensor_flops with BF16 inputs (the rest: TF32) */
    double barriers;                 /* warp arrivals at __syncthreads */
    double warp_basic_blocks;        /* basic blocks executed by warps */
    double active_lanes;             /* their active lanes, summed (divergence) */
    /* integer divisions and remainders by a variable, per thread and per warp, of 32- and 64-bit
     * operands: a GPU has no divide instruction and runs a routine of instructions for each */
    double int_div32, int_div64;
    double int_div32_warp_inst, int_div64_warp_inst;
} d4j_kernel_profile;

/* d4j_profile_begin clears the records and starts counting every launch of
 * the backend, simulating at most max_blocks_per_launch blocks of each (0: all
 * of them; a sample leaves the other blocks' outputs unwritten, so results are
 * for counting only). d4j_profile_read copies up to capacity records, oldest
 * first, and gives the number recorded in *count. d4j_profile_end stops and
 * drops the records. Backends other than the profiling simulator answer
 * D4J_ERR_UNSUPPORTED. */
D4J_API d4j_status d4j_profile_begin(d4j_backend *backend, int64_t max_blocks_per_launch);
D4J_API d4j_status d4j_profile_read(d4j_backend *backend, d4j_kernel_profile *records, int64_t capacity,
                                    int64_t *count);
D4J_API d4j_status d4j_profile_end(d4j_backend *backend);

/* ---- buffers ------------------------------------------------------------ */

D4J_API d4j_status d4j_buffer_alloc(d4j_backend *backend, int64_t bytes, d4j_buffer **out);
D4J_API d4j_status d4j_buffer_free(d4j_buffer *buffer);
D4J_API d4j_status d4j_buffer_size(const d4j_buffer *buffer, int64_t *bytes);
/* A view: a handle to bytes [offset, offset + bytes) of an existing buffer,
 * usable wherever a buffer is (one flat parameter buffer, one view per
 * parameter). It owns no memory; offset must be a multiple of 4. A buffer
 * cannot be freed while views of it are live; free views with d4j_buffer_free. */
D4J_API d4j_status d4j_buffer_view(d4j_buffer *buffer, int64_t offset, int64_t bytes, d4j_buffer **out);
/* Host <-> buffer copies of bytes at byte offset; synchronous. */
D4J_API d4j_status d4j_buffer_write(d4j_buffer *buffer, int64_t offset, const void *src, int64_t bytes);
D4J_API d4j_status d4j_buffer_read(const d4j_buffer *buffer, int64_t offset, void *dst, int64_t bytes);

/* ---- noise schedules ------------------------------------------------------ */

/* A schedule is the table alphas_cumprod[0..T-1] (float64), computed by the
 * caller (the Java schedule package). It must be finite, inside (0, 1) and
 * strictly decreasing. Every kernel derives its per-sample coefficients from
 * it in float64 on the host, so one table serves noising, loss, DDPM and
 * DDIM steps with respaced timesteps. Schedules belong to no backend. */
D4J_API d4j_status d4j_schedule_create(const double *alphas_cumprod, int32_t num_train_timesteps, d4j_schedule **out);
D4J_API d4j_status d4j_schedule_free(d4j_schedule *schedule);

/* ---- counter-based RNG (Philox4x32-10) ---------------------------------- */

/* Random numbers are a pure function of (seed, offset, index):
 *   u32 element i  = word (i % 4) of Philox4x32-10(key = seed,
 *                    counter = {lo(i/4), hi(i/4), lo(offset), hi(offset)})
 *   normal element i = Box-Muller of that block's words: elements 4j, 4j+1
 *                    from words 0,1 and 4j+2, 4j+3 from words 2,3.
 * The normal transform uses only correctly rounded float32 operations in a
 * fixed order, so every backend produces the same bits. */
D4J_API d4j_status d4j_rng_uint32(d4j_backend *backend, uint64_t seed, uint64_t offset, d4j_buffer *out, int64_t count);
D4J_API d4j_status d4j_rng_normal(d4j_backend *backend, uint64_t seed, uint64_t offset, d4j_buffer *out, int64_t count);

/* ---- fused diffusion kernels -------------------------------------------- */

/* Forward noising (diffusers' add_noise), one pass, noise drawn in the kernel:
 *   eps[b,i] = normal(seed, offset, b*n + i)
 *   x_t[b,i] = sqrt(ab[t_b]) * x0[b,i] + sqrt(1 - ab[t_b]) * eps[b,i]
 * x0, x_t, eps: [batch, n_per_sample] float32. timesteps: host int32[batch] in [0, T). */
D4J_API d4j_status d4j_add_noise(d4j_backend *backend, const d4j_schedule *schedule,
                                 const d4j_buffer *x0, const int32_t *timesteps, int32_t batch, int64_t n_per_sample,
                                 uint64_t seed, uint64_t offset, d4j_buffer *x_t, d4j_buffer *eps);

/* Fused training loss for one batch:
 *   target = eps (epsilon), x0 (sample), sqrt(ab) eps - sqrt(1-ab) x0 (v_prediction)
 *   loss[b]  = w_b * mean_i (model_output[b,i] - target[b,i])^2
 *   grad[b,i] = d L / d model_output[b,i] with L = (1/batch) * sum_b loss[b]
 *             = 2 w_b (model_output - target) / (batch * n_per_sample)
 * loss_weights: host float32[T] per-timestep weights (e.g. min-SNR-gamma), or
 * NULL for 1. loss: float32[batch]; grad may be NULL. Reductions are in a fixed
 * order, so the loss is deterministic for a given backend. */
D4J_API d4j_status d4j_diffusion_loss(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                                      const d4j_buffer *model_output, const d4j_buffer *x0, const d4j_buffer *eps,
                                      const int32_t *timesteps, const float *loss_weights, int32_t batch, int64_t n_per_sample,
                                      d4j_buffer *loss, d4j_buffer *grad);

/* One DDPM reverse step (diffusers DDPMScheduler.step) for a batch whose
 * samples each have their own timestep t_b and previous timestep prev_b
 * (prev_b = -1 on the last step, prev_b < t_b; prev_b = t_b - 1 without
 * respacing):
 *   x0_hat = f(x_t, model_output, prediction), clipped to [-clip, clip] if clip_sample
 *   mean   = c0 * x0_hat + c1 * x_t   (posterior mean coefficients)
 *   x_prev = mean + sigma * z, and no noise when t_b = 0.
 * Noise is per sample: sample b draws z[b,i] = normal(noise_seeds[b],
 * noise_offsets[b], i) (host arrays [batch]), so its result does not depend
 * on what else is in the batch.
 * x_prev may alias x_t (updated in place). */
D4J_API d4j_status d4j_ddpm_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                                 d4j_variance_type variance, int32_t clip_sample, float clip_sample_range,
                                 const d4j_buffer *x_t, const d4j_buffer *model_output,
                                 const int32_t *timesteps, const int32_t *prev_timesteps, int32_t batch, int64_t n_per_sample,
                                 const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev);

/* One DDIM step (diffusers DDIMScheduler.step) with per-sample timesteps;
 * prev_b = -1 uses final_alpha_cumprod (1.0 with set_alpha_to_one). eta = 0 is
 * deterministic and draws no noise. x_prev may alias x_t. */
D4J_API d4j_status d4j_ddim_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                                 float eta, int32_t clip_sample, float clip_sample_range, int32_t use_clipped_model_output,
                                 double final_alpha_cumprod,
                                 const d4j_buffer *x_t, const d4j_buffer *model_output,
                                 const int32_t *timesteps, const int32_t *prev_timesteps, int32_t batch, int64_t n_per_sample,
                                 const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev);

/* Sinusoidal timestep embedding (diffusers get_timestep_embedding):
 *   half = dim / 2, freq_j = exp(-ln(max_period) * j / (half - downscale_freq_shift))
 *   out[b] = [sin(scale t_b freq), cos(scale t_b freq)], swapped if flip_sin_to_cos,
 *   zero-padded in the last column when dim is odd.
 * timesteps: host float32[batch]; out: float32[batch, dim]. */
D4J_API d4j_status d4j_timestep_embedding(d4j_backend *backend, const float *timesteps, int32_t batch, int32_t dim,
                                          int32_t flip_sin_to_cos, float downscale_freq_shift, float scale,
                                          float max_period, d4j_buffer *out);

/* ---- UNet layers ---------------------------------------------------------
 * Conventions: activations are NHWC float32 [N, H, W, C]; convolution
 * weights in memory are HWIO [KH, KW, C_in, C_out] (diffusers' OIHW on disk
 * is converted when loading); linear weights are [out, in] as on disk, y = x W^T + b.
 * Backward entry points write dX (when not NULL) and ACCUMULATE (+=) into
 * parameter gradients, so a parameter used twice sums its gradients; zero
 * the gradient buffer with d4j_buffer_fill_f32 before each step. Reductions
 * are deterministic (fixed order, no float atomics). Shape dimensions must be
 * >= 1; the element count of an element-wise entry point (silu, residual add)
 * may be 0, which does nothing, as in d4j_rng_*. */

/* Fills a float32 buffer (or view) with one value. */
D4J_API d4j_status d4j_buffer_fill_f32(d4j_buffer *buffer, float value);

/* ---- conv2d ---- */
/* 2-D convolution (diffusers' nn.Conv2d inside ResnetBlock2D, Downsample2D,
 * Upsample2D), NHWC activations and HWIO weights:
 *   x: [n, h, w, c_in]   weight: [k, k, c_in, c_out]   bias: [c_out] or NULL
 *   y: [n, h_out, w_out, c_out]
 * kernel_size k is 1 or 3, stride 1 or 2, each pad in [0, k - 1], upsample2x 0 or 1.
 * upsample2x = 1 convolves the nearest-neighbour 2x upsampling of x (diffusers
 * Upsample2D: interpolate(scale_factor=2, mode="nearest"), then the conv)
 * without materialising it: the conv input is u[b, i, j, c] = x[b, i/2, j/2, c]
 * (integer division) of size H x W = 2h x 2w. Otherwise u = x and H x W = h x w.
 * Output size (integer division rounds down; H + pad_top + pad_bottom >= k and
 * W + pad_left + pad_right >= k are required):
 *   h_out = (H + pad_top + pad_bottom - k) / stride + 1
 *   w_out = (W + pad_left + pad_right - k) / stride + 1
 *   y[b, oh, ow, co] = bias[co] + sum over kh, kw < k and ci < c_in of
 *       u[b, oh*stride + kh - pad_top, ow*stride + kw - pad_left, ci] * weight[kh, kw, ci, co]
 *   with u = 0 outside [0, H) x [0, W) (zero padding).
 * diffusers layers map to:
 *   3x3 conv (padding=1):                 k=3, stride 1, pads 1,1,1,1
 *   Downsample2D(use_conv, padding=1):    k=3, stride 2, pads 1,1,1,1
 *   Downsample2D(use_conv, padding=0):    k=3, stride 2, pads top 0, left 0, bottom 1, right 1
 *                                         (diffusers F.pad(x, (0, 1, 0, 1)) then padding 0)
 *   1x1 shortcut:                          k=1, stride 1, pads 0
 *   Upsample2D(use_conv):                  upsample2x=1, k=3, stride 1, pads 1
 * Limits: every dimension >= 1, c_in and c_out <= 2^20, and x, y, the
 * upsampled input u and the weight each below 2^31 elements.
 * Each y element is summed in a fixed order (deterministic); y must not
 * overlap x, weight or bias. */
D4J_API d4j_status d4j_conv2d_forward(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w,
                                      int32_t c_in, const d4j_buffer *weight, const d4j_buffer *bias, int32_t c_out,
                                      int32_t kernel_size, int32_t stride, int32_t pad_top, int32_t pad_left,
                                      int32_t pad_bottom, int32_t pad_right, int32_t upsample2x, d4j_buffer *y);

/* d4j_conv2d_forward of the GroupNorm(+SiLU) of x, normalised as the
 * convolution reads it: y = conv(u) + bias with
 *   u = apply_silu ? silu(z) : z,  z = (v - mean[b,g]) * rstd[b,g] * gamma[ci] + beta[ci],
 *   v = x[b, ., ., ci] (+ tb[b, ci] when tb is not NULL),  g = ci / (c_in / num_groups)
 * and the zero padding applied to u (as when u is materialised). mean and
 * rstd (float32 [n, num_groups]) are those of d4j_group_norm_forward or
 * d4j_bias_group_norm_forward (y = NULL computes only them), so
 *   d4j_group_norm_forward(x, .., y = u) then d4j_conv2d_forward(u, ..)
 * is the same computation without u in memory: in inference the normalised
 * activation is written and read once less. Each u element is the
 * element math of the GroupNorm forward (native/common/norm_math.h). The
 * backward needs u, so a training forward keeps the two calls.
 * gamma, beta: float32 [c_in]; tb: float32 [n, c_in] or NULL; num_groups
 * divides c_in; apply_silu 0 or 1; the geometry and other arguments as in
 * d4j_conv2d_forward (family "conv2d": its selected variant runs). y must not
 * overlap any input. */
D4J_API d4j_status d4j_group_norm_conv2d_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                                 const d4j_buffer *gamma, const d4j_buffer *beta,
                                                 const d4j_buffer *mean, const d4j_buffer *rstd, int32_t num_groups,
                                                 int32_t apply_silu, int32_t n, int32_t h, int32_t w, int32_t c_in,
                                                 const d4j_buffer *weight, const d4j_buffer *bias, int32_t c_out,
                                                 int32_t kernel_size, int32_t stride, int32_t pad_top,
                                                 int32_t pad_left, int32_t pad_bottom, int32_t pad_right,
                                                 int32_t upsample2x, d4j_buffer *y);

/* Prepared weights, for inference (weights that stay fixed while many forwards
 * read them): some backends keep a convolution's weights in a form of their
 * own that a forward would otherwise compute from the HWIO weights on every
 * call (the CPU backend: the Winograd-transformed weights of 3x3 "same"
 * convolutions with >= 128 channels, the combined taps of upsample2x
 * convolutions). d4j_conv2d_prepared_size gives the bytes of that form for a
 * geometry (the arguments of d4j_conv2d_forward without x, n and y), 0 when
 * the backend has none for it (every GPU backend, most CPU geometries: call
 * the plain forward). d4j_conv2d_prepare writes it from the HWIO weights into
 * a buffer of at least that size (D4J_ERR_UNSUPPORTED when the size is 0). The
 * _prepared forwards take it in place of the weights, for any batch n, and
 * give the same bits as the plain forwards on the weights it was made from. A
 * prepared buffer made for another geometry is refused
 * (D4J_ERR_INVALID_ARGUMENT); one made from other weights, or overwritten
 * since, is the caller's error and gives wrong results. Prepare again after
 * the weights change. */
D4J_API d4j_status d4j_conv2d_prepared_size(d4j_backend *backend, int32_t h, int32_t w, int32_t c_in, int32_t c_out,
                                            int32_t kernel_size, int32_t stride, int32_t pad_top, int32_t pad_left,
                                            int32_t pad_bottom, int32_t pad_right, int32_t upsample2x,
                                            int64_t *bytes);
D4J_API d4j_status d4j_conv2d_prepare(d4j_backend *backend, const d4j_buffer *weight, int32_t h, int32_t w,
                                      int32_t c_in, int32_t c_out, int32_t kernel_size, int32_t stride,
                                      int32_t pad_top, int32_t pad_left, int32_t pad_bottom, int32_t pad_right,
                                      int32_t upsample2x, d4j_buffer *prepared);
/* d4j_conv2d_forward with the prepared weights in place of weight. */
D4J_API d4j_status d4j_conv2d_forward_prepared(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h,
                                               int32_t w, int32_t c_in, const d4j_buffer *prepared,
                                               const d4j_buffer *bias, int32_t c_out, int32_t kernel_size,
                                               int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom,
                                               int32_t pad_right, int32_t upsample2x, d4j_buffer *y);
/* d4j_group_norm_conv2d_forward with the prepared weights in place of weight. */
D4J_API d4j_status d4j_group_norm_conv2d_forward_prepared(
    d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb, const d4j_buffer *gamma, const d4j_buffer *beta,
    const d4j_buffer *mean, const d4j_buffer *rstd, int32_t num_groups, int32_t apply_silu, int32_t n, int32_t h,
    int32_t w, int32_t c_in, const d4j_buffer *prepared, const d4j_buffer *bias, int32_t c_out, int32_t kernel_size,
    int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom, int32_t pad_right, int32_t upsample2x,
    d4j_buffer *y);

/* Backward of d4j_conv2d_forward with the same geometry; dy: [n, h_out, w_out, c_out].
 *   dx      (NULL to skip): WRITTEN, [n, h, w, c_in]; with upsample2x it is the
 *           gradient for the small input x: each element sums the gradients of
 *           its 4 upsampled copies.
 *   dweight (NULL to skip): dweight += dL/dweight, HWIO [k, k, c_in, c_out]
 *           (a reduction over n * h_out * w_out pixels).
 *   dbias   (NULL to skip): dbias += sum over b, oh, ow of dy[b, oh, ow, :].
 * x is read only for dweight and weight only for dx; either may be NULL when
 * not needed. Reductions use a fixed order (no float atomics), so results are
 * deterministic per backend and independent of the CPU thread count. Outputs
 * must not overlap each other or the inputs. */
D4J_API d4j_status d4j_conv2d_backward(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w,
                                       int32_t c_in, const d4j_buffer *weight, int32_t c_out, int32_t kernel_size,
                                       int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom,
                                       int32_t pad_right, int32_t upsample2x, const d4j_buffer *dy, d4j_buffer *dx,
                                       d4j_buffer *dweight, d4j_buffer *dbias);

/* ---- norm ---- */
/* Normalisation and activations of diffusers' ResnetBlock2D
 * (resnet_time_scale_shift = "default"):
 *   h   = conv1(silu(norm1(x)))
 *   h   = h + temb_proj(silu(temb))[:, :, None, None]
 *   h   = conv2(dropout(silu(norm2(h))))
 *   out = (shortcut(x) + h) / output_scale_factor
 * norm1 + silu is d4j_group_norm_forward; the time-embedding add + norm2 + silu
 * is one fused d4j_bias_group_norm_forward (the projected embedding tb [N, C]
 * is added on the fly, h + tb is never stored); silu(temb) is d4j_silu_forward
 * and the final line d4j_residual_add. Dropout (training only) is
 * d4j_dropout_forward / d4j_dropout_backward (family "dropout").
 * Kernel families: "group_norm", "silu", "residual_add".
 *
 * GroupNorm as torch.nn.GroupNorm on NHWC float32 [N, H, W, C]: the C channels
 * form num_groups groups of C / num_groups consecutive channels; for sample n
 * and group g, over its (C / num_groups) * H * W elements v,
 *   mean[n,g] = mean(v),  rstd[n,g] = 1 / sqrt(var(v) + eps)  (biased variance)
 *   z = (v - mean) * rstd * gamma[c] + beta[c],  y = apply_silu ? z * sigmoid(z) : z
 * The statistics are Welford/Chan merges (never E[v^2] - E[v]^2 in float32),
 * so inputs with a large mean (v = 1000 + small noise) keep their variance.
 * mean and rstd (float32 [N, num_groups]) are saved for the backward, which
 * recomputes the normalised values from them instead of storing them.
 * Memory passes over the [N, H, W, C] tensors: forward 2 reads of x and 1 write
 * of y (one pass for the statistics, one to normalise: a group spans H*W
 * channel slices, too large to keep in cache between the two); backward
 * 2 reads of dy and x and 1 write of dx (one pass for the two per-group
 * reductions sum(dz*gamma) and sum(dz*gamma*xhat) that every dx element
 * needs, one to write dx).
 * y may be NULL: the statistics only (mean and rstd, the same bits as with y;
 * no normalise pass, so x is read once). gamma, beta: float32 [C], required
 * either way. eps: finite and > 0. apply_silu: 0 or 1. Outputs must not
 * overlap any other argument. */
D4J_API d4j_status d4j_group_norm_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *gamma,
                                          const d4j_buffer *beta, int32_t n, int32_t h, int32_t w, int32_t c,
                                          int32_t num_groups, float eps, int32_t apply_silu,
                                          d4j_buffer *y, d4j_buffer *mean, d4j_buffer *rstd);

/* Backward of d4j_group_norm_forward from the saved mean and rstd:
 *   dz = apply_silu ? dy * silu'(z) : dy  (z recomputed from x, mean, rstd, gamma, beta)
 *   dx = rstd * (gamma*dz - mean_g(gamma*dz) - xhat * mean_g(gamma*dz*xhat))
 *   dgamma[c] += sum_{n,h,w} dz * xhat,  dbeta[c] += sum_{n,h,w} dz
 * dx is written (skipped when NULL); dgamma and dbeta accumulate (each may be
 * NULL). beta is only read with apply_silu = 1 and may be NULL otherwise. */
D4J_API d4j_status d4j_group_norm_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                           const d4j_buffer *gamma, const d4j_buffer *beta, const d4j_buffer *mean,
                                           const d4j_buffer *rstd, int32_t n, int32_t h, int32_t w, int32_t c,
                                           int32_t num_groups, int32_t apply_silu,
                                           d4j_buffer *dx, d4j_buffer *dgamma, d4j_buffer *dbeta);

/* The time-embedding add fused into GroupNorm: y = group_norm(x + tb[n, :]) with
 * optional SiLU, tb float32 [N, C] (temb_proj(silu(temb))). Same passes,
 * outputs and statistics as d4j_group_norm_forward, over v = x + tb; y may be
 * NULL for the statistics only. */
D4J_API d4j_status d4j_bias_group_norm_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                               const d4j_buffer *gamma, const d4j_buffer *beta, int32_t n, int32_t h,
                                               int32_t w, int32_t c, int32_t num_groups, float eps,
                                               int32_t apply_silu, d4j_buffer *y, d4j_buffer *mean,
                                               d4j_buffer *rstd);

/* Backward of d4j_bias_group_norm_forward. dx (the gradient of x, which is
 * also that of x + tb) is written as in d4j_group_norm_backward; dtb [N, C] is
 * written (not accumulated: tb is an activation, not a parameter) with
 *   dtb[n,c] = sum_{h,w} dx[n,h,w,c],
 * evaluated in closed form from the backward's per-(sample, channel) sums in a
 * fixed order (deterministic). dgamma, dbeta accumulate. Any of dx, dtb,
 * dgamma, dbeta may be NULL. */
D4J_API d4j_status d4j_bias_group_norm_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                                const d4j_buffer *tb, const d4j_buffer *gamma,
                                                const d4j_buffer *beta, const d4j_buffer *mean,
                                                const d4j_buffer *rstd, int32_t n, int32_t h, int32_t w, int32_t c,
                                                int32_t num_groups, int32_t apply_silu, d4j_buffer *dx,
                                                d4j_buffer *dtb, d4j_buffer *dgamma, d4j_buffer *dbeta);

/* SiLU on count floats: y = x * sigmoid(x). y may be x (in place), but must
 * not partly overlap it. */
D4J_API d4j_status d4j_silu_forward(d4j_backend *backend, const d4j_buffer *x, int64_t count, d4j_buffer *y);

/* dx = dy * sigmoid(x) * (1 + x * (1 - sigmoid(x))), written. dx may be dy or
 * x (in place), but must not partly overlap either. */
D4J_API d4j_status d4j_silu_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x, int64_t count,
                                     d4j_buffer *dx);

/* Residual sum of ResnetBlock2D: out = (a + b) * inv_scale on count floats,
 * inv_scale = 1 / output_scale_factor (finite). out may be a or b. */
D4J_API d4j_status d4j_residual_add(d4j_backend *backend, const d4j_buffer *a, const d4j_buffer *b, int64_t count,
                                    float inv_scale, d4j_buffer *out);

/* Its backward: da = db = dout * inv_scale, written (either may be NULL, and
 * either may be dout itself). With inv_scale = 1 (diffusers' default
 * output_scale_factor) both are dout and no call is needed at all. */
D4J_API d4j_status d4j_residual_add_backward(d4j_backend *backend, const d4j_buffer *dout, int64_t count,
                                             float inv_scale, d4j_buffer *da, d4j_buffer *db);

/* ---- linear_attention ---- */
/* Linear layer (torch.nn.Linear), rows = every leading dimension flattened:
 *   y[m, o] = sum_i x[m, i] * weight[o, i] + bias[o]
 * x: [rows, in_features], weight: [out_features, in_features] (as on disk),
 * bias: [out_features] or NULL, y: [rows, out_features]; y must not overlap
 * the inputs. in/out_features in [1, 2^24]. */
D4J_API d4j_status d4j_linear_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *weight,
                                      const d4j_buffer *bias, int64_t rows, int32_t in_features,
                                      int32_t out_features, d4j_buffer *y);

/* Backward of d4j_linear_forward for upstream gradient dy [rows, out_features]:
 *   dx[m, i]      = sum_o dy[m, o] * weight[o, i]          (written; dx may be NULL)
 *   dweight[o, i] += sum_m dy[m, o] * x[m, i]              (accumulated; may be NULL)
 *   dbias[o]      += sum_m dy[m, o]                        (accumulated; may be NULL)
 * Outputs must not overlap each other or the inputs. Every sum is in a fixed
 * order: the result does not depend on thread count or launch configuration.
 * Kernel family "linear" (the CUDA backend has v1 = tiled shared-memory SGEMM,
 * v2 = one thread per output, for comparison). */
D4J_API d4j_status d4j_linear_backward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *weight,
                                       const d4j_buffer *dy, int64_t rows, int32_t in_features, int32_t out_features,
                                       d4j_buffer *dx, d4j_buffer *dweight, d4j_buffer *dbias);

/* Multi-head scaled dot-product attention (diffusers Attention with
 * heads = channels / attention_head_dim), on the outputs of the q/k/v linear
 * layers without any transpose: q, k, v, out are [batch, tokens, heads,
 * head_dim] float32, i.e. NHWC activations [N, H*W, C] whose channel c
 * belongs to head c / head_dim. For every (b, h) and query token i:
 *   s[j]   = scale * sum_d q[b,i,h,d] k[b,j,h,d]
 *   out[b,i,h,:] = sum_j softmax(s)[j] v[b,j,h,:]   (row maximum subtracted first)
 *   lse[b,h,i]   = log sum_j exp(s[j])              (max-shifted; lse may be NULL)
 * scale is finite (diffusers: 1/sqrt(head_dim)); head_dim in [1, 512];
 * tokens in [1, 2^20] (the CUDA backend's v1 takes at most 4096). lse is
 * [batch, heads, tokens] float32 and is what d4j_attention_backward needs.
 * No L x L score matrix is stored: each query row's scores are recomputed
 * in a per-task workspace of O(tokens) floats. */
D4J_API d4j_status d4j_attention_forward(d4j_backend *backend, const d4j_buffer *q, const d4j_buffer *k,
                                         const d4j_buffer *v, int32_t batch, int32_t tokens, int32_t heads,
                                         int32_t head_dim, float scale, d4j_buffer *out, d4j_buffer *lse);

/* Backward of d4j_attention_forward, given its out and lse and the upstream
 * gradient dout (all as in the forward): writes dq, dk, dv (same layout as q).
 * Scores are recomputed from lse (P = exp(s - lse)); with
 * Dsum[i] = sum_d dout[i,d] out[i,d] and dS = P (dout v^T - Dsum):
 * dq = scale dS k, dk = scale dS^T q, dv = P^T dout, each summed in a fixed
 * order (deterministic). Extra memory: batch*heads*tokens floats for Dsum. */
D4J_API d4j_status d4j_attention_backward(d4j_backend *backend, const d4j_buffer *q, const d4j_buffer *k,
                                          const d4j_buffer *v, const d4j_buffer *out, const d4j_buffer *lse,
                                          const d4j_buffer *dout, int32_t batch, int32_t tokens, int32_t heads,
                                          int32_t head_dim, float scale, d4j_buffer *dq, d4j_buffer *dk,
                                          d4j_buffer *dv);

/* ---- optim ---- */
/* Optimiser kernels over one flat float32 parameter buffer (llm.c style); a
 * parameter group with other hyper-parameters (biases and norm weights
 * without weight decay) is updated by calling them on views of the flat
 * buffers (d4j_buffer_view). Buffers of one call must not overlap.
 *
 * Global gradient norm: *out_norm = sqrt(sum_i grad[i]^2), accumulated in
 * float64 in a fixed order per backend (deterministic, independent of the
 * thread count); a NaN or infinite gradient gives a NaN or infinite norm.
 * Clip as torch.nn.utils.clip_grad_norm_: grad_scale = min(1, max_norm /
 * (norm + 1e-6)), passed to d4j_adamw (no separate scaling pass). */
D4J_API d4j_status d4j_grad_norm(d4j_backend *backend, const d4j_buffer *grad, int64_t count, double *out_norm);

/* One fused AdamW step (torch.optim.AdamW semantics, decoupled weight decay)
 * over count elements, in place on param, m (exp_avg) and v (exp_avg_sq):
 *   g = grad * grad_scale
 *   param -= lr * weight_decay * param
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   param -= lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)
 * step is the 1-based step count; bias corrections are computed in float64.
 * Requires finite hyper-parameters, lr >= 0, 0 <= beta1, beta2 < 1, eps > 0,
 * weight_decay >= 0, grad_scale >= 0, step >= 1. One pass over memory: reads
 * param, grad, m, v and writes param, m, v (28 bytes per element). */
D4J_API d4j_status d4j_adamw(d4j_backend *backend, d4j_buffer *param, const d4j_buffer *grad, d4j_buffer *m,
                             d4j_buffer *v, int64_t count, double lr, double beta1, double beta2, double eps,
                             double weight_decay, int64_t step, double grad_scale);

/* EMA of parameters (diffusers EMAModel.step) over count elements:
 *   ema = decay * ema + (1 - decay) * param, evaluated as ema -= (1 - decay) * (ema - param)
 * (decay = 0 copies param exactly). decay in [0, 1] (the caller's schedule,
 * e.g. EMAModel.get_decay, io.diffusion4j.kernels.EmaSchedule). Reads
 * ema and param, writes ema (12 bytes per element). */
D4J_API d4j_status d4j_ema_update(d4j_backend *backend, d4j_buffer *ema, const d4j_buffer *param, int64_t count,
                                  double decay);

/* ---- concat ---- */
/* Channel concatenation of two NHWC tensors, torch.cat([h, skip], dim=1) of
 * diffusers' up blocks (channel dimension 1 in NCHW is the last one in NHWC):
 *   out[r, 0:c1] = a[r, :],  out[r, c1:c1+c2] = b[r, :]   for r < rows = N*H*W
 * a: float32 [rows, c1], b: [rows, c2], out: [rows, c1 + c2]. rows >= 1,
 * c1, c2 in [1, 2^20]. out must not overlap a or b. Kernel family "concat". */
D4J_API d4j_status d4j_concat_channels_forward(d4j_backend *backend, const d4j_buffer *a, const d4j_buffer *b,
                                               int64_t rows, int32_t c1, int32_t c2, d4j_buffer *out);

/* Its backward, a split: da[r, :] = dout[r, 0:c1], db[r, :] = dout[r, c1:c1+c2],
 * both WRITTEN (activations, not parameters); either may be NULL. Outputs must
 * not overlap dout or each other. */
D4J_API d4j_status d4j_concat_channels_backward(d4j_backend *backend, const d4j_buffer *dout, int64_t rows,
                                                int32_t c1, int32_t c2, d4j_buffer *da, d4j_buffer *db);

/* ---- dropout ---- */
/* Dropout (torch.nn.Dropout(p) in training mode, as in diffusers' ResnetBlock2D
 * between norm2 + SiLU and conv2), with the mask drawn from the counter-based
 * RNG instead of being stored:
 *   u[i]    = uint32 element i of the stream (seed, offset), exactly d4j_rng_uint32's
 *   keep[i] = u[i] >= t,  t = min(round(p * 2^32), 2^32 - 1)   (t computed in float64 by the front)
 *   y[i]    = keep[i] ? x[i] * s : 0,  s = (float)(1 / (1 - p))
 * The decision is an exact integer comparison, so every backend and thread
 * count keeps the same elements; the drop probability t / 2^32 is within 2^-33
 * of p. p = 0 gives t = 0 and s = 1: every element is kept and y is an exact
 * copy of x (no call reaches the backend when y is x). Dropped elements are
 * +0 even where x is not finite. The backward is the same map applied to dy
 * with the same (p, seed, offset): the mask is regenerated, never stored:
 *   dx[i]   = keep[i] ? dy[i] * s : 0
 * p finite in [0, 1). y may be x (in place) but must not partly overlap it;
 * likewise dx and dy. Kernel family "dropout". */
D4J_API d4j_status d4j_dropout_forward(d4j_backend *backend, const d4j_buffer *x, int64_t count, double p,
                                       uint64_t seed, uint64_t offset, d4j_buffer *y);
D4J_API d4j_status d4j_dropout_backward(d4j_backend *backend, const d4j_buffer *dy, int64_t count, double p,
                                        uint64_t seed, uint64_t offset, d4j_buffer *dx);

/* ---- sampler ---- */
/* Sampling additions to the fused diffusion kernels: dynamic thresholding
 * for DDPM and DDIM steps, and the DPM-Solver++ (2M) update. Kernel families
 * "sampler_step" (every step below) and "x0_threshold". Per-sample
 * coefficients are derived in float64 by the front from the schedule, as for
 * d4j_ddpm_step; the predicted x0 is
 *   x0_hat = f(x_t, model_output, prediction, alphas_cumprod[t_b])
 * exactly as in those steps.
 *
 * Dynamic thresholding (Saharia et al. 2022, diffusers' _threshold_sample):
 *   s_b = clamp(quantile(|x0_hat[b, :]|, ratio), 1, sample_max_value)
 * where quantile is torch.quantile's linear interpolation between the
 * k-th and (k+1)-th smallest values, k = floor(ratio * (n - 1)), weight
 * ratio * (n - 1) - k, evaluated in float64. d4j_x0_threshold writes s into
 * threshold (float32[batch], on the backend); the thresholded steps then use
 *   x0 = clamp(x0_hat, -s_b, s_b) / s_b
 * in place of clip_sample (diffusers: thresholding takes precedence over
 * clip_sample). ratio in [0, 1], sample_max_value finite and > 0, and
 * n_per_sample below 2^31. The order statistics are exact (selection on the
 * float bit patterns; a NaN ranks above +inf), so every backend gives the same
 * threshold bits. */
D4J_API d4j_status d4j_x0_threshold(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                                    const d4j_buffer *x_t, const d4j_buffer *model_output, const int32_t *timesteps,
                                    int32_t batch, int64_t n_per_sample, double ratio, float sample_max_value,
                                    d4j_buffer *threshold);

/* d4j_ddpm_step and d4j_ddim_step with the x0 prediction thresholded by the
 * per-sample s_b of threshold (float32[batch], e.g. from d4j_x0_threshold for
 * the same x_t, model_output and timesteps) instead of clipped. Same
 * arguments, aliasing and noise otherwise. */
D4J_API d4j_status d4j_ddpm_step_thresholded(d4j_backend *backend, const d4j_schedule *schedule,
                                             d4j_prediction_type prediction, d4j_variance_type variance,
                                             const d4j_buffer *threshold, const d4j_buffer *x_t,
                                             const d4j_buffer *model_output, const int32_t *timesteps,
                                             const int32_t *prev_timesteps, int32_t batch, int64_t n_per_sample,
                                             const uint64_t *noise_seeds, const uint64_t *noise_offsets,
                                             d4j_buffer *x_prev);
D4J_API d4j_status d4j_ddim_step_thresholded(d4j_backend *backend, const d4j_schedule *schedule,
                                             d4j_prediction_type prediction, float eta,
                                             int32_t use_clipped_model_output, double final_alpha_cumprod,
                                             const d4j_buffer *threshold, const d4j_buffer *x_t,
                                             const d4j_buffer *model_output, const int32_t *timesteps,
                                             const int32_t *prev_timesteps, int32_t batch, int64_t n_per_sample,
                                             const uint64_t *noise_seeds, const uint64_t *noise_offsets,
                                             d4j_buffer *x_prev);

/* One DPM-Solver++ step (diffusers DPMSolverMultistepScheduler, algorithm_type
 * "dpmsolver++", solver_type "midpoint"), per sample b from timestep s0 = t_b
 * to t = prev_b (prev_b < t_b; prev_b = -1 is the final sigma 0 of
 * final_sigmas_type "zero"), with alpha = sqrt(ab), sigma = sqrt(1 - ab),
 * lambda = log(alpha / sigma), h = lambda_t - lambda_s0:
 *   m0 = x0_hat, thresholded by threshold[b] when threshold is not NULL
 *   first order (last_b = -1):
 *     x_prev = (sigma_t / sigma_s0) x_t + alpha_t (1 - e^-h) m0
 *   second order (last_b > t_b: the timestep s1 at which prev_x0 = m1 was
 *   predicted; r0 = (lambda_s0 - lambda_s1) / h, D1 = (m0 - m1) / r0):
 *     x_prev = (sigma_t / sigma_s0) x_t + alpha_t (1 - e^-h) (m0 + D1 / 2)
 * To the final sigma 0 (prev_b = -1) only first order is defined (x_prev =
 * m0); diffusers' lower_order_final takes a first-order step there, and
 * second order there is refused. m0 is written to x0_out (if not NULL) for
 * the next step's m1. prev_x0 may be NULL when every last_b is -1. x_prev
 * may be x_t and x0_out may be prev_x0 (updated in place); no other outputs
 * may overlap the inputs or each other. Draws no noise. */
D4J_API d4j_status d4j_dpmsolver_step(d4j_backend *backend, const d4j_schedule *schedule,
                                      d4j_prediction_type prediction, const d4j_buffer *threshold,
                                      const d4j_buffer *x_t, const d4j_buffer *model_output,
                                      const d4j_buffer *prev_x0, const int32_t *timesteps,
                                      const int32_t *prev_timesteps, const int32_t *last_timesteps, int32_t batch,
                                      int64_t n_per_sample, d4j_buffer *x0_out, d4j_buffer *x_prev);

/* ---- vlb ---- */
/* Terms of the variational bound of Ho et al. (2020) as improved-diffusion
 * computes them (gaussian_diffusion.py _vb_terms_bpd, _prior_bpd; losses.py
 * normal_kl, discretized_gaussian_log_likelihood with the tanh approximation
 * of the normal CDF), per sample, in nats, summed over the sample's n elements
 * (divide by n ln 2 for bits/dim). Kernel family "vlb". Elements are
 * evaluated and summed in float64 in a fixed order (deterministic for a
 * backend; backends agree to float64 rounding). The per-sample coefficients
 * are derived by the front in float64 from alphas_cumprod (ab), with
 * ab_prev = ab[t-1] (1 at t = 0), beta_t = 1 - ab[t] / ab_prev:
 *   posterior variance  pv[t] = beta_t (1 - ab_prev) / (1 - ab[t])  (pv[0] = 0)
 *   clipped log variance lv[t] = log(pv[t]) for t >= 1, log(pv[1]) at t = 0
 *   model log variance  fixed_small: lv[t]; fixed_large: log(beta_t) for
 *                       t >= 1 and log(pv[1]) at t = 0 (improved-diffusion's
 *                       np.append(posterior_variance[1], betas[1:]))
 *   posterior mean      c1 x0 + c2 x_t, c1 = beta_t sqrt(ab_prev) / (1 - ab[t]),
 *                       c2 = (1 - ab_prev) sqrt(1 - beta_t) / (1 - ab[t])
 * and x0_hat = f(x_t, model_output, prediction, ab[t]) as in d4j_ddpm_step,
 * clamped to [-clip_range, clip_range] when clip_denoised (improved-diffusion's
 * clip_denoised, diffusers' clip_sample).
 *
 * d4j_vlb_terms: for sample b with t = timesteps[b]:
 *   t > 0: terms[b] = sum_i KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))
 *          = sum_i 0.5 (-1 + lv_p - lv[t] + exp(lv[t] - lv_p) + (c1 (x0 - x0_hat))^2 exp(-lv_p))
 *   t = 0: terms[b] = -sum_i log P(x0_i), the discretized Gaussian decoder with
 *          mean c1 x0_hat + c2 x_t (= x0_hat) and log scale lv_p / 2 over bins of
 *          width 2/255 in [-1, 1] whose edge bins are open (x0 < -0.999 or
 *          > 0.999), each probability clamped below at 1e-12.
 * x0 must hold 8-bit data k / 127.5 - 1 (the decoder assumes it; not checked).
 * x0, x_t, model_output: float32 [batch, n_per_sample] of this backend;
 * terms: HOST float64[batch] (the call waits for the result). Needs T >= 2.
 *
 * d4j_vlb_prior: terms[b] = sum_i KL(q(x_T | x0) || N(0, 1))
 *   = sum_i 0.5 (-1 - log(1 - ab[T-1]) + (1 - ab[T-1]) + ab[T-1] x0_i^2). */
D4J_API d4j_status d4j_vlb_terms(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                                 d4j_variance_type variance, int32_t clip_denoised, float clip_range,
                                 const d4j_buffer *x0, const d4j_buffer *x_t, const d4j_buffer *model_output,
                                 const int32_t *timesteps, int32_t batch, int64_t n_per_sample, double *terms);
D4J_API d4j_status d4j_vlb_prior(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *x0,
                                 int32_t batch, int64_t n_per_sample, double *terms);

/* ---- conditioning: class labels, guidance, inpainting ---- */
/* Class-conditional models (diffusers UNet2DModel with num_class_embeds, the
 * nn.Embedding class_embedding added to the time embedding) and what sampling
 * applications do between the model call and the scheduler step. Kernel
 * families "class_embedding", "guidance" and "renoise".
 *
 * d4j_class_embedding_forward: emb[b, :] += table[labels[b], :] for each of
 * batch rows; table float32 [num_classes, dim], emb float32 [batch, dim], both
 * of this backend, disjoint; labels on the HOST, each in [0, num_classes).
 * d4j_class_embedding_backward: d_table[labels[b], :] += d_emb[b, :], the rows
 * b added in increasing order (deterministic, the same bits on every backend).
 *
 * d4j_classifier_free_guidance: out = uncond + guidance_scale * (cond - uncond)
 * over count floats (Ho & Salimans 2022, diffusers' noise_pred_uncond +
 * guidance_scale * (noise_pred_text - noise_pred_uncond)), each operation
 * rounded once (no fused multiply-add). guidance_scale finite and >= 0; out
 * may be cond or uncond.
 *
 * d4j_noise_to_timestep: for sample b with s = from_timesteps[b] (-1: the
 * clean image, alphas_cumprod 1) and t = to_timesteps[b] > s,
 *   x = sqrt(ab[t] / ab[s]) src + sqrt(1 - ab[t] / ab[s]) z
 * a draw from q(x_t | x_s): with s = -1 the forward process applied to an
 * image (SDEdit's start), with s >= 0 RePaint's jump back to a noisier
 * timestep. z is element i of the normal stream (noise_seeds[b],
 * noise_offsets[b]), as in d4j_ddpm_step. src may be x.
 *
 * d4j_inpaint_merge: RePaint's combination of the known and generated
 * regions, for sample b at timestep t = timesteps[b] (-1: the clean image):
 *   x = mask * (sqrt(ab[t]) known + sqrt(1 - ab[t]) z) + (1 - mask) * x
 * (mask 1 keeps the known pixel, 0 keeps the generated one: diffusers'
 * RePaintPipeline convention). At t = -1 no noise is drawn, so where mask is 1
 * the result is known exactly. known, mask and x: float32 [batch,
 * n_per_sample] of this backend; x disjoint from known and mask. */
D4J_API d4j_status d4j_class_embedding_forward(d4j_backend *backend, const d4j_buffer *table, const int32_t *labels,
                                               int32_t batch, int32_t num_classes, int32_t dim, d4j_buffer *emb);
D4J_API d4j_status d4j_class_embedding_backward(d4j_backend *backend, const d4j_buffer *d_emb, const int32_t *labels,
                                                int32_t batch, int32_t num_classes, int32_t dim, d4j_buffer *d_table);
D4J_API d4j_status d4j_classifier_free_guidance(d4j_backend *backend, const d4j_buffer *cond,
                                                const d4j_buffer *uncond, int64_t count, float guidance_scale,
                                                d4j_buffer *out);
D4J_API d4j_status d4j_noise_to_timestep(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *src,
                                         const int32_t *from_timesteps, const int32_t *to_timesteps, int32_t batch,
                                         int64_t n_per_sample, const uint64_t *noise_seeds,
                                         const uint64_t *noise_offsets, d4j_buffer *x);
D4J_API d4j_status d4j_inpaint_merge(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *known,
                                     const d4j_buffer *mask, const int32_t *timesteps, int32_t batch,
                                     int64_t n_per_sample, const uint64_t *noise_seeds, const uint64_t *noise_offsets,
                                     d4j_buffer *x);

/* ---- graph ---- */
/* Capture and replay (CUDA graphs). Between d4j_capture_begin and
 * d4j_capture_end, the calling thread's kernel calls on the backend are
 * validated as usual but RECORDED, not executed; d4j_capture_end turns them
 * into a graph that d4j_graph_launch runs as one unit, any number of times,
 * with the arguments each call had when it was recorded: the same buffers
 * (by address, so their current contents), and the per-call host metadata
 * (timesteps, seeds, offsets, the front's coefficient records) as they were
 * at recording time: the backend copies every host source into memory the
 * graph owns, so the caller's arrays may change or go away at once. Each
 * recorded call also gets its own device scratch, owned by the graph.
 * cuda: stream capture into a CUDA graph (cudaStreamBeginCapture in
 * thread-local mode, cudaGraphInstantiate, cudaGraphLaunch); cuda-sim: the
 * simulator records the launches and copies and replays them in order as
 * plain launches; cpu: cannot capture (D4J_ERR_UNSUPPORTED from
 * d4j_capture_begin; d4j_capture_supported says so beforehand): run the calls
 * directly.
 *
 * Rules while a thread captures on a backend:
 *   - on that thread, calls that allocate, free, copy synchronously, wait or
 *     return host results are refused with D4J_ERR_INVALID_ARGUMENT and record
 *     nothing (the capture goes on): d4j_buffer_alloc, d4j_buffer_free,
 *     d4j_buffer_write, d4j_buffer_read, d4j_backend_synchronize,
 *     d4j_backend_close, d4j_timer_begin/end, d4j_flush_cache, d4j_grad_norm,
 *     d4j_vlb_terms, d4j_vlb_prior, d4j_graph_launch, d4j_graph_free, and a
 *     second d4j_capture_begin. Views (d4j_buffer_view) may be created.
 *   - a recorded call that fails (any status) discards the capture: the
 *     capture still runs until d4j_capture_end, which then returns that status
 *     and no graph.
 *   - every other thread's call on the backend WAITS until the capture ends
 *     (nothing of theirs is recorded); d4j_capture_begin itself waits for calls
 *     already running on other threads and for another thread's capture. The
 *     capturing thread must end its capture (d4j_capture_end) or every other
 *     thread using the backend waits forever.
 *   - every buffer a recorded call uses (its owning buffer, for a view) cannot
 *     be freed while the graph lives (D4J_ERR_INVALID_ARGUMENT); a backend with
 *     live graphs cannot be closed. Free graphs with d4j_graph_free, which waits
 *     for a running launch. */
typedef struct d4j_graph d4j_graph;

/* *supported = 1 when d4j_capture_begin can work on this backend, else 0. */
D4J_API d4j_status d4j_capture_supported(const d4j_backend *backend, int32_t *supported);
D4J_API d4j_status d4j_capture_begin(d4j_backend *backend);
/* Ends the calling thread's capture on the backend (whatever the result,
 * except for a NULL out) and returns the graph in *out. */
D4J_API d4j_status d4j_capture_end(d4j_backend *backend, d4j_graph **out);
/* Enqueues one run of the graph; synchronous on cuda-sim, asynchronous on
 * cuda like any kernel call (a later d4j_buffer_read waits for it). */
D4J_API d4j_status d4j_graph_launch(d4j_graph *graph);
/* Size of a graph: its nodes (kernel launches and copies), the device scratch
 * and the host snapshot memory it owns, in bytes. */
D4J_API d4j_status d4j_graph_info(const d4j_graph *graph, int64_t *nodes, int64_t *device_bytes,
                                  int64_t *host_bytes);
D4J_API d4j_status d4j_graph_free(d4j_graph *graph);

#ifdef __cplusplus
}
#endif
#endif /* D4J_H */
