// The front library: implements d4j.h. It validates every argument, owns the
// handle registry and the thread-local error message, derives per-sample
// coefficients in float64, and forwards to a backend loaded with dlopen.
// Nothing here touches backend memory directly.

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <condition_variable>
#include <thread>
#include <unordered_set>
#include <vector>

#include "../common/backend_iface.h"
#include "../common/sampler_math.h"
#include "../common/vlb_math.h"
#include "../include/d4j.h"

namespace {

thread_local char g_error[1024];

void set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
}

const d4j_host_api kHost = {&set_error};

d4j_status fail(d4j_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return s;
}

}  // namespace

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
    // ---- graph (issue 5) ----
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
    // ---- end graph ----
};

struct d4j_buffer {
    d4j_backend *backend;
    void *ptr;
    int64_t bytes = 0;
    d4j_buffer *root = nullptr;  // for a view: the owning buffer; null for an owning buffer
    int64_t views = 0;           // owning buffer: live views of it (guarded by g_registry_mu)
    int64_t graph_uses = 0;      // owning buffer: live graphs that recorded calls on it (g_registry_mu)
};

// ---- graph (issue 5) ----
struct d4j_graph {
    d4j_backend *backend;
    void *impl;                          // the backend's graph
    std::vector<d4j_buffer *> pinned;    // owning buffers the recorded calls use (graph_uses held)
    int64_t nodes, device_bytes, host_bytes;
};

namespace {
// The calling thread's capture in progress (at most one per thread).
struct FrontCapture {
    d4j_backend *backend;
    std::unordered_set<d4j_buffer *> pinned;  // owning buffers of every buffer argument seen
    d4j_status failed = D4J_OK;               // first failing forwarded call, which discards the graph
    std::string failure;
};
thread_local FrontCapture *t_capture = nullptr;
}  // namespace
// ---- end graph ----

struct d4j_schedule {
    std::vector<double> alphas_cumprod;
};

namespace {

// Registry of live handles, so a freed, forged or foreign handle is reported
// instead of dereferenced. One mutex: calls are coarse (whole kernels).
std::mutex g_registry_mu;
std::unordered_set<const void *> g_backends, g_buffers, g_schedules;

bool registered(const std::unordered_set<const void *> &set, const void *p) {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    return set.count(p) != 0;
}

d4j_status check_backend(const d4j_backend *b) {
    if (b == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "backend is null");
    if (!registered(g_backends, b)) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed or invalid");
    return D4J_OK;
}

// A buffer argument must be live, belong to `backend`, and hold at least
// `needed` bytes.
d4j_status check_buffer(const char *what, const d4j_buffer *buf, const d4j_backend *backend, int64_t needed) {
    if (buf == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "%s: buffer is null", what);
    // Registry lookup and field reads under one lock: a concurrent free cannot
    // delete the struct in between.
    std::lock_guard<std::mutex> lock(g_registry_mu);
    if (g_buffers.count(buf) == 0) return fail(D4J_ERR_INVALID_HANDLE, "%s: buffer is freed or invalid", what);
    if (backend != nullptr && buf->backend != backend) {
        // Two open backends may have the same kind (two "cpu" instances): say which case it is.
        if (std::strcmp(buf->backend->iface->name, backend->iface->name) == 0)
            return fail(D4J_ERR_INVALID_HANDLE, "%s: buffer belongs to another '%s' backend instance, not this one",
                        what, backend->iface->name);
        return fail(D4J_ERR_INVALID_HANDLE, "%s: buffer belongs to backend '%s', not '%s'", what,
                    buf->backend->iface->name, backend->iface->name);
    }
    if (buf->bytes < needed)
        return fail(D4J_ERR_INVALID_ARGUMENT, "%s: buffer holds %lld bytes but %lld are needed", what,
                    (long long)buf->bytes, (long long)needed);
    // graph (issue 5): a buffer a captured call uses must outlive the graph
    if (t_capture != nullptr && buf->backend == t_capture->backend)
        t_capture->pinned.insert(const_cast<d4j_buffer *>(buf->root ? buf->root : buf));
    return D4J_OK;
}

// Do the byte ranges [a, a + ab) and [b, b + bb) share a byte? Views of one
// flat buffer are distinct handles over shared memory, so every "outputs must
// not overlap" check compares addresses through this one predicate.
bool bytes_overlap(const d4j_buffer *a, int64_t ab, const d4j_buffer *b, int64_t bb) {
    if (a == nullptr || b == nullptr) return false;
    const uintptr_t pa = (uintptr_t)a->ptr, pb = (uintptr_t)b->ptr;
    return pa < pb + (uintptr_t)bb && pb < pa + (uintptr_t)ab;
}

d4j_status check_schedule(const d4j_schedule *s) {
    if (s == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "schedule is null");
    if (!registered(g_schedules, s)) return fail(D4J_ERR_INVALID_HANDLE, "schedule is freed or invalid");
    return D4J_OK;
}

// count * elem_size as bytes, refusing negatives and int64 overflow.
d4j_status checked_bytes(const char *what, int64_t count, int64_t elem_size, int64_t *bytes) {
    if (count < 0) return fail(D4J_ERR_INVALID_ARGUMENT, "%s must be >= 0, got %lld", what, (long long)count);
    if (count > INT64_MAX / elem_size)
        return fail(D4J_ERR_INVALID_ARGUMENT, "%s = %lld overflows a 64-bit byte count", what, (long long)count);
    *bytes = count * elem_size;
    return D4J_OK;
}

// batch and n_per_sample: positive, product in range; yields float32 tensor bytes.
d4j_status check_batch(int32_t batch, int64_t n, int64_t *tensor_bytes) {
    if (batch <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %d", batch);
    if (n <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "n_per_sample must be >= 1, got %lld", (long long)n);
    if (n > INT64_MAX / 4 / batch)
        return fail(D4J_ERR_INVALID_ARGUMENT, "batch %d x n_per_sample %lld overflows", batch, (long long)n);
    *tensor_bytes = (int64_t)batch * n * 4;
    return D4J_OK;
}

d4j_status check_timesteps(const char *what, const int32_t *t, int32_t batch, int32_t T, bool allow_minus_one) {
    if (t == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "%s is null", what);
    for (int32_t b = 0; b < batch; ++b) {
        int32_t v = t[b];
        if (v >= T || v < (allow_minus_one ? -1 : 0))
            return fail(D4J_ERR_INVALID_ARGUMENT, "%s[%d] = %d is outside [%d, %d)", what, b, v,
                        allow_minus_one ? -1 : 0, T);
    }
    return D4J_OK;
}

d4j_status check_prediction(int32_t p) {
    if (p < D4J_PREDICTION_EPSILON || p > D4J_PREDICTION_V)
        return fail(D4J_ERR_INVALID_ARGUMENT, "prediction type %d is not epsilon(0), sample(1) or v_prediction(2)", p);
    return D4J_OK;
}

d4j_status check_clip(int32_t clip, float range) {
    if (clip != 0 && clip != 1) return fail(D4J_ERR_INVALID_ARGUMENT, "clip_sample must be 0 or 1, got %d", clip);
    if (clip && !(std::isfinite(range) && range > 0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "clip_sample_range must be finite and > 0, got %g", (double)range);
    return D4J_OK;
}

d4j_status check_noise(const uint64_t *seeds, const uint64_t *offsets) {
    if (seeds == nullptr || offsets == nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "noise_seeds and noise_offsets must not be null");
    return D4J_OK;
}

#define D4J_TRY(expr)                   \
    do {                                \
        d4j_status s_ = (expr);         \
        if (s_ != D4J_OK) return s_;    \
    } while (0)

// ---- graph (issue 5) ----
// Holds a call on a backend out of another thread's capture (see d4j_backend::capturer).
class CaptureGate {
public:
    explicit CaptureGate(const d4j_backend *backend) {
        auto *b = const_cast<d4j_backend *>(backend);
        if (b->iface->capture_begin == nullptr) return;                  // cannot capture: no gate
        if (b->capturer.load() == std::this_thread::get_id()) return;   // the capturing thread's own calls
        std::unique_lock<std::mutex> lock(b->gate_mu);
        b->gate_cv.wait(lock, [&] { return b->capturer.load() == std::thread::id() && !b->capture_pending; });
        ++b->gate_active;
        b_ = b;
    }
    ~CaptureGate() {
        if (b_ == nullptr) return;
        std::lock_guard<std::mutex> lock(b_->gate_mu);
        if (--b_->gate_active == 0) b_->gate_cv.notify_all();
    }
    CaptureGate(const CaptureGate &) = delete;
    CaptureGate &operator=(const CaptureGate &) = delete;

private:
    d4j_backend *b_ = nullptr;
};

// Calls that cannot be part of a graph (they allocate, free, copy synchronously,
// wait or return host results) are refused on the capturing thread.
d4j_status refuse_in_capture(const d4j_backend *b, const char *call) {
    if (t_capture == nullptr || t_capture->backend != b) return D4J_OK;
    return fail(D4J_ERR_INVALID_ARGUMENT,
                "%s is not allowed while this thread captures a graph on backend '%s' (between d4j_capture_begin "
                "and d4j_capture_end only kernel calls are recorded: no allocation, free, synchronous copy, "
                "synchronisation or host result)",
                call, b->iface->name);
}
// ---- end graph ----

// Validates a backend handle and holds it open (shared) until the end of the scope;
// waits while another thread captures a graph on it.
#define D4J_USE_BACKEND(b)                                                                  \
    D4J_TRY(check_backend(b));                                                              \
    std::shared_lock<std::shared_mutex> backend_use_(const_cast<d4j_backend *>(b)->life);   \
    if ((b)->closed) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed");       \
    CaptureGate capture_gate_(b)

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

template <class F>
d4j_status guarded(F &&f) {
    d4j_status s = guarded_call(std::forward<F>(f));
    // graph (issue 5): a failing call during a capture may have recorded part of its work
    if (s != D4J_OK && t_capture != nullptr && t_capture->failed == D4J_OK) {
        t_capture->failed = s;
        t_capture->failure = g_error;
    }
    return s;
}

// Per-sample x0 / eps predictions as linear forms in (x_t, model_output).
void predict_x0(int32_t prediction, double ab, double *a, double *b) {
    double sab = std::sqrt(ab), sbp = std::sqrt(1.0 - ab);
    switch (prediction) {
        case D4J_PREDICTION_EPSILON: *a = 1.0 / sab; *b = -sbp / sab; break;
        case D4J_PREDICTION_SAMPLE: *a = 0.0; *b = 1.0; break;
        default: *a = sab; *b = -sbp; break;  // v
    }
}

void predict_eps(int32_t prediction, double ab, double *a, double *b) {
    double sab = std::sqrt(ab), sbp = std::sqrt(1.0 - ab);
    switch (prediction) {
        case D4J_PREDICTION_EPSILON: *a = 0.0; *b = 1.0; break;
        case D4J_PREDICTION_SAMPLE: *a = 1.0 / sbp; *b = -sab / sbp; break;
        default: *a = sbp; *b = sab; break;  // v: eps = sqrt(ab) v + sqrt(1-ab) x
    }
}

}  // namespace

extern "C" {

int32_t d4j_abi_version(void) { return D4J_ABI_VERSION; }

const char *d4j_last_error(void) { return g_error; }

void d4j_noop(void) {}

d4j_status d4j_backend_open(const char *library_path, d4j_backend **out) {
    if (out == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out is null");
    *out = nullptr;
    if (library_path == nullptr || library_path[0] == '\0')
        return fail(D4J_ERR_INVALID_ARGUMENT, "library_path is null or empty");
    return guarded([&]() -> d4j_status {
        void *dl = dlopen(library_path, RTLD_NOW | RTLD_LOCAL);
        if (dl == nullptr) return fail(D4J_ERR_UNAVAILABLE, "cannot load %s: %s", library_path, dlerror());
        auto entry = reinterpret_cast<d4j_backend_entry_fn>(dlsym(dl, "d4j_backend_entry"));
        if (entry == nullptr) {
            dlclose(dl);
            return fail(D4J_ERR_UNAVAILABLE, "%s is not a diffusion4j backend (no d4j_backend_entry)", library_path);
        }
        const d4j_backend_iface *iface = entry(&kHost);
        if (iface == nullptr || iface->version != D4J_BACKEND_IFACE_VERSION) {
            dlclose(dl);
            return fail(D4J_ERR_UNAVAILABLE, "%s implements backend interface %d, this library needs %d",
                        library_path, iface ? iface->version : -1, D4J_BACKEND_IFACE_VERSION);
        }
        void *state = nullptr;
        g_error[0] = '\0';
        d4j_status s = iface->init(&state);
        if (s != D4J_OK) {
            if (g_error[0] == '\0') set_error("backend %s failed to initialise", iface->name);
            // A CUDA runtime may keep threads alive; unloading it under them is unsafe.
            return s;
        }
        auto *b = new d4j_backend();
        b->dl = dl;
        b->iface = iface;
        b->state = state;
        b->path = library_path;
        {
            std::lock_guard<std::mutex> lock(g_registry_mu);
            g_backends.insert(b);
        }
        *out = b;
        return D4J_OK;
    });
}

d4j_status d4j_backend_close(d4j_backend *backend) {
    D4J_TRY(check_backend(backend));
    D4J_TRY(refuse_in_capture(backend, "d4j_backend_close"));
    std::unique_lock<std::shared_mutex> exclusive(backend->life);
    if (backend->closed) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed or invalid");
    if (backend->capturer.load() != std::thread::id())
        return fail(D4J_ERR_INVALID_ARGUMENT, "backend '%s' is capturing a graph on another thread",
                    backend->iface->name);
    if (backend->live_graphs.load() != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "backend '%s' still has %lld live graphs", backend->iface->name,
                    (long long)backend->live_graphs.load());
    if (backend->live_buffers.load() != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "backend '%s' still has %lld live buffers (%lld bytes)",
                    backend->iface->name, (long long)backend->live_buffers.load(),
                    (long long)backend->live_bytes.load());
    backend->closed = true;
    {
        std::lock_guard<std::mutex> lock(g_registry_mu);
        g_backends.erase(backend);
    }
    backend->iface->shutdown(backend->state);
    // Neither the library nor the struct is released: a CUDA runtime inside the
    // library may still own threads, and stale handles must stay inspectable.
    return D4J_OK;
}

static d4j_status copy_string(const char *src, char *dst, size_t cap) {
    if (dst == nullptr || cap == 0) return fail(D4J_ERR_INVALID_ARGUMENT, "dst is null or cap is 0");
    std::snprintf(dst, cap, "%s", src);
    return D4J_OK;
}

d4j_status d4j_backend_name(const d4j_backend *backend, char *dst, size_t cap) {
    D4J_USE_BACKEND(backend);
    return copy_string(backend->iface->name, dst, cap);
}

d4j_status d4j_backend_describe(const d4j_backend *backend, char *dst, size_t cap) {
    D4J_USE_BACKEND(backend);
    if (dst == nullptr || cap == 0) return fail(D4J_ERR_INVALID_ARGUMENT, "dst is null or cap is 0");
    return guarded([&] { return backend->iface->describe(backend->state, dst, cap); });
}

d4j_status d4j_backend_live(const d4j_backend *backend, int64_t *live_bytes, int64_t *live_buffers) {
    D4J_USE_BACKEND(backend);
    if (live_bytes == nullptr || live_buffers == nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "live_bytes and live_buffers must not be null");
    *live_bytes = backend->live_bytes.load();
    *live_buffers = backend->live_buffers.load();
    return D4J_OK;
}

d4j_status d4j_backend_synchronize(d4j_backend *backend) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_backend_synchronize"));
    return guarded([&] { return backend->iface->synchronize(backend->state); });
}

d4j_status d4j_backend_set_threads(d4j_backend *backend, int32_t threads) {
    D4J_USE_BACKEND(backend);
    if (threads < 1 || threads > 1024) return fail(D4J_ERR_INVALID_ARGUMENT, "threads must be in [1, 1024], got %d", threads);
    return guarded([&] { return backend->iface->set_threads(backend->state, threads); });
}


static bool known_family(const char *family) {
    const char *list = D4J_KERNEL_FAMILIES;
    size_t n = std::strlen(family);
    for (const char *p = list; *p;) {
        const char *end = std::strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : std::strlen(p);
        if (len == n && std::strncmp(p, family, n) == 0) return true;
        p += len + (end ? 1 : 0);
    }
    return false;
}

static d4j_status check_family(const char *family) {
    if (family == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "family is null");
    if (!known_family(family))
        return fail(D4J_ERR_INVALID_ARGUMENT, "unknown kernel family '%s' (known: %s)", family, D4J_KERNEL_FAMILIES);
    return D4J_OK;
}

d4j_status d4j_kernel_families(const d4j_backend *backend, char *dst, size_t cap) {
    D4J_USE_BACKEND(backend);
    return copy_string(D4J_KERNEL_FAMILIES, dst, cap);
}

d4j_status d4j_kernel_variants(const d4j_backend *backend, const char *family, char *dst, size_t cap) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_family(family));
    const char *v = backend->iface->variants(backend->state, family);
    return copy_string(v ? v : "v1", dst, cap);
}

d4j_status d4j_kernel_variant(const d4j_backend *backend, const char *family, char *dst, size_t cap) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_family(family));
    const char *v = backend->iface->selected(backend->state, family);
    return copy_string(v ? v : "v1", dst, cap);
}

