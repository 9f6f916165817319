// Stream capture and graphs in the simulator: work enqueued on a capturing
// stream is recorded as nodes (kernel closures copied, memcpy / memset
// operands read at replay), CUDA's capture-mode rules decide which calls a
// capture prohibits, and a graph launch replays the nodes in order.
#include <algorithm>
#include <cstring>

#include "cudasim_internal.h"

using d4j_sim::ok;
using d4j_sim::record_error;
using d4j_sim::refuse_on_capturing;
using d4j_sim::SimNode;

namespace {

// Capture bookkeeping for CUDA's capture-mode rules.
std::mutex g_capture_mu;                          // guards g_global_captures
std::vector<cudaStream_t> g_global_captures;      // active captures begun with cudaStreamCaptureModeGlobal
thread_local std::vector<cudaStream_t> t_captures;  // active captures begun by this thread (not relaxed)
thread_local cudaStreamCaptureMode t_mode = cudaStreamCaptureModeGlobal;

void invalidate(cudaStream_t s, const std::string &why) {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->status == cudaStreamCaptureStatusActive) {
        s->status = cudaStreamCaptureStatusInvalidated;
        s->invalid_reason = why;
    }
}

}  // namespace

namespace d4j_sim {

// CUDA: a thread in mode Global is prohibited from potentially unsafe calls while
// it has an ongoing non-relaxed capture or any thread has a Global one; in mode
// ThreadLocal only its own non-relaxed captures count; Relaxed is never prohibited.
// A prohibited call fails with cudaErrorStreamCaptureUnsupported and invalidates
// the captures that prohibited it.
bool prohibited(const char *call) {
    if (t_mode == cudaStreamCaptureModeRelaxed) return false;
    std::vector<cudaStream_t> culprits = t_captures;
    if (t_mode == cudaStreamCaptureModeGlobal) {
        std::lock_guard<std::mutex> lock(g_capture_mu);
        for (cudaStream_t s : g_global_captures)
            if (std::find(culprits.begin(), culprits.end(), s) == culprits.end()) culprits.push_back(s);
    }
    if (culprits.empty()) return false;
    std::string why = d4j_sim::format("%s is not permitted during stream capture (it would run or allocate now, "
                                      "outside the graph)", call);
    for (cudaStream_t s : culprits) invalidate(s, why);
    record_error(cudaErrorStreamCaptureUnsupported, why);
    return true;
}

bool record(cudaStream_t s, SimNode &&node, bool *refused) {
    *refused = false;
    if (s == nullptr) return false;
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->status == cudaStreamCaptureStatusNone) return false;
    if (s->status == cudaStreamCaptureStatusInvalidated) {
        // CUDA: work on an invalidated capture fails until cudaStreamEndCapture
        record_error(cudaErrorStreamCaptureInvalidated,
                     d4j_sim::format("the stream's capture was invalidated: %s", s->invalid_reason.c_str()));
        *refused = true;
        return true;
    }
    s->nodes.push_back(std::move(node));
    return true;
}

bool refuse_on_capturing(cudaStream_t s, const char *call) {
    if (s == nullptr) return false;
    bool capturing;
    {
        std::lock_guard<std::mutex> lock(s->mu);
        capturing = s->status != cudaStreamCaptureStatusNone;
    }
    if (!capturing) return false;
    std::string why = d4j_sim::format("%s on a capturing stream is not permitted", call);
    invalidate(s, why);
    record_error(cudaErrorStreamCaptureUnsupported, why);
    return true;
}

bool capture_launch(cudaStream_t stream, const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem,
                             const std::function<void()> &body) {
    if (stream == nullptr) return false;
    {
        std::lock_guard<std::mutex> lock(stream->mu);
        if (stream->status == cudaStreamCaptureStatusNone) return false;
    }
    // CUDA checks the configuration when the launch is made, capturing or not.
    if (!d4j_sim::valid_config(kernel, grid, block, dynamic_smem)) {
        invalidate(stream, d4j_sim::format("invalid launch configuration for kernel %s", kernel));
        return true;
    }
    SimNode n;
    n.kind = SimNode::Kernel;
    n.kernel = kernel;
    n.grid = grid;
    n.block = block;
    n.smem = dynamic_smem;
    n.body = body;
    bool refused;
    return record(stream, std::move(n), &refused);
}

namespace {

void run_data_node(const SimNode &n) {
    if (n.bytes == 0) return;
    if (n.kind == SimNode::Memcpy) std::memmove(n.dst, n.src, n.bytes);
    else std::memset(n.dst, n.value, n.bytes);
}

}  // namespace

