#ifndef D4J_CUDA_KERNELS_H
#define D4J_CUDA_KERNELS_H

#include "../common/backend_iface.h"

namespace d4j::cuda {

// Every kernel of the backend table (common/backend_kernels.h).
D4J_BACKEND_KERNELS(D4J_DECLARE_KERNEL)

}  // namespace d4j::cuda
#endif