d4j_status d4j_kernel_select(d4j_backend *backend, const char *family, const char *variant) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_family(family));
    if (variant == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "variant is null");
    return guarded([&] { return backend->iface->select(backend->state, family, variant); });
}

d4j_status d4j_buffer_alloc(d4j_backend *backend, int64_t bytes, d4j_buffer **out) {
    if (out == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out is null");
    *out = nullptr;
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_buffer_alloc"));
    if (bytes <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "buffer size must be > 0 bytes, got %lld", (long long)bytes);
    if ((uint64_t)bytes > (uint64_t)1 << 46)
        return fail(D4J_ERR_INVALID_ARGUMENT, "buffer size %lld bytes exceeds the 64 TiB limit", (long long)bytes);
    return guarded([&]() -> d4j_status {
        void *ptr = nullptr;
        D4J_TRY(backend->iface->alloc(backend->state, (size_t)bytes, &ptr));
        auto *buf = new d4j_buffer{backend, ptr, bytes};
        {
            std::lock_guard<std::mutex> lock(g_registry_mu);
            g_buffers.insert(buf);
        }
        backend->live_bytes += bytes;
        backend->live_buffers += 1;
        *out = buf;
        return D4J_OK;
    });
}

d4j_status d4j_buffer_free(d4j_buffer *buffer) {
    if (buffer == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "buffer is null");
    {
        // Unregister first and atomically, so a concurrent double free fails cleanly.
        std::lock_guard<std::mutex> lock(g_registry_mu);
        if (g_buffers.count(buffer) == 0) return fail(D4J_ERR_INVALID_HANDLE, "buffer is already freed or invalid");
        D4J_TRY(refuse_in_capture(buffer->backend, "d4j_buffer_free"));
        if (buffer->graph_uses > 0)
            return fail(D4J_ERR_INVALID_ARGUMENT, "buffer is used by %lld live graphs; free them first (d4j_graph_free)",
                        (long long)buffer->graph_uses);
        if (buffer->views > 0)
            return fail(D4J_ERR_INVALID_ARGUMENT, "buffer still has %lld live views; free them first",
                        (long long)buffer->views);
        g_buffers.erase(buffer);
        if (buffer->root != nullptr) {
            // a view owns no memory
            buffer->root->views -= 1;
            delete buffer;
            return D4J_OK;
        }
    }
    d4j_backend *b = buffer->backend;
    std::shared_lock<std::shared_mutex> use(b->life);
    CaptureGate gate(b);
    d4j_status s = guarded([&] { return b->iface->free(b->state, buffer->ptr); });
    b->live_bytes -= buffer->bytes;
    b->live_buffers -= 1;
    delete buffer;
    return s;
}

d4j_status d4j_buffer_view(d4j_buffer *buffer, int64_t offset, int64_t bytes, d4j_buffer **out) {
    if (out == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out is null");
    *out = nullptr;
    if (buffer == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "buffer is null");
    return guarded([&]() -> d4j_status {
        std::lock_guard<std::mutex> lock(g_registry_mu);
        if (g_buffers.count(buffer) == 0) return fail(D4J_ERR_INVALID_HANDLE, "buffer is freed or invalid");
        if (bytes <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "view size must be > 0 bytes, got %lld", (long long)bytes);
        if (offset < 0 || offset > buffer->bytes || bytes > buffer->bytes - offset)
            return fail(D4J_ERR_INVALID_ARGUMENT, "view [%lld, %lld + %lld) is outside the buffer of %lld bytes",
                        (long long)offset, (long long)offset, (long long)bytes, (long long)buffer->bytes);
        if (offset % 4 != 0)
            return fail(D4J_ERR_INVALID_ARGUMENT, "view offset %lld is not a multiple of 4 bytes", (long long)offset);
        d4j_buffer *root = buffer->root ? buffer->root : buffer;
        auto *v = new d4j_buffer{buffer->backend, (char *)buffer->ptr + offset, bytes, root, 0};
        g_buffers.insert(v);
        root->views += 1;
        *out = v;
        return D4J_OK;
    });
}

d4j_status d4j_buffer_size(const d4j_buffer *buffer, int64_t *bytes) {
    D4J_TRY(check_buffer("buffer", buffer, nullptr, 0));
    if (bytes == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "bytes is null");
    *bytes = buffer->bytes;
    return D4J_OK;
}

static d4j_status check_range(const d4j_buffer *buffer, int64_t offset, const void *host, int64_t bytes) {
    D4J_TRY(check_buffer("buffer", buffer, nullptr, 0));
    if (host == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "host pointer is null");
    if (offset < 0 || bytes < 0 || offset > buffer->bytes || bytes > buffer->bytes - offset)
        return fail(D4J_ERR_INVALID_ARGUMENT, "range [%lld, %lld + %lld) is outside the buffer of %lld bytes",
                    (long long)offset, (long long)offset, (long long)bytes, (long long)buffer->bytes);
    return D4J_OK;
}

d4j_status d4j_buffer_write(d4j_buffer *buffer, int64_t offset, const void *src, int64_t bytes) {
    D4J_TRY(check_range(buffer, offset, src, bytes));
    D4J_TRY(refuse_in_capture(buffer->backend, "d4j_buffer_write"));
    if (bytes == 0) return D4J_OK;
    d4j_backend *b = buffer->backend;
    std::shared_lock<std::shared_mutex> use(b->life);
    CaptureGate gate(b);
    return guarded([&] { return b->iface->write(b->state, (char *)buffer->ptr + offset, src, (size_t)bytes); });
}

d4j_status d4j_buffer_read(const d4j_buffer *buffer, int64_t offset, void *dst, int64_t bytes) {
    D4J_TRY(check_range(buffer, offset, dst, bytes));
    D4J_TRY(refuse_in_capture(buffer->backend, "d4j_buffer_read"));
    if (bytes == 0) return D4J_OK;
    d4j_backend *b = buffer->backend;
    std::shared_lock<std::shared_mutex> use(b->life);
    CaptureGate gate(b);
    return guarded([&] { return b->iface->read(b->state, dst, (const char *)buffer->ptr + offset, (size_t)bytes); });
}

d4j_status d4j_schedule_create(const double *alphas_cumprod, int32_t T, d4j_schedule **out) {
    if (out == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out is null");
    *out = nullptr;
    // The size first: an empty table (T = 0, often passed as NULL) is reported as such, not as a null pointer.
    if (T < 1 || T > 1000000) return fail(D4J_ERR_INVALID_ARGUMENT, "num_train_timesteps must be in [1, 1000000], got %d", T);
    if (alphas_cumprod == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "alphas_cumprod is null");
    for (int32_t t = 0; t < T; ++t) {
        double v = alphas_cumprod[t];
        if (!std::isfinite(v)) return fail(D4J_ERR_INVALID_ARGUMENT, "alphas_cumprod[%d] is not finite (%g)", t, v);
        if (!(v > 0.0 && v < 1.0)) return fail(D4J_ERR_INVALID_ARGUMENT, "alphas_cumprod[%d] = %g is outside (0, 1)", t, v);
        if (t > 0 && !(v < alphas_cumprod[t - 1]))
            return fail(D4J_ERR_INVALID_ARGUMENT, "alphas_cumprod is not strictly decreasing at t = %d (%g after %g)", t,
                        v, alphas_cumprod[t - 1]);
    }
    return guarded([&]() -> d4j_status {
        auto *s = new d4j_schedule{std::vector<double>(alphas_cumprod, alphas_cumprod + T)};
        std::lock_guard<std::mutex> lock(g_registry_mu);
        g_schedules.insert(s);
        *out = s;
        return D4J_OK;
    });
}

d4j_status d4j_schedule_free(d4j_schedule *schedule) {
    if (schedule == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "schedule is null");
    {
        std::lock_guard<std::mutex> lock(g_registry_mu);
        if (g_schedules.erase(schedule) == 0) return fail(D4J_ERR_INVALID_HANDLE, "schedule is already freed or invalid");
    }
    delete schedule;
    return D4J_OK;
}

d4j_status d4j_rng_uint32(d4j_backend *backend, uint64_t seed, uint64_t offset, d4j_buffer *out, int64_t count) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("out", out, backend, bytes));
    if (count == 0) return D4J_OK;
    return guarded([&] { return backend->iface->rng_uint32(backend->state, seed, offset, (uint32_t *)out->ptr, count); });
}

d4j_status d4j_rng_normal(d4j_backend *backend, uint64_t seed, uint64_t offset, d4j_buffer *out, int64_t count) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("out", out, backend, bytes));
    if (count == 0) return D4J_OK;
    return guarded([&] { return backend->iface->rng_normal(backend->state, seed, offset, (float *)out->ptr, count); });
}

d4j_status d4j_add_noise(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *x0,
                         const int32_t *timesteps, int32_t batch, int64_t n, uint64_t seed, uint64_t offset,
                         d4j_buffer *x_t, d4j_buffer *eps) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_schedule(schedule));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("eps", eps, backend, bytes));
    if (x_t == eps) return fail(D4J_ERR_INVALID_ARGUMENT, "x_t and eps must be different buffers");
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_noise_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b) {
            double ab = schedule->alphas_cumprod[timesteps[b]];
            coef[b].a = (float)std::sqrt(ab);
            coef[b].s = (float)std::sqrt(1.0 - ab);
        }
        return backend->iface->add_noise(backend->state, coef.data(), batch, n, (const float *)x0->ptr, seed, offset,
                                         (float *)x_t->ptr, (float *)eps->ptr);
    });
}

