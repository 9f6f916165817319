// The capture gate (what may run while a thread captures a graph on a
// backend, and who waits) and the graph entry points of d4j.h.
#include <memory>

#include "front_internal.h"

struct d4j_graph {
    d4j_backend *backend;
    void *impl;                          // the backend's graph
    std::vector<d4j_buffer *> pinned;    // owning buffers the recorded calls use (graph_uses held)
    int64_t nodes, device_bytes, host_bytes;
};

namespace d4j::front {
namespace {

// The calling thread's capture in progress (at most one per thread).
struct FrontCapture {
    d4j_backend *backend;
    std::unordered_set<d4j_buffer *> pinned;  // owning buffers of every buffer argument seen
    d4j_status failed = D4J_OK;               // first failing forwarded call, which discards the graph
    std::string failure;
};
thread_local FrontCapture *t_capture = nullptr;

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

CaptureGate::CaptureGate(const d4j_backend *backend) {
    auto *b = const_cast<d4j_backend *>(backend);
    if (b->iface->capture_begin == nullptr) return;                 // cannot capture: no gate
    if (b->capturer.load() == std::this_thread::get_id()) return;  // the capturing thread's own calls
    std::unique_lock<std::mutex> lock(b->gate_mu);
    b->gate_cv.wait(lock, [&] { return b->capturer.load() == std::thread::id() && !b->capture_pending; });
    ++b->gate_active;
    b_ = b;
}

CaptureGate::~CaptureGate() {
    if (b_ == nullptr) return;
    std::lock_guard<std::mutex> lock(b_->gate_mu);
    if (--b_->gate_active == 0) b_->gate_cv.notify_all();
}

d4j_status refuse_in_capture(const d4j_backend *b, const char *call) {
    if (t_capture == nullptr || t_capture->backend != b) return D4J_OK;
    return fail(D4J_ERR_INVALID_ARGUMENT,
                "%s is not allowed while this thread captures a graph on backend '%s' (between d4j_capture_begin "
                "and d4j_capture_end only kernel calls are recorded: no allocation, free, synchronous copy, "
                "synchronisation or host result)",
                call, b->iface->name);
}

void pin_for_capture(const d4j_buffer *buf) {
    if (t_capture != nullptr && buf->backend == t_capture->backend)
        t_capture->pinned.insert(const_cast<d4j_buffer *>(buf->root ? buf->root : buf));
}

void note_failure_in_capture(d4j_status s) {
    if (t_capture != nullptr && t_capture->failed == D4J_OK) {
        t_capture->failed = s;
        t_capture->failure = g_error;
    }
}

}  // namespace d4j::front

using namespace d4j::front;

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

}  // extern "C"