cudaError_t enqueue_data_node(cudaStream_t s, SimNode &&node) {
    bool refused;
    // record takes the node only when the stream is capturing; else it is still ours to run
    if (record(s, std::move(node), &refused)) return refused ? cudaErrorStreamCaptureInvalidated : ok();
    run_data_node(node);
    return ok();
}

}  // namespace d4j_sim

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    if (s == nullptr) {
        record_error(cudaErrorStreamCaptureUnsupported, "the legacy default stream cannot be captured");
        return cudaErrorStreamCaptureUnsupported;
    }
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed)
        return cudaErrorInvalidValue;
    {
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->status != cudaStreamCaptureStatusNone) {
            record_error(cudaErrorIllegalState, "cudaStreamBeginCapture: the stream is already capturing");
            return cudaErrorIllegalState;
        }
        s->status = cudaStreamCaptureStatusActive;
        s->mode = mode;
        s->owner = std::this_thread::get_id();
        s->nodes.clear();
        s->invalid_reason.clear();
    }
    if (mode != cudaStreamCaptureModeRelaxed) t_captures.push_back(s);
    if (mode == cudaStreamCaptureModeGlobal) {
        std::lock_guard<std::mutex> lock(g_capture_mu);
        g_global_captures.push_back(s);
    }
    return ok();
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    if (s == nullptr || graph == nullptr) return cudaErrorInvalidValue;
    *graph = nullptr;
    std::vector<SimNode> nodes;
    cudaStreamCaptureStatus status;
    cudaStreamCaptureMode mode;
    std::string reason;
    {
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->status == cudaStreamCaptureStatusNone) {
            record_error(cudaErrorIllegalState, "cudaStreamEndCapture: the stream is not capturing");
            return cudaErrorIllegalState;
        }
        if (s->mode != cudaStreamCaptureModeRelaxed && s->owner != std::this_thread::get_id()) {
            // CUDA: a non-relaxed capture must be ended by the thread that began it
            record_error(cudaErrorStreamCaptureWrongThread,
                         "cudaStreamEndCapture from a thread that did not begin the capture");
            return cudaErrorStreamCaptureWrongThread;
        }
        status = s->status;
        mode = s->mode;
        reason = s->invalid_reason;
        nodes.swap(s->nodes);
        s->status = cudaStreamCaptureStatusNone;
    }
    if (mode != cudaStreamCaptureModeRelaxed) t_captures.erase(std::remove(t_captures.begin(), t_captures.end(), s),
                                                                t_captures.end());
    if (mode == cudaStreamCaptureModeGlobal) {
        std::lock_guard<std::mutex> lock(g_capture_mu);
        g_global_captures.erase(std::remove(g_global_captures.begin(), g_global_captures.end(), s),
                                g_global_captures.end());
    }
    if (status == cudaStreamCaptureStatusInvalidated) {
        record_error(cudaErrorStreamCaptureInvalidated,
                     d4j_sim::format("the capture was invalidated: %s", reason.c_str()));
        return cudaErrorStreamCaptureInvalidated;
    }
    *graph = new d4j_sim_graph{std::move(nodes)};
    return ok();
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    if (status == nullptr) return cudaErrorInvalidValue;
    if (s == nullptr) {
        *status = cudaStreamCaptureStatusNone;
        return ok();
    }
    std::lock_guard<std::mutex> lock(s->mu);
    *status = s->status;
    return ok();
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode) {
    if (mode == nullptr) return cudaErrorInvalidValue;
    cudaStreamCaptureMode old = t_mode;
    t_mode = *mode;
    *mode = old;
    return ok();
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    if (exec == nullptr || graph == nullptr) return cudaErrorInvalidValue;
    *exec = new d4j_sim_graph_exec{graph->nodes};  // copies the closures: the exec outlives the graph
    return ok();
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    if (exec == nullptr) return cudaErrorInvalidResourceHandle;
    if (refuse_on_capturing(stream, "cudaGraphLaunch (the simulator does not capture graph launches)"))
        return cudaErrorStreamCaptureUnsupported;
    for (const SimNode &n : exec->nodes) {
        if (n.kind != SimNode::Kernel) {
            d4j_sim::run_data_node(n);
            continue;
        }
        d4j_sim::run_launch(n.kernel, n.grid, n.block, n.smem, n.body);
        if (cudaPeekAtLastError() != cudaSuccess) return cudaPeekAtLastError();  // stops at the first failure
    }
    return ok();
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return ok();
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return ok();
}
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *count) {
    if (graph == nullptr || count == nullptr || nodes != nullptr) return cudaErrorInvalidValue;
    *count = graph->nodes.size();
    return ok();
}
