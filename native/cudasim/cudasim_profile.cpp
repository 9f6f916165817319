// The profiling simulator's counters: the instrumentation hooks, the rebuild
// of warp instructions from the lanes' logs, and the per-launch records behind
// d4j_profile_*. See cudasim_profile.h for the method and its limits.
#include "cudasim_profile.h"

#include "cudasim_internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace d4j_sim {
namespace prof {

thread_local std::vector<Rec> *t_lane = nullptr;

namespace {

// Floating-point operations of one basic block, from the flop table.
struct BlockOps {
    uint16_t fma, add, mul, special, fp64, div32, div64, pad;
};

// The table built by native/tools/flop_table.cpp from this library's own
// disassembly and added to the file as the non-loaded section .d4j_flops:
// records of {uint64 offset of the block's first instruction after its
// trace-pc call, BlockOps} (24 bytes, unpadded).
struct FlopTable {
    bool loaded = false;
    std::string error;
    uintptr_t base = 0;
    std::unordered_map<uintptr_t, BlockOps> ops;  // by absolute address
};

FlopTable load_flop_table() {
    FlopTable t;
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&load_flop_table), &info) == 0 || info.dli_fname == nullptr) {
        t.error = "dladdr cannot locate the profiling library";
        return t;
    }
    t.base = reinterpret_cast<uintptr_t>(info.dli_fbase);
    int fd = open(info.dli_fname, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t.error = format("cannot open %s", info.dli_fname);
        return t;
    }
    struct stat st {};
    std::vector<unsigned char> file;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        file.resize((size_t)st.st_size);
        size_t got = 0;
        while (got < file.size()) {
            ssize_t n = ::read(fd, file.data() + got, file.size() - got);
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got != file.size()) file.clear();
    }
    close(fd);
    if (file.size() < sizeof(Elf64_Ehdr)) {
        t.error = format("cannot read %s", info.dli_fname);
        return t;
    }
    Elf64_Ehdr eh;
    std::memcpy(&eh, file.data(), sizeof eh);
    if (eh.e_shoff == 0 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
        eh.e_shoff + (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > file.size() || eh.e_shstrndx >= eh.e_shnum) {
        t.error = "malformed section headers";
        return t;
    }
    std::vector<Elf64_Shdr> sh(eh.e_shnum);
    std::memcpy(sh.data(), file.data() + eh.e_shoff, eh.e_shnum * sizeof(Elf64_Shdr));
    const Elf64_Shdr &names = sh[eh.e_shstrndx];
    for (const Elf64_Shdr &s : sh) {
        if (names.sh_offset + s.sh_name >= file.size()) continue;
        const char *name = reinterpret_cast<const char *>(file.data() + names.sh_offset + s.sh_name);
        if (std::strncmp(name, ".d4j_flops", 11) != 0) continue;
        const uint64_t record = 8 + sizeof(BlockOps);
        if (s.sh_offset + s.sh_size > file.size() || s.sh_size % record != 0) {
            t.error = "malformed .d4j_flops section";
            return t;
        }
        for (uint64_t off = 0; off < s.sh_size; off += record) {
            uint64_t pc;
            BlockOps ops;
            std::memcpy(&pc, file.data() + s.sh_offset + off, 8);
            std::memcpy(&ops, file.data() + s.sh_offset + off + 8, sizeof ops);
            t.ops[t.base + pc] = ops;
        }
        t.loaded = true;
        return t;
    }
    t.error = format("%s has no .d4j_flops section (built without native/tools/flop_table)", info.dli_fname);
    return t;
}

const FlopTable &flop_table() {
    static const FlopTable t = load_flop_table();
    return t;
}