d4j_status d4j_diffusion_loss(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                              const d4j_buffer *model_output, const d4j_buffer *x0, const d4j_buffer *eps,
                              const int32_t *timesteps, const float *loss_weights, int32_t batch, int64_t n,
                              d4j_buffer *loss, d4j_buffer *grad) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    D4J_TRY(check_buffer("eps", eps, backend, bytes));
    D4J_TRY(check_buffer("loss", loss, backend, (int64_t)batch * 4));
    if (grad != nullptr) D4J_TRY(check_buffer("grad", grad, backend, bytes));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    if (loss_weights != nullptr) {
        for (int32_t t = 0; t < T; ++t)
            if (!std::isfinite(loss_weights[t]) || loss_weights[t] < 0)
                return fail(D4J_ERR_INVALID_ARGUMENT, "loss_weights[%d] = %g must be finite and >= 0", t,
                            (double)loss_weights[t]);
    }
    return guarded([&]() -> d4j_status {
        std::vector<d4j_loss_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b) {
            double ab = schedule->alphas_cumprod[timesteps[b]];
            double w = loss_weights ? (double)loss_weights[timesteps[b]] : 1.0;
            d4j_loss_coef &c = coef[b];
            switch (prediction) {
                case D4J_PREDICTION_EPSILON: c.c_eps = 1.0f; c.c_x0 = 0.0f; break;
                case D4J_PREDICTION_SAMPLE: c.c_eps = 0.0f; c.c_x0 = 1.0f; break;
                default:
                    c.c_eps = (float)std::sqrt(ab);
                    c.c_x0 = (float)-std::sqrt(1.0 - ab);
                    break;
            }
            c.lw = (float)(w / (double)n);
            c.g = (float)(2.0 * w / ((double)batch * (double)n));
        }
        return backend->iface->diffusion_loss(backend->state, coef.data(), batch, n, (const float *)model_output->ptr,
                                              (const float *)x0->ptr, (const float *)eps->ptr, (float *)loss->ptr,
                                              grad ? (float *)grad->ptr : nullptr);
    });
}

// Per-sample coefficients of one DDPM step (diffusers DDPMScheduler.step with
// prev_t = previous_timestep(t)); shared by d4j_ddpm_step and the thresholded
// entry point of the sampler family.
static void ddpm_coef(const std::vector<double> &ac, int32_t prediction, int32_t variance, int32_t t, int32_t prev,
                      uint64_t seed, uint64_t offset, d4j_step_coef *out) {
    double ab = ac[t];
    double ab_prev = prev >= 0 ? ac[prev] : 1.0;
    double bp = 1.0 - ab, bp_prev = 1.0 - ab_prev;
    double alpha = ab / ab_prev, beta = 1.0 - alpha;
    double x0a, x0b;
    predict_x0(prediction, ab, &x0a, &x0b);
    d4j_step_coef &c = *out;
    std::memset(&c, 0, sizeof c);
    c.x0_a = (float)x0a;
    c.x0_b = (float)x0b;
    c.c_x0 = (float)(std::sqrt(ab_prev) * beta / bp);
    c.c_xt = (float)(std::sqrt(alpha) * bp_prev / bp);
    double var = 0.0;
    if (t > 0) {
        var = variance == D4J_VARIANCE_FIXED_SMALL ? std::fmax(bp_prev / bp * beta, 1e-20) : beta;
    }
    c.sigma = (float)std::sqrt(var);
    c.seed = seed;
    c.offset = offset;
}

// Per-sample coefficients of one DDIM step (diffusers DDIMScheduler.step).
static void ddim_coef(const std::vector<double> &ac, int32_t prediction, float eta, int32_t use_clipped_model_output,
                      double final_alpha_cumprod, int32_t t, int32_t prev, uint64_t seed, uint64_t offset,
                      d4j_step_coef *out) {
    double ab = ac[t];
    double ab_prev = prev >= 0 ? ac[prev] : final_alpha_cumprod;
    double bp = 1.0 - ab, bp_prev = 1.0 - ab_prev;
    double x0a, x0b, ea, eb;
    predict_x0(prediction, ab, &x0a, &x0b);
    predict_eps(prediction, ab, &ea, &eb);
    double variance = bp_prev / bp * (1.0 - ab / ab_prev);
    double std_dev = (double)eta * std::sqrt(std::fmax(variance, 0.0));
    double dir = std::sqrt(std::fmax(bp_prev - std_dev * std_dev, 0.0));
    d4j_step_coef &c = *out;
    std::memset(&c, 0, sizeof c);
    c.x0_a = (float)x0a;
    c.x0_b = (float)x0b;
    if (use_clipped_model_output) {
        // eps re-derived from the (clipped) x0: (x - sqrt(ab) x0) / sqrt(1 - ab)
        c.eps_a = (float)(1.0 / std::sqrt(bp));
        c.eps_c = (float)(-std::sqrt(ab) / std::sqrt(bp));
    } else {
        c.eps_a = (float)ea;
        c.eps_b = (float)eb;
    }
    c.c_x0 = (float)std::sqrt(ab_prev);
    c.c_eps = (float)dir;
    c.sigma = eta > 0.0f ? (float)std_dev : 0.0f;
    c.seed = seed;
    c.offset = offset;
}

// Shared validation of the two reverse-step entry points.
static d4j_status check_step(d4j_backend *backend, const d4j_schedule *schedule, int32_t prediction, int32_t clip,
                             float clip_range, const d4j_buffer *x_t, const d4j_buffer *model_output,
                             const int32_t *timesteps, const int32_t *prev, int32_t batch, int64_t n,
                             const uint64_t *seeds, const uint64_t *offsets, const d4j_buffer *x_prev) {
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    D4J_TRY(check_clip(clip, clip_range));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("x_prev", x_prev, backend, bytes));
    if (x_prev == model_output) return fail(D4J_ERR_INVALID_ARGUMENT, "x_prev must not alias model_output");
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    D4J_TRY(check_timesteps("prev_timesteps", prev, batch, T, true));
    for (int32_t b = 0; b < batch; ++b)
        if (prev[b] >= timesteps[b])
            return fail(D4J_ERR_INVALID_ARGUMENT, "prev_timesteps[%d] = %d must be below timesteps[%d] = %d", b,
                        prev[b], b, timesteps[b]);
    return check_noise(seeds, offsets);
}

d4j_status d4j_ddpm_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                         d4j_variance_type variance, int32_t clip_sample, float clip_sample_range,
                         const d4j_buffer *x_t, const d4j_buffer *model_output, const int32_t *timesteps,
                         const int32_t *prev_timesteps, int32_t batch, int64_t n, const uint64_t *noise_seeds,
                         const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, clip_sample, clip_sample_range, x_t, model_output, timesteps,
                       prev_timesteps, batch, n, noise_seeds, noise_offsets, x_prev));
    if (variance != D4J_VARIANCE_FIXED_SMALL && variance != D4J_VARIANCE_FIXED_LARGE)
        return fail(D4J_ERR_INVALID_ARGUMENT, "variance type %d is not fixed_small(0) or fixed_large(1)", (int)variance);
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            ddpm_coef(schedule->alphas_cumprod, prediction, variance, timesteps[b], prev_timesteps[b], noise_seeds[b],
                      noise_offsets[b], &coef[b]);
        return backend->iface->reverse_step(backend->state, coef.data(), batch, n, clip_sample, clip_sample_range,
                                            (const float *)x_t->ptr, (const float *)model_output->ptr,
                                            (float *)x_prev->ptr);
    });
}

d4j_status d4j_ddim_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction, float eta,
                         int32_t clip_sample, float clip_sample_range, int32_t use_clipped_model_output,
                         double final_alpha_cumprod, const d4j_buffer *x_t, const d4j_buffer *model_output,
                         const int32_t *timesteps, const int32_t *prev_timesteps, int32_t batch, int64_t n,
                         const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, clip_sample, clip_sample_range, x_t, model_output, timesteps,
                       prev_timesteps, batch, n, noise_seeds, noise_offsets, x_prev));
    if (!(std::isfinite(eta) && eta >= 0.0f)) return fail(D4J_ERR_INVALID_ARGUMENT, "eta must be finite and >= 0, got %g", (double)eta);
    if (use_clipped_model_output != 0 && use_clipped_model_output != 1)
        return fail(D4J_ERR_INVALID_ARGUMENT, "use_clipped_model_output must be 0 or 1, got %d", use_clipped_model_output);
    if (!(std::isfinite(final_alpha_cumprod) && final_alpha_cumprod > 0.0 && final_alpha_cumprod <= 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "final_alpha_cumprod must be in (0, 1], got %g", final_alpha_cumprod);
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            ddim_coef(schedule->alphas_cumprod, prediction, eta, use_clipped_model_output, final_alpha_cumprod,
                      timesteps[b], prev_timesteps[b], noise_seeds[b], noise_offsets[b], &coef[b]);
        return backend->iface->reverse_step(backend->state, coef.data(), batch, n, clip_sample, clip_sample_range,
                                            (const float *)x_t->ptr, (const float *)model_output->ptr,
                                            (float *)x_prev->ptr);
    });
}

d4j_status d4j_timestep_embedding(d4j_backend *backend, const float *timesteps, int32_t batch, int32_t dim,
                                  int32_t flip_sin_to_cos, float downscale_freq_shift, float scale, float max_period,
                                  d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    if (batch <= 0) return fail(D4J_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %d", batch);
    if (dim < 2 || dim > (1 << 20)) return fail(D4J_ERR_INVALID_ARGUMENT, "embedding dim must be in [2, 2^20], got %d", dim);
    if (timesteps == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "timesteps is null");
    if (flip_sin_to_cos != 0 && flip_sin_to_cos != 1)
        return fail(D4J_ERR_INVALID_ARGUMENT, "flip_sin_to_cos must be 0 or 1, got %d", flip_sin_to_cos);
    const int32_t half = dim / 2;
    if (!std::isfinite(downscale_freq_shift) || (double)half - downscale_freq_shift <= 0.0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "downscale_freq_shift %g must be finite and below dim/2 = %d",
                    (double)downscale_freq_shift, half);
    if (!(std::isfinite(scale))) return fail(D4J_ERR_INVALID_ARGUMENT, "scale must be finite, got %g", (double)scale);
    if (!(std::isfinite(max_period) && max_period > 0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "max_period must be finite and > 0, got %g", (double)max_period);
    for (int32_t b = 0; b < batch; ++b)
        if (!std::isfinite(timesteps[b]))
            return fail(D4J_ERR_INVALID_ARGUMENT, "timesteps[%d] is not finite", b);
    int64_t bytes = (int64_t)batch * dim * 4;
    D4J_TRY(check_buffer("out", out, backend, bytes));
    return guarded([&]() -> d4j_status {
        std::vector<double> freqs(half);
        const double lnp = std::log((double)max_period);
        for (int32_t j = 0; j < half; ++j)
            freqs[j] = (double)scale * std::exp(-lnp * j / ((double)half - (double)downscale_freq_shift));
        return backend->iface->timestep_embedding(backend->state, timesteps, batch, dim, freqs.data(), half,
                                                  flip_sin_to_cos, (float *)out->ptr);
    });
}

d4j_status d4j_timer_begin(d4j_backend *backend) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_timer_begin"));
    return guarded([&] { return backend->iface->timer_begin(backend->state); });
}

d4j_status d4j_timer_end(d4j_backend *backend, double *milliseconds) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_timer_end"));
    if (milliseconds == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "milliseconds is null");
    return guarded([&] { return backend->iface->timer_end(backend->state, milliseconds); });
}

d4j_status d4j_flush_cache(d4j_backend *backend) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_flush_cache"));
    return guarded([&] { return backend->iface->flush_cache(backend->state); });
}

d4j_status d4j_device_peak(const d4j_backend *backend, double *bytes_per_second, double *flops) {
    D4J_USE_BACKEND(backend);
    if (bytes_per_second == nullptr || flops == nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "bytes_per_second and flops must not be null");
    return guarded([&] { return backend->iface->device_peak(backend->state, bytes_per_second, flops); });
}

d4j_status d4j_buffer_fill_f32(d4j_buffer *buffer, float value) {
    D4J_TRY(check_buffer("buffer", buffer, nullptr, 4));
    d4j_backend *b = buffer->backend;
    D4J_USE_BACKEND(b);
    if (buffer->bytes % 4 != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "buffer of %lld bytes is not a whole number of floats", (long long)buffer->bytes);
    return guarded([&] { return b->iface->fill_f32(b->state, (float *)buffer->ptr, buffer->bytes / 4, value); });
}

// ---- conv2d (issue 4) ----
namespace {

using ConvGeom = d4j_backend_iface::conv2d_geom;

constexpr int64_t kConvMaxElements = (int64_t)INT32_MAX;  // per tensor, see d4j.h
constexpr int32_t kConvMaxChannels = 1 << 20;

d4j_status conv_elements(const char *what, int64_t a, int64_t b, int64_t c, int64_t d, int64_t *out) {
    // each factor is in [1, 2^31), so every partial product of two fits; stop as soon as the bound is passed
    int64_t p = a * b;
    if (p <= kConvMaxElements) p *= c;
    if (p <= kConvMaxElements) p *= d;
    if (p > kConvMaxElements)
        return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: %s has %lld x %lld x %lld x %lld elements, the limit is 2^31 - 1",
                    what, (long long)a, (long long)b, (long long)c, (long long)d);
    *out = p;
    return D4J_OK;
}

