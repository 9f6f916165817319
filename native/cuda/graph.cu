// Graph capture and replay of a thread's calls on the CUDA backend (d4j.h,
// section "graph"): stream capture of the backend's one stream into a CUDA
// graph, instantiated once and launched as one unit. The same source builds
// against the simulator (native/cudasim), whose capture records launches and
// copies and replays them as plain launches.
//
// The hazards of capturing calls that take host metadata:
//   - a recorded cudaMemcpyAsync reads its host source every time the graph
//     runs, but the front's coefficient vectors and the caller's timestep
//     arrays are gone (or rewritten for the next step) as soon as the call
//     returns. upload_host therefore copies the source into a host arena the
//     graph owns (pinned memory, as a graph copy node needs) and records the
//     copy from there: each recorded call reads its own immutable snapshot.
//   - a thread's per-call device scratch (ensure_scratch) is reused by its next
//     call and may be freed when it grows; a graph replayed later must not
//     depend on it. During a capture ensure_scratch hands out a fresh region of
//     a device arena the graph owns, one per recorded call, so no recorded call
//     ever shares scratch with another or with a later plain call.
// The arenas are allocated while capturing with the thread's capture mode
// switched to relaxed (cudaThreadExchangeStreamCaptureMode), as CUDA requires
// for cudaMalloc / cudaMallocHost inside a thread-local capture; they are freed
// by graph_free (after the stream is idle) or when a capture is discarded.
#include <cstring>
#include <thread>
#include <vector>

#include "cuda_common.h"
#include "cuda_kernels.h"

namespace d4j::cuda {

// Bump allocator over chunks that are never moved or reused while the graph lives.
struct GraphArena {
    bool device = true;  // cudaMalloc chunks, else cudaMallocHost (pinned)
    size_t min_chunk = 0;
    std::vector<void *> chunks;
    char *cur = nullptr;
    size_t left = 0;
    size_t total = 0;  // bytes of all chunks

    d4j_status take(size_t bytes, size_t align, void **out) {
        if (bytes == 0) bytes = 1;
        size_t pad = cur ? (size_t)((align - (uintptr_t)cur % align) % align) : 0;
        if (cur == nullptr || pad + bytes > left) {
            size_t size = bytes > min_chunk ? bytes : min_chunk;
            void *p = nullptr;
            // Allocation is a "potentially unsafe" call during a thread-local capture:
            // permitted for this thread in relaxed mode (it is not part of the graph).
            cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
            D4J_CHECK(cudaThreadExchangeStreamCaptureMode(&mode), "cudaThreadExchangeStreamCaptureMode");
            cudaError_t e = device ? cudaMalloc(&p, size) : cudaMallocHost(&p, size);
            cudaThreadExchangeStreamCaptureMode(&mode);
            D4J_CHECK(e, device ? "cudaMalloc(graph scratch)" : "cudaMallocHost(graph snapshot)");
            chunks.push_back(p);
            total += size;
            cur = static_cast<char *>(p);
            left = size;
            pad = 0;
        }
        *out = cur + pad;
        cur += pad + bytes;
        left -= pad + bytes;
        return D4J_OK;
    }

    void release() {
        for (void *p : chunks) device ? (void)cudaFree(p) : (void)cudaFreeHost(p);
        chunks.clear();
        cur = nullptr;
        left = total = 0;
    }
};

struct GraphCapture {
    std::thread::id thread;
    GraphArena scratch, snapshots;
};

namespace {

struct Graph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    GraphArena scratch, snapshots;
    size_t nodes = 0;
};

GraphCapture *own_capture(State *s) {
    GraphCapture *c = s->capture.load();
    return c != nullptr && c->thread == std::this_thread::get_id() ? c : nullptr;
}

}  // namespace

d4j_status capture_scratch(State *s, size_t bytes, void **scratch) {
    GraphCapture *c = own_capture(s);
    if (c == nullptr) {
        // The front admits no other thread during a capture; this is a bug if reached.
        g_host->set_error("internal: a thread other than the capturing one asked for scratch during a capture");
        return D4J_ERR_INTERNAL;
    }
    return c->scratch.take(bytes, 256, scratch);
}

