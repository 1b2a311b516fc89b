// Process-wide registry of generated CPU kernels: int64 id -> entry point.
//
// jax_lazy.backends.ffi loads a generated shared library with ctypes, takes the
// address of its `jax_lazy_kernel` symbol and registers it here under a fresh id;
// the XLA FFI handler (cpu_handler.cc) receives that id as an attribute and looks
// the function up on every call. Libraries are never unloaded, so a pointer
// obtained from LookupKernel stays callable even if the id is unregistered
// concurrently.
#ifndef JAX_LAZY_XLA_FFI_REGISTRY_H_
#define JAX_LAZY_XLA_FFI_REGISTRY_H_

#include <cstddef>
#include <cstdint>

namespace jax_lazy {

// Kernel ABI (see docs/design.md and jax_lazy/backends/ffi.py):
//   in[k]:  input k's contiguous row-major slice for one batch element
//   out[k]: output k's slice for that batch element (M rows of width_k)
//   the kernel writes rows [i0, i1) of every output.
using KernelFn = void (*)(const void* const* in, void* const* out, int64_t M,
                          int64_t N, int64_t i0, int64_t i1);

// Adds `fn` under `id`. Returns false (and changes nothing) when `id` is
// already registered or `fn` is null.
bool RegisterKernel(int64_t id, KernelFn fn);

// Removes `id`; returns whether it was registered.
bool UnregisterKernel(int64_t id);

// The function registered under `id`, or nullptr. Thread-safe (shared lock).
KernelFn LookupKernel(int64_t id);

// Number of registered kernels.
std::size_t RegisteredKernelCount();

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_REGISTRY_H_