// Validates the geometry arguments shared by forward and backward and derives the sizes.
d4j_status conv_geometry(int32_t n, int32_t h, int32_t w, int32_t c_in, int32_t c_out, int32_t k, int32_t stride,
                         int32_t pt, int32_t pl, int32_t pb, int32_t pr, int32_t up, ConvGeom *g, int64_t *x_elems,
                         int64_t *w_elems, int64_t *y_elems) {
    const struct { const char *name; int32_t v; } dims[] = {{"n", n}, {"h", h}, {"w", w}, {"c_in", c_in}, {"c_out", c_out}};
    for (const auto &d : dims)
        if (d.v < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: %s must be >= 1, got %d", d.name, d.v);
    if (c_in > kConvMaxChannels || c_out > kConvMaxChannels)
        return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: c_in = %d and c_out = %d must be <= 2^20", c_in, c_out);
    if (k != 1 && k != 3) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: kernel_size must be 1 or 3, got %d", k);
    if (stride != 1 && stride != 2) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: stride must be 1 or 2, got %d", stride);
    if (up != 0 && up != 1) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: upsample2x must be 0 or 1, got %d", up);
    const struct { const char *name; int32_t v; } pads[] = {
        {"pad_top", pt}, {"pad_left", pl}, {"pad_bottom", pb}, {"pad_right", pr}};
    for (const auto &p : pads)
        if (p.v < 0 || p.v > k - 1)
            return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: %s = %d must be in [0, kernel_size - 1 = %d]", p.name, p.v,
                        k - 1);
    const int64_t H = up ? 2 * (int64_t)h : h, W = up ? 2 * (int64_t)w : w;
    if (H + pt + pb < k || W + pl + pr < k)
        return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: the padded input %lld x %lld is smaller than the %dx%d kernel",
                    (long long)(H + pt + pb), (long long)(W + pl + pr), k, k);
    const int64_t h_out = (H + pt + pb - k) / stride + 1, w_out = (W + pl + pr - k) / stride + 1;
    int64_t u_elems;
    D4J_TRY(conv_elements("x", n, h, w, c_in, x_elems));
    D4J_TRY(conv_elements("the upsampled input", n, H, W, c_in, &u_elems));
    D4J_TRY(conv_elements("weight", k, k, c_in, c_out, w_elems));
    D4J_TRY(conv_elements("y", n, h_out, w_out, c_out, y_elems));
    *g = ConvGeom{n, h, w, c_in, c_out, k, stride, pt, pl, up, (int32_t)H, (int32_t)W, (int32_t)h_out, (int32_t)w_out};
    return D4J_OK;
}

// Output buffers must not share bytes with any other argument (views of one flat buffer may).
struct ConvArg {
    const char *name;
    const d4j_buffer *buf;
    int64_t bytes = 0;
    bool output;
};

d4j_status conv_no_overlap(const ConvArg *args, int count) {
    for (int i = 0; i < count; ++i) {
        if (args[i].buf == nullptr || !args[i].output) continue;
        for (int j = 0; j < count; ++j) {
            if (j == i || args[j].buf == nullptr) continue;
            if (bytes_overlap(args[i].buf, args[i].bytes, args[j].buf, args[j].bytes))
                return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d: %s overlaps %s", args[i].name, args[j].name);
        }
    }
    return D4J_OK;
}

}  // namespace

d4j_status d4j_conv2d_forward(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w, int32_t c_in,
                              const d4j_buffer *weight, const d4j_buffer *bias, int32_t c_out, int32_t kernel_size,
                              int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom, int32_t pad_right,
                              int32_t upsample2x, d4j_buffer *y) {
    D4J_USE_BACKEND(backend);
    ConvGeom g;
    int64_t xe, we, ye;
    D4J_TRY(conv_geometry(n, h, w, c_in, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                          upsample2x, &g, &xe, &we, &ye));
    D4J_TRY(check_buffer("x", x, backend, xe * 4));
    D4J_TRY(check_buffer("weight", weight, backend, we * 4));
    if (bias != nullptr) D4J_TRY(check_buffer("bias", bias, backend, (int64_t)c_out * 4));
    D4J_TRY(check_buffer("y", y, backend, ye * 4));
    const ConvArg args[] = {{"x", x, xe * 4, false}, {"weight", weight, we * 4, false},
                            {"bias", bias, (int64_t)c_out * 4, false}, {"y", y, ye * 4, true}};
    D4J_TRY(conv_no_overlap(args, 4));
    return guarded([&] {
        return backend->iface->conv2d_forward(backend->state, &g, (const float *)x->ptr, (const float *)weight->ptr,
                                              bias ? (const float *)bias->ptr : nullptr, (float *)y->ptr);
    });
}

d4j_status d4j_conv2d_backward(d4j_backend *backend, const d4j_buffer *x, int32_t n, int32_t h, int32_t w,
                               int32_t c_in, const d4j_buffer *weight, int32_t c_out, int32_t kernel_size,
                               int32_t stride, int32_t pad_top, int32_t pad_left, int32_t pad_bottom,
                               int32_t pad_right, int32_t upsample2x, const d4j_buffer *dy, d4j_buffer *dx,
                               d4j_buffer *dweight, d4j_buffer *dbias) {
    D4J_USE_BACKEND(backend);
    ConvGeom g;
    int64_t xe, we, ye;
    D4J_TRY(conv_geometry(n, h, w, c_in, c_out, kernel_size, stride, pad_top, pad_left, pad_bottom, pad_right,
                          upsample2x, &g, &xe, &we, &ye));
    D4J_TRY(check_buffer("dy", dy, backend, ye * 4));
    if (dx != nullptr) {
        D4J_TRY(check_buffer("dx", dx, backend, xe * 4));
        if (weight == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d backward: weight is null but dx is requested");
    }
    if (dweight != nullptr) {
        D4J_TRY(check_buffer("dweight", dweight, backend, we * 4));
        if (x == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "conv2d backward: x is null but dweight is requested");
    }
    if (dbias != nullptr) D4J_TRY(check_buffer("dbias", dbias, backend, (int64_t)c_out * 4));
    if (x != nullptr) D4J_TRY(check_buffer("x", x, backend, xe * 4));
    if (weight != nullptr) D4J_TRY(check_buffer("weight", weight, backend, we * 4));
    const ConvArg args[] = {{"x", x, xe * 4, false},          {"weight", weight, we * 4, false},
                            {"dy", dy, ye * 4, false},        {"dx", dx, xe * 4, true},
                            {"dweight", dweight, we * 4, true}, {"dbias", dbias, (int64_t)c_out * 4, true}};
    D4J_TRY(conv_no_overlap(args, 6));
    if (dx == nullptr && dweight == nullptr && dbias == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->conv2d_backward(
            backend->state, &g, dweight ? (const float *)x->ptr : nullptr, dx ? (const float *)weight->ptr : nullptr,
            (const float *)dy->ptr, dx ? (float *)dx->ptr : nullptr, dweight ? (float *)dweight->ptr : nullptr,
            dbias ? (float *)dbias->ptr : nullptr);
    });
}
// ---- end conv2d ----

// ---- norm (issue 4) ----
}  // extern "C"

namespace {

// Shape of a GroupNorm call: every dimension >= 1, num_groups | c, byte counts in range.
d4j_status check_norm_shape(int32_t n, int32_t h, int32_t w, int32_t c, int32_t groups, int64_t *hw,
                            int64_t *tensor_bytes) {
    if (n < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "n (batch) must be >= 1, got %d", n);
    if (h < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "h must be >= 1, got %d", h);
    if (w < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "w must be >= 1, got %d", w);
    if (c < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "c (channels) must be >= 1, got %d", c);
    if (groups < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "num_groups must be >= 1, got %d", groups);
    if (c % groups != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "num_groups = %d must divide the channel count c = %d", groups, c);
    // h*w < 2^62 and c < 2^31: the products below are checked before they are formed.
    int64_t p = (int64_t)h * w;
    if (p > INT64_MAX / 4 / c / n)
        return fail(D4J_ERR_INVALID_ARGUMENT, "tensor [%d, %d, %d, %d] overflows a 64-bit byte count", n, h, w, c);
    *hw = p;
    *tensor_bytes = p * c * n * 4;
    return D4J_OK;
}

d4j_status check_flag(const char *what, int32_t v) {
    if (v != 0 && v != 1) return fail(D4J_ERR_INVALID_ARGUMENT, "%s must be 0 or 1, got %d", what, v);
    return D4J_OK;
}

// Byte ranges [ptr, ptr + bytes) of two buffers of one backend must not
// overlap; with allow_same they may also coincide exactly (element-wise
// kernels updating in place). Views make overlap possible between different
// handles, so addresses are compared, not handles.
d4j_status check_no_overlap(const char *an, const d4j_buffer *a, int64_t ab, const char *bn, const d4j_buffer *b,
                            int64_t bb, bool allow_same) {
    if (a == nullptr || b == nullptr) return D4J_OK;
    if (allow_same && a->ptr == b->ptr && ab == bb) return D4J_OK;
    if (bytes_overlap(a, ab, b, bb))
        return fail(D4J_ERR_INVALID_ARGUMENT, allow_same ? "%s and %s overlap without being the same memory"
                                                         : "%s and %s must not overlap",
                    an, bn);
    return D4J_OK;
}

struct NamedRange {
    const char *name;
    const d4j_buffer *buf;
    int64_t bytes = 0;
};

// Every output range against every other range (inputs and outputs).
d4j_status check_outputs_disjoint(const NamedRange *outs, int nouts, const NamedRange *ins, int nins) {
    for (int i = 0; i < nouts; ++i) {
        for (int j = i + 1; j < nouts; ++j)
            D4J_TRY(check_no_overlap(outs[i].name, outs[i].buf, outs[i].bytes, outs[j].name, outs[j].buf,
                                     outs[j].bytes, false));
        for (int j = 0; j < nins; ++j)
            D4J_TRY(check_no_overlap(outs[i].name, outs[i].buf, outs[i].bytes, ins[j].name, ins[j].buf, ins[j].bytes,
                                     false));
    }
    return D4J_OK;
}

d4j_status group_norm_forward_impl(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                   bool with_bias, const d4j_buffer *gamma, const d4j_buffer *beta, int32_t n,
                                   int32_t h, int32_t w, int32_t c, int32_t groups, float eps, int32_t silu,
                                   d4j_buffer *y, d4j_buffer *mean, d4j_buffer *rstd) {
    int64_t hw = 0, bytes = 0;
    D4J_TRY(check_norm_shape(n, h, w, c, groups, &hw, &bytes));
    if (!(std::isfinite(eps) && eps > 0.0f))
        return fail(D4J_ERR_INVALID_ARGUMENT, "eps must be finite and > 0, got %g", (double)eps);
    D4J_TRY(check_flag("apply_silu", silu));
    const int64_t cbytes = (int64_t)c * 4, sbytes = (int64_t)n * groups * 4, tbbytes = (int64_t)n * c * 4;
    D4J_TRY(check_buffer("x", x, backend, bytes));
    if (with_bias) D4J_TRY(check_buffer("tb", tb, backend, tbbytes));
    D4J_TRY(check_buffer("gamma", gamma, backend, cbytes));
    D4J_TRY(check_buffer("beta", beta, backend, cbytes));
    D4J_TRY(check_buffer("y", y, backend, bytes));
    D4J_TRY(check_buffer("mean", mean, backend, sbytes));
    D4J_TRY(check_buffer("rstd", rstd, backend, sbytes));
    const NamedRange outs[] = {{"y", y, bytes}, {"mean", mean, sbytes}, {"rstd", rstd, sbytes}};
    const NamedRange ins[] = {{"x", x, bytes}, {"tb", with_bias ? tb : nullptr, tbbytes}, {"gamma", gamma, cbytes},
                              {"beta", beta, cbytes}};
    D4J_TRY(check_outputs_disjoint(outs, 3, ins, 4));
    return guarded([&] {
        return backend->iface->group_norm_forward(
            backend->state, (const float *)x->ptr, with_bias ? (const float *)tb->ptr : nullptr,
            (const float *)gamma->ptr, (const float *)beta->ptr, n, hw, c, groups, eps, silu, (float *)y->ptr,
            (float *)mean->ptr, (float *)rstd->ptr);
    });
}

d4j_status group_norm_backward_impl(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                    const d4j_buffer *tb, bool with_bias, const d4j_buffer *gamma,
                                    const d4j_buffer *beta, const d4j_buffer *mean, const d4j_buffer *rstd,
                                    int32_t n, int32_t h, int32_t w, int32_t c, int32_t groups, int32_t silu,
                                    d4j_buffer *dx, d4j_buffer *dtb, d4j_buffer *dgamma, d4j_buffer *dbeta) {
    int64_t hw = 0, bytes = 0;
    D4J_TRY(check_norm_shape(n, h, w, c, groups, &hw, &bytes));
    D4J_TRY(check_flag("apply_silu", silu));
    const int64_t cbytes = (int64_t)c * 4, sbytes = (int64_t)n * groups * 4, tbbytes = (int64_t)n * c * 4;
    D4J_TRY(check_buffer("dy", dy, backend, bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    if (with_bias) D4J_TRY(check_buffer("tb", tb, backend, tbbytes));
    D4J_TRY(check_buffer("gamma", gamma, backend, cbytes));
    if (silu) {
        D4J_TRY(check_buffer("beta (needed with apply_silu = 1)", beta, backend, cbytes));
    } else if (beta != nullptr) {
        D4J_TRY(check_buffer("beta", beta, backend, cbytes));
    }
    D4J_TRY(check_buffer("mean", mean, backend, sbytes));
    D4J_TRY(check_buffer("rstd", rstd, backend, sbytes));
    if (dx != nullptr) D4J_TRY(check_buffer("dx", dx, backend, bytes));
    if (dtb != nullptr) D4J_TRY(check_buffer("dtb", dtb, backend, tbbytes));
    if (dgamma != nullptr) D4J_TRY(check_buffer("dgamma", dgamma, backend, cbytes));
    if (dbeta != nullptr) D4J_TRY(check_buffer("dbeta", dbeta, backend, cbytes));
    const NamedRange outs[] = {{"dx", dx, bytes}, {"dtb", dtb, tbbytes}, {"dgamma", dgamma, cbytes},
                               {"dbeta", dbeta, cbytes}};
    const NamedRange ins[] = {{"dy", dy, bytes},         {"x", x, bytes},          {"tb", tb, tbbytes},
                              {"gamma", gamma, cbytes},  {"beta", beta, cbytes},   {"mean", mean, sbytes},
                              {"rstd", rstd, sbytes}};
    D4J_TRY(check_outputs_disjoint(outs, 4, ins, 7));
    if (dx == nullptr && dtb == nullptr && dgamma == nullptr && dbeta == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->group_norm_backward(
            backend->state, (const float *)dy->ptr, (const float *)x->ptr,
            with_bias ? (const float *)tb->ptr : nullptr, (const float *)gamma->ptr,
            beta ? (const float *)beta->ptr : nullptr, (const float *)mean->ptr, (const float *)rstd->ptr, n, hw, c,
            groups, silu, dx ? (float *)dx->ptr : nullptr, dtb ? (float *)dtb->ptr : nullptr,
            dgamma ? (float *)dgamma->ptr : nullptr, dbeta ? (float *)dbeta->ptr : nullptr);
    });
}

}  // namespace

extern "C" {

d4j_status d4j_group_norm_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *gamma,
                                  const d4j_buffer *beta, int32_t n, int32_t h, int32_t w, int32_t c,
                                  int32_t num_groups, float eps, int32_t apply_silu, d4j_buffer *y, d4j_buffer *mean,
                                  d4j_buffer *rstd) {
    D4J_USE_BACKEND(backend);
    return group_norm_forward_impl(backend, x, nullptr, false, gamma, beta, n, h, w, c, num_groups, eps, apply_silu,
                                   y, mean, rstd);
}

d4j_status d4j_bias_group_norm_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *tb,
                                       const d4j_buffer *gamma, const d4j_buffer *beta, int32_t n, int32_t h,
                                       int32_t w, int32_t c, int32_t num_groups, float eps, int32_t apply_silu,
                                       d4j_buffer *y, d4j_buffer *mean, d4j_buffer *rstd) {
    D4J_USE_BACKEND(backend);
    return group_norm_forward_impl(backend, x, tb, true, gamma, beta, n, h, w, c, num_groups, eps, apply_silu, y,
                                   mean, rstd);
}

