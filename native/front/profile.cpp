// d4j_profile_*: the kernel counters of the profiling simulator. Other
// backends leave the slots empty and the calls answer D4J_ERR_UNSUPPORTED.
#include "front_internal.h"

using namespace d4j::front;

namespace {
d4j_status profiling_backend(d4j_backend *backend, const char *call) {
    if (backend->iface->profile_begin == nullptr || backend->iface->profile_read == nullptr ||
        backend->iface->profile_end == nullptr)
        return fail(D4J_ERR_UNSUPPORTED,
                    "%s: backend %s has no kernel counters (open libd4j_cudasim_prof.so, the profiling simulator)",
                    call, backend->iface->name);
    return refuse_in_capture(backend, call);
}
}  // namespace

d4j_status d4j_profile_begin(d4j_backend *backend, int64_t max_blocks_per_launch) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(profiling_backend(backend, "d4j_profile_begin"));
    if (max_blocks_per_launch < 0)
        return fail(D4J_ERR_INVALID_ARGUMENT, "max_blocks_per_launch is %lld, must be >= 0 (0: every block)",
                    (long long)max_blocks_per_launch);
    return guarded([&] { return backend->iface->profile_begin(backend->state, max_blocks_per_launch); });
}

d4j_status d4j_profile_read(d4j_backend *backend, d4j_kernel_profile *records, int64_t capacity, int64_t *count) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(profiling_backend(backend, "d4j_profile_read"));
    if (count == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "count is null");
    if (capacity < 0) return fail(D4J_ERR_INVALID_ARGUMENT, "capacity is %lld, must be >= 0", (long long)capacity);
    if (capacity > 0 && records == nullptr) return fail(D4J_ERR_INVALID_ARGUMENT, "records is null");
    return guarded([&] { return backend->iface->profile_read(backend->state, records, capacity, count); });
}

d4j_status d4j_profile_end(d4j_backend *backend) {
    D4J_USE_BACKEND(backend);
    D4J_TRY(profiling_backend(backend, "d4j_profile_end"));
    return guarded([&] { return backend->iface->profile_end(backend->state); });
}
