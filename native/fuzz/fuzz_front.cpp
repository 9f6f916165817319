// libFuzzer harness over the raw C API (d4j.h): each input is a little program of API calls on the CPU backend
// (buffers allocated, viewed, written, freed; layer entry points called on them) whose sizes, shapes, strides,
// pads, counts, flags, kernel names and buffer choices all come from the input. Edge values (0, -1, INT32_MIN,
// INT32_MAX, 2^20, 2^31 - 1 bytes) are drawn often. Built with clang, -fsanitize=fuzzer,address,undefined, front
// sources linked in and the CPU backend (built the same way, libd4j_cpu_fuzz.so) loaded by d4j_backend_open.
//
// What must hold for every input: no crash and no sanitizer report; every call returns a d4j_status of the
// enum, and a failing one leaves a non-empty d4j_last_error(); after the program every buffer is freed and the
// backend reports no live buffer (no handle leaked by a failed call).
//
// Run: D4J_FUZZ_BACKEND=path/libd4j_cpu_fuzz.so d4j_fuzz_front [corpus dir] [-max_total_time=S] (FuzzFrontTest
// in the library's tests does, in mvn verify).
#include <fuzzer/FuzzedDataProvider.h>

#include <climits>
#include <initializer_list>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../include/d4j.h"

namespace {

d4j_backend *g_backend = nullptr;

[[noreturn]] void die(const char *what, const char *detail) {
    std::fprintf(stderr, "fuzz_front: %s: %s\n", what, detail ? detail : "");
    std::abort();
}

// valid: a call built to be correct (buffers sized exactly for its shapes) must succeed, or fuzzing would
// silently stop reaching the kernels
void check(d4j_status s, const char *call, bool valid = false) {
    if (s < D4J_OK || s > D4J_ERR_UNSUPPORTED) die("status outside the enum", call);
    if (valid && s != D4J_OK) die("a valid call failed", d4j_last_error());
    if (s != D4J_OK) {
        const char *e = d4j_last_error();
        if (e == nullptr || e[0] == '\0') die("a failing call left no message", call);
    }
}

constexpr int kSlots = 6;
constexpr int64_t kMaxBytes = 1 << 16;  // buffers stay small: the work per input is bounded by what they hold

struct Program {
    FuzzedDataProvider &in;
    d4j_buffer *slot[kSlots] = {};
    d4j_buffer *stale = nullptr;  // a freed handle, passed again on purpose (the front's registry must refuse it)

    int32_t dim() {
        switch (in.ConsumeIntegralInRange<int>(0, 15)) {
            case 0: return 0;
            case 1: return -1;
            case 2: return INT32_MIN;
            case 3: return INT32_MAX;
            case 4: return 1 << 20;
            case 5: return (1 << 20) + 1;
            case 6: return 46341;  // its square passes 2^31
            default: return in.ConsumeIntegralInRange<int32_t>(1, 19);
        }
    }
    int64_t count() {
        switch (in.ConsumeIntegralInRange<int>(0, 7)) {
            case 0: return -1;
            case 1: return INT64_MAX;
            case 2: return (int64_t)INT32_MAX + 1;
            default: return in.ConsumeIntegralInRange<int64_t>(0, kMaxBytes / 4 + 3);
        }
    }
    float number() {
        switch (in.ConsumeIntegralInRange<int>(0, 7)) {
            case 0: return __builtin_nanf("");
            case 1: return __builtin_inff();
            case 2: return -1.0f;
            case 3: return 0.0f;
            default: return in.ConsumeFloatingPointInRange<float>(-4.0f, 4.0f);
        }
    }
    d4j_buffer *buf() {
        int k = in.ConsumeIntegralInRange<int>(0, kSlots + 1);
        if (k == kSlots) return nullptr;
        if (k == kSlots + 1) return stale;
        return slot[k];
    }

