// What the files of the front library (libd4j.so) share: the handle structs,
// the thread's last error, the checks every entry point uses, the capture gate
// and the per-sample coefficient math. Internal: never installed, never seen
// by the bindings.
//
// The files, by concern:
//   handles.cpp            last error, handle registry, backends, buffers, schedules, timing
//   checks.cpp             argument checks shared by the kernel families (sizes, timesteps, disjointness)
//   capture.cpp            the capture gate and the graph entry points
//   coef.cpp               float64 per-sample schedule coefficients (noise, loss, steps, sampler, vlb)
//   diffusion.cpp          rng, fill, add_noise, diffusion_loss, DDPM/DDIM steps, timestep embedding
//   sampler.cpp, vlb.cpp   dynamic thresholding, DPM-Solver, the variational bound
//   conv2d.cpp, norm.cpp, linear_attention.cpp, optim.cpp, concat_dropout.cpp   the layer families
#ifndef D4J_FRONT_INTERNAL_H
#define D4J_FRONT_INTERNAL_H

#include <atomic>
#include <condition_variable>
#include <initializer_list>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "../common/backend_iface.h"
#include "../common/sampler_math.h"
#include "../common/vlb_math.h"
#include "../include/d4j.h"

struct d4j_backend {
    void *dl = nullptr;
    const d4j_backend_iface *iface = nullptr;
    void *state = nullptr;
    std::string path;
    std::atomic<int64_t> live_bytes{0};
    std::atomic<int64_t> live_buffers{0};
    // Every call using the backend holds `life` shared; close holds it
    // exclusively, so a backend is never shut down under a running call. The
    // struct itself is never freed (a few bytes per closed backend), so a
    // stale handle stays safe to look at.
    std::shared_mutex life;
    bool closed = false;
    // Capture gate: while a thread captures a graph on this backend (capturer),
    // every other thread's call on it waits in a CaptureGate until the capture
    // ends, so none of their work lands in the graph; d4j_capture_begin waits
    // for calls already running (gate_active) and admits no new ones meanwhile
    // (capture_pending). Only backends that can capture use the gate.
    std::mutex gate_mu;
    std::condition_variable gate_cv;
    std::atomic<std::thread::id> capturer{std::thread::id()};
    bool capture_pending = false;  // guarded by gate_mu
    int64_t gate_active = 0;       // guarded by gate_mu
    std::atomic<int64_t> live_graphs{0};
};

struct d4j_buffer {
    d4j_backend *backend;
    void *ptr;
    int64_t bytes = 0;
    d4j_buffer *root = nullptr;  // for a view: the owning buffer; null for an owning buffer
    int64_t views = 0;           // owning buffer: live views of it (guarded by g_registry_mu)
    int64_t graph_uses = 0;      // owning buffer: live graphs that recorded calls on it (g_registry_mu)
};

struct d4j_schedule {
    std::vector<double> alphas_cumprod;
};

