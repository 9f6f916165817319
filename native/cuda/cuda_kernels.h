#ifndef D4J_CUDA_KERNELS_H
#define D4J_CUDA_KERNELS_H

#include "../common/backend_iface.h"

namespace d4j::cuda {

#include "../common/backend_kernels.inc"


}  // namespace d4j::cuda
#endif
