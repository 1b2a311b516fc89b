// jax_lazy._native: the compiled companion module of jax_lazy.
//
// It reports how it was built and holds the native plumbing of the CPU
// backend: the kernel registry (registry.h), the persistent thread pool
// (thread_pool.h) and the XLA FFI handler "jax_lazy_cpu" (cpu_handler.cc),
// and that of the CUDA backend: the lazily loaded driver (cuda_driver.h), the
// CUDA kernel registry (cuda_registry.h) and the XLA FFI handler
// "jax_lazy_cuda" (cuda_handler.cc). The handlers are built only with the XLA
// FFI headers; nothing here needs CUDA at build or import time. Every
// xla_ffi/*.cc file is compiled into this one module (see CMakeLists.txt).
//
// Compile definitions supplied by CMakeLists.txt:
//   JAX_LAZY_VERSION       package version string, from pyproject.toml
//   JAX_LAZY_HAVE_XLA_FFI  1 when built against jaxlib's XLA FFI headers
//                          (and then cpu_handler.cc is part of the module)

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include <cstdint>
#include <string>

#include "cuda_driver.h"
#include "cuda_registry.h"
#include "registry.h"
#include "resolver.h"
#include "thread_pool.h"

#if JAX_LAZY_HAVE_XLA_FFI
#include "cpu_handler.h"
#include "cuda_handler.h"
#include "xla/ffi/api/ffi.h"
#endif

#ifndef JAX_LAZY_VERSION
#error "JAX_LAZY_VERSION must be defined by the build (see CMakeLists.txt)"
#endif

namespace nb = nanobind;

namespace {

// Compiler name and version, from the compiler's predefined macros.
// Clang is tested first because it also defines __GNUC__.
std::string CompilerDescription() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_FULL_VER);
#else
  return "unknown";
#endif
}

// Build information as a plain dict, for bug reports and sanity checks.
nb::dict Health() {
  nb::dict info;
  info["version"] = JAX_LAZY_VERSION;
  info["compiler"] = CompilerDescription();
  info["cxx_standard"] = static_cast<long>(__cplusplus);
  info["ffi_headers"] = static_cast<bool>(JAX_LAZY_HAVE_XLA_FFI);
  info["cpu_handler"] = static_cast<bool>(JAX_LAZY_HAVE_XLA_FFI);
  info["cuda_handler"] = static_cast<bool>(JAX_LAZY_HAVE_XLA_FFI);
#if JAX_LAZY_HAVE_XLA_FFI
  info["xla_ffi_api_version"] =
      nb::make_tuple(XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR);
#else
  info["xla_ffi_api_version"] = nb::none();
#endif
  info["nanobind_version"] = nb::make_tuple(
      NB_VERSION_MAJOR, NB_VERSION_MINOR, NB_VERSION_PATCH);
#ifdef NDEBUG
  info["debug"] = false;
#else
  info["debug"] = true;
#endif
  return info;
}

void RegisterKernel(std::string_view key, std::uintptr_t address, std::uintptr_t key_address) {
  const std::string error = jax_lazy::RegisterKernel(
      key, reinterpret_cast<jax_lazy::KernelFn>(address),
      reinterpret_cast<jax_lazy::KernelKeyFn>(key_address));
  if (!error.empty()) throw nb::value_error(("register_kernel: " + error).c_str());
}