d4j_status d4j_group_norm_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                   const d4j_buffer *gamma, const d4j_buffer *beta, const d4j_buffer *mean,
                                   const d4j_buffer *rstd, int32_t n, int32_t h, int32_t w, int32_t c,
                                   int32_t num_groups, int32_t apply_silu, d4j_buffer *dx, d4j_buffer *dgamma,
                                   d4j_buffer *dbeta) {
    D4J_USE_BACKEND(backend);
    return group_norm_backward_impl(backend, dy, x, nullptr, false, gamma, beta, mean, rstd, n, h, w, c, num_groups,
                                    apply_silu, dx, nullptr, dgamma, dbeta);
}

d4j_status d4j_bias_group_norm_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x,
                                        const d4j_buffer *tb, const d4j_buffer *gamma, const d4j_buffer *beta,
                                        const d4j_buffer *mean, const d4j_buffer *rstd, int32_t n, int32_t h,
                                        int32_t w, int32_t c, int32_t num_groups, int32_t apply_silu, d4j_buffer *dx,
                                        d4j_buffer *dtb, d4j_buffer *dgamma, d4j_buffer *dbeta) {
    D4J_USE_BACKEND(backend);
    return group_norm_backward_impl(backend, dy, x, tb, true, gamma, beta, mean, rstd, n, h, w, c, num_groups,
                                    apply_silu, dx, dtb, dgamma, dbeta);
}

d4j_status d4j_silu_forward(d4j_backend *backend, const d4j_buffer *x, int64_t count, d4j_buffer *y) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    D4J_TRY(check_buffer("y", y, backend, bytes));
    D4J_TRY(check_no_overlap("y", y, bytes, "x", x, bytes, true));
    if (count == 0) return D4J_OK;
    return guarded(
        [&] { return backend->iface->silu_forward(backend->state, (const float *)x->ptr, count, (float *)y->ptr); });
}

d4j_status d4j_silu_backward(d4j_backend *backend, const d4j_buffer *dy, const d4j_buffer *x, int64_t count,
                             d4j_buffer *dx) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("dy", dy, backend, bytes));
    D4J_TRY(check_buffer("x", x, backend, bytes));
    D4J_TRY(check_buffer("dx", dx, backend, bytes));
    D4J_TRY(check_no_overlap("dx", dx, bytes, "dy", dy, bytes, true));
    D4J_TRY(check_no_overlap("dx", dx, bytes, "x", x, bytes, true));
    if (count == 0) return D4J_OK;
    return guarded([&] {
        return backend->iface->silu_backward(backend->state, (const float *)dy->ptr, (const float *)x->ptr, count,
                                             (float *)dx->ptr);
    });
}

d4j_status d4j_residual_add(d4j_backend *backend, const d4j_buffer *a, const d4j_buffer *b, int64_t count,
                            float inv_scale, d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    if (!std::isfinite(inv_scale))
        return fail(D4J_ERR_INVALID_ARGUMENT, "inv_scale must be finite, got %g", (double)inv_scale);
    D4J_TRY(check_buffer("a", a, backend, bytes));
    D4J_TRY(check_buffer("b", b, backend, bytes));
    D4J_TRY(check_buffer("out", out, backend, bytes));
    D4J_TRY(check_no_overlap("out", out, bytes, "a", a, bytes, true));
    D4J_TRY(check_no_overlap("out", out, bytes, "b", b, bytes, true));
    if (count == 0) return D4J_OK;
    return guarded([&] {
        return backend->iface->residual_add(backend->state, (const float *)a->ptr, (const float *)b->ptr, count,
                                            inv_scale, (float *)out->ptr);
    });
}

d4j_status d4j_residual_add_backward(d4j_backend *backend, const d4j_buffer *dout, int64_t count, float inv_scale,
                                     d4j_buffer *da, d4j_buffer *db) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    if (!std::isfinite(inv_scale))
        return fail(D4J_ERR_INVALID_ARGUMENT, "inv_scale must be finite, got %g", (double)inv_scale);
    D4J_TRY(check_buffer("dout", dout, backend, bytes));
    if (da != nullptr) D4J_TRY(check_buffer("da", da, backend, bytes));
    if (db != nullptr) D4J_TRY(check_buffer("db", db, backend, bytes));
    D4J_TRY(check_no_overlap("da", da, bytes, "dout", dout, bytes, true));
    D4J_TRY(check_no_overlap("db", db, bytes, "dout", dout, bytes, true));
    D4J_TRY(check_no_overlap("da", da, bytes, "db", db, bytes, false));
    if (count == 0 || (da == nullptr && db == nullptr)) return D4J_OK;
    return guarded([&] {
        return backend->iface->residual_add_backward(backend->state, (const float *)dout->ptr, count, inv_scale,
                                                     da ? (float *)da->ptr : nullptr,
                                                     db ? (float *)db->ptr : nullptr);
    });
}
// ---- end norm ----

// ---- linear_attention (issue 4) ----
// Do two buffers (or views) share any byte? Outputs must not overlap inputs or
// each other: the kernels read inputs after writing outputs.
static bool buffers_overlap(const d4j_buffer *a, const d4j_buffer *b) {
    return a != nullptr && b != nullptr && bytes_overlap(a, a->bytes, b, b->bytes);
}

static d4j_status check_disjoint(const char *out_name, const d4j_buffer *out,
                                 std::initializer_list<std::pair<const char *, const d4j_buffer *>> others) {
    if (out == nullptr) return D4J_OK;
    for (const auto &o : others) {
        if (o.second == out)
            return fail(D4J_ERR_INVALID_ARGUMENT, "%s must not be the same buffer as %s", out_name, o.first);
        if (buffers_overlap(out, o.second))
            return fail(D4J_ERR_INVALID_ARGUMENT, "%s must not overlap %s", out_name, o.first);
    }
    return D4J_OK;
}

// rows >= 1, features in [1, 2^24], and rows * features * 4 in range.
static d4j_status check_linear_dims(int64_t rows, int32_t in, int32_t out, int64_t *x_bytes, int64_t *y_bytes,
                                    int64_t *w_bytes) {
    if (rows < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "rows must be >= 1, got %lld", (long long)rows);
    if (in < 1 || in > (1 << 24))
        return fail(D4J_ERR_INVALID_ARGUMENT, "in_features must be in [1, 2^24], got %d", in);
    if (out < 1 || out > (1 << 24))
        return fail(D4J_ERR_INVALID_ARGUMENT, "out_features must be in [1, 2^24], got %d", out);
    const int32_t wide = in > out ? in : out;
    if (rows > INT64_MAX / 4 / wide)
        return fail(D4J_ERR_INVALID_ARGUMENT, "rows %lld x features %d overflows a 64-bit byte count", (long long)rows,
                    wide);
    *x_bytes = rows * in * 4;
    *y_bytes = rows * out * 4;
    *w_bytes = (int64_t)in * out * 4;
    return D4J_OK;
}

d4j_status d4j_linear_forward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *weight,
                              const d4j_buffer *bias, int64_t rows, int32_t in_features, int32_t out_features,
                              d4j_buffer *y) {
    D4J_USE_BACKEND(backend);
    int64_t xb, yb, wb;
    D4J_TRY(check_linear_dims(rows, in_features, out_features, &xb, &yb, &wb));
    D4J_TRY(check_buffer("x", x, backend, xb));
    D4J_TRY(check_buffer("weight", weight, backend, wb));
    if (bias != nullptr) D4J_TRY(check_buffer("bias", bias, backend, (int64_t)out_features * 4));
    D4J_TRY(check_buffer("y", y, backend, yb));
    D4J_TRY(check_disjoint("y", y, {{"x", x}, {"weight", weight}, {"bias", bias}}));
    return guarded([&] {
        return backend->iface->linear_forward(backend->state, (const float *)x->ptr, (const float *)weight->ptr,
                                              bias ? (const float *)bias->ptr : nullptr, rows, in_features,
                                              out_features, (float *)y->ptr);
    });
}

d4j_status d4j_linear_backward(d4j_backend *backend, const d4j_buffer *x, const d4j_buffer *weight,
                               const d4j_buffer *dy, int64_t rows, int32_t in_features, int32_t out_features,
                               d4j_buffer *dx, d4j_buffer *dweight, d4j_buffer *dbias) {
    D4J_USE_BACKEND(backend);
    int64_t xb, yb, wb;
    D4J_TRY(check_linear_dims(rows, in_features, out_features, &xb, &yb, &wb));
    D4J_TRY(check_buffer("x", x, backend, xb));
    D4J_TRY(check_buffer("weight", weight, backend, wb));
    D4J_TRY(check_buffer("dy", dy, backend, yb));
    if (dx != nullptr) D4J_TRY(check_buffer("dx", dx, backend, xb));
    if (dweight != nullptr) D4J_TRY(check_buffer("dweight", dweight, backend, wb));
    if (dbias != nullptr) D4J_TRY(check_buffer("dbias", dbias, backend, (int64_t)out_features * 4));
    D4J_TRY(check_disjoint("dx", dx, {{"x", x}, {"weight", weight}, {"dy", dy}, {"dweight", dweight}, {"dbias", dbias}}));
    D4J_TRY(check_disjoint("dweight", dweight, {{"x", x}, {"weight", weight}, {"dy", dy}, {"dbias", dbias}}));
    D4J_TRY(check_disjoint("dbias", dbias, {{"x", x}, {"weight", weight}, {"dy", dy}}));
    if (dx == nullptr && dweight == nullptr && dbias == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->linear_backward(backend->state, (const float *)x->ptr, (const float *)weight->ptr,
                                               (const float *)dy->ptr, rows, in_features, out_features,
                                               dx ? (float *)dx->ptr : nullptr, dweight ? (float *)dweight->ptr : nullptr,
                                               dbias ? (float *)dbias->ptr : nullptr);
    });
}

