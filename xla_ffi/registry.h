// Process-wide registry of generated CPU kernels: kernel key -> entry point.
//
// A kernel is named by its key, the sha256 of its source and build (the kernel cache
// key, jax_lazy/cache.py), never by a process-local number: the key is what a custom
// call carries, so a module exported by jax.export names the same kernel in every
// process. jax_lazy.backends.ffi loads a generated shared library with ctypes and
// registers its `jax_lazy_kernel` under the key that the library itself reports
// (`jax_lazy_kernel_key()`, baked into its source): a library is never registered
// under a key it does not carry. Libraries are never unloaded, so a pointer obtained
// from LookupKernel stays callable even if the key is unregistered concurrently.
#ifndef JAX_LAZY_XLA_FFI_REGISTRY_H_
#define JAX_LAZY_XLA_FFI_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace jax_lazy {

// Kernel ABI (see docs/design.md and jax_lazy/backends/ffi.py):
//   in[k]:  input k's contiguous row-major slice for one batch element
//   out[k]: output k's slice for that batch element (M rows of width_k)
//   the kernel writes rows [i0, i1) of every output.
using KernelFn = void (*)(const void* const* in, void* const* out, int64_t M,
                          int64_t N, int64_t i0, int64_t i1);
// `jax_lazy_kernel_key`: the NUL-terminated key of the library that exports it.
using KernelKeyFn = const char* (*)();

// Adds `fn` under `key` after checking that `key_fn()` returns `key`. Returns "" on
// success (also when `key` is already registered: same key, same kernel, the first
// entry stays), else why nothing was registered (null pointers, empty key, or a
// library that reports another key).
std::string RegisterKernel(std::string_view key, KernelFn fn, KernelKeyFn key_fn);

// Removes `key`; returns whether it was registered.
bool UnregisterKernel(std::string_view key);

// The function registered under `key`, or nullptr. Thread-safe (shared lock).
KernelFn LookupKernel(std::string_view key);

// Number of registered kernels.
std::size_t RegisteredKernelCount();

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_REGISTRY_H_