// The writable segment of this library: where static __shared__ arrays (function statics) live.
struct Range {
    uintptr_t lo = 0, hi = 0;
    bool contains(uintptr_t a) const { return a >= lo && a < hi; }
};
std::vector<Range> writable_segments() {
    std::vector<Range> out;
    Dl_info info{};
    dladdr(reinterpret_cast<void *>(&writable_segments), &info);
    struct Ctx {
        uintptr_t base;
        std::vector<Range> *out;
    } ctx{reinterpret_cast<uintptr_t>(info.dli_fbase), &out};
    dl_iterate_phdr(
        [](struct dl_phdr_info *pi, size_t, void *data) -> int {
            Ctx &c = *static_cast<Ctx *>(data);
            if (pi->dlpi_addr != c.base) return 0;
            for (int i = 0; i < pi->dlpi_phnum; ++i) {
                const ElfW(Phdr) &ph = pi->dlpi_phdr[i];
                if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W))
                    c.out->push_back({pi->dlpi_addr + ph.p_vaddr, pi->dlpi_addr + ph.p_vaddr + ph.p_memsz});
            }
            return 1;
        },
        &ctx);
    return out;
}

// ---- state ------------------------------------------------------------------

std::mutex g_mu;                       // guards the state below between launches
std::atomic<bool> g_enabled{false};
int64_t g_max_blocks = 0;
std::vector<d4j_kernel_profile> g_records;
std::map<uintptr_t, size_t> g_allocs;  // device allocations: base -> bytes

// Per launch (one at a time: the launch lock in cudasim.cpp).
struct Launch {
    d4j_kernel_profile rec{};
    uint64_t blocks = 0, selected = 0, stride = 1;
    std::vector<std::pair<uintptr_t, uintptr_t>> allocs;  // sorted [lo, hi)
    std::vector<Range> statics;
    Range dynamic;
    std::unordered_set<uint64_t> read_sectors, write_sectors;
} g_launch;

// Counters of one warp slot for the running block, summed into the launch at block end.
struct WarpCounts {
    double gld_req = 0, gld_sec = 0, gld_ideal = 0, gst_req = 0, gst_sec = 0, gst_ideal = 0, atom_req = 0, atom_sec = 0;
    double smem_req = 0, smem_wave = 0, smem_ideal = 0;
    double fma = 0, add = 0, mul = 0, special = 0, fp64 = 0, fp32_inst = 0, special_inst = 0;
    double div32 = 0, div64 = 0, div32_inst = 0, div64_inst = 0;
    double barriers = 0, blocks = 0, active = 0;
    double tensor = 0, tensor_bf16 = 0;
    std::unordered_set<uint64_t> read_sectors, write_sectors;
};

// A rebuilt warp instruction.
struct Group {
    uintptr_t pc;
    uint32_t kind;
    unsigned lanes;
    unsigned n;
    uintptr_t addr[32];
    uint32_t size[32];
};

// The occurrence-th execution of a call site since the last flush.
struct SiteVisit {
    uintptr_t pc;
    uint32_t occurrence;
    bool operator==(const SiteVisit &o) const { return pc == o.pc && occurrence == o.occurrence; }
};
struct SiteVisitHash {
    size_t operator()(const SiteVisit &v) const {
        return (size_t)((v.pc * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)v.occurrence * 0xC2B2AE3D27D4EB4Full));
    }
};

struct WarpSlot {
    std::vector<Rec> lanes[32];
    WarpCounts counts;
    std::unordered_map<uintptr_t, uint32_t> occurrence;   // per lane, per site
    std::unordered_map<SiteVisit, uint32_t, SiteVisitHash> group_of;  // -> index in groups
    std::vector<Group> groups;
};
std::vector<std::unique_ptr<WarpSlot>> g_slots;

enum class Space { Global, Shared, Other };

Space space_of(uintptr_t a) {
    if (g_launch.dynamic.contains(a)) return Space::Shared;
    for (const Range &r : g_launch.statics)
        if (r.contains(a)) return Space::Shared;
    const auto &v = g_launch.allocs;
    auto it = std::upper_bound(v.begin(), v.end(), std::make_pair(a, UINTPTR_MAX));
    if (it != v.begin() && a < std::prev(it)->second) return Space::Global;
    return Space::Other;
}