void RegisterCudaKernel(nb::bytes image, std::string_view key, std::string_view name) {
  if (image.size() == 0) throw nb::value_error("register_cuda_kernel: empty image");
  if (key.empty()) throw nb::value_error("register_cuda_kernel: empty kernel key");
  if (name.empty()) throw nb::value_error("register_cuda_kernel: empty entry name");
  jax_lazy::RegisterCudaKernel(std::string(image.c_str(), image.size()), std::string(key),
                               std::string(name));
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() =
      "Compiled helpers for jax_lazy: build information, the kernel registries, "
      "the thread pool, the CUDA driver status and the XLA FFI handlers of the "
      "CPU and CUDA backends.";

  m.def(
      "version", []() { return std::string(JAX_LAZY_VERSION); },
      "Version of jax_lazy this module was built for.");
  m.def("health", &Health,
        "Build information: compiler, C++ standard, XLA FFI header use, ...");

  m.def("register_kernel", &RegisterKernel, nb::arg("key"), nb::arg("address"),
        nb::arg("key_address"),
        "Register the kernel entry point at ``address`` (a loaded library's "
        "``jax_lazy_kernel``) under ``key``, after checking that the library's "
        "``jax_lazy_kernel_key`` (at ``key_address``) returns ``key``. A key already "
        "registered keeps its first entry. Raises ValueError on a null address, an "
        "empty key or a library that reports another key. The library must stay "
        "loaded for ever.");
  m.def("unregister_kernel", &jax_lazy::UnregisterKernel, nb::arg("key"),
        "Forget kernel ``key``; returns whether it was registered.");
  m.def("set_kernel_resolver", &jax_lazy::SetKernelResolver, nb::arg("fn"),
        "Set ``fn(kind, key) -> str``, which the handlers call (under the GIL) for a "
        "kernel key they do not have registered (kind 'cpu' or 'cuda'): it should "
        "register the kernel and return '', or return why it cannot.");
  m.def(
      "registered_kernels",
      []() { return static_cast<int64_t>(jax_lazy::RegisteredKernelCount()); },
      "Number of registered kernels.");
  m.def("num_threads", &jax_lazy::NumThreads,
        "Threads used by the CPU handler for large calls (workers + caller).");
  m.def("default_num_threads", &jax_lazy::DefaultNumThreads,
        "$JAX_LAZY_NUM_THREADS if a positive integer, else the hardware concurrency.");
  m.def("set_num_threads", &jax_lazy::SetNumThreads, nb::arg("n"),
        nb::call_guard<nb::gil_scoped_release>(),
        "Resize the CPU handler's thread pool; n <= 0 restores the default "
        "($JAX_LAZY_NUM_THREADS or the hardware concurrency).");
  m.def("register_cuda_kernel", &RegisterCudaKernel, nb::arg("image"), nb::arg("key"),
        nb::arg("name") = "jax_lazy_kernel",
        "Register a CUDA kernel image (cubin, fatbin or PTX text, as for "
        "cuModuleLoadData) whose entry point is ``name`` under ``key``, for the "
        "'jax_lazy_cuda' handler; a key already registered keeps its first image. "
        "Needs no GPU: the image is loaded into a CUDA context on its first launch "
        "there, and refused then unless its __device__ string ``jax_lazy_kernel_key`` "
        "is ``key``. Raises ValueError if the image, key or name is empty.");
  m.def("unregister_cuda_kernel", &jax_lazy::UnregisterCudaKernel, nb::arg("key"),
        "Forget CUDA kernel ``key``; returns whether it was registered. Modules "
        "already loaded stay loaded (a launch may still be queued).");
  m.def(
      "registered_cuda_kernels",
      []() { return static_cast<int64_t>(jax_lazy::RegisteredCudaKernelCount()); },
      "Number of registered CUDA kernels.");
  m.def(
      "cuda_status", []() { return jax_lazy::CudaDriverStatus(); },
      nb::call_guard<nb::gil_scoped_release>(),
      "'' when the CUDA driver (libcuda.so.1) is loaded, initialised and sees a "
      "device; else why not. Loads the driver on first call.");
  m.def("cuda_device_count", &jax_lazy::CudaDeviceCount,
        nb::call_guard<nb::gil_scoped_release>(),
        "Number of CUDA devices the driver sees (0 without a usable driver).");
  m.def("cuda_driver_version", &jax_lazy::CudaDriverVersion,
        nb::call_guard<nb::gil_scoped_release>(),
        "cuDriverGetVersion (e.g. 12040 for 12.4), or 0 without a driver.");
#if JAX_LAZY_HAVE_XLA_FFI
  m.def(
      "cpu_handler",
      []() { return nb::capsule(reinterpret_cast<void*>(&JaxLazyCpuHandler)); },
      "PyCapsule of the XLA FFI handler of the CPU backend, for "
      "jax.ffi.register_ffi_target('jax_lazy_cpu', cpu_handler(), platform='cpu').");
  m.def(
      "cuda_handler",
      []() { return nb::capsule(reinterpret_cast<void*>(&JaxLazyCudaHandler)); },
      "PyCapsule of the XLA FFI handler of the CUDA backend, for "
      "jax.ffi.register_ffi_target('jax_lazy_cuda', cuda_handler(), platform='CUDA').");
  m.def(
      "cuda_dry_run_handler",
      []() { return nb::capsule(reinterpret_cast<void*>(&JaxLazyCudaDryRunHandler)); },
      "PyCapsule of a handler taking the CUDA handler's operands and attributes plus "
      "one last uint8[*extra, cuda_args_size()] result, into which it writes the "
      "jl_cuda_args it would launch with (no launch, no GPU needed). Register it "
      "for the CPU platform only: it writes its result from the host.");
  m.def("cuda_args_size", &JaxLazyCudaArgsSize,
        "sizeof(jl_cuda_args) (jax_lazy/backends/kernels/cuda_abi.h) as compiled here.");
#endif
}
