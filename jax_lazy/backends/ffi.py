"""Calling generated CPU kernels through the XLA FFI handler ``jax_lazy_cpu``.

The compiled module ``jax_lazy._native`` holds a registry ``kernel key -> function
pointer`` and one XLA FFI handler. A generated kernel is a shared library exporting::

    extern "C" void jax_lazy_kernel(const void* const* in, void* const* out,
                                    int64_t M, int64_t N, int64_t i0, int64_t i1);
    extern "C" const char* jax_lazy_kernel_key();   // its own key

The key is the kernel cache key (:mod:`jax_lazy.compilers`, which bakes it into the
source); the custom call carries it, so a module exported with ``jax.export`` names the
same kernel in any process. A key the process has not loaded is looked up in the kernel
cache by the handler (through :func:`resolve_kernel`, set at ``import jax_lazy``); a
library that reports another key than the one it is loaded under is refused.

where ``in[k]`` is input k's contiguous slice for one batch element (i-variables
``M*dim_k`` elements, j-variables ``N*dim_k``, parameters ``dim_k``) and ``out[k]`` output
k's slice (``M*width_k`` elements, row i at ``out[k] + i*width_k``); the kernel writes
rows ``[i0, i1)`` only. The handler splits a call into (batch element, row chunk) work
units and runs them on a persistent thread pool (``JAX_LAZY_NUM_THREADS``, see
:func:`set_num_threads`) or, for small calls, in the calling thread.

Typical use::

    key = load_kernel(path_to_so, key)              # once per library
    (out,) = call(key, (x, y, b), (0, 1, 1),        # i-, j-, j-variable
                  [jax.ShapeDtypeStruct(batch + (M, 1), x.dtype)], batch, M, N)
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence

import jax
import numpy as np

from .._native_loader import load_native, native_error
from .. import store
from ..errors import BackendError, ShapeError

TARGET = "jax_lazy_cpu"
SYMBOL = "jax_lazy_kernel"
KEY_SYMBOL = "jax_lazy_kernel_key"
CAT_I, CAT_J, CAT_P = 0, 1, 2

_lock = threading.Lock()
_registered = False
# Loaded libraries by key, kept alive for ever: the registry holds raw function pointers.
_libraries: dict[str, ctypes.CDLL] = {}


def native_with(handler: str, what: str):
    """The native module, if it has ``handler`` (e.g. "cpu_handler"); else raises
    BackendError saying why (``what`` names the handler in the message)."""
    native = load_native()
    if native is None:
        raise BackendError(f"the compiled module jax_lazy._native is unavailable: {native_error()}")
    if not hasattr(native, handler):
        raise BackendError(f"jax_lazy._native was built without the XLA FFI headers, so it has no {what} "
                           "handler; rebuild with jax installed in the build environment "
                           "(`make install`, which builds without isolation)")
    return native


def _native():
    return native_with("cpu_handler", "CPU")


def available() -> str | None:
    """None when the FFI handler can be used, else the reason it cannot."""
    try:
        _native()
    except BackendError as exc:
        return str(exc)
    return None


def ensure_registered() -> None:
    """Register the FFI target ``jax_lazy_cpu`` with XLA (CPU platform) and the kernel
    resolver (:func:`resolve_kernel`) with the native module, once.

    Idempotent and thread-safe; ``import jax_lazy`` calls it, so that a module exported
    by another process compiles and finds its kernels. Raises BackendError when the
    native module or its handler is missing.
    """
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        native = _native()
        native.set_kernel_resolver(resolve_kernel)
        # The capsule is passed as is (jax.ffi.pycapsule wraps ctypes function pointers).
        jax.ffi.register_ffi_target(TARGET, native.cpu_handler(), platform="cpu")
        _registered = True


def resolve_kernel(kind: str, key: str) -> str:
    """Load kernel ``key`` ("cpu" library or "cuda" image) from the kernel cache and
    register it; the handlers call this for a key the process has not registered (a
    module exported by another process). Returns "" on success, else why not (the
    handler puts it in its error)."""
    try:
        load_by_key(kind, key)
    except Exception as e:  # noqa: BLE001 - the message goes back to the handler's error
        return f"{type(e).__name__}: {e}"
    return ""


def load_by_key(kind: str, key: str) -> None:
    """Load and register kernel ``key`` from the kernel cache with nothing but its key: a
    library (``kind`` "cpu") or a CUDA image ("cuda"), found by :func:`jax_lazy.store.find`.

    Raises:
      BackendError: no valid entry for ``key`` in the cache directory, or one that
        reports another key (forged).
    """
    at = store.slot(key)
    with store.key_lock(at):
        found = store.find(kind, key)
        if kind == "cpu":
            store.remember(at, "loaded", load_kernel(found, key))
        else:
            from . import cuda_ffi  # it imports this module

            cuda_ffi.load_kernel(found, key)


def load_kernel(path, key: str) -> str:
    """Load the shared library at ``path`` and register its ``jax_lazy_kernel`` under
    ``key``, which must be the key the library reports (``jax_lazy_kernel_key()``).

    Returns:
      ``key``, for :func:`call`. The library is never unloaded; loading a key again
      returns at once.

    Raises:
      OSError: the library cannot be loaded (missing, truncated, corrupted...).
      AttributeError: it does not export ``jax_lazy_kernel`` or ``jax_lazy_kernel_key``.
      BackendError: the library reports another key (a forged or stale cache entry: it
        is not registered), or the native module is unavailable.
    """
    native = _native()
    if key in _libraries:
        return key
    # RTLD_NOW (ctypes' default on POSIX) reports unresolved symbols here, not at call time.
    lib = ctypes.CDLL(os.fspath(path))
    addresses = [ctypes.cast(getattr(lib, s), ctypes.c_void_p).value for s in (SYMBOL, KEY_SYMBOL)]
    if not all(addresses):
        raise AttributeError(f"{path}: symbol {SYMBOL} or {KEY_SYMBOL} has a null address")
    try:
        native.register_kernel(key, *addresses)
    except ValueError as e:
        raise BackendError(f"kernel library {path} refused: {e}") from None
    with _lock:
        _libraries.setdefault(key, lib)
    return key


def num_threads() -> int:
    """Threads (workers + caller) used by the handler for large calls."""
    return _native().num_threads()


def set_num_threads(n: int) -> None:
    """Resize the handler's thread pool; ``n <= 0`` restores the default
    (``$JAX_LAZY_NUM_THREADS``, else the hardware concurrency)."""
    _native().set_num_threads(int(n))


def _own_batch(a, cat) -> tuple:
    if cat == CAT_P:
        if a.ndim < 1:
            raise ShapeError(f"a parameter must have shape (*batch, D), got {a.shape}")
        return tuple(a.shape[:-1])
    if cat not in (CAT_I, CAT_J):
        raise ValueError(f"category must be 0 (i), 1 (j) or 2 (parameter), got {cat!r}")
    if a.ndim < 2:
        raise ShapeError(f"an {'ij'[cat]}-variable must have shape (*batch, {'MN'[cat]}, D), got {a.shape}")
    return tuple(a.shape[:-2])


def input_batches(arrays: Sequence, cats: Sequence[int], batch: tuple, M: int, N: int) -> list[int]:
    """The ``in_batch`` attribute of the FFI handlers: each input's batch shape,
    left-padded with 1s to ``len(batch)`` axes, concatenated (``nin * len(batch)`` ints).

    Raises:
      ValueError: ``len(cats) != len(arrays)`` or an unknown category.
      ShapeError: an input that does not broadcast to ``batch`` or has the wrong number
        of rows (i-variables M; j-variables N, in either of their last two axes).
    """
    if len(cats) != len(arrays):
        raise ValueError(f"{len(arrays)} arrays but {len(cats)} categories")
    in_batch = []
    for k, (a, cat) in enumerate(zip(arrays, cats)):
        own = _own_batch(a, cat)
        if len(own) > len(batch):
            raise ShapeError(f"input {k} of shape {a.shape} has more batch axes than batch={batch}")
        own = (1,) * (len(batch) - len(own)) + own
        if any(o != 1 and o != s for o, s in zip(own, batch)):
            raise ShapeError(f"input {k} of shape {a.shape} does not broadcast to batch={batch}")
        # j-variables may come transposed, (*b, D, N): the kernel owns the layout.
        if (cat == CAT_I and a.shape[-2] != M) or (cat == CAT_J and N not in a.shape[-2:]):
            raise ShapeError(f"input {k} of shape {a.shape}: expected {'MN'[cat]}="
                             f"{M if cat == CAT_I else N} rows")
        in_batch.extend(own)
    return in_batch


def check_out_types(out_types: Sequence, batch: tuple, M: int) -> list:
    """``out_types`` as a list, each checked to be of shape ``(*batch, M, width)``
    (ShapeError otherwise)."""
    out_types = list(out_types)
    for k, t in enumerate(out_types):
        if len(t.shape) != len(batch) + 2 or tuple(t.shape[:-1]) != batch + (M,):
            raise ShapeError(f"output {k} has shape {t.shape}, expected (*batch, M, width) with "
                             f"batch={batch}, M={M}")
    return out_types


def call(kernel_key: str, arrays: Sequence, cats: Sequence[int], out_types: Sequence,
         batch: Sequence[int], M: int, N: int, row_block: int = 8) -> tuple:
    """Run kernel ``kernel_key`` through the ``jax_lazy_cpu`` custom call.

    Works under ``jax.jit`` and ``jax.vmap`` (``vmap_method="broadcast_all"``: the handler
    treats the extra leading axes as batch axes).

    Args:
      kernel_key: the key of a kernel loaded by :func:`load_kernel`, or in the kernel cache.
      arrays: the kernel's inputs, in kernel order, each of the dtype the kernel expects:
        i-variables ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters ``(*b, D)``,
        where ``b`` broadcasts to ``batch`` (missing leading axes count as 1). Only the
        batch axes are interpreted here: the last two axes of a variable (last one of a
        parameter) are the kernel's per-batch slice, in whatever layout it expects (e.g.
        a j-variable transposed to ``(*b, D, N)``).
      cats: per array, 0 (i-variable), 1 (j-variable) or 2 (parameter).
      out_types: ``jax.ShapeDtypeStruct`` per kernel output, of shape
        ``(*batch, M, width)`` (any dtype, e.g. float values and int32 indices).
      batch: the broadcast batch shape (possibly ``()``).
      M, N: numbers of rows (i) and columns (j).
      row_block: work units span a multiple of ``row_block`` rows (>= 1).

    Returns:
      A tuple of arrays, one per ``out_types``.

    Raises:
      ShapeError: inconsistent shapes (checked here, before the call).
      BackendError: the native handler is unavailable.
      jax.errors.JaxRuntimeError (at execution): a kernel neither loaded nor in the
        kernel cache, or a refused one (the message names the key and says why), or
        buffers inconsistent with the attributes.
    """
    ensure_registered()
    batch = tuple(int(s) for s in batch)
    if int(row_block) < 1:
        raise ValueError(f"row_block must be >= 1, got {row_block}")
    in_batch = input_batches(arrays, cats, batch, M, N)
    out_types = check_out_types(out_types, batch, M)
    fn = jax.ffi.ffi_call(TARGET, out_types, vmap_method="broadcast_all")
    outs = fn(*arrays, kernel_key=str(kernel_key), M=np.int64(M), N=np.int64(N),
              batch=np.asarray(batch, np.int64), in_batch=np.asarray(in_batch, np.int64),
              row_block=np.int64(row_block))
    return tuple(outs)
