// jax_lazy._native: the compiled companion module of jax_lazy.
//
// For now it only reports how it was built; XLA FFI handlers (custom calls for
// the CPU backend) will be added to this directory later. Every xla_ffi/*.cc
// file is compiled into this one module (see CMakeLists.txt).
//
// Compile definitions supplied by CMakeLists.txt:
//   JAX_LAZY_VERSION       package version string, from pyproject.toml
//   JAX_LAZY_HAVE_XLA_FFI  1 when built against jaxlib's XLA FFI headers

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#if JAX_LAZY_HAVE_XLA_FFI
// Not used yet; included so that a broken header setup fails at build time.
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

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "Compiled helpers for jax_lazy (build information for now).";

  m.def(
      "version", []() { return std::string(JAX_LAZY_VERSION); },
      "Version of jax_lazy this module was built for.");
  m.def("health", &Health,
        "Build information: compiler, C++ standard, XLA FFI header use, ...");
}