// Distinct 32-byte sectors of the group's accesses; *ideal: the sectors its distinct bytes need.
double sectors_of(const Group &g, double *ideal, std::unordered_set<uint64_t> *touched) {
    uint64_t sec[32 * 2];
    unsigned ns = 0;
    std::pair<uintptr_t, uintptr_t> spans[32];
    for (unsigned i = 0; i < g.n; ++i) {
        spans[i] = {g.addr[i], g.addr[i] + g.size[i]};
        for (uint64_t s = g.addr[i] >> 5; s <= (g.addr[i] + g.size[i] - 1) >> 5 && ns < 64; ++s) sec[ns++] = s;
    }
    std::sort(sec, sec + ns);
    const unsigned distinct = (unsigned)(std::unique(sec, sec + ns) - sec);
    if (touched)
        for (unsigned i = 0; i < distinct; ++i) touched->insert(sec[i]);
    // distinct bytes: the union of the lanes' spans
    std::sort(spans, spans + g.n);
    uint64_t bytes = 0;
    uintptr_t end = 0;
    for (unsigned i = 0; i < g.n; ++i) {
        uintptr_t lo = std::max(spans[i].first, end), hi = spans[i].second;
        if (hi > lo) bytes += hi - lo;
        end = std::max(end, hi);
    }
    *ideal = (double)((bytes + 31) / 32);
    return (double)distinct;
}

// Shared memory: 32 banks of 4 bytes; lanes reading the same word are served
// at once (broadcast); the wavefronts are the most distinct words any bank
// must deliver. *ideal: the wavefronts the distinct words need without conflicts.
double wavefronts_of(const Group &g, double *ideal) {
    uint64_t words[32 * 4];
    unsigned nw = 0;
    for (unsigned i = 0; i < g.n; ++i)
        for (uintptr_t w = g.addr[i] >> 2; w <= (g.addr[i] + g.size[i] - 1) >> 2 && nw < 128; ++w) words[nw++] = w;
    std::sort(words, words + nw);
    const unsigned distinct = (unsigned)(std::unique(words, words + nw) - words);
    unsigned per_bank[32] = {0};
    unsigned most = 0;
    for (unsigned i = 0; i < distinct; ++i) most = std::max(most, ++per_bank[words[i] & 31u]);
    *ideal = (double)((distinct + 31) / 32);
    return (double)most;
}

void count_group(const Group &g, WarpCounts &c) {
    const unsigned active = (unsigned)__builtin_popcount(g.lanes);
    if (g.kind == Block) {
        c.blocks += 1;
        c.active += active;
        const FlopTable &t = flop_table();
        auto it = t.ops.find(g.pc);
        if (it == t.ops.end()) return;
        const BlockOps &o = it->second;
        c.fma += (double)o.fma * active;
        c.add += (double)o.add * active;
        c.mul += (double)o.mul * active;
        c.special += (double)o.special * active;
        c.fp64 += (double)o.fp64 * active;
        c.fp32_inst += (double)o.fma + o.add + o.mul;
        c.special_inst += o.special;
        c.div32 += (double)o.div32 * active;
        c.div64 += (double)o.div64 * active;
        c.div32_inst += o.div32;
        c.div64_inst += o.div64;
        return;
    }
    if (g.kind == Tensor || g.kind == TensorBf16) {  // a warp's mma_sync: each lane recorded its share of 2*m*n*k
        for (unsigned i = 0; i < g.n; ++i) (g.kind == Tensor ? c.tensor : c.tensor_bf16) += g.size[i];
        return;
    }
    // the space of the group: its first access decides (a warp instruction addresses one space)
    Space sp = space_of(g.addr[0]);
    if (sp == Space::Other) return;  // the lane's stack (local memory) or kernel parameters
    double ideal = 0;
    if (sp == Space::Shared) {
        const double w = wavefronts_of(g, &ideal);
        c.smem_req += 1;
        c.smem_wave += w;
        c.smem_ideal += ideal;
        return;
    }
    if (g.kind == Load) {
        c.gld_req += 1;
        c.gld_sec += sectors_of(g, &ideal, &c.read_sectors);
        c.gld_ideal += ideal;
    } else if (g.kind == Store) {
        c.gst_req += 1;
        c.gst_sec += sectors_of(g, &ideal, &c.write_sectors);
        c.gst_ideal += ideal;
    } else {
        c.atom_req += 1;
        const double s = sectors_of(g, &ideal, &c.read_sectors);
        for (unsigned i = 0; i < g.n; ++i) c.write_sectors.insert(g.addr[i] >> 5);
        c.atom_sec += s;
    }
}

}  // namespace

