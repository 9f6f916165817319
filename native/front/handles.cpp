// Last error, handle registry and lifetimes: backends (open, close, queries,
// kernel variants, precision, timing), buffers and views, schedules.
#include <dlfcn.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "front_internal.h"

namespace d4j::front {

thread_local char g_error[1024];

void set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
}

d4j_status fail(d4j_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return s;
}

std::mutex g_registry_mu;
std::unordered_set<const void *> g_buffers;

namespace {

const d4j_host_api kHost = {&set_error};

std::unordered_set<const void *> g_backends, g_schedules;  // guarded by g_registry_mu

bool registered(const std::unordered_set<const void *> &set, const void *p) {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    return set.count(p) != 0;
}

d4j_status copy_string(const char *src, char *dst, size_t cap) {
    if (dst == nullptr || cap == 0) return fail(D4J_ERR_INVALID_ARGUMENT, "dst is null or cap is 0");
    std::snprintf(dst, cap, "%s", src);
    return D4J_OK;
}

bool known_family(const char *family) {
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

d4j_status check_family(const char *family) {
    if (family == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "family is null");
    if (!known_family(family))
        return fail(D4J_ERR_INVALID_ARGUMENT, "unknown kernel family '%s' (known: %s)", family, D4J_KERNEL_FAMILIES);
    return D4J_OK;
}

d4j_status check_range(const d4j_buffer *buffer, int64_t offset, const void *host, int64_t bytes) {
    D4J_TRY(check_buffer("buffer", buffer, nullptr, 0));
    if (host == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "host pointer is null");
    if (offset < 0 || bytes < 0 || offset > buffer->bytes || bytes > buffer->bytes - offset)
        return fail(D4J_ERR_INVALID_ARGUMENT, "range [%lld, %lld + %lld) is outside the buffer of %lld bytes",
                    (long long)offset, (long long)offset, (long long)bytes, (long long)buffer->bytes);
    return D4J_OK;
}

// A library's table must fill every slot the front calls (the capture slots may all be null).
bool iface_complete(const d4j_backend_iface *f) {
#define D4J_SERVICE_SET(name) &&f->name
#define D4J_KERNEL_SET(name, params) &&f->name
    return f->free && f->write && f->read D4J_BACKEND_SERVICES(D4J_SERVICE_SET) D4J_BACKEND_KERNELS(D4J_KERNEL_SET);
#undef D4J_SERVICE_SET
#undef D4J_KERNEL_SET
}

}  // namespace

d4j_status check_backend(const d4j_backend *b) {
    if (b == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "backend is null");
    if (!registered(g_backends, b)) return fail(D4J_ERR_INVALID_HANDLE, "backend handle is closed or invalid");
    return D4J_OK;
}

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
    pin_for_capture(buf);
    return D4J_OK;
}

d4j_status check_schedule(const d4j_schedule *s) {
    if (s == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "schedule is null");
    if (!registered(g_schedules, s)) return fail(D4J_ERR_INVALID_HANDLE, "schedule is freed or invalid");
    return D4J_OK;
}

}  // namespace d4j::front

using namespace d4j::front;

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
        if (!iface_complete(iface)) {
            dlclose(dl);
            return fail(D4J_ERR_UNAVAILABLE, "%s leaves slots of the backend interface empty", library_path);
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

d4j_status d4j_kernel_tensor_core_variants(const d4j_backend *backend, const char *family, char *dst, size_t cap) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(check_family(family));
    const char *v = backend->iface->tensor_core_variants(backend->state, family);
    return copy_string(v ? v : "", dst, cap);
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

d4j_status d4j_backend_set_precision(d4j_backend *backend, d4j_precision precision) {
    D4J_USE_BACKEND(backend);
    // Compared as an integer: a caller may pass any int32 where the enum goes.
    const int32_t p = (int32_t)precision;
    if (p != D4J_PRECISION_FP32 && p != D4J_PRECISION_TF32 && p != D4J_PRECISION_BF16)
        return fail(D4J_ERR_INVALID_ARGUMENT, "precision %d is not fp32(0), tf32(1) or bf16(2)", p);
    return guarded([&] { return backend->iface->set_precision(backend->state, p); });
}

d4j_status d4j_backend_precision(const d4j_backend *backend, d4j_precision *out) {
    D4J_USE_BACKEND(backend);
    if (out == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "out is null");
    *out = (d4j_precision)backend->iface->precision(backend->state);
    return D4J_OK;
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

}  // extern "C"
