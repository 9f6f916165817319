// Planted bugs for the sanitizer's own test. Only libd4j_cpu_teeth_asan.so (built with -DD4J_CPU_TEETH, never
// packed into the jar) has them: there D4J_TOOTH(name) is 1 when the environment variable D4J_CPU_TEETH names
// that tooth, so one library carries every planted out-of-bounds write and a child process picks one. In every
// other build D4J_TOOTH(name) is the constant 0 and the loops it touches compile as they always did.
//   conv_gather    the forward tile's row-pointer fill for windows inside the image runs one tap too far on
//                  the last row of a tile: it reads one past the tap offsets and writes kMR entries past its
//                  stack array rows[9 * kMR]
//   dw_accumulate  the weight gradient's final accumulation writes one element past the end of dweight
#pragma once

#ifdef D4J_CPU_TEETH
#include <cstdlib>
#include <cstring>

namespace d4j::cpu {
inline int tooth(const char *name) {
    const char *v = std::getenv("D4J_CPU_TEETH");
    return v != nullptr && std::strcmp(v, name) == 0 ? 1 : 0;
}
}  // namespace d4j::cpu
#define D4J_TOOTH(name) (::d4j::cpu::tooth(name))
#else
#define D4J_TOOTH(name) 0
#endif
