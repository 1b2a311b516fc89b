"""Hand-written kernels following the jax_lazy kernel ABI, and their NumPy references.

Used by tests/test_ffi_handler.py and tests/test_cache.py (and runnable in subprocesses:
it imports nothing from the test suite). ABI::

    extern "C" void jax_lazy_kernel(const void* const* in, void* const* out,
                                    int64_t M, int64_t N, int64_t i0, int64_t i1);
"""

from __future__ import annotations

import numpy as np

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double",
           np.dtype(np.int32): "int32_t", np.dtype(np.int64): "int64_t"}

_GAUSS = r"""
// out[i] = sum_j exp(-(x_i - y_j)^2) * b_j  (x: i-variable, y, b: j-variables, all scalar)
#include <cmath>
#include <cstdint>
typedef @T@ T;
extern "C" void jax_lazy_kernel(const void* const* in, void* const* out, int64_t M,
                                int64_t N, int64_t i0, int64_t i1) {
  (void)M;
  const T* x = static_cast<const T*>(in[0]);
  const T* y = static_cast<const T*>(in[1]);
  const T* b = static_cast<const T*>(in[2]);
  T* o = static_cast<T*>(out[0]);
  for (int64_t i = i0; i < i1; ++i) {
    T s = 0;
    for (int64_t j = 0; j < N; ++j) {
      const T d = x[i] - y[j];
      s += std::exp(-d * d) * b[j];
    }
    o[i] = s;
  }
}
"""

_ARGMIN = r"""
// F_ij = (x_i - y_j)^2 + p * y_j; out0[i] = min_j F_ij, out1[i] = argmin_j F_ij (first)
#include <cmath>
#include <cstdint>
#include <limits>
typedef @T@ T;
typedef @I@ I;
extern "C" void jax_lazy_kernel(const void* const* in, void* const* out, int64_t M,
                                int64_t N, int64_t i0, int64_t i1) {
  (void)M;
  const T* x = static_cast<const T*>(in[0]);
  const T* y = static_cast<const T*>(in[1]);
  const T* p = static_cast<const T*>(in[2]);
  T* vmin = static_cast<T*>(out[0]);
  I* amin = static_cast<I*>(out[1]);
  for (int64_t i = i0; i < i1; ++i) {
    T best = std::numeric_limits<T>::infinity();
    I arg = 0;
    for (int64_t j = 0; j < N; ++j) {
      const T d = x[i] - y[j];
      const T f = d * d + p[0] * y[j];
      if (f < best) { best = f; arg = static_cast<I>(j); }
    }
    vmin[i] = best;
    amin[i] = arg;
  }
}
"""

_CHUNKS = r"""
// Records the work unit of each row: out0[i] = (i0, i1, M, N) (int64, width 4).
#include <cstdint>
extern "C" void jax_lazy_kernel(const void* const* in, void* const* out, int64_t M,
                                int64_t N, int64_t i0, int64_t i1) {
  (void)in;
  int64_t* o = static_cast<int64_t*>(out[0]);
  for (int64_t i = i0; i < i1; ++i) {
    o[4 * i + 0] = i0;
    o[4 * i + 1] = i1;
    o[4 * i + 2] = M;
    o[4 * i + 3] = N;
  }
}
"""


def gauss_source(dtype) -> str:
    return _GAUSS.replace("@T@", _CTYPES[np.dtype(dtype)])


def argmin_source(dtype, index_dtype) -> str:
    return _ARGMIN.replace("@T@", _CTYPES[np.dtype(dtype)]).replace("@I@", _CTYPES[np.dtype(index_dtype)])


def chunks_source() -> str:
    return _CHUNKS


def gauss_ref(x, y, b):
    """float64 dense reference; x (*b, M, 1), y (*b, N, 1), b (*b, N, 1) -> (*batch, M, 1)."""
    x, y, b = (np.asarray(a, np.float64) for a in (x, y, b))
    k = np.exp(-(x - np.swapaxes(y, -1, -2)) ** 2)        # (*batch, M, N)
    return k @ b


def argmin_ref(x, y, p):
    """x (*b, M, 1), y (*b, N, 1), p (*b, 1) -> (min (*batch, M, 1), argmin (*batch, M, 1))."""
    x, y, p = (np.asarray(a, np.float64) for a in (x, y, p))
    yt = np.swapaxes(y, -1, -2)                            # (*b, 1, N)
    f = (x - yt) ** 2 + p[..., None] * yt                  # (*batch, M, N)
    return f.min(-1, keepdims=True), f.argmin(-1)[..., None]
