// The warp matrix operations of the simulator's <mma.h> (see mma.h for what
// they promise): per-launch scrambled fragment layouts, warp-collective
// loads, stores and multiply-accumulates, and their profiling records.
//
// How a collective runs on fibers. The 32 lanes of a warp are fibers of one
// OS thread (cudasim.cpp), so a per-OS-thread staging area is per warp. An
// mma_sync scatters each lane's a, b and c elements into the staging matrices
// at their (row, column), meets the other lanes at a warp exchange, then each
// lane computes its own d elements from the whole matrices. The staging is
// double-buffered by the lane's count of mma_sync calls: a lane cannot reach
// its next-but-one mma before every lane has passed the exchange of the next
// one, by which time all of them have read this one's buffer.
#include "mma.h"

#include "cudasim_internal.h"
#if D4J_SIM_PROFILE
#include "cudasim_profile.h"
#endif

#include <cstring>
#include <string>

namespace d4j_sim {
namespace wmma_impl {
namespace {

using nvcuda::wmma::__float_to_tf32;

// The logical matrix of a fragment: rows x cols (a: m x k, b: k x n, accumulator: m x n).
inline unsigned rows_of(const Desc &d) { return d.use == UseB ? d.k : d.m; }
inline unsigned cols_of(const Desc &d) { return d.use == UseA ? d.k : d.n; }
inline unsigned elem_bytes(const Desc &d) { return d.elem == ElemBF16 ? 2u : 4u; }

// ---- the scrambled layouts ----------------------------------------------------

constexpr unsigned kTypes = 3 * 2 * 3 * 2;  // use x layout x element x (k == 16)
constexpr unsigned kCells = 256;            // the largest fragment: 16 x 16

// The type's slot: an accumulator's layout is the same whatever memory layout a call uses.
inline unsigned type_id(const Desc &d) {
    const unsigned col = d.use == UseAcc ? 0u : (d.col_major ? 1u : 0u);
    return ((d.use * 2u + col) * 3u + d.elem) * 2u + (d.k == 16 ? 1u : 0u);
}

inline uint64_t splitmix(uint64_t &s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Per OS thread (= per simulated warp): the layouts of the running launch,
// cell[lane * per_lane + i] = row * cols + col of element i of that lane.
struct Layouts {
    uint64_t serial = ~0ull;
    bool made[kTypes] = {};
    uint16_t cell[kTypes][kCells];
};
thread_local Layouts t_layouts;

const uint16_t *layout_of(const Desc &d) {
    Layouts &L = t_layouts;
    const uint64_t serial = launch_serial();
    if (L.serial != serial) {
        L.serial = serial;
        std::memset(L.made, 0, sizeof L.made);
    }
    const unsigned id = type_id(d);
    uint16_t *c = L.cell[id];
    if (!L.made[id]) {
        const unsigned n = rows_of(d) * cols_of(d);
        for (unsigned i = 0; i < n; ++i) c[i] = (uint16_t)i;
        // the same permutation in every warp of the launch: seeded by the launch and the type only
        uint64_t s = serial * 0xD1B54A32D192ED03ull + id * 0x8CB92BA72F3D8DD7ull + 0x5EED;
        for (unsigned i = n - 1; i > 0; --i) {
            const unsigned j = (unsigned)(splitmix(s) % (i + 1));
            const uint16_t t = c[i];
            c[i] = c[j];
            c[j] = t;
        }
        L.made[id] = true;
    }
    return c;
}

inline size_t offset_of(unsigned r, unsigned c, unsigned ldm, bool col_major) {
    return col_major ? (size_t)c * ldm + r : (size_t)r * ldm + c;
}

#if D4J_SIM_PROFILE
// ---- the documented mma.sync register layout, for counting ------------------------
// Element i of lane `lane` as (row, col) of the logical matrix, as the PTX
// manual lays out m16n8k8 (tf32) and m16n8k16 (bf16) fragments, two n8 halves
// side by side for n = 16.
void counting_cell(const Desc &d, unsigned lane, unsigned i, unsigned *r, unsigned *c) {
    const unsigned g = lane >> 2, t = lane & 3u;
    if (d.use == UseAcc) {
        const unsigned half = i >> 2, j = i & 3u;
        *r = g + ((j & 2u) ? 8u : 0u);
        *c = 8u * half + 2u * t + (j & 1u);
    } else if (d.elem == ElemTF32) {
        if (d.use == UseA) {  // 16 x 8
            *r = g + ((i & 1u) ? 8u : 0u);
            *c = t + ((i & 2u) ? 4u : 0u);
        } else {  // 8 x 16
            *r = t + ((i & 1u) ? 4u : 0u);
            *c = g + ((i & 2u) ? 8u : 0u);
        }
    } else {
        if (d.use == UseA) {  // 16 x 16
            *r = g + ((i & 2u) ? 8u : 0u);
            *c = 2u * t + (i & 1u) + ((i & 4u) ? 8u : 0u);
        } else {  // 16 x 16: k rows
            *r = 2u * t + (i & 1u) + ((i & 2u) ? 8u : 0u);
            *c = g + ((i & 4u) ? 8u : 0u);
        }
    }
}

// The lane's accesses of one load or store, in the documented layout (a bf16
// pair adjacent in memory is one 32-bit access, as a GPU loads it).
void record_accesses(const Desc &d, const void *p, unsigned ldm, bool col_major, prof::Kind kind, uintptr_t pc) {
    std::vector<prof::Rec> *log = prof::t_lane;
    if (log == nullptr) return;
    const unsigned lane = lane_id(), eb = elem_bytes(d);
    const char *base = static_cast<const char *>(p);
    for (unsigned i = 0; i < d.per_lane; ++i) {
        unsigned r, c;
        counting_cell(d, lane, i, &r, &c);
        uintptr_t a = reinterpret_cast<uintptr_t>(base + offset_of(r, c, ldm, col_major) * eb);
        uint32_t size = eb;
        if (eb == 2 && (i & 1u) == 0 && i + 1 < d.per_lane) {
            unsigned r2, c2;
            counting_cell(d, lane, i + 1, &r2, &c2);
            const uintptr_t a2 = reinterpret_cast<uintptr_t>(base + offset_of(r2, c2, ldm, col_major) * eb);
            if (a2 == a + 2 && (a & 3u) == 0) {
                size = 4;
                ++i;
            }
        }
        log->push_back({pc, a, size, kind});
    }
}
#endif

// ---- collectives ---------------------------------------------------------------

// Every lane of a full warp meets here; stops the launch otherwise.
void warp_collective(const char *what) {
    if (warp_size_of_this_warp() != 32)
        kernel_fault(format("wmma::%s needs a full warp of 32 threads (this warp has %u)", what,
                            warp_size_of_this_warp()));
    uint64_t lanes[32];
    warp_exchange(0xffffffffu, 0, lanes, what);
}

void check_pointer(const char *what, const void *p, unsigned ldm, unsigned eb) {
    if ((reinterpret_cast<uintptr_t>(p) & 31u) != 0)
        kernel_fault(format("wmma::%s: the pointer %p is not 32-byte aligned", what, p));
    if (((size_t)ldm * eb) % 16u != 0 || ldm == 0)
        kernel_fault(format("wmma::%s: ldm %u is not a multiple of 16 bytes", what, ldm));
}

inline float as_input(const Desc &d, const void *x, unsigned i) {
    if (d.elem == ElemBF16) return __bfloat162float(static_cast<const __nv_bfloat16 *>(x)[i]);
    float v = static_cast<const float *>(x)[i];
    if (d.elem == ElemTF32) {
        // the tensor core reads 19 bits of a tf32 operand (see mma.h)
        uint32_t u;
        std::memcpy(&u, &v, sizeof u);
        u &= 0xffffe000u;
        std::memcpy(&v, &u, sizeof v);
    }
    return v;
}

struct Staging {
    float a[2][kCells], b[2][kCells], c[2][kCells];
    uint32_t calls[32];  // mma_sync calls per lane (the buffer parity)
    uint64_t serial = ~0ull;
};
thread_local Staging t_stage;

}  // namespace

namespace {
// A warp-collective load (memory -> this lane's elements) or store (the reverse)
// through the launch's scrambled layout; pc: the kernel's call site, for counting.
void transfer(const Desc &d, char *x, char *mem, unsigned ldm, bool mem_col_major, bool is_load, uintptr_t pc) {
    const char *what = is_load ? "load_matrix_sync" : "store_matrix_sync";
    check_pointer(what, mem, ldm, elem_bytes(d));
    warp_collective(what);
    const uint16_t *cell = layout_of(d);
    const unsigned lane = lane_id(), cols = cols_of(d), eb = elem_bytes(d);
    for (unsigned i = 0; i < d.per_lane; ++i) {
        const unsigned rc = cell[lane * d.per_lane + i];
        char *m = mem + offset_of(rc / cols, rc % cols, ldm, mem_col_major) * eb;
        if (is_load) {
            std::memcpy(x + (size_t)i * eb, m, eb);
        } else {
            std::memcpy(m, x + (size_t)i * eb, eb);
        }
    }
#if D4J_SIM_PROFILE
    record_accesses(d, mem, ldm, mem_col_major, is_load ? prof::Load : prof::Store, pc);
#else
    (void)pc;
#endif
}
}  // namespace

void load(const Desc &d, void *x, const void *p, unsigned ldm, bool mem_col_major) {
    transfer(d, static_cast<char *>(x), const_cast<char *>(static_cast<const char *>(p)), ldm, mem_col_major, true,
             reinterpret_cast<uintptr_t>(__builtin_return_address(0)));
}

void store(const Desc &d, const void *x, void *p, unsigned ldm, bool mem_col_major) {
    transfer(d, const_cast<char *>(static_cast<const char *>(x)), static_cast<char *>(p), ldm, mem_col_major, false,
             reinterpret_cast<uintptr_t>(__builtin_return_address(0)));
}

void mma(const Desc &da, const Desc &db, const Desc &dc, void *dx, const void *ax, const void *bx, const void *cx) {
    const uintptr_t pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
    if (warp_size_of_this_warp() != 32)
        kernel_fault(format("wmma::mma_sync needs a full warp of 32 threads (this warp has %u)",
                            warp_size_of_this_warp()));
    Staging &S = t_stage;
    const unsigned lane = lane_id();
    if (S.serial != launch_serial()) {
        // a new launch (or block on this thread): every lane starts at buffer 0
        S.serial = launch_serial();
        std::memset(S.calls, 0, sizeof S.calls);
    }
    const unsigned buf = S.calls[lane]++ & 1u;
    const unsigned M = da.m, N = db.n, K = da.k;
    const uint16_t *la = layout_of(da), *lb = layout_of(db), *lc = layout_of(dc);
    for (unsigned i = 0; i < da.per_lane; ++i) S.a[buf][la[lane * da.per_lane + i]] = as_input(da, ax, i);
    for (unsigned i = 0; i < db.per_lane; ++i) S.b[buf][lb[lane * db.per_lane + i]] = as_input(db, bx, i);
    for (unsigned i = 0; i < dc.per_lane; ++i)
        S.c[buf][lc[lane * dc.per_lane + i]] = static_cast<const float *>(cx)[i];
    uint64_t lanes[32];
    warp_exchange(0xffffffffu, 0, lanes, "mma_sync");
    float *d = static_cast<float *>(dx);
    for (unsigned i = 0; i < dc.per_lane; ++i) {
        const unsigned rc = lc[lane * dc.per_lane + i], r = rc / N, col = rc % N;
        float acc = S.c[buf][rc];
        for (unsigned k = 0; k < K; ++k) acc += S.a[buf][r * K + k] * S.b[buf][k * N + col];  // exact products
        d[i] = acc;
    }
    (void)M;
#if D4J_SIM_PROFILE
    if (prof::t_lane)
        prof::t_lane->push_back(
            {pc, 0, (uint32_t)(2u * M * N * K / 32u), da.elem == ElemBF16 ? prof::TensorBf16 : prof::Tensor});
#else
    (void)pc;
#endif
}

}  // namespace wmma_impl
}  // namespace d4j_sim
