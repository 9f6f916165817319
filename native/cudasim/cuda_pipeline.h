/*
 * The CUDA simulator's stand-in for <cuda_pipeline.h>: the pipeline
 * primitives of cuda_pipeline_primitives.h (nvcc's header adds the C++
 * nvcuda::experimental::pipeline class on top of them, which diffusion4j's
 * kernels do not use and the simulator does not provide).
 */
#ifndef D4J_CUDASIM_PIPELINE_H
#define D4J_CUDASIM_PIPELINE_H

#include "cuda_pipeline_primitives.h"

#endif