namespace d4j::front {

// ---- last error and handle registry (handles.cpp) ----

// The calling thread's last error message (d4j_last_error).
extern thread_local char g_error[1024];

// printf-style; stores the message as the calling thread's last error.
void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// set_error, then returns s.
d4j_status fail(d4j_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Registry of live handles, so a freed, forged or foreign handle is reported
// instead of dereferenced. One mutex: calls are coarse (whole kernels).
extern std::mutex g_registry_mu;
extern std::unordered_set<const void *> g_buffers;  // guarded by g_registry_mu

#define D4J_TRY(expr)                \
    do {                             \
        d4j_status s_ = (expr);      \
        if (s_ != D4J_OK) return s_; \
    } while (0)

d4j_status check_backend(const d4j_backend *b);
// A buffer argument must be live, belong to `backend` (any backend when null)
// and hold at least `needed` bytes. During a capture it pins the buffer to the graph.
d4j_status check_buffer(const char *what, const d4j_buffer *buf, const d4j_backend *backend, int64_t needed);
d4j_status check_schedule(const d4j_schedule *s);

// ---- argument checks shared by the kernel families (checks.cpp) ----

// count * elem_size as bytes, refusing negatives and int64 overflow.
d4j_status checked_bytes(const char *what, int64_t count, int64_t elem_size, int64_t *bytes);
// batch and n_per_sample: positive, product in range; yields float32 tensor bytes.
d4j_status check_batch(int32_t batch, int64_t n, int64_t *tensor_bytes);
// Every t[b] in [0, T), or [-1, T) with allow_minus_one.
d4j_status check_timesteps(const char *what, const int32_t *t, int32_t batch, int32_t T, bool allow_minus_one);
d4j_status check_prediction(int32_t p);
// check_schedule, check_prediction, then check_batch.
d4j_status check_schedule_batch(const d4j_schedule *schedule, int32_t prediction, int32_t batch, int64_t n,
                                int64_t *tensor_bytes);
d4j_status check_variance(int32_t v);
d4j_status check_flag(const char *what, int32_t v);
d4j_status check_clip(int32_t clip, float range);
d4j_status check_noise(const uint64_t *seeds, const uint64_t *offsets);
// The scalars of a DDIM step: eta, use_clipped_model_output, final_alpha_cumprod.
d4j_status check_ddim_scalars(float eta, int32_t use_clipped_model_output, double final_alpha_cumprod);
// Schedule, prediction, clip, shapes, buffers and timestep pairs of a reverse step.
d4j_status check_step(d4j_backend *backend, const d4j_schedule *schedule, int32_t prediction, int32_t clip,
                      float clip_range, const d4j_buffer *x_t, const d4j_buffer *model_output,
                      const int32_t *timesteps, const int32_t *prev, int32_t batch, int64_t n, const uint64_t *seeds,
                      const uint64_t *offsets, const d4j_buffer *x_prev);

// The bytes of a buffer argument that a call reads or writes.
struct Span {
    const char *name;
    const d4j_buffer *buf;  // may be null (an optional argument): never overlaps
    int64_t bytes;
};

enum class InPlace { refused, allowed };

// The one disjointness rule: an output's bytes must not share memory with
// another argument's. Views of one flat buffer are distinct handles over shared
// memory, so addresses are compared, not handles. With InPlace::allowed the two
// may also be exactly the same memory (element-wise kernels updating in place).
d4j_status check_no_overlap(Span out, Span other, InPlace in_place = InPlace::refused);
// Every output against every other argument and every later output, in place refused.
d4j_status check_outputs_disjoint(std::initializer_list<Span> outputs, std::initializer_list<Span> inputs);

// ---- capture gate (capture.cpp) ----

// Holds a call on a backend out of another thread's capture (see d4j_backend::capturer).
class CaptureGate {
public:
    explicit CaptureGate(const d4j_backend *backend);
    ~CaptureGate();
    CaptureGate(const CaptureGate &) = delete;
    CaptureGate &operator=(const CaptureGate &) = delete;

private:
    d4j_backend *b_ = nullptr;
};

// Calls that cannot be part of a graph (they allocate, free, copy synchronously,
// wait or return host results) are refused on the capturing thread.
d4j_status refuse_in_capture(const d4j_backend *b, const char *call);
// A buffer a call recorded on the calling thread's capture uses must outlive the graph.
void pin_for_capture(const d4j_buffer *buf);
// A failing call during a capture may have recorded part of its work: the graph is discarded.
void note_failure_in_capture(d4j_status s);

// Validates a backend handle and holds it open (shared) until the end of the scope;
// waits while another thread captures a graph on it.
#define D4J_USE_BACKEND(b)                                                                        \
    D4J_TRY(::d4j::front::check_backend(b));                                                      \
    std::shared_lock<std::shared_mutex> backend_use_(const_cast<d4j_backend *>(b)->life);         \
    if ((b)->closed) return ::d4j::front::fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed"); \
    ::d4j::front::CaptureGate capture_gate_(b)

// Backends must not throw across the C ABI; this catches what slips through.
template <class F>
d4j_status guarded_call(F &&f) {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return fail(D4J_ERR_OUT_OF_MEMORY, "out of host memory");
    } catch (const std::exception &e) {
        return fail(D4J_ERR_INTERNAL, "internal error: %s", e.what());
    } catch (...) {
        return fail(D4J_ERR_INTERNAL, "internal error");
    }
}

// guarded_call for a forwarded kernel call: a failure also discards a capture in progress.
template <class F>
d4j_status guarded(F &&f) {
    d4j_status s = guarded_call(std::forward<F>(f));
    if (s != D4J_OK) note_failure_in_capture(s);
    return s;
}

// ---- per-sample schedule coefficients, in float64 (coef.cpp) ----

// x0 = a x_t + b model_output for a prediction type at alphas_cumprod ab.
void predict_x0(int32_t prediction, double ab, double *a, double *b);
d4j_noise_coef noise_coef(double ab);
d4j_loss_coef loss_coef(int32_t prediction, double ab, double weight, int32_t batch, int64_t n);
// One DDPM step t -> prev (diffusers DDPMScheduler.step, prev_t = previous_timestep(t)).
d4j_step_coef ddpm_coef(const std::vector<double> &ac, int32_t prediction, int32_t variance, int32_t t, int32_t prev,
                        uint64_t seed, uint64_t offset);
// One DDIM step t -> prev (diffusers DDIMScheduler.step).
d4j_step_coef ddim_coef(const std::vector<double> &ac, int32_t prediction, float eta, int32_t use_clipped_model_output,
                        double final_alpha_cumprod, int32_t t, int32_t prev, uint64_t seed, uint64_t offset);
// The sampler record with only the x0 prediction set (dynamic thresholding).
d4j_sampler_coef x0_coef(int32_t prediction, double ab);
// A reverse step as the generalised sampler record (no m1 term).
d4j_sampler_coef widen(const d4j_step_coef &step);
// One DPM-Solver++ step t -> prev, first order or (last >= 0) second order.
d4j_sampler_coef dpmsolver_coef(const std::vector<double> &ac, int32_t prediction, int32_t t, int32_t prev,
                                int32_t last);
// The variational bound's term at timestep t, and its prior term KL(q(x_T | x0) || N(0, 1)).
d4j_vlb_coef vlb_coef(const std::vector<double> &ac, int32_t prediction, int32_t variance, int32_t t);
d4j_vlb_coef vlb_prior_coef(double ab_last);

// ---- ties between d4j.h and the backend kernel list ----

// The backend kernel signature an entry point maps to when its arguments map
// one to one: the backend handle becomes the backend state, a buffer its float
// pointer, everything else is passed through.
template <class T> struct kernel_arg { using type = T; };
template <> struct kernel_arg<d4j_backend *> { using type = void *; };
template <> struct kernel_arg<d4j_buffer *> { using type = float *; };
template <> struct kernel_arg<const d4j_buffer *> { using type = const float *; };
template <class F> struct kernel_of;
template <class R, class... A> struct kernel_of<R(A...)> { using type = R(typename kernel_arg<A>::type...); };

// Fails the build when entry point `entry` of d4j.h and backend kernel `kernel`
// (backend_kernels.h) stop corresponding argument for argument.
#define D4J_ENTRY_FORWARDS_TO(entry, kernel)                                                              \
    static_assert(std::is_same<::d4j::front::kernel_of<decltype(entry)>::type,                            \
                               std::remove_pointer<decltype(d4j_backend_iface::kernel)>::type>::value,     \
                  #entry " of d4j.h no longer matches backend kernel " #kernel " argument for argument")

}  // namespace d4j::front

#endif