bool enabled() { return g_enabled.load(std::memory_order_acquire); }

bool launch_begin(const char *kernel, dim3 grid, dim3 block, size_t dynamic_smem) {
    if (!enabled()) return false;
    std::lock_guard<std::mutex> lock(g_mu);
    Launch &L = g_launch;
    L.rec = d4j_kernel_profile{};
    std::snprintf(L.rec.kernel, sizeof L.rec.kernel, "%s", kernel);
    L.rec.grid[0] = grid.x, L.rec.grid[1] = grid.y, L.rec.grid[2] = grid.z;
    L.rec.block[0] = block.x, L.rec.block[1] = block.y, L.rec.block[2] = block.z;
    L.rec.dynamic_shared_bytes = (int64_t)dynamic_smem;
    L.blocks = (uint64_t)grid.x * grid.y * grid.z;
    // A representative subset: one block of every stride (see block_selected).
    L.stride = (g_max_blocks > 0 && L.blocks > (uint64_t)g_max_blocks)
                   ? (L.blocks + (uint64_t)g_max_blocks - 1) / (uint64_t)g_max_blocks
                   : 1;
    L.selected = 0;
    L.allocs.clear();
    for (const auto &a : g_allocs) L.allocs.push_back({a.first, a.first + a.second});
    if (L.statics.empty()) L.statics = writable_segments();
    L.read_sectors.clear();
    L.write_sectors.clear();
    return true;
}

// The middle block of every stride: edge blocks (the first and last of a grid) often do less work
// (bounds, padding), so the middle of each stretch represents it better than its first block.
bool block_selected(uint64_t linear) { return linear % g_launch.stride == g_launch.stride / 2; }

void block_begin(const void *dynamic_smem, size_t bytes, unsigned warps) {
    g_launch.selected += 1;
    g_launch.dynamic = {reinterpret_cast<uintptr_t>(dynamic_smem), reinterpret_cast<uintptr_t>(dynamic_smem) + bytes};
    while (g_slots.size() < warps) g_slots.push_back(std::make_unique<WarpSlot>());
    for (unsigned w = 0; w < warps; ++w) {
        WarpSlot &s = *g_slots[w];
        s.counts = WarpCounts{};
        for (auto &l : s.lanes) l.clear();
    }
}

std::vector<Rec> *lane_log(unsigned warp, unsigned lane) { return &g_slots[warp]->lanes[lane]; }

void warp_flush(unsigned warp, unsigned lanes) {
    WarpSlot &s = *g_slots[warp];
    s.group_of.clear();
    s.groups.clear();
    // The common case: every lane ran the same sites in the same order (no divergence since the last
    // stop), so the j-th record of every lane is the same warp instruction.
    bool uniform = lanes > 0;
    const std::vector<Rec> &first = s.lanes[0];
    for (unsigned lane = 1; lane < lanes && uniform; ++lane) {
        const std::vector<Rec> &l = s.lanes[lane];
        if (l.size() != first.size()) {
            uniform = false;
            break;
        }
        for (size_t j = 0; j < l.size(); ++j) {
            if (l[j].pc != first[j].pc) {
                uniform = false;
                break;
            }
        }
    }
    if (uniform) {
        Group g;
        for (size_t j = 0; j < first.size(); ++j) {
            g.pc = first[j].pc;
            g.kind = first[j].kind;
            g.lanes = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
            g.n = lanes;
            for (unsigned lane = 0; lane < lanes; ++lane) {
                g.addr[lane] = s.lanes[lane][j].addr;
                g.size[lane] = s.lanes[lane][j].size;
            }
            count_group(g, s.counts);
        }
        for (unsigned lane = 0; lane < lanes; ++lane) s.lanes[lane].clear();
        return;
    }
    for (unsigned lane = 0; lane < lanes; ++lane) {
        s.occurrence.clear();
        for (const Rec &r : s.lanes[lane]) {
            const uint32_t occ = s.occurrence[r.pc]++;
            auto ins = s.group_of.emplace(SiteVisit{r.pc, occ}, (uint32_t)s.groups.size());
            if (ins.second) {
                Group g;
                g.pc = r.pc;
                g.kind = r.kind;
                g.lanes = 0;
                g.n = 0;
                s.groups.push_back(g);
            }
            Group &g = s.groups[ins.first->second];
            g.lanes |= 1u << lane;
            g.addr[g.n] = r.addr;
            g.size[g.n] = r.size;
            ++g.n;
        }
        s.lanes[lane].clear();
    }
    for (const Group &g : s.groups) count_group(g, s.counts);
}

