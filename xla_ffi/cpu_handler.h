// The XLA FFI handler of the jax_lazy CPU backend (cpu_handler.cc), exported
// to Python as a PyCapsule by module.cc and registered with
// jax.ffi.register_ffi_target("jax_lazy_cpu", ..., platform="cpu").
#ifndef JAX_LAZY_XLA_FFI_CPU_HANDLER_H_
#define JAX_LAZY_XLA_FFI_CPU_HANDLER_H_

struct XLA_FFI_Error;
struct XLA_FFI_CallFrame;

extern "C" XLA_FFI_Error* JaxLazyCpuHandler(XLA_FFI_CallFrame* call_frame);

#endif  // JAX_LAZY_XLA_FFI_CPU_HANDLER_H_