// batch, tokens, heads >= 1, head_dim in [1, 256], tokens <= 2^20, finite
// scale; yields the bytes of a [B, L, H, D] tensor and of a [B, H, L] one.
static d4j_status check_attention_dims(int32_t batch, int32_t tokens, int32_t heads, int32_t head_dim, float scale,
                                       int64_t *t_bytes, int64_t *row_bytes) {
    if (batch < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %d", batch);
    if (tokens < 1 || tokens > (1 << 20))
        return fail(D4J_ERR_INVALID_ARGUMENT, "tokens must be in [1, 2^20], got %d", tokens);
    if (heads < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "heads must be >= 1, got %d", heads);
    if (head_dim < 1 || head_dim > 256)
        return fail(D4J_ERR_INVALID_ARGUMENT, "head_dim must be in [1, 256], got %d", head_dim);
    if (!std::isfinite(scale)) return fail(D4J_ERR_INVALID_ARGUMENT, "scale must be finite, got %g", (double)scale);
    // batch * tokens * heads * head_dim * 4 without overflow
    int64_t n = (int64_t)batch * tokens;  // < 2^51
    if (n > INT64_MAX / 4 / 256 / heads)
        return fail(D4J_ERR_INVALID_ARGUMENT, "batch %d x tokens %d x heads %d overflows", batch, tokens, heads);
    *row_bytes = n * heads * 4;
    *t_bytes = n * heads * head_dim * 4;
    return D4J_OK;
}

d4j_status d4j_attention_forward(d4j_backend *backend, const d4j_buffer *q, const d4j_buffer *k, const d4j_buffer *v,
                                 int32_t batch, int32_t tokens, int32_t heads, int32_t head_dim, float scale,
                                 d4j_buffer *out, d4j_buffer *lse) {
    D4J_USE_BACKEND(backend);
    int64_t tb, rb;
    D4J_TRY(check_attention_dims(batch, tokens, heads, head_dim, scale, &tb, &rb));
    D4J_TRY(check_buffer("q", q, backend, tb));
    D4J_TRY(check_buffer("k", k, backend, tb));
    D4J_TRY(check_buffer("v", v, backend, tb));
    D4J_TRY(check_buffer("out", out, backend, tb));
    if (lse != nullptr) D4J_TRY(check_buffer("lse", lse, backend, rb));
    D4J_TRY(check_disjoint("out", out, {{"q", q}, {"k", k}, {"v", v}, {"lse", lse}}));
    D4J_TRY(check_disjoint("lse", lse, {{"q", q}, {"k", k}, {"v", v}}));
    return guarded([&] {
        return backend->iface->attention_forward(backend->state, (const float *)q->ptr, (const float *)k->ptr,
                                                 (const float *)v->ptr, batch, tokens, heads, head_dim, scale,
                                                 (float *)out->ptr, lse ? (float *)lse->ptr : nullptr);
    });
}

d4j_status d4j_attention_backward(d4j_backend *backend, const d4j_buffer *q, const d4j_buffer *k, const d4j_buffer *v,
                                  const d4j_buffer *out, const d4j_buffer *lse, const d4j_buffer *dout, int32_t batch,
                                  int32_t tokens, int32_t heads, int32_t head_dim, float scale, d4j_buffer *dq,
                                  d4j_buffer *dk, d4j_buffer *dv) {
    D4J_USE_BACKEND(backend);
    int64_t tb, rb;
    D4J_TRY(check_attention_dims(batch, tokens, heads, head_dim, scale, &tb, &rb));
    D4J_TRY(check_buffer("q", q, backend, tb));
    D4J_TRY(check_buffer("k", k, backend, tb));
    D4J_TRY(check_buffer("v", v, backend, tb));
    D4J_TRY(check_buffer("out", out, backend, tb));
    D4J_TRY(check_buffer("lse", lse, backend, rb));
    D4J_TRY(check_buffer("dout", dout, backend, tb));
    D4J_TRY(check_buffer("dq", dq, backend, tb));
    D4J_TRY(check_buffer("dk", dk, backend, tb));
    D4J_TRY(check_buffer("dv", dv, backend, tb));
    for (auto o : {std::make_pair("dq", (const d4j_buffer *)dq), std::make_pair("dk", (const d4j_buffer *)dk),
                   std::make_pair("dv", (const d4j_buffer *)dv)})
        D4J_TRY(check_disjoint(o.first, o.second,
                               {{"q", q}, {"k", k}, {"v", v}, {"out", out}, {"lse", lse}, {"dout", dout}}));
    D4J_TRY(check_disjoint("dq", dq, {{"dk", dk}, {"dv", dv}}));
    D4J_TRY(check_disjoint("dk", dk, {{"dv", dv}}));
    return guarded([&] {
        return backend->iface->attention_backward(backend->state, (const float *)q->ptr, (const float *)k->ptr,
                                                  (const float *)v->ptr, (const float *)out->ptr,
                                                  (const float *)lse->ptr, (const float *)dout->ptr, batch, tokens,
                                                  heads, head_dim, scale, (float *)dq->ptr, (float *)dk->ptr,
                                                  (float *)dv->ptr);
    });
}
// ---- end linear_attention ----

// ---- optim (issue 4) ----
}  // extern "C"

#include "../common/optim_math.h"

namespace {

// The float32 buffers of one optimiser call must be pairwise disjoint over
// their first `bytes` bytes: views of one flat buffer are separate handles, so
// comparing handles is not enough.
d4j_status check_disjoint(const char *const *names, const d4j_buffer *const *bufs, int n, int64_t bytes) {
    for (int i = 0; i < n; ++i) {
        for (int j = i + 1; j < n; ++j) {
            if (bytes_overlap(bufs[i], bytes, bufs[j], bytes))
                return fail(D4J_ERR_INVALID_ARGUMENT, "%s and %s overlap (the same buffer or overlapping views)",
                            names[i], names[j]);
        }
    }
    return D4J_OK;
}

d4j_status check_count(int64_t count, int64_t *bytes) {
    if (count < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "count must be >= 1, got %lld", (long long)count);
    return checked_bytes("count", count, 4, bytes);
}

}  // namespace

extern "C" {

d4j_status d4j_grad_norm(d4j_backend *backend, const d4j_buffer *grad, int64_t count, double *out_norm) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_grad_norm"));
    if (out_norm == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out_norm is null");
    int64_t bytes = 0;
    D4J_TRY(check_count(count, &bytes));
    D4J_TRY(check_buffer("grad", grad, backend, bytes));
    return guarded([&]() -> d4j_status {
        double sumsq = 0.0;
        D4J_TRY(backend->iface->grad_sumsq(backend->state, (const float *)grad->ptr, count, &sumsq));
        *out_norm = std::sqrt(sumsq);
        return D4J_OK;
    });
}

d4j_status d4j_adamw(d4j_backend *backend, d4j_buffer *param, const d4j_buffer *grad, d4j_buffer *m, d4j_buffer *v,
                     int64_t count, double lr, double beta1, double beta2, double eps, double weight_decay,
                     int64_t step, double grad_scale) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(check_count(count, &bytes));
    D4J_TRY(check_buffer("param", param, backend, bytes));
    D4J_TRY(check_buffer("grad", grad, backend, bytes));
    D4J_TRY(check_buffer("m", m, backend, bytes));
    D4J_TRY(check_buffer("v", v, backend, bytes));
    {
        const char *names[] = {"param", "grad", "m", "v"};
        const d4j_buffer *bufs[] = {param, grad, m, v};
        D4J_TRY(check_disjoint(names, bufs, 4, bytes));
    }
    if (!(std::isfinite(lr) && lr >= 0.0)) return fail(D4J_ERR_INVALID_ARGUMENT, "lr must be finite and >= 0, got %g", lr);
    if (!(std::isfinite(beta1) && beta1 >= 0.0 && beta1 < 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "beta1 must be in [0, 1), got %g", beta1);
    if (!(std::isfinite(beta2) && beta2 >= 0.0 && beta2 < 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "beta2 must be in [0, 1), got %g", beta2);
    if (!(std::isfinite(eps) && eps > 0.0)) return fail(D4J_ERR_INVALID_ARGUMENT, "eps must be finite and > 0, got %g", eps);
    if (!(std::isfinite(weight_decay) && weight_decay >= 0.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "weight_decay must be finite and >= 0, got %g", weight_decay);
    if (!(std::isfinite(grad_scale) && grad_scale >= 0.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "grad_scale must be finite and >= 0, got %g", grad_scale);
    if (step < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "step must be >= 1 (1-based), got %lld", (long long)step);
    // float32 coefficients: each must be finite after rounding (eps below the
    // float32 range would round to 0 and divide by zero on v = 0).
    const double bc1 = 1.0 - std::pow(beta1, (double)step);
    const double bc2 = 1.0 - std::pow(beta2, (double)step);
    if (!(bc1 > 0.0 && bc2 > 0.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "bias corrections 1 - beta^step are zero (beta1 %g, beta2 %g, step %lld)",
                    beta1, beta2, (long long)step);
    d4j_adamw_coef c;
    c.grad_scale = (float)grad_scale;
    c.param_decay = (float)(1.0 - lr * weight_decay);
    c.b1 = (float)beta1;
    c.omb1 = (float)(1.0 - beta1);
    c.b2 = (float)beta2;
    c.omb2 = (float)(1.0 - beta2);
    c.step_size = (float)(lr / bc1);
    c.inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
    c.eps = (float)eps;
    const float all[] = {c.grad_scale, c.param_decay, c.step_size, c.inv_sqrt_bc2, c.eps};
    const char *what[] = {"grad_scale", "1 - lr * weight_decay", "lr / (1 - beta1^step)", "1 / sqrt(1 - beta2^step)", "eps"};
    for (int i = 0; i < 5; ++i)
        if (!std::isfinite(all[i]))
            return fail(D4J_ERR_INVALID_ARGUMENT, "%s does not fit in float32", what[i]);
    if (!(c.eps > 0.0f)) return fail(D4J_ERR_INVALID_ARGUMENT, "eps = %g rounds to 0 in float32", eps);
    return guarded([&] {
        return backend->iface->adamw(backend->state, &c, (float *)param->ptr, (const float *)grad->ptr, (float *)m->ptr,
                                     (float *)v->ptr, count);
    });
}

d4j_status d4j_ema_update(d4j_backend *backend, d4j_buffer *ema, const d4j_buffer *param, int64_t count, double decay) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(check_count(count, &bytes));
    D4J_TRY(check_buffer("ema", ema, backend, bytes));
    D4J_TRY(check_buffer("param", param, backend, bytes));
    {
        const char *names[] = {"ema", "param"};
        const d4j_buffer *bufs[] = {ema, param};
        D4J_TRY(check_disjoint(names, bufs, 2, bytes));
    }
    if (!(std::isfinite(decay) && decay >= 0.0 && decay <= 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "decay must be in [0, 1], got %g", decay);
    return guarded([&] {
        return backend->iface->ema_update(backend->state, (float *)ema->ptr, (const float *)param->ptr, count,
                                          (float)(1.0 - decay));
    });
}
// ---- end optim ----

// ---- concat (issue 4) ----
}  // extern "C"

namespace {

constexpr int32_t kConcatMaxChannels = 1 << 20;

// rows >= 1, channel counts in range, byte sizes of a, b and out without overflow.
d4j_status check_concat_dims(int64_t rows, int32_t c1, int32_t c2, int64_t *a_bytes, int64_t *b_bytes,
                             int64_t *out_bytes) {
    if (rows < 1) return fail(D4J_ERR_INVALID_ARGUMENT, "rows (N*H*W) must be >= 1, got %lld", (long long)rows);
    if (c1 < 1 || c1 > kConcatMaxChannels)
        return fail(D4J_ERR_INVALID_ARGUMENT, "c1 must be in [1, %d], got %d", kConcatMaxChannels, c1);
    if (c2 < 1 || c2 > kConcatMaxChannels)
        return fail(D4J_ERR_INVALID_ARGUMENT, "c2 must be in [1, %d], got %d", kConcatMaxChannels, c2);
    const int64_t c = (int64_t)c1 + c2;  // <= 2^21: rows * c * 4 checked against overflow below
    if (rows > INT64_MAX / 4 / c)
        return fail(D4J_ERR_INVALID_ARGUMENT, "rows %lld x %lld channels overflows a 64-bit byte count",
                    (long long)rows, (long long)c);
    *a_bytes = rows * c1 * 4;
    *b_bytes = rows * c2 * 4;
    *out_bytes = rows * c * 4;
    return D4J_OK;
}


}  // namespace

extern "C" {

d4j_status d4j_concat_channels_forward(d4j_backend *backend, const d4j_buffer *a, const d4j_buffer *b, int64_t rows,
                                       int32_t c1, int32_t c2, d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    int64_t ab = 0, bb = 0, ob = 0;
    D4J_TRY(check_concat_dims(rows, c1, c2, &ab, &bb, &ob));
    D4J_TRY(check_buffer("a", a, backend, ab));
    D4J_TRY(check_buffer("b", b, backend, bb));
    D4J_TRY(check_buffer("out", out, backend, ob));
    D4J_TRY(check_no_overlap("out", out, ob, "a", a, ab, false));
    D4J_TRY(check_no_overlap("out", out, ob, "b", b, bb, false));
    return guarded([&] {
        return backend->iface->concat_forward(backend->state, (const float *)a->ptr, (const float *)b->ptr, rows, c1,
                                              c2, (float *)out->ptr);
    });
}

d4j_status d4j_concat_channels_backward(d4j_backend *backend, const d4j_buffer *dout, int64_t rows, int32_t c1,
                                        int32_t c2, d4j_buffer *da, d4j_buffer *db) {
    D4J_USE_BACKEND(backend);
    int64_t ab = 0, bb = 0, ob = 0;
    D4J_TRY(check_concat_dims(rows, c1, c2, &ab, &bb, &ob));
    D4J_TRY(check_buffer("dout", dout, backend, ob));
    if (da != nullptr) D4J_TRY(check_buffer("da", da, backend, ab));
    if (db != nullptr) D4J_TRY(check_buffer("db", db, backend, bb));
    D4J_TRY(check_no_overlap("da", da, ab, "dout", dout, ob, false));
    D4J_TRY(check_no_overlap("db", db, bb, "dout", dout, ob, false));
    D4J_TRY(check_no_overlap("da", da, ab, "db", db, bb, false));
    if (da == nullptr && db == nullptr) return D4J_OK;
    return guarded([&] {
        return backend->iface->concat_backward(backend->state, (const float *)dout->ptr, rows, c1, c2,
                                               da ? (float *)da->ptr : nullptr, db ? (float *)db->ptr : nullptr);
    });
}
// ---- end concat ----

// ---- sampler (issue 5) ----
}  // extern "C"

namespace {

// The threshold buffer: float32[batch] of this backend, not overlapping the outputs.
d4j_status check_threshold_buffer(const d4j_buffer *threshold, const d4j_backend *backend, int32_t batch,
                                  const d4j_buffer *x_prev, int64_t bytes) {
    D4J_TRY(check_buffer("threshold", threshold, backend, (int64_t)batch * 4));
    return check_no_overlap("threshold", threshold, (int64_t)batch * 4, "x_prev", x_prev, bytes, false);
}

// d4j_step_coef -> the generalised record (no m1 term).
std::vector<d4j_sampler_coef> widen(const std::vector<d4j_step_coef> &step) {
    std::vector<d4j_sampler_coef> out(step.size());
    for (size_t b = 0; b < step.size(); ++b) {
        std::memset(&out[b], 0, sizeof out[b]);
        out[b].step = step[b];
    }
    return out;
}

// lambda = log(alpha) - log(sigma) of a schedule entry (alpha^2 = ab, sigma^2 = 1 - ab).
double dpm_lambda(double ab) { return 0.5 * (std::log(ab) - std::log1p(-ab)); }

}  // namespace

extern "C" {

d4j_status d4j_x0_threshold(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                            const d4j_buffer *x_t, const d4j_buffer *model_output, const int32_t *timesteps,
                            int32_t batch, int64_t n, double ratio, float sample_max_value, d4j_buffer *threshold) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    if (n > INT32_MAX)
        return fail(D4J_ERR_INVALID_ARGUMENT, "n_per_sample must be below 2^31 for the quantile, got %lld", (long long)n);
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("threshold", threshold, backend, (int64_t)batch * 4));
    D4J_TRY(check_no_overlap("threshold", threshold, (int64_t)batch * 4, "x_t", x_t, bytes, false));
    D4J_TRY(check_no_overlap("threshold", threshold, (int64_t)batch * 4, "model_output", model_output, bytes, false));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    if (!(std::isfinite(ratio) && ratio >= 0.0 && ratio <= 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "dynamic_thresholding_ratio must be in [0, 1], got %g", ratio);
    if (!(std::isfinite(sample_max_value) && sample_max_value > 0.0f))
        return fail(D4J_ERR_INVALID_ARGUMENT, "sample_max_value must be finite and > 0, got %g", (double)sample_max_value);
    const double pos = ratio * (double)(n - 1);
    int64_t k = (int64_t)std::floor(pos);
    if (k > n - 1) k = n - 1;
    const double frac = pos - (double)k;
    return guarded([&]() -> d4j_status {
        std::vector<d4j_sampler_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b) {
            std::memset(&coef[b], 0, sizeof coef[b]);
            double a, c;
            predict_x0(prediction, schedule->alphas_cumprod[timesteps[b]], &a, &c);
            coef[b].step.x0_a = (float)a;
            coef[b].step.x0_b = (float)c;
        }
        return backend->iface->x0_threshold(backend->state, coef.data(), batch, n, (const float *)x_t->ptr,
                                            (const float *)model_output->ptr, k, frac, sample_max_value,
                                            (float *)threshold->ptr);
    });
}

d4j_status d4j_ddpm_step_thresholded(d4j_backend *backend, const d4j_schedule *schedule,
                                     d4j_prediction_type prediction, d4j_variance_type variance,
                                     const d4j_buffer *threshold, const d4j_buffer *x_t,
                                     const d4j_buffer *model_output, const int32_t *timesteps,
                                     const int32_t *prev_timesteps, int32_t batch, int64_t n,
                                     const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, 0, 1.0f, x_t, model_output, timesteps, prev_timesteps, batch, n,
                       noise_seeds, noise_offsets, x_prev));
    if (variance != D4J_VARIANCE_FIXED_SMALL && variance != D4J_VARIANCE_FIXED_LARGE)
        return fail(D4J_ERR_INVALID_ARGUMENT, "variance type %d is not fixed_small(0) or fixed_large(1)", (int)variance);
    D4J_TRY(check_threshold_buffer(threshold, backend, batch, x_prev, (int64_t)batch * n * 4));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> step(batch);
        for (int32_t b = 0; b < batch; ++b)
            ddpm_coef(schedule->alphas_cumprod, prediction, variance, timesteps[b], prev_timesteps[b], noise_seeds[b],
                      noise_offsets[b], &step[b]);
        std::vector<d4j_sampler_coef> coef = widen(step);
        return backend->iface->sampler_step(backend->state, coef.data(), batch, n, D4J_X0_THRESHOLD, 1.0f,
                                            (const float *)threshold->ptr, (const float *)x_t->ptr,
                                            (const float *)model_output->ptr, nullptr, nullptr, (float *)x_prev->ptr);
    });
}