void warp_barrier(unsigned warp) { g_slots[warp]->counts.barriers += 1; }

void block_end() {
    d4j_kernel_profile &r = g_launch.rec;
    for (auto &slot : g_slots) {
        WarpCounts &c = slot->counts;
        r.gld_requests += c.gld_req, r.gld_sectors += c.gld_sec, r.gld_ideal_sectors += c.gld_ideal;
        r.gst_requests += c.gst_req, r.gst_sectors += c.gst_sec, r.gst_ideal_sectors += c.gst_ideal;
        r.atom_requests += c.atom_req, r.atom_sectors += c.atom_sec;
        r.smem_requests += c.smem_req, r.smem_wavefronts += c.smem_wave, r.smem_ideal_wavefronts += c.smem_ideal;
        r.fp32_fma += c.fma, r.fp32_add += c.add, r.fp32_mul += c.mul, r.fp32_special += c.special;
        r.fp64_ops += c.fp64, r.fp32_warp_inst += c.fp32_inst, r.special_warp_inst += c.special_inst;
        r.tensor_flops += c.tensor + c.tensor_bf16;
        r.tensor_bf16_flops += c.tensor_bf16;
        r.barriers += c.barriers, r.warp_basic_blocks += c.blocks, r.active_lanes += c.active;
        r.int_div32 += c.div32, r.int_div64 += c.div64;
        r.int_div32_warp_inst += c.div32_inst, r.int_div64_warp_inst += c.div64_inst;
        g_launch.read_sectors.insert(c.read_sectors.begin(), c.read_sectors.end());
        g_launch.write_sectors.insert(c.write_sectors.begin(), c.write_sectors.end());
        c = WarpCounts{};
    }
}

namespace {
// Distinct sectors, scaled to the whole grid and capped per allocation: a
// buffer every block reads (weights) counts once, a buffer split among the
// blocks (an output) counts in full.
double unique_bytes(const std::unordered_set<uint64_t> &sectors, double scale) {
    const auto &allocs = g_launch.allocs;
    std::vector<double> per(allocs.size(), 0.0);
    for (uint64_t s : sectors) {
        const uintptr_t a = (uintptr_t)(s << 5);
        auto it = std::upper_bound(allocs.begin(), allocs.end(), std::make_pair(a, UINTPTR_MAX));
        // a sector that starts before the allocation still belongs to it
        if (it != allocs.end() && it->first < a + 32 && (it == allocs.begin() || a >= std::prev(it)->second)) {
            per[(size_t)(it - allocs.begin())] += 32;
            continue;
        }
        if (it != allocs.begin()) per[(size_t)(std::prev(it) - allocs.begin())] += 32;
    }
    double total = 0;
    for (size_t i = 0; i < allocs.size(); ++i) {
        const double cap = (double)(((allocs[i].second + 31) >> 5) - (allocs[i].first >> 5)) * 32.0;
        total += std::min(cap, per[i] * scale);
    }
    return total;
}
}  // namespace

void launch_end() {
    Launch &L = g_launch;
    d4j_kernel_profile &r = L.rec;
    r.blocks = (int64_t)L.blocks;
    r.blocks_counted = (int64_t)L.selected;
    const double scale = L.selected ? (double)L.blocks / (double)L.selected : 0.0;
    if (scale != 1.0) {
        double *fields[] = {&r.gld_requests, &r.gld_sectors, &r.gld_ideal_sectors, &r.gst_requests, &r.gst_sectors,
                            &r.gst_ideal_sectors, &r.atom_requests, &r.atom_sectors, &r.smem_requests,
                            &r.smem_wavefronts, &r.smem_ideal_wavefronts, &r.fp32_fma, &r.fp32_add, &r.fp32_mul,
                            &r.fp32_special, &r.fp64_ops, &r.fp32_warp_inst, &r.special_warp_inst, &r.tensor_flops, &r.tensor_bf16_flops,
                            &r.barriers, &r.warp_basic_blocks, &r.active_lanes, &r.int_div32, &r.int_div64,
                            &r.int_div32_warp_inst, &r.int_div64_warp_inst};
        for (double *f : fields) *f *= scale;
    }
    r.unique_read_bytes = unique_bytes(L.read_sectors, scale);
    r.unique_write_bytes = unique_bytes(L.write_sectors, scale);
    std::lock_guard<std::mutex> lock(g_mu);
    g_records.push_back(r);
}

