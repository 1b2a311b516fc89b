// The XLA FFI handler of the jax_lazy CUDA backend (cuda_handler.cc), exported to
// Python as a PyCapsule by module.cc and registered with
// jax.ffi.register_ffi_target("jax_lazy_cuda", ..., platform="CUDA").
#ifndef JAX_LAZY_XLA_FFI_CUDA_HANDLER_H_
#define JAX_LAZY_XLA_FFI_CUDA_HANDLER_H_

#include <cstddef>

struct XLA_FFI_Error;
struct XLA_FFI_CallFrame;

extern "C" XLA_FFI_Error* JaxLazyCudaHandler(XLA_FFI_CallFrame* call_frame);

// Same checks and argument packing, no launch: the packed jl_cuda_args is copied
// into an extra last result (uint8[*extra, sizeof(jl_cuda_args)]). Needs no GPU or
// stream; for tests and debugging. Register it for the CPU platform only: it writes
// that result with memcpy from the host.
extern "C" XLA_FFI_Error* JaxLazyCudaDryRunHandler(XLA_FFI_CallFrame* call_frame);

// sizeof(jl_cuda_args), for Python-side mirrors of the struct.
std::size_t JaxLazyCudaArgsSize();

#endif  // JAX_LAZY_XLA_FFI_CUDA_HANDLER_H_