d4j_status d4j_ddim_step_thresholded(d4j_backend *backend, const d4j_schedule *schedule,
                                     d4j_prediction_type prediction, float eta, int32_t use_clipped_model_output,
                                     double final_alpha_cumprod, const d4j_buffer *threshold, const d4j_buffer *x_t,
                                     const d4j_buffer *model_output, const int32_t *timesteps,
                                     const int32_t *prev_timesteps, int32_t batch, int64_t n,
                                     const uint64_t *noise_seeds, const uint64_t *noise_offsets, d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_step(backend, schedule, prediction, 0, 1.0f, x_t, model_output, timesteps, prev_timesteps, batch, n,
                       noise_seeds, noise_offsets, x_prev));
    if (!(std::isfinite(eta) && eta >= 0.0f)) return fail(D4J_ERR_INVALID_ARGUMENT, "eta must be finite and >= 0, got %g", (double)eta);
    if (use_clipped_model_output != 0 && use_clipped_model_output != 1)
        return fail(D4J_ERR_INVALID_ARGUMENT, "use_clipped_model_output must be 0 or 1, got %d", use_clipped_model_output);
    if (!(std::isfinite(final_alpha_cumprod) && final_alpha_cumprod > 0.0 && final_alpha_cumprod <= 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "final_alpha_cumprod must be in (0, 1], got %g", final_alpha_cumprod);
    D4J_TRY(check_threshold_buffer(threshold, backend, batch, x_prev, (int64_t)batch * n * 4));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_step_coef> step(batch);
        for (int32_t b = 0; b < batch; ++b)
            ddim_coef(schedule->alphas_cumprod, prediction, eta, use_clipped_model_output, final_alpha_cumprod,
                      timesteps[b], prev_timesteps[b], noise_seeds[b], noise_offsets[b], &step[b]);
        std::vector<d4j_sampler_coef> coef = widen(step);
        return backend->iface->sampler_step(backend->state, coef.data(), batch, n, D4J_X0_THRESHOLD, 1.0f,
                                            (const float *)threshold->ptr, (const float *)x_t->ptr,
                                            (const float *)model_output->ptr, nullptr, nullptr, (float *)x_prev->ptr);
    });
}

d4j_status d4j_dpmsolver_step(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                              const d4j_buffer *threshold, const d4j_buffer *x_t, const d4j_buffer *model_output,
                              const d4j_buffer *prev_x0, const int32_t *timesteps, const int32_t *prev_timesteps,
                              const int32_t *last_timesteps, int32_t batch, int64_t n, d4j_buffer *x0_out,
                              d4j_buffer *x_prev) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    D4J_TRY(check_buffer("x_prev", x_prev, backend, bytes));
    if (prev_x0 != nullptr) D4J_TRY(check_buffer("prev_x0", prev_x0, backend, bytes));
    if (x0_out != nullptr) D4J_TRY(check_buffer("x0_out", x0_out, backend, bytes));
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    D4J_TRY(check_timesteps("prev_timesteps", prev_timesteps, batch, T, true));
    D4J_TRY(check_timesteps("last_timesteps", last_timesteps, batch, T, true));
    bool second = false;
    for (int32_t b = 0; b < batch; ++b) {
        if (prev_timesteps[b] >= timesteps[b])
            return fail(D4J_ERR_INVALID_ARGUMENT, "prev_timesteps[%d] = %d must be below timesteps[%d] = %d", b,
                        prev_timesteps[b], b, timesteps[b]);
        if (last_timesteps[b] >= 0) {
            if (last_timesteps[b] <= timesteps[b])
                return fail(D4J_ERR_INVALID_ARGUMENT, "last_timesteps[%d] = %d must be above timesteps[%d] = %d (or -1)",
                            b, last_timesteps[b], b, timesteps[b]);
            if (prev_timesteps[b] < 0)
                return fail(D4J_ERR_INVALID_ARGUMENT,
                            "sample %d: a second-order step to the final sigma 0 (prev_timesteps = -1) is undefined; "
                            "pass last_timesteps = -1 (diffusers' lower_order_final)", b);
            second = true;
        }
    }
    if (second && prev_x0 == nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "prev_x0 is null but a second-order step needs it");
    // x_prev: x_t itself or disjoint from it; disjoint from model_output, prev_x0, x0_out.
    // x0_out: prev_x0 itself or disjoint from it; disjoint from x_t, model_output.
    D4J_TRY(check_no_overlap("x_prev", x_prev, bytes, "x_t", x_t, bytes, true));
    D4J_TRY(check_no_overlap("x_prev", x_prev, bytes, "model_output", model_output, bytes, false));
    D4J_TRY(check_no_overlap("x_prev", x_prev, bytes, "prev_x0", prev_x0, bytes, false));
    D4J_TRY(check_no_overlap("x_prev", x_prev, bytes, "x0_out", x0_out, bytes, false));
    D4J_TRY(check_no_overlap("x0_out", x0_out, bytes, "prev_x0", prev_x0, bytes, true));
    D4J_TRY(check_no_overlap("x0_out", x0_out, bytes, "x_t", x_t, bytes, false));
    D4J_TRY(check_no_overlap("x0_out", x0_out, bytes, "model_output", model_output, bytes, false));
    if (threshold != nullptr) {
        D4J_TRY(check_threshold_buffer(threshold, backend, batch, x_prev, bytes));
        D4J_TRY(check_no_overlap("threshold", threshold, (int64_t)batch * 4, "x0_out", x0_out, bytes, false));
    }
    return guarded([&]() -> d4j_status {
        const std::vector<double> &ac = schedule->alphas_cumprod;
        std::vector<d4j_sampler_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b) {
            d4j_sampler_coef &c = coef[b];
            std::memset(&c, 0, sizeof c);
            const double ab_s0 = ac[timesteps[b]];
            double x0a, x0b;
            predict_x0(prediction, ab_s0, &x0a, &x0b);
            c.step.x0_a = (float)x0a;
            c.step.x0_b = (float)x0b;
            if (prev_timesteps[b] < 0) {
                // sigma_t = 0, alpha_t = 1, h = +inf: x_prev = m0
                c.step.c_x0 = 1.0f;
                continue;
            }
            const double ab_t = ac[prev_timesteps[b]];
            const double alpha_t = std::sqrt(ab_t), sigma_t = std::sqrt(1.0 - ab_t), sigma_s0 = std::sqrt(1.0 - ab_s0);
            const double h = dpm_lambda(ab_t) - dpm_lambda(ab_s0);
            const double cm0 = alpha_t * -std::expm1(-h);  // -alpha_t (e^-h - 1)
            c.step.c_xt = (float)(sigma_t / sigma_s0);
            if (last_timesteps[b] < 0) {
                c.step.c_x0 = (float)cm0;
            } else {
                const double r0 = (dpm_lambda(ab_s0) - dpm_lambda(ac[last_timesteps[b]])) / h;
                c.step.c_x0 = (float)(cm0 * (1.0 + 0.5 / r0));
                c.c_m1 = (float)(-0.5 * cm0 / r0);
            }
        }
        return backend->iface->sampler_step(backend->state, coef.data(), batch, n,
                                            threshold ? D4J_X0_THRESHOLD : D4J_X0_NONE, 1.0f,
                                            threshold ? (const float *)threshold->ptr : nullptr,
                                            (const float *)x_t->ptr, (const float *)model_output->ptr,
                                            second ? (const float *)prev_x0->ptr : nullptr,
                                            x0_out ? (float *)x0_out->ptr : nullptr, (float *)x_prev->ptr);
    });
}
// ---- end sampler ----

// ---- dropout (issue 4) ----
}  // extern "C"

namespace {

// Forward (x -> y) and backward (dy -> dx) are one map with the same mask.
// The keep decision u >= t is made on the raw 32-bit Philox word against an
// integer threshold computed here once, in float64, from p: an exact integer
// comparison on every backend (no float uniform whose rounding or resolution
// could differ), all 32 bits of resolution, and one rounding of p in total
// (p * 2^32 is exact in float64; rounding it to an integer moves the drop
// probability t / 2^32 by at most 2^-33). t is capped at 2^32 - 1 so it fits
// in 32 bits (only p > 1 - 2^-33 is affected: keep probability 2^-32 instead
// of 1 - p). p = 0 gives t = 0: u >= 0 always holds, nothing is dropped, and
// s = 1.0f exactly, so y = x * 1 is a bit-exact copy.
d4j_status dropout_impl(d4j_backend *backend, const char *in_name, const d4j_buffer *in, int64_t count, double p,
                        uint64_t seed, uint64_t offset, const char *out_name, d4j_buffer *out) {
    D4J_USE_BACKEND(backend);
    int64_t bytes = 0;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    if (!(std::isfinite(p) && p >= 0.0 && p < 1.0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "dropout probability p must be finite and in [0, 1), got %g", p);
    D4J_TRY(check_buffer(in_name, in, backend, bytes));
    D4J_TRY(check_buffer(out_name, out, backend, bytes));
    D4J_TRY(check_no_overlap(out_name, out, bytes, in_name, in, bytes, true));
    if (count == 0) return D4J_OK;
    if (p == 0.0 && in->ptr == out->ptr) return D4J_OK;  // keeps everything, in place: nothing to do
    const double scaled = std::nearbyint(p * 4294967296.0);
    const uint32_t threshold = scaled >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)scaled;
    const float scale = (float)(1.0 / (1.0 - p));  // <= 2^53: finite in float32
    return guarded([&] {
        return backend->iface->dropout(backend->state, (const float *)in->ptr, count, seed, offset, threshold, scale,
                                       (float *)out->ptr);
    });
}

}  // namespace