void note_alloc(const void *p, size_t bytes) {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(g_mu);
    g_allocs[reinterpret_cast<uintptr_t>(p)] = bytes;
}

void note_free(const void *p) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_allocs.erase(reinterpret_cast<uintptr_t>(p));
}

d4j_status begin(int64_t max_blocks, std::string *error) {
    const FlopTable &t = flop_table();
    if (!t.loaded) {
        *error = t.error;
        return D4J_ERR_UNAVAILABLE;
    }
    std::lock_guard<std::mutex> lock(g_mu);
    g_max_blocks = max_blocks;
    g_records.clear();
    g_enabled.store(true, std::memory_order_release);
    return D4J_OK;
}

d4j_status read(d4j_kernel_profile *dst, int64_t capacity, int64_t *count) {
    std::lock_guard<std::mutex> lock(g_mu);
    const int64_t n = (int64_t)g_records.size();
    for (int64_t i = 0; i < std::min(n, capacity); ++i) dst[i] = g_records[(size_t)i];
    *count = n;
    return D4J_OK;
}

d4j_status end() {
    g_enabled.store(false, std::memory_order_release);
    std::lock_guard<std::mutex> lock(g_mu);
    g_records.clear();
    return D4J_OK;
}

}  // namespace prof
}  // namespace d4j_sim

// ---- the instrumentation's entry points ---------------------------------------
// GCC's -fsanitize=thread calls these before each access of the kernel
// translation units; -fsanitize-coverage=trace-pc calls the last one at the
// start of each basic block. Outside a profiled lane they return at once.

namespace {
inline void rec(void *addr, uint32_t size, uint32_t kind, void *pc) {
    std::vector<d4j_sim::prof::Rec> *l = d4j_sim::prof::t_lane;
    if (l) l->push_back({reinterpret_cast<uintptr_t>(pc), reinterpret_cast<uintptr_t>(addr), size, kind});
}
}  // namespace

#define D4J_PROF_EXPORT extern "C" __attribute__((visibility("default"), noinline))
#define D4J_PROF_ACCESS(n)                                                                                 \
    D4J_PROF_EXPORT void __tsan_read##n(void *a) { rec(a, n, d4j_sim::prof::Load, __builtin_return_address(0)); }   \
    D4J_PROF_EXPORT void __tsan_write##n(void *a) { rec(a, n, d4j_sim::prof::Store, __builtin_return_address(0)); } \
    D4J_PROF_EXPORT void __tsan_unaligned_read##n(void *a) {                                               \
        rec(a, n, d4j_sim::prof::Load, __builtin_return_address(0));                                       \
    }                                                                                                      \
    D4J_PROF_EXPORT void __tsan_unaligned_write##n(void *a) {                                              \
        rec(a, n, d4j_sim::prof::Store, __builtin_return_address(0));                                      \
    }                                                                                                      \
    D4J_PROF_EXPORT void __tsan_volatile_read##n(void *a) {                                                \
        rec(a, n, d4j_sim::prof::Load, __builtin_return_address(0));                                       \
    }                                                                                                      \
    D4J_PROF_EXPORT void __tsan_volatile_write##n(void *a) {                                               \
        rec(a, n, d4j_sim::prof::Store, __builtin_return_address(0));                                      \
    }
D4J_PROF_ACCESS(1)
D4J_PROF_ACCESS(2)
D4J_PROF_ACCESS(4)
D4J_PROF_ACCESS(8)
D4J_PROF_ACCESS(16)

