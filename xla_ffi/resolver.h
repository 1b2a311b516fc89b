// Loading a kernel that a custom call names but this process has not registered.
//
// A custom call names its kernel by key (registry.h). A module made by jax.export in
// another process names kernels this process never built; the handlers then ask the
// resolver, a Python function that jax_lazy sets at import
// (jax_lazy.backends.ffi.resolve_kernel), to find the kernel in the kernel cache by its
// key and register it (the library's own key is checked on registration). The resolver
// runs under the GIL, on the thread that runs the handler (XLA runs handlers with the
// GIL released).
#ifndef JAX_LAZY_XLA_FFI_RESOLVER_H_
#define JAX_LAZY_XLA_FFI_RESOLVER_H_

#include <nanobind/nanobind.h>

#include <string>
#include <string_view>

namespace jax_lazy {

// Sets the resolver: fn(kind: str, key: str) -> str, "" when it registered the
// kernel, else why not. Call with the GIL held.
void SetKernelResolver(nanobind::object fn);

// Calls the resolver with (kind, key), kind "cpu" or "cuda". Returns "" when it
// registered the kernel, else why not (its message, or why it could not be asked).
std::string ResolveKernel(std::string_view kind, std::string_view key);

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_RESOLVER_H_
