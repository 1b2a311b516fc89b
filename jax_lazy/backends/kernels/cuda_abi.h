// The ABI between the CUDA FFI handler (xla_ffi/cuda_handler.cc, compiled by the host
// C++ compiler) and the generated CUDA kernels (jax_lazy/backends/cuda.py, compiled by
// NVRTC, which include this header through their prelude). Plain C types only: NVRTC
// has no standard library headers.
//
// Every generated kernel is
//
//     extern "C" __global__ void jax_lazy_kernel(const jl_cuda_args a);
//
// launched by the handler on XLA's stream with
//
//     grid  = (ceil(M / rows_per_block), min(nbatch, JL_MAX_GRID_Y), 1)
//     block = (block_threads, 1, 1), dynamic shared memory = shared_bytes
//
// (rows_per_block, block_threads and shared_bytes are attributes of the custom call,
// chosen by cuda.py per plan). A kernel loops over batch elements b = blockIdx.y,
// blockIdx.y + gridDim.y, ... < nbatch, and finds input k of batch element b at
//
//     (const S*)a.in[k] + sum_d index_d(b) * a.in_bstride[k][d]
//
// where index_d(b) unravels b over a.bdims[0..nb) (row-major) and S is the storage
// type; output k of batch element b starts at (S*)a.out[k] + b * a.out_bstride[k].
// Within one batch element, buffers are row-major: i-variables (M, D), j-variables
// (N, D), parameters (D), outputs (M, width_k).
#ifndef JAX_LAZY_CUDA_ABI_H_
#define JAX_LAZY_CUDA_ABI_H_

#define JL_MAX_INPUTS 32   // variables of one formula (more: the plan is refused)
#define JL_MAX_OUTPUTS 2   // Min_ArgMin, KMin_ArgKMin, softmax (values, lse)
#define JL_MAX_BATCH 6     // batch axes, vmap axes included
#define JL_MAX_GRID_Y 65535

typedef struct jl_cuda_args {
  const void* in[JL_MAX_INPUTS];
  void* out[JL_MAX_OUTPUTS];
  long long M, N;                    // rows (i) and columns (j) of the symbolic matrix
  long long nbatch;                  // product of bdims[0..nb), >= 1
  int nb;                            // number of batch axes
  int nin;                           // number of inputs
  long long bdims[JL_MAX_BATCH];     // batch shape
  long long in_bstride[JL_MAX_INPUTS][JL_MAX_BATCH];  // elements; 0 where input k broadcasts
  long long out_bstride[JL_MAX_OUTPUTS];              // elements per batch element of output k
} jl_cuda_args;

#endif  // JAX_LAZY_CUDA_ABI_H_
