// What the simulator's files share (cuda_runtime.h is what the kernels see):
// cudasim.cpp runs launches (fibers, warp scheduling, barriers, warp exchange),
// cudasim_graph.cpp records captured streams and replays graphs, cudasim_api.cpp
// is the rest of the runtime API (errors, device queries, memory, streams, events).
#ifndef D4J_CUDASIM_INTERNAL_H
#define D4J_CUDASIM_INTERNAL_H

#include "cuda_runtime.h"

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace d4j_sim {

// ---- errors (cudasim_api.cpp) ----

// The calling thread's first error since cudaGetLastError cleared it, and its message.
extern thread_local cudaError_t t_last_error;
extern thread_local std::string t_last_message;

// Keeps e and msg as this thread's last error unless one is pending.
void record_error(cudaError_t e, const std::string &msg);
// printf into a std::string (messages up to 1 KiB).
std::string format(const char *fmt, ...);

inline cudaError_t ok() { return cudaSuccess; }

// ---- launch limits (cudasim_limits.cpp) ----

// A kernel's resources from the CUDA backend's ptxas report, the largest over
// the architectures built.
struct KernelResources {
    const char *name;        // as in the .cu source, template arguments dropped
    unsigned registers;      // per thread
    size_t shared_bytes;     // static shared memory
};
// The generated table (cudasim_kernel_resources.cpp in the build directory),
// empty when the CUDA backend was not built with nvcc.
extern const KernelResources g_kernel_resources[];
extern const size_t g_kernel_resources_count;

// Checks a launch against what a GPU accepts (block shape, grid, shared memory
// with the kernel's opt-in, registers); records the error when it fails.
bool valid_config(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem);

// ---- launches (cudasim.cpp) ----
// Runs a launch now (a replayed graph node too).
void run_launch(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem, const std::function<void()> &body);

// A number that changes with every launch (and every replayed graph node):
// what the tensor-core fragments' scrambled layouts are drawn from.
uint64_t launch_serial();
// Stops the running block with a message (naming the kernel and block), as a
// fault on a GPU stops the launch; unwinds the calling simulated thread.
[[noreturn]] void kernel_fault(const std::string &msg);

// Whether [p, p + bytes) lies in shared memory: the running block's dynamic
// shared memory, or the writable data of the object holding the kernels,
// where static __shared__ arrays (function statics) live. (cudasim.cpp)
bool is_shared_address(const void *p, size_t bytes);
// Whether [p, p + bytes) lies inside one live device allocation (cudaMalloc,
// cudaMallocAsync). (cudasim_api.cpp)
bool is_device_allocation(const void *p, size_t bytes);

// ---- asynchronous copies (cudasim_pipeline.cpp) ----
// A simulated thread starts (its queue of cp.async copies is emptied) / returns
// (a copy still queued stops the launch: see cuda_pipeline_primitives.h).
void pipeline_lane_begin();
void pipeline_lane_end();

// ---- stream capture (cudasim_graph.cpp) ----

// One recorded operation of a captured stream or graph.
struct SimNode {
    enum Kind { Kernel, Memcpy, Memset } kind = Kernel;
    const char *kernel = nullptr;  // a string literal (#kernel of D4J_LAUNCH)
    dim3 grid, block;
    size_t smem = 0;
    std::function<void()> body;  // a copy of the launch's closure (arguments copied)
    void *dst = nullptr;
    const void *src = nullptr;   // read when the node runs, not when it was recorded
    size_t bytes = 0;
    int value = 0;
};


// Recording into a capturing stream: true when the launch was recorded (or
// refused) instead of to be run.
bool capture_launch(cudaStream_t stream, const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem,
                    const std::function<void()> &body);
// For operations enqueued on a stream: if the stream is capturing, records the
// node (returns true). *refused is set when the capture cannot take it.
bool record(cudaStream_t s, SimNode &&node, bool *refused);
// A call that CUDA's capture-mode rules prohibit now: fails it (true) and invalidates the captures.
bool prohibited(const char *call);
// An operation a capture cannot hold (synchronising a capturing stream, ...).
bool refuse_on_capturing(cudaStream_t s, const char *call);
// A memcpy or memset node: recorded when s is capturing, else run now.
cudaError_t enqueue_data_node(cudaStream_t s, SimNode &&node);

}  // namespace d4j_sim

struct d4j_sim_stream {
    unsigned flags;
    // Capture state, guarded by mu (work from any thread on a capturing stream is captured).
    std::mutex mu;
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
    std::thread::id owner;        // the thread that began the capture
    std::vector<d4j_sim::SimNode> nodes;
    std::string invalid_reason;   // why an invalidated capture was invalidated
};
struct d4j_sim_event {
    double ms;
};
struct d4j_sim_graph {
    std::vector<d4j_sim::SimNode> nodes;
};
struct d4j_sim_graph_exec {
    std::vector<d4j_sim::SimNode> nodes;
};

#endif