d4j_status upload_host(State *s, void *dst, const void *src, size_t bytes, const char *what) {
    if (bytes == 0) return D4J_OK;
    if (capturing(s)) {
        GraphCapture *c = own_capture(s);
        if (c == nullptr) {
            g_host->set_error("internal: a thread other than the capturing one uploads during a capture");
            return D4J_ERR_INTERNAL;
        }
        void *snap = nullptr;
        d4j_status st = c->snapshots.take(bytes, 16, &snap);
        if (st != D4J_OK) return st;
        std::memcpy(snap, src, bytes);
        src = snap;  // the recorded copy reads the graph's snapshot, valid until graph_free
    }
    D4J_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->stream), what);
    return D4J_OK;
}

d4j_status capture_begin(void *state) {
    auto *s = static_cast<State *>(state);
    if (s->capture.load() != nullptr) {
        g_host->set_error("the backend is already capturing a graph");
        return D4J_ERR_INVALID_ARGUMENT;
    }
    auto *c = new GraphCapture();
    c->thread = std::this_thread::get_id();
    c->scratch.device = true;
    c->scratch.min_chunk = (size_t)1 << 20;
    c->snapshots.device = false;
    c->snapshots.min_chunk = (size_t)64 << 10;
    // Thread-local mode: other threads' unsafe calls are not affected; the
    // front keeps their calls on this backend (its one stream) out meanwhile.
    cudaError_t e = cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        delete c;
        return check(e, "cudaStreamBeginCapture");
    }
    s->capture.store(c);
    return D4J_OK;
}

d4j_status capture_end(void *state, int32_t discard, void **graph, int64_t *nodes, int64_t *device_bytes,
                       int64_t *host_bytes) {
    auto *s = static_cast<State *>(state);
    *graph = nullptr;
    GraphCapture *c = own_capture(s);
    if (c == nullptr) {
        g_host->set_error("this thread is not capturing on the backend");
        return D4J_ERR_INVALID_ARGUMENT;
    }
    cudaGraph_t g = nullptr;
    cudaError_t e = cudaStreamEndCapture(s->stream, &g);
    s->capture.store(nullptr);
    auto fail_with = [&](d4j_status st) {
        if (g) cudaGraphDestroy(g);
        // Nothing recorded ever ran: the arenas can go at once.
        c->scratch.release();
        c->snapshots.release();
        delete c;
        return st;
    };
    if (e != cudaSuccess) return fail_with(check(e, "cudaStreamEndCapture"));
    if (discard) return fail_with(D4J_OK);
    auto *gr = new Graph();
    size_t count = 0;
    if ((e = cudaGraphGetNodes(g, nullptr, &count)) != cudaSuccess) {
        delete gr;
        return fail_with(check(e, "cudaGraphGetNodes"));
    }
    if ((e = cudaGraphInstantiate(&gr->exec, g, 0)) != cudaSuccess) {
        delete gr;
        return fail_with(check(e, "cudaGraphInstantiate"));
    }
    gr->graph = g;
    gr->scratch = c->scratch;
    gr->snapshots = c->snapshots;
    gr->nodes = count;
    delete c;
    *graph = gr;
    *nodes = (int64_t)count;
    *device_bytes = (int64_t)gr->scratch.total;
    *host_bytes = (int64_t)gr->snapshots.total;
    return D4J_OK;
}

d4j_status graph_launch(void *state, void *graph) {
    auto *s = static_cast<State *>(state);
    auto *gr = static_cast<Graph *>(graph);
    D4J_CHECK(cudaGraphLaunch(gr->exec, s->stream), "cudaGraphLaunch");
    return launched("cudaGraphLaunch");
}

d4j_status graph_free(void *state, void *graph) {
    auto *s = static_cast<State *>(state);
    auto *gr = static_cast<Graph *>(graph);
    // A launch may still run and read the arenas: wait for the stream first.
    d4j_status st = check(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize");
    cudaGraphExecDestroy(gr->exec);
    cudaGraphDestroy(gr->graph);
    gr->scratch.release();
    gr->snapshots.release();
    delete gr;
    return st;
}

void end_capture_at_shutdown(State *s) {
    GraphCapture *c = s->capture.exchange(nullptr);
    if (c == nullptr) return;
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(s->stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    c->scratch.release();
    c->snapshots.release();
    delete c;
}

}  // namespace d4j::cuda
