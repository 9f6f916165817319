// Run-time selection of kernel variants by name, shared by the backends.
#ifndef D4J_VARIANTS_H
#define D4J_VARIANTS_H

#include <cstring>
#include <string>
#include <vector>

#include "backend_iface.h"

namespace d4j {

class VariantTable {
public:
    // Declares a family with its variants (the first is the default).
    void add(const char *family, std::vector<const char *> names) {
        Family f{family, std::move(names), 0, {}};
        for (size_t i = 0; i < f.names.size(); ++i) f.joined += (i ? "," : "") + std::string(f.names[i]);
        families_.push_back(std::move(f));
    }

    const char *variants(const char *family) const {
        const Family *f = find(family);
        return f ? f->joined.c_str() : nullptr;
    }

    const char *selected(const char *family) const {
        const Family *f = find(family);
        return f ? f->names[f->selected] : nullptr;
    }

    // Index of the selected variant of a family (0 when unknown).
    int index(const char *family) const {
        const Family *f = find(family);
        return f ? f->selected : 0;
    }

    d4j_status select(const d4j_host_api *host, const char *backend, const char *family, const char *variant) {
        Family *f = find(family);
        if (f != nullptr) {
            for (size_t i = 0; i < f->names.size(); ++i) {
                if (std::strcmp(f->names[i], variant) == 0) {
                    f->selected = (int)i;
                    return D4J_OK;
                }
            }
        }
        host->set_error("the %s backend has no variant '%s' of kernel family '%s' (available: %s)", backend, variant,
                        family, f ? f->joined.c_str() : "v1");
        return D4J_ERR_INVALID_ARGUMENT;
    }

private:
    struct Family {
        const char *family;
        std::vector<const char *> names;
        int selected;
        std::string joined;
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

    return t;
}

}  // namespace d4j
#endif
