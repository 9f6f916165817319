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
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "../common/backend_iface.h"
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
};

struct d4j_buffer {
    d4j_backend *backend;
    void *ptr;
    int64_t bytes;
    d4j_buffer *root = nullptr;  // for a view: the owning buffer; null for an owning buffer
    int64_t views = 0;           // owning buffer: live views of it (guarded by g_registry_mu)
};

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
    return D4J_OK;
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

// Validates a backend handle and holds it open (shared) until the end of the scope.
#define D4J_USE_BACKEND(b)                                                                  \
    D4J_TRY(check_backend(b));                                                              \
    std::shared_lock<std::shared_mutex> backend_use_(const_cast<d4j_backend *>(b)->life);   \
    if ((b)->closed) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed")

// Backends must not throw across the C ABI; this catches what slips through.
template <class F>
d4j_status guarded(F &&f) {
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
    std::unique_lock<std::shared_mutex> exclusive(backend->life);
    if (backend->closed) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed or invalid");
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
    if (bytes == 0) return D4J_OK;
    d4j_backend *b = buffer->backend;
    std::shared_lock<std::shared_mutex> use(b->life);
    return guarded([&] { return b->iface->write(b->state, (char *)buffer->ptr + offset, src, (size_t)bytes); });
}

d4j_status d4j_buffer_read(const d4j_buffer *buffer, int64_t offset, void *dst, int64_t bytes) {
    D4J_TRY(check_range(buffer, offset, dst, bytes));
    if (bytes == 0) return D4J_OK;
    d4j_backend *b = buffer->backend;
    std::shared_lock<std::shared_mutex> use(b->life);
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
    int64_t bytes;
    D4J_TRY(checked_bytes("count", count, 4, &bytes));
    D4J_TRY(check_buffer("out", out, backend, bytes));
    if (count == 0) return D4J_OK;
    return guarded([&] { return backend->iface->rng_uint32(backend->state, seed, offset, (uint32_t *)out->ptr, count); });
}

d4j_status d4j_rng_normal(d4j_backend *backend, uint64_t seed, uint64_t offset, d4j_buffer *out, int64_t count) {
    D4J_USE_BACKEND(backend);
    int64_t bytes;
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
    int64_t bytes;
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
    int64_t bytes;
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

// Shared validation of the two reverse-step entry points.
static d4j_status check_step(d4j_backend *backend, const d4j_schedule *schedule, int32_t prediction, int32_t clip,
                             float clip_range, const d4j_buffer *x_t, const d4j_buffer *model_output,
                             const int32_t *timesteps, const int32_t *prev, int32_t batch, int64_t n,
                             const uint64_t *seeds, const uint64_t *offsets, const d4j_buffer *x_prev) {
    D4J_TRY(check_schedule(schedule));
    D4J_TRY(check_prediction(prediction));
    D4J_TRY(check_clip(clip, clip_range));
    int64_t bytes;
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
        const std::vector<double> &ac = schedule->alphas_cumprod;
        for (int32_t b = 0; b < batch; ++b) {
            // diffusers DDPMScheduler.step with prev_t = previous_timestep(t)
            double ab = ac[timesteps[b]];
            double ab_prev = prev_timesteps[b] >= 0 ? ac[prev_timesteps[b]] : 1.0;
            double bp = 1.0 - ab, bp_prev = 1.0 - ab_prev;
            double alpha = ab / ab_prev, beta = 1.0 - alpha;
            double x0a, x0b;
            predict_x0(prediction, ab, &x0a, &x0b);
            d4j_step_coef &c = coef[b];
            std::memset(&c, 0, sizeof c);
            c.x0_a = (float)x0a;
            c.x0_b = (float)x0b;
            c.c_x0 = (float)(std::sqrt(ab_prev) * beta / bp);
            c.c_xt = (float)(std::sqrt(alpha) * bp_prev / bp);
            double var = 0.0;
            if (timesteps[b] > 0) {
                var = variance == D4J_VARIANCE_FIXED_SMALL ? std::fmax(bp_prev / bp * beta, 1e-20) : beta;
            }
            c.sigma = (float)std::sqrt(var);
            c.seed = noise_seeds[b];
            c.offset = noise_offsets[b];
        }
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
        const std::vector<double> &ac = schedule->alphas_cumprod;
        for (int32_t b = 0; b < batch; ++b) {
            // diffusers DDIMScheduler.step
            double ab = ac[timesteps[b]];
            double ab_prev = prev_timesteps[b] >= 0 ? ac[prev_timesteps[b]] : final_alpha_cumprod;
            double bp = 1.0 - ab, bp_prev = 1.0 - ab_prev;
            double x0a, x0b, ea, eb;
            predict_x0(prediction, ab, &x0a, &x0b);
            predict_eps(prediction, ab, &ea, &eb);
            double variance = bp_prev / bp * (1.0 - ab / ab_prev);
            double std_dev = (double)eta * std::sqrt(std::fmax(variance, 0.0));
            double dir = std::sqrt(std::fmax(bp_prev - std_dev * std_dev, 0.0));
            d4j_step_coef &c = coef[b];
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
            c.seed = noise_seeds[b];
            c.offset = noise_offsets[b];
        }
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

d4j_status d4j_buffer_fill_f32(d4j_buffer *buffer, float value) {
    D4J_TRY(check_buffer("buffer", buffer, nullptr, 4));
    d4j_backend *b = buffer->backend;
    D4J_USE_BACKEND(b);
    if (buffer->bytes % 4 != 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "buffer of %lld bytes is not a whole number of floats", (long long)buffer->bytes);
    return guarded([&] { return b->iface->fill_f32(b->state, (float *)buffer->ptr, buffer->bytes / 4, value); });
}

// ---- conv2d (issue 4) ----
// ---- end conv2d ----

// ---- norm (issue 4) ----
// ---- end norm ----

// ---- linear_attention (issue 4) ----
// Do two buffers (or views) share any byte? Outputs must not overlap inputs or
// each other: the kernels read inputs after writing outputs.
static bool buffers_overlap(const d4j_buffer *a, const d4j_buffer *b) {
    if (a == nullptr || b == nullptr) return false;
    uintptr_t a0 = (uintptr_t)a->ptr, b0 = (uintptr_t)b->ptr;
    return a0 < b0 + (uintptr_t)b->bytes && b0 < a0 + (uintptr_t)a->bytes;
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
// ---- end optim ----

}  // extern "C"
