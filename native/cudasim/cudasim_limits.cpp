// What a GPU refuses at launch, refused by the simulator too (cudasim.cpp runs
// only launches that pass valid_config, a capture records only those):
//   - a block shape or grid beyond the device limits;
//   - dynamic shared memory over 48 KiB (with the kernel's static shared
//     memory) for a kernel not first allowed more with cudaFuncSetAttribute(
//     cudaFuncAttributeMaxDynamicSharedMemorySize), or over what it was allowed;
//   - more registers than the SM's register file holds (65536 per block):
//     registers per thread from ptxas, allocated per warp in units of 256.
// Registers and static shared memory per kernel come from the CUDA backend's
// ptxas report (the table generated from it, cudasim_kernel_resources.cpp,
// empty when nvcc did not build the backend), the largest over the built
// architectures, keyed by the kernel's name as D4J_LAUNCH spells it (template
// arguments dropped, as in the report).
#include "cudasim_internal.h"

#include <map>
#include <mutex>
#include <string>

namespace d4j_sim {

namespace {

constexpr size_t kDefaultSmem = 48 * 1024;       // without the opt-in attribute
constexpr size_t kOptinSmem = 227 * 1024;        // sm_90's most per block, static + dynamic
constexpr uint64_t kRegisterFile = 65536;        // registers per block (sm_80, sm_90)
constexpr uint64_t kRegisterUnit = 256;          // allocation granularity per warp

std::mutex g_attr_mu;
std::map<std::string, size_t> g_max_dynamic_smem;  // kernel name -> allowed bytes

// The report's name of a kernel: template arguments dropped.
std::string base_name(const char *kernel) {
    std::string n(kernel);
    size_t lt = n.find('<');
    return lt == std::string::npos ? n : n.substr(0, lt);
}

// A kernel of the test-only simulator with a register count of a large kernel,
// to prove that a launch over the register file is refused (the real kernels
// all fit their launches).
#ifdef D4J_SIM_TEETH
constexpr KernelResources kTeethResources[] = {{"residual_register_hog_kernel", 128, 0}};
#endif

const KernelResources *find_resources(const std::string &name) {
#ifdef D4J_SIM_TEETH
    for (const KernelResources &r : kTeethResources)
        if (name == r.name) return &r;
#endif
    for (size_t i = 0; i < g_kernel_resources_count; ++i)
        if (name == g_kernel_resources[i].name) return &g_kernel_resources[i];
    return nullptr;
}

}  // namespace

cudaError_t func_set_attribute(const char *kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
        record_error(cudaErrorInvalidValue, format("cudaFuncSetAttribute(%s): attribute %d is not simulated", kernel,
                                                   (int)attr));
        return cudaErrorInvalidValue;
    }
    const KernelResources *r = find_resources(base_name(kernel));
    const size_t static_smem = r ? r->shared_bytes : 0;
    if (value < 0 || (size_t)value + static_smem > kOptinSmem) {
        record_error(cudaErrorInvalidValue,
                     format("cudaFuncSetAttribute(%s, cudaFuncAttributeMaxDynamicSharedMemorySize, %d): the device "
                            "allows at most %zu bytes of shared memory per block (%zu of them static)",
                            kernel, value, kOptinSmem, static_smem));
        return cudaErrorInvalidValue;
    }
    std::lock_guard<std::mutex> lock(g_attr_mu);
    g_max_dynamic_smem[kernel] = (size_t)value;
    return cudaSuccess;
}

bool valid_config(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem) {
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
        grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || dynamic_smem > kOptinSmem) {
        record_error(cudaErrorInvalidConfiguration,
                     format("invalid launch configuration for kernel %s: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes "
                            "of dynamic shared memory",
                            kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z, dynamic_smem));
        return false;
    }
    const KernelResources *r = find_resources(base_name(kernel));
    const size_t static_smem = r ? r->shared_bytes : 0;
    size_t allowed = static_smem < kDefaultSmem ? kDefaultSmem - static_smem : 0;
    bool opted_in = false;
    {
        std::lock_guard<std::mutex> lock(g_attr_mu);
        auto it = g_max_dynamic_smem.find(kernel);
        if (it != g_max_dynamic_smem.end()) {
            allowed = it->second;
            opted_in = true;
        }
    }
    if (dynamic_smem > allowed || static_smem + dynamic_smem > kOptinSmem) {
        record_error(cudaErrorInvalidValue,
                     opted_in ? format("kernel %s launched with %zu bytes of dynamic shared memory, more than the %zu "
                                       "it was allowed with cudaFuncSetAttribute",
                                       kernel, dynamic_smem, allowed)
                              : format("kernel %s launched with %zu bytes of dynamic shared memory (and %zu static): "
                                       "above 48 KiB a GPU refuses the launch unless the kernel was allowed more with "
                                       "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)",
                                       kernel, dynamic_smem, static_smem));
        return false;
    }
    if (r != nullptr && r->registers > 0) {
        const uint64_t warps = (threads + 31) / 32;
        const uint64_t per_warp = ((uint64_t)r->registers * 32 + kRegisterUnit - 1) / kRegisterUnit * kRegisterUnit;
        if (warps * per_warp > kRegisterFile) {
            record_error(cudaErrorLaunchOutOfResources,
                         format("too many resources requested for launch of kernel %s: %u registers per thread "
                                "(ptxas) x %llu threads need %llu registers, the SM has %llu per block",
                                kernel, r->registers, (unsigned long long)threads,
                                (unsigned long long)(warps * per_warp), (unsigned long long)kRegisterFile));
            return false;
        }
    }
    return true;
}

}  // namespace d4j_sim
