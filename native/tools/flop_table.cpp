// Build tool of the profiling simulator: reads `objdump -d --no-show-raw-insn`
// of libd4j_cudasim_prof.so on stdin and writes the floating-point operations
// of every instrumented basic block to the file named by argv[1], which the
// build then adds to the library as the section .d4j_flops (read back by
// cudasim_profile.cpp).
//
// A basic block of an instrumented file starts with a call to
// __sanitizer_cov_trace_pc; its key is the address after that call (the
// call's return address, which the hook records). Its operations are counted
// from there to the first jump, return or next trace-pc call. Calls to the
// sanitizer hooks do not end a block; a call to a math function is one special
// operation (fmaf: one FMA). The kernels are compiled without vectorization,
// so each scalar instruction is one operation per thread; a packed one counts
// its lanes (4 for xmm, 8 for ymm).
//
// Integer divisions (x86 div/idiv) are counted too, 32- and 64-bit apart.
//
// Output: little-endian records {uint64 offset; uint16 fma, add, mul, special, fp64, div32, div64, 0},
// for blocks with at least one operation.
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>

namespace {

struct Ops {
    uint16_t fma = 0, add = 0, mul = 0, special = 0, fp64 = 0, div32 = 0, div64 = 0, pad = 0;
    bool any() const { return fma || add || mul || special || fp64 || div32 || div64; }
};

// An x86 integer division (div, idiv: quotient and remainder at once) of 64-bit operands: the q
// suffix or a 64-bit register operand (%rax .. %r15, not %r8d/%r8w/%r8b).
bool is_div64(const std::string &m, const std::string &operands) {
    if (m.back() == 'q') return true;
    if (m.back() == 'l' || m.back() == 'w' || m.back() == 'b') return false;
    const size_t r = operands.find("%r");
    if (r == std::string::npos) return false;
    size_t end = r + 2;
    while (end < operands.size() && std::isalnum((unsigned char)operands[end])) ++end;
    const char last = operands[end - 1];
    return !(std::isdigit((unsigned char)operands[r + 2]) && (last == 'd' || last == 'w' || last == 'b'));
}

bool starts(const std::string &s, const char *p) { return s.compare(0, std::strlen(p), p) == 0; }
bool ends(const std::string &s, const char *p) {
    size_t n = std::strlen(p);
    return s.size() >= n && s.compare(s.size() - n, n, p) == 0;
}

// Lanes of a packed operation from its operands (ymm: 8 floats, xmm: 4).
uint16_t lanes_of(const std::string &operands, bool dbl) {
    if (operands.find("%ymm") != std::string::npos) return dbl ? 4 : 8;
    return dbl ? 2 : 4;
}

const std::set<std::string> kSpecialCalls = {
    "expf", "exp2f", "expm1f", "logf", "log2f", "log10f", "log1pf", "powf", "sinf", "cosf", "tanf", "sincosf",
    "tanhf", "atanf", "atan2f", "erff", "erfcf", "sqrtf", "cbrtf", "__expf_finite", "__logf_finite",
    "__powf_finite"};
const std::set<std::string> kDoubleCalls = {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "pow", "sin",
                                            "cos", "tan", "tanh", "atan", "atan2", "erf", "erfc", "sqrt", "fma"};

// Counts one instruction into o; returns false when it ends the block.
bool count(const std::string &mnemonic, const std::string &operands, Ops &o) {
    std::string m = mnemonic;
    if (m.empty()) return true;
    if (m[0] == 'j' || m == "ret" || m == "ud2" || m == "hlt" || starts(m, "bnd") || starts(m, "notrack")) return false;
    if (m == "call" || m == "callq") {
        const size_t lt = operands.find('<'), gt = operands.find('>');
        if (lt == std::string::npos || gt == std::string::npos) return true;
        std::string target = operands.substr(lt + 1, gt - lt - 1);
        const size_t at = target.find('@');
        if (at != std::string::npos) target = target.substr(0, at);
        if (target == "__sanitizer_cov_trace_pc") return false;
        if (target == "fmaf") {
            ++o.fma;
        } else if (kSpecialCalls.count(target)) {
            ++o.special;
        } else if (kDoubleCalls.count(target)) {
            o.fp64 += target == "fma" ? 2 : 1;
        }
        return true;
    }
    if (m == "div" || m == "idiv" || m == "divl" || m == "idivl" || m == "divq" || m == "idivq") {
        // a GPU has no integer divide instruction: it runs a routine for each (longer for 64 bits)
        if (is_div64(m, operands)) ++o.div64;
        else ++o.div32;
        return true;
    }
    if (m[0] == 'v') m = m.substr(1);  // the AVX spelling of the same operation
    const bool fma = starts(m, "fmadd") || starts(m, "fmsub") || starts(m, "fnmadd") || starts(m, "fnmsub");
    if (fma) {
        // vfmadd231ss / ...sd / ...ps / ...pd
        if (ends(m, "ss")) ++o.fma;
        else if (ends(m, "sd")) o.fp64 += 2;
        else if (ends(m, "ps")) o.fma += lanes_of(operands, false);
        else if (ends(m, "pd")) o.fp64 += 2 * lanes_of(operands, true);
        return true;
    }
    struct Kind {
        const char *stem;
        int what;  // 0 add, 1 mul, 2 special
    };
    static const Kind kinds[] = {{"add", 0}, {"sub", 0}, {"mul", 1}, {"div", 2}, {"sqrt", 2}, {"rcp", 2}, {"rsqrt", 2}};
    for (const Kind &k : kinds) {
        const size_t n = std::strlen(k.stem);
        if (m.size() != n + 2 || m.compare(0, n, k.stem) != 0) continue;
        const std::string suffix = m.substr(n);
        uint16_t *slot = k.what == 0 ? &o.add : k.what == 1 ? &o.mul : &o.special;
        if (suffix == "ss") *slot += 1;
        else if (suffix == "ps") *slot += lanes_of(operands, false);
        else if (suffix == "sd") o.fp64 += 1;
        else if (suffix == "pd") o.fp64 += lanes_of(operands, true);
        return true;
    }
    return true;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: objdump -d --no-show-raw-insn LIB | flop_table OUT\n");
        return 2;
    }
    std::map<uint64_t, Ops> blocks;
    bool in_block = false, pending = false;
    uint64_t key = 0;
    Ops cur;
    size_t instructions = 0, calls = 0;
    std::string line;
    auto close = [&] {
        if (in_block && cur.any()) blocks[key] = cur;
        in_block = false;
        cur = Ops{};
    };
    while (std::getline(std::cin, line)) {
        // "   1a2b3:\tmnemonic operands"
        const size_t colon = line.find(":\t");
        if (colon == std::string::npos || line.empty() || line[0] != ' ') {
            if (!line.empty() && line.back() == ':') close();  // a new function
            continue;
        }
        uint64_t addr = 0;
        if (std::sscanf(line.c_str(), " %lx:", &addr) != 1) continue;
        std::string rest = line.substr(colon + 2);
        std::istringstream in(rest);
        std::string mnemonic, operands;
        in >> mnemonic;
        std::getline(in, operands);
        ++instructions;
        if (pending) {
            close();
            in_block = true;
            key = addr;
            pending = false;
        }
        const bool is_trace = (mnemonic == "call" || mnemonic == "callq") &&
                              operands.find("<__sanitizer_cov_trace_pc") != std::string::npos;
        if (is_trace) {
            close();
            pending = true;
            ++calls;
            continue;
        }
        if (!in_block) continue;
        if (!count(mnemonic, operands, cur)) close();
    }
    close();
    if (calls == 0) {
        std::fprintf(stderr, "flop_table: no call to __sanitizer_cov_trace_pc in %zu instructions: "
                             "the kernels were not built with -fsanitize-coverage=trace-pc\n", instructions);
        return 1;
    }
    FILE *out = std::fopen(argv[1], "wb");
    if (!out) {
        std::perror(argv[1]);
        return 1;
    }
    for (const auto &b : blocks) {
        const uint64_t off = b.first;
        std::fwrite(&off, 8, 1, out);
        std::fwrite(&b.second, sizeof(Ops), 1, out);
    }
    if (std::fclose(out) != 0) {
        std::perror(argv[1]);
        return 1;
    }
    std::printf("flop_table: %zu basic blocks, %zu with floating-point operations\n", calls, blocks.size());
    return 0;
}
