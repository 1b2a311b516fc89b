// Process-wide registry of generated CUDA kernels: kernel key -> (image, entry name),
// plus, per CUDA context, the module and function loaded from that image.
//
// jax_lazy.backends.cuda_ffi registers an image (a cubin, a fatbin or NUL-terminated
// PTX text, as accepted by cuModuleLoadData) under its key, the kernel cache key
// (jax_lazy/cache.py); the XLA FFI handler (cuda_handler.cc) receives that key as an
// attribute and asks for the function in the context it runs in. The image carries
// its own key as a __device__ string `jax_lazy_kernel_key`, read back when the module
// is loaded: an image registered under another key is refused, never launched. The module is loaded into a context on the
// first call made there (so registering needs no GPU, and a process with several
// devices loads each image once per device's context).
//
// Modules are never unloaded, not even when their key is unregistered: a launch may
// still be queued on a stream, and cuModuleUnload needs the owning context current.
// Unregistering forgets the key and the image bytes; the loaded code lives on until
// its context is destroyed.
#ifndef JAX_LAZY_XLA_FFI_CUDA_REGISTRY_H_
#define JAX_LAZY_XLA_FFI_CUDA_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cuda_driver.h"

namespace jax_lazy {

// Stores `image` with kernel entry `name` under `key`; a key already registered keeps
// its first image (same key, same kernel).
void RegisterCudaKernel(std::string image, std::string key, std::string name);

// Forgets `key`; returns whether it was registered.
bool UnregisterCudaKernel(std::string_view key);

// Number of registered kernels.
std::size_t RegisteredCudaKernelCount();

enum class CudaLookupCode {
  kOk,
  kNotFound,    // no kernel registered under the key
  kLoadFailed,  // cuModuleLoadData / cuModuleGetFunction failed, or the image's key differs
  kShared,      // the dynamic shared memory asked for cannot be granted
};

struct CudaLookup {
  CudaLookupCode code = CudaLookupCode::kOk;
  CUfunction function = nullptr;
  std::string error;  // set unless code == kOk
};

// The function of kernel `key` in context `ctx`, which must be current on the calling
// thread. Loads the module on the first use in `ctx`, and raises the function's
// dynamic shared memory limit (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) when
// `shared_bytes` exceeds both the default 48 KiB and what was granted before.
// Thread-safe; `driver` must be usable.
CudaLookup CudaFunctionFor(const CudaDriverApi& driver, std::string_view key, CUcontext ctx,
                           int64_t shared_bytes);

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_CUDA_REGISTRY_H_