    void alloc() {
        int k = in.ConsumeIntegralInRange<int>(0, kSlots - 1);
        if (slot[k] != nullptr) return;
        int64_t bytes = in.ConsumeBool() ? count() : 4 * in.ConsumeIntegralInRange<int64_t>(0, kMaxBytes / 4);
        if (bytes > kMaxBytes) bytes = -bytes;  // huge requests only as invalid ones: never gigabytes for real
        d4j_buffer *b = nullptr;
        d4j_status s = d4j_buffer_alloc(g_backend, bytes, &b);
        check(s, "d4j_buffer_alloc");
        if (s == D4J_OK) {
            if (b == nullptr) die("d4j_buffer_alloc returned OK and no buffer", "");
            slot[k] = b;
            // poison: a kernel reading memory nobody wrote computes on NaN, not on old data
            check(d4j_buffer_fill_f32(b, __builtin_nanf("")), "d4j_buffer_fill_f32");
        }
    }
    void view() {
        int k = in.ConsumeIntegralInRange<int>(0, kSlots - 1), v = in.ConsumeIntegralInRange<int>(0, kSlots - 1);
        if (slot[k] == nullptr || slot[v] != nullptr) return;
        d4j_buffer *b = nullptr;
        d4j_status s = d4j_buffer_view(slot[k], count(), count(), &b);
        check(s, "d4j_buffer_view");
        if (s == D4J_OK) slot[v] = b;
    }
    void release() {
        int k = in.ConsumeIntegralInRange<int>(0, kSlots - 1);
        if (slot[k] == nullptr) return;
        d4j_status s = d4j_buffer_free(slot[k]);
        check(s, "d4j_buffer_free");  // refused while views of it live
        if (s == D4J_OK) {
            stale = slot[k];
            slot[k] = nullptr;
        }
    }
    void write() {
        std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 256));
        int64_t off = count();
        int64_t n = in.ConsumeBool() ? (int64_t)bytes.size() : count();
        if (n > (int64_t)bytes.size()) n = (int64_t)bytes.size();  // the host side must be valid memory
        if (d4j_buffer *b = buf()) check(d4j_buffer_write(b, off, bytes.data(), n), "d4j_buffer_write");
        else check(d4j_buffer_write(nullptr, off, bytes.data(), n), "d4j_buffer_write(null)");
    }
    void read() {
        std::vector<uint8_t> host(256);
        int64_t n = in.ConsumeIntegralInRange<int64_t>(-1, 256);
        check(d4j_buffer_read(buf(), count(), host.data(), n), "d4j_buffer_read");
    }
    void conv() {
        d4j_buffer *x = buf(), *w = buf(), *b = in.ConsumeBool() ? buf() : nullptr, *y = buf();
        int32_t n = dim(), h = dim(), wd = dim(), ci = dim(), co = dim();
        int32_t k = in.ConsumeBool() ? 3 : dim(), st = in.ConsumeBool() ? 1 : dim();
        int32_t pt = in.ConsumeIntegralInRange<int>(-1, 3), pl = in.ConsumeIntegralInRange<int>(-1, 3),
                pb = in.ConsumeIntegralInRange<int>(-1, 3), pr = in.ConsumeIntegralInRange<int>(-1, 3);
        int32_t up = in.ConsumeIntegralInRange<int>(-1, 2);
        const int op = in.ConsumeIntegralInRange<int>(0, 4);
        if (op == 0) {
            check(d4j_conv2d_forward(g_backend, x, n, h, wd, ci, w, b, co, k, st, pt, pl, pb, pr, up, y),
                  "d4j_conv2d_forward");
        } else if (op == 1) {  // w as prepared weights: refused unless made by d4j_conv2d_prepare for this geometry
            check(d4j_conv2d_forward_prepared(g_backend, x, n, h, wd, ci, w, b, co, k, st, pt, pl, pb, pr, up, y),
                  "d4j_conv2d_forward_prepared");
        } else if (op == 2) {
            check(d4j_conv2d_prepare(g_backend, x, h, wd, ci, co, k, st, pt, pl, pb, pr, up, w), "d4j_conv2d_prepare");
        } else if (op == 3) {
            int64_t bytes = 0;
            check(d4j_conv2d_prepared_size(g_backend, h, wd, ci, co, k, st, pt, pl, pb, pr, up,
                                           in.ConsumeBool() ? &bytes : nullptr),
                  "d4j_conv2d_prepared_size");
        } else {
            d4j_buffer *dy = buf(), *dx = in.ConsumeBool() ? buf() : nullptr, *dw = in.ConsumeBool() ? buf() : nullptr,
                       *db = in.ConsumeBool() ? buf() : nullptr;
            check(d4j_conv2d_backward(g_backend, x, n, h, wd, ci, w, co, k, st, pt, pl, pb, pr, up, dy, dx, dw, db),
                  "d4j_conv2d_backward");
        }
    }
    void norm() {
        d4j_buffer *x = buf(), *g = buf(), *be = buf(), *y = in.ConsumeBool() ? buf() : nullptr, *m = buf(),
                   *r = buf();
        check(d4j_group_norm_forward(g_backend, x, g, be, dim(), dim(), dim(), dim(), dim(), number(),
                                     in.ConsumeIntegralInRange<int>(-1, 2), y, m, r),
              "d4j_group_norm_forward");
    }
    void linear() {
        d4j_buffer *x = buf(), *w = buf(), *b = in.ConsumeBool() ? buf() : nullptr, *y = buf();
        check(d4j_linear_forward(g_backend, x, w, b, count(), dim(), dim(), y), "d4j_linear_forward");
    }
    void attention() {
        d4j_buffer *q = buf(), *k = buf(), *v = buf(), *o = buf(), *lse = in.ConsumeBool() ? buf() : nullptr;
        check(d4j_attention_forward(g_backend, q, k, v, dim(), dim(), dim(), dim(), number(), o, lse),
              "d4j_attention_forward");
    }
    void elementwise() {
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
            case 0: check(d4j_silu_forward(g_backend, buf(), count(), buf()), "d4j_silu_forward"); break;
            case 1: check(d4j_residual_add(g_backend, buf(), buf(), count(), number(), buf()), "d4j_residual_add"); break;
            case 2:
                check(d4j_concat_channels_forward(g_backend, buf(), buf(), count(), dim(), dim(), buf()),
                      "d4j_concat_channels_forward");
                break;
            default:
                check(d4j_rng_normal(g_backend, in.ConsumeIntegral<uint64_t>(), in.ConsumeIntegral<uint64_t>(), buf(),
                                     count()),
                      "d4j_rng_normal");
        }
    }
    void kernel() {
        std::string family = in.ConsumeRandomLengthString(24), variant = in.ConsumeRandomLengthString(24);
        if (in.ConsumeBool()) family = "conv2d";
        check(d4j_kernel_select(g_backend, family.c_str(), variant.c_str()), "d4j_kernel_select");
        check(d4j_kernel_select(g_backend, "conv2d", "v1"), "d4j_kernel_select(restore)");
    }
    void schedule() {
        int32_t t = in.ConsumeIntegralInRange<int32_t>(-1, 40);
        std::vector<double> ab(t > 0 ? t : 1);
        for (double &a : ab) a = in.ConsumeFloatingPoint<double>();
        d4j_schedule *s = nullptr;
        d4j_status st = d4j_schedule_create(in.ConsumeBool() ? ab.data() : nullptr, t, &s);
        check(st, "d4j_schedule_create");
        if (st == D4J_OK) check(d4j_schedule_free(s), "d4j_schedule_free");
    }

    // Valid calls with buffers sized exactly for fuzzed small shapes: the kernels themselves run on odd sizes
    // under the sanitizers (an out-of-bounds read or write of any tile path is a report).
    d4j_buffer *exact(int64_t floats) {
        d4j_buffer *b = nullptr;
        if (d4j_buffer_alloc(g_backend, 4 * floats, &b) != D4J_OK) die("exact alloc", d4j_last_error());
        check(d4j_rng_normal(g_backend, in.ConsumeIntegral<uint32_t>(), 0, b, floats), "d4j_rng_normal");
        return b;
    }
    void done(std::initializer_list<d4j_buffer *> bs) {
        for (d4j_buffer *b : bs) {
            if (b != nullptr) check(d4j_buffer_free(b), "d4j_buffer_free");
        }
    }
    int32_t small(int hi) { return in.ConsumeIntegralInRange<int32_t>(1, hi); }
    void shaped() {
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
            case 0: {
                int32_t n = small(2), h = small(13), w = small(13), ci = small(40), co = small(40);
                int32_t k = in.ConsumeBool() ? 3 : 1, st = in.ConsumeBool() ? 1 : 2, up = st == 1 && in.ConsumeBool();
                int32_t pt = in.ConsumeIntegralInRange<int>(0, k - 1), pl = in.ConsumeIntegralInRange<int>(0, k - 1),
                        pb = in.ConsumeIntegralInRange<int>(0, k - 1), pr = in.ConsumeIntegralInRange<int>(0, k - 1);
                int32_t H = up ? 2 * h : h, W = up ? 2 * w : w;
                if (H + pt + pb < k || W + pl + pr < k) return;
                int32_t ho = (H + pt + pb - k) / st + 1, wo = (W + pl + pr - k) / st + 1;
                d4j_buffer *x = exact((int64_t)n * h * w * ci), *wt = exact((int64_t)k * k * ci * co), *b = exact(co),
                           *y = exact((int64_t)n * ho * wo * co);
                if (in.ConsumeBool()) {
                    check(d4j_conv2d_forward(g_backend, x, n, h, w, ci, wt, b, co, k, st, pt, pl, pb, pr, up, y),
                          "d4j_conv2d_forward(shaped)", true);
                    int64_t bytes = 0;
                    check(d4j_conv2d_prepared_size(g_backend, h, w, ci, co, k, st, pt, pl, pb, pr, up, &bytes),
                          "d4j_conv2d_prepared_size(shaped)", true);
                    if (bytes > 0) {  // the prepared weights, in a buffer of exactly their size, read by a forward
                        d4j_buffer *p = exact(bytes / 4);
                        check(d4j_conv2d_prepare(g_backend, wt, h, w, ci, co, k, st, pt, pl, pb, pr, up, p),
                              "d4j_conv2d_prepare(shaped)", true);
                        check(d4j_conv2d_forward_prepared(g_backend, x, n, h, w, ci, p, b, co, k, st, pt, pl, pb, pr,
                                                          up, y),
                              "d4j_conv2d_forward_prepared(shaped)", true);
                        done({p});
                    }
                } else {
                    d4j_buffer *dx = exact((int64_t)n * h * w * ci), *dw = exact((int64_t)k * k * ci * co),
                               *db = exact(co);
                    check(d4j_conv2d_backward(g_backend, x, n, h, w, ci, wt, co, k, st, pt, pl, pb, pr, up, y, dx, dw, db),
                          "d4j_conv2d_backward(shaped)", true);
                    done({dx, dw, db});
                }
                done({x, wt, b, y});
                break;
            }
            case 1: {
                int32_t rows = small(40), fin = small(70), fout = small(70);
                d4j_buffer *x = exact((int64_t)rows * fin), *w = exact((int64_t)fin * fout), *b = exact(fout),
                           *y = exact((int64_t)rows * fout);
                check(d4j_linear_forward(g_backend, x, w, b, rows, fin, fout, y), "d4j_linear_forward(shaped)", true);
                done({x, w, b, y});
                break;
            }
            case 2: {
                int32_t bt = small(2), t = small(40), heads = small(3), hd = small(40);
                int64_t e = (int64_t)bt * t * heads * hd;
                d4j_buffer *q = exact(e), *k = exact(e), *v = exact(e), *o = exact(e), *lse = exact((int64_t)bt * heads * t);
                check(d4j_attention_forward(g_backend, q, k, v, bt, t, heads, hd, 0.125f, o, lse),
                      "d4j_attention_forward(shaped)", true);
                done({q, k, v, o, lse});
                break;
            }
            default: {
                int32_t n = small(2), h = small(9), w = small(9), g = small(4), c = g * small(9);
                d4j_buffer *x = exact((int64_t)n * h * w * c), *ga = exact(c), *be = exact(c),
                           *y = exact((int64_t)n * h * w * c), *m = exact((int64_t)n * g), *r = exact((int64_t)n * g);
                check(d4j_group_norm_forward(g_backend, x, ga, be, n, h, w, c, g, 1e-5f, in.ConsumeBool(), y, m, r),
                      "d4j_group_norm_forward(shaped)", true);
                done({x, ga, be, y, m, r});
            }
        }
    }

    void run() {
        for (int ops = 0; ops < 64 && in.remaining_bytes() > 0; ++ops) {
            switch (in.ConsumeIntegralInRange<int>(0, 14)) {
                case 13: case 14: shaped(); break;
                case 0: case 1: alloc(); break;
                case 2: view(); break;
                case 3: release(); break;
                case 4: write(); break;
                case 5: read(); break;
                case 6: case 7: conv(); break;
                case 8: norm(); break;
                case 9: linear(); break;
                case 10: attention(); break;
                case 11: elementwise(); break;
                default: in.ConsumeBool() ? kernel() : schedule();
            }
        }
        // views first (a buffer with live views cannot be freed)
        for (int pass = 0; pass < 2; ++pass) {
            for (d4j_buffer *&b : slot) {
                if (b != nullptr && d4j_buffer_free(b) == D4J_OK) b = nullptr;
            }
        }
        for (d4j_buffer *b : slot) {
            if (b != nullptr) die("a buffer could not be freed", d4j_last_error());
        }
        int64_t live_bytes = -1, live_buffers = -1;
        check(d4j_backend_live(g_backend, &live_bytes, &live_buffers), "d4j_backend_live");
        if (live_buffers != 0 || live_bytes != 0) die("buffers leaked by the calls", "");
    }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    const char *lib = std::getenv("D4J_FUZZ_BACKEND");
    if (lib == nullptr) die("set D4J_FUZZ_BACKEND to the sanitized CPU backend library", "");
    if (d4j_backend_open(lib, &g_backend) != D4J_OK) die("cannot open the backend", d4j_last_error());
    check(d4j_backend_set_threads(g_backend, 1), "d4j_backend_set_threads");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FuzzedDataProvider in(data, size);
    Program p{in};
    p.run();
    return 0;
}