extern "C" {

d4j_status d4j_dropout_forward(d4j_backend *backend, const d4j_buffer *x, int64_t count, double p, uint64_t seed,
                               uint64_t offset, d4j_buffer *y) {
    return dropout_impl(backend, "x", x, count, p, seed, offset, "y", y);
}

d4j_status d4j_dropout_backward(d4j_backend *backend, const d4j_buffer *dy, int64_t count, double p, uint64_t seed,
                                uint64_t offset, d4j_buffer *dx) {
    return dropout_impl(backend, "dy", dy, count, p, seed, offset, "dx", dx);
}
// ---- end dropout ----

// ---- vlb (issue 5) ----
}  // extern "C"

namespace {

// Posterior variance beta_t (1 - ab_prev) / (1 - ab_t) at t >= 1, in float64.
double vlb_posterior_variance(const std::vector<double> &ac, int32_t t) {
    const double ab = ac[t], ab_prev = ac[t - 1];
    const double beta = 1.0 - ab / ab_prev;
    return beta * (1.0 - ab_prev) / (1.0 - ab);
}

// The coefficients of the bound's term at timestep t (d4j.h, section "vlb"):
// improved-diffusion's posterior_log_variance_clipped (log pv[1] at t = 0) as
// the true log variance, and as the model's: the same (fixed_small) or
// log(beta_t) with log pv[1] at t = 0 (fixed_large).
void vlb_coef(const std::vector<double> &ac, int32_t prediction, int32_t variance, int32_t t, d4j_vlb_coef *out) {
    d4j_vlb_coef &c = *out;
    std::memset(&c, 0, sizeof c);
    const double ab = ac[t], ab_prev = t > 0 ? ac[t - 1] : 1.0;
    const double beta = t > 0 ? 1.0 - ab / ab_prev : 1.0 - ab;
    predict_x0(prediction, ab, &c.x0_a, &c.x0_b);
    c.c1 = beta * std::sqrt(ab_prev) / (1.0 - ab);
    c.c2 = (1.0 - ab_prev) * std::sqrt(1.0 - beta) / (1.0 - ab);
    const double lv_clipped = std::log(vlb_posterior_variance(ac, t > 0 ? t : 1));
    const double lv_model = (variance == D4J_VARIANCE_FIXED_LARGE && t > 0) ? std::log(beta) : lv_clipped;
    if (t == 0) {
        c.decoder = 1;
        c.inv_stdv = std::exp(-0.5 * lv_model);
        return;
    }
    // 0.5 (-1 + lv_p - lv_q + exp(lv_q - lv_p)) with d = lv_q - lv_p: 0.5 (expm1(d) - d), exactly 0 at d = 0
    const double d = lv_clipped - lv_model;
    c.k = 0.5 * (std::expm1(d) - d);
    c.q = 0.5 * std::exp(-lv_model);
}

}  // namespace

extern "C" {

d4j_status d4j_vlb_terms(d4j_backend *backend, const d4j_schedule *schedule, d4j_prediction_type prediction,
                         d4j_variance_type variance, int32_t clip_denoised, float clip_range, const d4j_buffer *x0,
                         const d4j_buffer *x_t, const d4j_buffer *model_output, const int32_t *timesteps,
                         int32_t batch, int64_t n, double *terms) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_vlb_terms"));
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    if (variance != D4J_VARIANCE_FIXED_SMALL && variance != D4J_VARIANCE_FIXED_LARGE)
        return fail(D4J_ERR_INVALID_ARGUMENT, "variance type %d is not fixed_small(0) or fixed_large(1)", (int)variance);
    if (clip_denoised != 0 && clip_denoised != 1)
        return fail(D4J_ERR_INVALID_ARGUMENT, "clip_denoised must be 0 or 1, got %d", clip_denoised);
    if (clip_denoised && !(std::isfinite(clip_range) && clip_range > 0))
        return fail(D4J_ERR_INVALID_ARGUMENT, "clip_range must be finite and > 0, got %g", (double)clip_range);
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    D4J_TRY(check_buffer("x_t", x_t, backend, bytes));
    D4J_TRY(check_buffer("model_output", model_output, backend, bytes));
    if (terms == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "terms is null");
    const int32_t T = (int32_t)schedule->alphas_cumprod.size();
    if (T < 2)
        return fail(D4J_ERR_INVALID_ARGUMENT,
                    "the variational bound needs at least 2 timesteps (the decoder variance is the posterior "
                    "variance at t = 1), the schedule has %d", T);
    D4J_TRY(check_timesteps("timesteps", timesteps, batch, T, false));
    return guarded([&]() -> d4j_status {
        std::vector<d4j_vlb_coef> coef(batch);
        for (int32_t b = 0; b < batch; ++b)
            vlb_coef(schedule->alphas_cumprod, prediction, variance, timesteps[b], &coef[b]);
        return backend->iface->vlb_terms(backend->state, coef.data(), batch, n, clip_denoised, (double)clip_range,
                                         (const float *)x0->ptr, (const float *)x_t->ptr,
                                         (const float *)model_output->ptr, terms);
    });
}

d4j_status d4j_vlb_prior(d4j_backend *backend, const d4j_schedule *schedule, const d4j_buffer *x0, int32_t batch,
                         int64_t n, double *terms) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(refuse_in_capture(backend, "d4j_vlb_prior"));
    D4J_TRY(check_schedule(schedule));
    int64_t bytes = 0;
    D4J_TRY(check_batch(batch, n, &bytes));
    D4J_TRY(check_buffer("x0", x0, backend, bytes));
    if (terms == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "terms is null");
    const double ab = schedule->alphas_cumprod.back();
    return guarded([&]() -> d4j_status {
        // KL(N(sqrt(ab) x0, 1 - ab) || N(0, 1)): the KL element with x0_hat = 0, c1 = sqrt(ab),
        // lv_q = log(1 - ab), lv_p = 0: k = 0.5 (expm1(lv_q) - lv_q) = 0.5 (-ab - log1p(-ab)), q = 0.5
        d4j_vlb_coef c;
        std::memset(&c, 0, sizeof c);
        c.c1 = std::sqrt(ab);
        c.k = 0.5 * (-ab - std::log1p(-ab));
        c.q = 0.5;
        std::vector<d4j_vlb_coef> coef((size_t)batch, c);
        const float *p = (const float *)x0->ptr;
        return backend->iface->vlb_terms(backend->state, coef.data(), batch, n, 0, 1.0, p, p, p, terms);
    });
}
// ---- end vlb ----
// ---- graph (issue 5) ----
}  // extern "C"

namespace {
std::unordered_set<const void *> g_graphs;  // live graphs (guarded by g_registry_mu)

// Ends the gate's capture on b and lets waiting threads in.
void open_gate(d4j_backend *b) {
    std::lock_guard<std::mutex> lock(b->gate_mu);
    b->capturer.store(std::thread::id());
    b->gate_cv.notify_all();
}

// Looks up a live graph; under g_registry_mu.
d4j_status find_graph(const d4j_graph *g) {
    if (g == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "graph is null");
    if (g_graphs.count(g) == 0) return fail(D4J_ERR_INVALID_HANDLE, "graph is freed or invalid");
    return D4J_OK;
}
}  // namespace

extern "C" {

d4j_status d4j_capture_supported(const d4j_backend *backend, int32_t *supported) {
    D4J_USE_BACKEND(backend);
    if (supported == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "supported is null");
    *supported = backend->iface->capture_begin != nullptr ? 1 : 0;
    return D4J_OK;
}

d4j_status d4j_capture_begin(d4j_backend *backend) {
    D4J_TRY(check_backend(backend));
    std::shared_lock<std::shared_mutex> use(backend->life);
    if (backend->closed) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed");
    const d4j_backend_iface *f = backend->iface;
    if (f->capture_begin == nullptr || f->capture_end == nullptr || f->graph_launch == nullptr ||
        f->graph_free == nullptr)
        return fail(D4J_ERR_UNSUPPORTED, "backend '%s' cannot capture graphs (it runs every call at once); run the "
                    "calls directly", f->name);
    if (t_capture != nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "this thread is already capturing a graph on backend '%s'",
                    t_capture->backend == backend ? "this one" : t_capture->backend->iface->name);
    return guarded_call([&]() -> d4j_status {
        auto *c = new FrontCapture{backend, {}, D4J_OK, {}};
        {
            // Wait for another thread's capture to end, admit no new calls, wait for running ones.
            std::unique_lock<std::mutex> lock(backend->gate_mu);
            backend->gate_cv.wait(lock, [&] {
                return backend->capturer.load() == std::thread::id() && !backend->capture_pending;
            });
            backend->capture_pending = true;
            backend->gate_cv.wait(lock, [&] { return backend->gate_active == 0; });
            backend->capturer.store(std::this_thread::get_id());
            backend->capture_pending = false;
        }
        d4j_status st = guarded_call([&] { return f->capture_begin(backend->state); });
        if (st != D4J_OK) {
            open_gate(backend);
            delete c;
            return st;
        }
        t_capture = c;
        return D4J_OK;
    });
}

d4j_status d4j_capture_end(d4j_backend *backend, d4j_graph **out) {
    if (out == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out is null (the capture goes on)");
    *out = nullptr;
    D4J_TRY(check_backend(backend));
    std::shared_lock<std::shared_mutex> use(backend->life);
    if (backend->closed) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed");
    if (t_capture == nullptr || t_capture->backend != backend)
        return fail(D4J_ERR_INVALID_ARGUMENT, "this thread is not capturing a graph on this backend "
                    "(d4j_capture_end must follow d4j_capture_begin on the same thread)");
    FrontCapture *c = t_capture;
    t_capture = nullptr;
    void *impl = nullptr;
    int64_t nodes = 0, dev = 0, host = 0;
    d4j_status st = guarded_call([&] {
        return backend->iface->capture_end(backend->state, c->failed != D4J_OK ? 1 : 0, &impl, &nodes, &dev, &host);
    });
    open_gate(backend);
    if (c->failed != D4J_OK) {
        d4j_status failed = c->failed;
        std::string why = c->failure;
        delete c;
        if (impl != nullptr) guarded_call([&] { return backend->iface->graph_free(backend->state, impl); });
        return fail(failed, "a call recorded during the capture failed, so the graph is discarded: %s", why.c_str());
    }
    if (st != D4J_OK) {
        delete c;
        return st;
    }
    return guarded_call([&]() -> d4j_status {
        std::unique_ptr<FrontCapture> owned(c);
        auto *g = new d4j_graph{backend, impl, {}, nodes, dev, host};
        std::lock_guard<std::mutex> lock(g_registry_mu);
        for (d4j_buffer *b : c->pinned) {
            if (g_buffers.count(b) == 0) continue;  // cannot happen: frees are refused or held back meanwhile
            b->graph_uses += 1;
            g->pinned.push_back(b);
        }
        g_graphs.insert(g);
        backend->live_graphs += 1;
        *out = g;
        return D4J_OK;
    });
}

d4j_status d4j_graph_launch(d4j_graph *graph) {
    d4j_backend *b;
    {
        std::lock_guard<std::mutex> lock(g_registry_mu);
        D4J_TRY(find_graph(graph));
        b = graph->backend;
    }
    D4J_USE_BACKEND(b);
    D4J_TRY(refuse_in_capture(b, "d4j_graph_launch"));
    // The graph cannot be freed meanwhile by this thread; another thread freeing it
    // while launching it is the caller's race, as for buffers.
    return guarded([&] { return b->iface->graph_launch(b->state, graph->impl); });
}

d4j_status d4j_graph_info(const d4j_graph *graph, int64_t *nodes, int64_t *device_bytes, int64_t *host_bytes) {
    if (nodes == nullptr || device_bytes == nullptr || host_bytes == nullptr)
        return fail(D4J_ERR_INVALID_ARGUMENT, "nodes, device_bytes and host_bytes must not be null");
    std::lock_guard<std::mutex> lock(g_registry_mu);
    D4J_TRY(find_graph(graph));
    *nodes = graph->nodes;
    *device_bytes = graph->device_bytes;
    *host_bytes = graph->host_bytes;
    return D4J_OK;
}

d4j_status d4j_graph_free(d4j_graph *graph) {
    d4j_backend *b;
    {
        // Unregister and unpin atomically, so a concurrent double free fails cleanly.
        std::lock_guard<std::mutex> lock(g_registry_mu);
        D4J_TRY(find_graph(graph));
        b = graph->backend;
        D4J_TRY(refuse_in_capture(b, "d4j_graph_free"));
        g_graphs.erase(graph);
        for (d4j_buffer *buf : graph->pinned) buf->graph_uses -= 1;
    }
    std::shared_lock<std::shared_mutex> use(b->life);
    CaptureGate gate(b);
    d4j_status s = guarded([&] { return b->iface->graph_free(b->state, graph->impl); });
    b->live_graphs -= 1;
    delete graph;
    return s;
}
// ---- end graph ----

}  // extern "C"
