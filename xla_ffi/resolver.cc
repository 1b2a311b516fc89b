// The kernel resolver: a Python callable set by jax_lazy at import; see resolver.h.
#include "resolver.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include <atomic>

namespace nb = nanobind;

namespace jax_lazy {
namespace {

// A strong reference, deliberately leaked (no decref at interpreter shutdown, when
// XLA threads may still run handlers). Replaced under the GIL only.
std::atomic<PyObject*> resolver{nullptr};

bool Finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

}  // namespace

void SetKernelResolver(nb::object fn) {  // called from Python: holds the GIL
  PyObject* old = resolver.exchange(fn.release().ptr());
  Py_XDECREF(old);
}

std::string ResolveKernel(std::string_view kind, std::string_view key) {
  if (!Py_IsInitialized() || Finalizing()) return "the Python interpreter is shutting down";
  nb::gil_scoped_acquire gil;
  nb::handle fn(resolver.load());
  if (!fn.is_valid() || fn.is_none()) return "no kernel resolver is set (import jax_lazy first)";
  try {
    nb::object answer = fn(nb::str(kind.data(), kind.size()), nb::str(key.data(), key.size()));
    return nb::cast<std::string>(answer);
  } catch (nb::python_error& e) {
    return std::string("the kernel resolver raised: ") + nb::cast<std::string>(nb::str(e.value()));
  } catch (const std::exception& e) {
    return std::string("the kernel resolver failed: ") + e.what();
  }
}

}  // namespace jax_lazy
