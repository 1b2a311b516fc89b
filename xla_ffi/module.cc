// jax_lazy._native: the compiled companion module of jax_lazy.
//
// It reports how it was built and holds the native plumbing of the CPU
// backend: the kernel registry (registry.h), the persistent thread pool
// (thread_pool.h) and the XLA FFI handler "jax_lazy_cpu" (cpu_handler.cc,
// built only with the XLA FFI headers). Every xla_ffi/*.cc file is compiled
// into this one module (see CMakeLists.txt).
//
// Compile definitions supplied by CMakeLists.txt:
//   JAX_LAZY_VERSION       package version string, from pyproject.toml
//   JAX_LAZY_HAVE_XLA_FFI  1 when built against jaxlib's XLA FFI headers
//                          (and then cpu_handler.cc is part of the module)

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <string>

#include "registry.h"
#include "thread_pool.h"

#if JAX_LAZY_HAVE_XLA_FFI
#include "cpu_handler.h"
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

void RegisterKernel(int64_t id, std::uintptr_t address) {
  if (address == 0) throw nb::value_error("register_kernel: null kernel address");
  auto fn = reinterpret_cast<jax_lazy::KernelFn>(address);
  if (!jax_lazy::RegisterKernel(id, fn)) {
    throw nb::value_error(
        ("register_kernel: kernel id " + std::to_string(id) + " is already registered")
            .c_str());
  }
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() =
      "Compiled helpers for jax_lazy: build information, the kernel registry, "
      "the thread pool and the XLA FFI handler of the CPU backend.";

  m.def(
      "version", []() { return std::string(JAX_LAZY_VERSION); },
      "Version of jax_lazy this module was built for.");
  m.def("health", &Health,
        "Build information: compiler, C++ standard, XLA FFI header use, ...");

  m.def("register_kernel", &RegisterKernel, nb::arg("id"), nb::arg("address"),
        "Register the kernel entry point at ``address`` (the address of a loaded "
        "library's ``jax_lazy_kernel``) under ``id``. Raises ValueError if the id "
        "is taken or the address is 0. The library must stay loaded for ever.");
  m.def("unregister_kernel", &jax_lazy::UnregisterKernel, nb::arg("id"),
        "Forget kernel ``id``; returns whether it was registered.");
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
#if JAX_LAZY_HAVE_XLA_FFI
  m.def(
      "cpu_handler",
      []() { return nb::capsule(reinterpret_cast<void*>(&JaxLazyCpuHandler)); },
      "PyCapsule of the XLA FFI handler of the CPU backend, for "
      "jax.ffi.register_ffi_target('jax_lazy_cpu', cpu_handler(), platform='cpu').");
#endif
}
