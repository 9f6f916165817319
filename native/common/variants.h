// Run-time selection of kernel variants by name, shared by the backends.
#ifndef D4J_VARIANTS_H
#define D4J_VARIANTS_H

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backend_iface.h"

namespace d4j {

// The variants of every kernel family of one backend, which one is selected,
// and the precision the matrix families compute in (d4j_backend_set_precision).
//
// A family lists its SIMT variants (plain FP32 arithmetic) first and its
// tensor-core variants after them. SIMT variants compute FP32 whatever the
// precision: TF32 and BF16 only permit a family to use tensor cores. A
// tensor-core variant rounds the inputs of its products to TF32 or BF16 and
// accumulates in FP32, so it runs only while the precision is TF32 or BF16:
//   set_precision(TF32 or BF16)  each family with a tensor-core variant selects its first one;
//                                the others keep their selection
//   set_precision(FP32)          each family whose selection is a tensor-core variant goes back to
//                                its first variant
//   select(tensor-core variant)  refused while the precision is FP32
// A kernel launcher reads the selection with index() or tensor_core() and the
// format to round to with precision(), at launch time; a call that launches
// several kernels reads them once, so its launches agree. Neither is locked: a
// caller changes them between its kernel calls, as it selects variants.
class VariantTable {
public:
    // Declares a family: its SIMT variants (the first is the default, never
    // empty) and its tensor-core variants, listed after them.
    void add(const char *family, std::vector<const char *> simt, std::vector<const char *> tensor_core = {}) {
        Family f{family, std::move(simt), 0, 0, {}, {}};
        f.first_tensor_core = (int)f.names.size();
        f.names.insert(f.names.end(), tensor_core.begin(), tensor_core.end());
        for (size_t i = 0; i < f.names.size(); ++i) f.joined += (i ? "," : "") + std::string(f.names[i]);
        for (size_t i = 0; i < tensor_core.size(); ++i) f.tensor_core_joined += (i ? "," : "") + std::string(tensor_core[i]);
        families_.push_back(std::move(f));
    }

    // Every variant of a family, comma-separated, SIMT first; NULL for an unknown family.
    const char *variants(const char *family) const {
        const Family *f = find(family);
        return f ? f->joined.c_str() : nullptr;
    }

    const char *selected(const char *family) const {
        const Family *f = find(family);
        return f ? f->names[f->selected] : nullptr;
    }

    // Index of the selected variant of a family in variants() (0 when unknown).
    int index(const char *family) const {
        const Family *f = find(family);
        return f ? f->selected : 0;
    }

    // The tensor-core variants of a family, comma-separated ("" when none); NULL for an unknown family.
    const char *tensor_core_variants(const char *family) const {
        const Family *f = find(family);
        return f ? f->tensor_core_joined.c_str() : nullptr;
    }

    // Whether the selected variant of a family is a tensor-core variant (false when unknown).
    bool tensor_core(const char *family) const {
        const Family *f = find(family);
        return f != nullptr && f->selected >= f->first_tensor_core;
    }

    // The precision the matrix families compute in: a d4j_precision value.
    int32_t precision() const { return precision_; }

    d4j_status select(const d4j_host_api *host, const char *backend, const char *family, const char *variant) {
        Family *f = find(family);
        if (f != nullptr) {
            for (size_t i = 0; i < f->names.size(); ++i) {
                if (std::strcmp(f->names[i], variant) != 0) continue;
                if ((int)i >= f->first_tensor_core && precision_ == D4J_PRECISION_FP32) {
                    host->set_error("variant '%s' of kernel family '%s' runs on tensor cores and needs precision tf32 "
                                    "or bf16; the %s backend's precision is fp32 (d4j_backend_set_precision)",
                                    variant, family, backend);
                    return D4J_ERR_INVALID_ARGUMENT;
                }
                f->selected = (int)i;
                return D4J_OK;
            }
        }
        host->set_error("the %s backend has no variant '%s' of kernel family '%s' (available: %s)", backend, variant,
                        family, f ? f->joined.c_str() : "v1");
        return D4J_ERR_INVALID_ARGUMENT;
    }

    // Sets the precision (a d4j_precision value the front has checked) and
    // re-selects variants by the rules above.
    void set_precision(int32_t precision) {
        precision_ = precision;
        for (Family &f : families_) {
            bool has_tensor_core = f.first_tensor_core < (int)f.names.size();
            if (precision == D4J_PRECISION_FP32) {
                if (f.selected >= f.first_tensor_core) f.selected = 0;
            } else if (has_tensor_core) {
                f.selected = f.first_tensor_core;
            }
        }
    }

private:
    struct Family {
        const char *family;
        std::vector<const char *> names;  // SIMT variants, then tensor-core variants
        int selected;
        int first_tensor_core;            // index of the first tensor-core variant; names.size() when none
        std::string joined;
        std::string tensor_core_joined;   // the tensor-core variants, comma-separated ("" when none)
    };

    const Family *find(const char *family) const {
        for (const auto &f : families_)
            if (std::strcmp(f.family, family) == 0) return &f;
        return nullptr;
    }
    Family *find(const char *family) {
        for (auto &f : families_)
            if (std::strcmp(f.family, family) == 0) return &f;
        return nullptr;
    }

    std::vector<Family> families_;
    int32_t precision_ = D4J_PRECISION_FP32;
};

// Every family with the single variant "v1".
inline VariantTable single_variants() {
    VariantTable t;
    for (const char *f : {"rng", "add_noise", "diffusion_loss", "reverse_step", "timestep_embedding"}) t.add(f, {"v1"});
    t.add("conv2d", {"v1"});
    for (const char *f : {"group_norm", "silu", "residual_add"}) t.add(f, {"v1"});
    for (const char *f : {"linear", "attention"}) t.add(f, {"v1"});
    for (const char *f : {"grad_norm", "adamw", "ema"}) t.add(f, {"v1"});
    t.add("concat", {"v1"});
    t.add("dropout", {"v1"});
    for (const char *f : {"sampler_step", "x0_threshold"}) t.add(f, {"v1"});
    t.add("vlb", {"v1"});
    for (const char *f : {"class_embedding", "guidance", "renoise"}) t.add(f, {"v1"});
    return t;
}

}  // namespace d4j
#endif
