// Small helpers shared by the XLA FFI handlers (cpu_handler.cc, cuda_handler.cc).
#ifndef JAX_LAZY_XLA_FFI_FFI_COMMON_H_
#define JAX_LAZY_XLA_FFI_FFI_COMMON_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace jax_lazy {

// "(2, 3)", "(4,)", "()": a shape as Python prints it, for error messages.
inline std::string ShapeString(xla::ffi::Span<const int64_t> dims) {
  std::string s = "(";
  for (std::size_t d = 0; d < dims.size(); ++d) {
    if (d) s += ", ";
    s += std::to_string(dims[d]);
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

// Product of [first, last) (int64_t, or long long as in the CUDA ABI struct).
template <typename T>
int64_t Product(const T* first, const T* last) {
  int64_t p = 1;
  for (; first != last; ++first) p *= *first;
  return p;
}

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_FFI_COMMON_H_