D4J_PROF_EXPORT void __tsan_read_range(void *a, unsigned long n) {
    rec(a, (uint32_t)n, d4j_sim::prof::Load, __builtin_return_address(0));
}
D4J_PROF_EXPORT void __tsan_write_range(void *a, unsigned long n) {
    rec(a, (uint32_t)n, d4j_sim::prof::Store, __builtin_return_address(0));
}
D4J_PROF_EXPORT void __sanitizer_cov_trace_pc(void) { rec(nullptr, 0, d4j_sim::prof::Block, __builtin_return_address(0)); }
D4J_PROF_EXPORT void __tsan_init(void) {}
D4J_PROF_EXPORT void __tsan_func_entry(void *) {}
D4J_PROF_EXPORT void __tsan_func_exit(void) {}
D4J_PROF_EXPORT void __tsan_vptr_read(void **) {}
D4J_PROF_EXPORT void __tsan_vptr_update(void **, void *) {}

// Atomics: -fsanitize=thread turns every __atomic builtin of the instrumented
// files into these calls, which must do the operation. A compare-exchange is
// what the simulator's atomicAdd & co. end in: its successful attempt counts as
// one atomic access (a GPU does the update in one instruction; the retries of a
// contended loop on CPU threads would make the counts depend on scheduling).
#define D4J_PROF_ATOMICS(bits, T)                                                                            \
    D4J_PROF_EXPORT T __tsan_atomic##bits##_load(const volatile T *a, int mo) {                              \
        (void)mo;                                                                                            \
        return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                         \
    }                                                                                                        \
    D4J_PROF_EXPORT void __tsan_atomic##bits##_store(volatile T *a, T v, int mo) {                           \
        (void)mo;                                                                                            \
        __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                            \
    }                                                                                                        \
    D4J_PROF_EXPORT T __tsan_atomic##bits##_exchange(volatile T *a, T v, int mo) {                           \
        (void)mo;                                                                                            \
        return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                  \
    }                                                                                                        \
    D4J_PROF_EXPORT T __tsan_atomic##bits##_fetch_add(volatile T *a, T v, int mo) {                          \
        (void)mo;                                                                                            \
        return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                   \
    }                                                                                                        \
    D4J_PROF_EXPORT T __tsan_atomic##bits##_fetch_sub(volatile T *a, T v, int mo) {                          \
        (void)mo;                                                                                            \
        return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                   \
    }                                                                                                        \
    D4J_PROF_EXPORT T __tsan_atomic##bits##_fetch_and(volatile T *a, T v, int mo) {                          \
        (void)mo;                                                                                            \
        return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                   \
    }                                                                                                        \
    D4J_PROF_EXPORT T __tsan_atomic##bits##_fetch_or(volatile T *a, T v, int mo) {                           \
        (void)mo;                                                                                            \
        return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                    \
    }                                                                                                        \
    D4J_PROF_EXPORT T __tsan_atomic##bits##_fetch_xor(volatile T *a, T v, int mo) {                          \
        (void)mo;                                                                                            \
        return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                   \
    }                                                                                                        \
    D4J_PROF_EXPORT int __tsan_atomic##bits##_compare_exchange_strong(volatile T *a, T *c, T v, int mo,      \
                                                                      int fmo) {                             \
        (void)mo, (void)fmo;                                                                                 \
        const bool done = __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);   \
        if (done) rec((void *)a, sizeof(T), d4j_sim::prof::Atomic, __builtin_return_address(0));             \
        return done;                                                                                         \
    }                                                                                                        \
    D4J_PROF_EXPORT int __tsan_atomic##bits##_compare_exchange_weak(volatile T *a, T *c, T v, int mo,        \
                                                                    int fmo) {                               \
        (void)mo, (void)fmo;                                                                                 \
        const bool done = __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);   \
        if (done) rec((void *)a, sizeof(T), d4j_sim::prof::Atomic, __builtin_return_address(0));             \
        return done;                                                                                         \
    }
D4J_PROF_ATOMICS(8, uint8_t)
D4J_PROF_ATOMICS(16, uint16_t)
D4J_PROF_ATOMICS(32, uint32_t)
D4J_PROF_ATOMICS(64, uint64_t)
D4J_PROF_EXPORT void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
D4J_PROF_EXPORT void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
