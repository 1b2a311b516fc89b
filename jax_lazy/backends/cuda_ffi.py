"""Calling generated CUDA kernels through the XLA FFI handler ``jax_lazy_cuda``.

The compiled module ``jax_lazy._native`` holds a registry ``kernel key -> (image, entry
name)`` (the key: the kernel cache key, which the image carries as the ``__device__``
string ``jax_lazy_kernel_key``, checked when the module is loaded) and the handler, which loads an image into the CUDA context it runs in (on first
use there) and launches it on XLA's stream, asynchronously. The CUDA driver is opened
with ``dlopen("libcuda.so.1")`` on first need, so none of this needs CUDA to build or
import. The handler/kernel ABI is ``kernels/cuda_abi.h``: the kernel's only parameter is
a ``jl_cuda_args`` struct (input and output pointers, M, N, batch shape and per-input,
per-axis element strides, 0 on broadcast axes); the launch is::

    grid  = (ceil(M / rows_per_block), min(nbatch, JL_MAX_GRID_Y))
    block = block_threads, dynamic shared memory = shared_bytes

Typical use::

    key = load_kernel(cubin_or_ptx, key)            # once per image
    (out,) = call(key, (x, y, b), (0, 1, 1),        # i-, j-, j-variable
                  [jax.ShapeDtypeStruct(batch + (M, 1), x.dtype)], batch, M, N,
                  rows_per_block=64, block_threads=64, shared_bytes=0)

:func:`dry_run` runs the handler's checks and packing on the CPU and returns the
``jl_cuda_args`` it would launch with, decoded: "show me what the kernel receives".
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from ..errors import BackendError
from .ffi import check_out_types, input_batches, native_with

TARGET = "jax_lazy_cuda"
DRY_RUN_TARGET = "jax_lazy_cuda_dry_run"
ENTRY = "jax_lazy_kernel"
ABI_HEADER = Path(__file__).parent / "kernels" / "cuda_abi.h"

_lock = threading.Lock()
_registered: set[str] = set()


def _native():
    return native_with("cuda_handler", "CUDA")


def available() -> str | None:
    """None when kernels can run through the handler here, else the reason they cannot:
    no native handler, no usable CUDA driver or device (``_native.cuda_status()``), or a
    jax without a CUDA backend."""
    try:
        status = _native().cuda_status()
    except BackendError as exc:
        return str(exc)
    if status:
        return f"CUDA driver: {status}"
    try:
        jax.devices("cuda")
    except RuntimeError as exc:
        return f"jax has no CUDA backend ({exc}); install jax[cuda12]"
    return None


@functools.lru_cache(maxsize=None)
def abi_constants() -> dict[str, int]:
    """The ``JL_*`` limits of cuda_abi.h, e.g. ``{"MAX_INPUTS": 32, ...}``."""
    text = ABI_HEADER.read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define JL_(\w+)\s+(\d+)", text, re.MULTILINE)}


@functools.lru_cache(maxsize=None)
def args_dtype() -> np.dtype:
    """A NumPy mirror of ``struct jl_cuda_args`` (same field order, C alignment)."""
    c = abi_constants()
    nin, nout, nb = c["MAX_INPUTS"], c["MAX_OUTPUTS"], c["MAX_BATCH"]
    return np.dtype([("in", np.uint64, (nin,)), ("out", np.uint64, (nout,)),
                     ("M", np.int64), ("N", np.int64), ("nbatch", np.int64),
                     ("nb", np.int32), ("nin", np.int32), ("bdims", np.int64, (nb,)),
                     ("in_bstride", np.int64, (nin, nb)), ("out_bstride", np.int64, (nout,))],
                    align=True)


def register() -> None:
    """Register the ``jax_lazy_cuda`` target (and the kernel resolver) with XLA, once."""
    _register(TARGET)


def _register(target: str) -> None:
    """Register ``target`` with XLA once. On a jaxlib without CUDA, registering for the
    CUDA platform only queues the handler (used if a CUDA plugin ever loads)."""
    if target in _registered:
        return
    with _lock:
        if target in _registered:
            return
        native = _native()
        if target == TARGET:
            from .ffi import ensure_registered

            ensure_registered()  # the kernel resolver
            jax.ffi.register_ffi_target(TARGET, native.cuda_handler(), platform="CUDA")
        else:
            jax.ffi.register_ffi_target(DRY_RUN_TARGET, native.cuda_dry_run_handler(), platform="cpu")
        _registered.add(target)


def load_kernel(image: bytes, key: str, name: str = ENTRY) -> str:
    """Register a kernel image: a cubin, a fatbin or PTX text (as for
    ``cuModuleLoadData``) with ``extern "C"`` entry point ``name``, under ``key``.

    Needs no GPU: the image is loaded into a CUDA context on its first launch there, and
    refused then (an error of the launch, naming both keys) unless its ``__device__``
    string ``jax_lazy_kernel_key`` equals ``key``.

    Returns:
      ``key``, for :func:`call`; a key already registered keeps its first image.

    Raises:
      ValueError: empty image, key or name.
      BackendError: the native module or its CUDA handler is unavailable.
    """
    _native().register_cuda_kernel(bytes(image), str(key), name)
    return key


def unload_kernel(kernel_key: str) -> bool:
    """Forget ``kernel_key``; returns whether it was registered. Loaded modules stay."""
    return _native().unregister_cuda_kernel(str(kernel_key))


def _attrs(kernel_key, arrays, cats, out_types, batch, M, N, rows_per_block, block_threads,
           shared_bytes) -> tuple[list, dict]:
    """Checked ``out_types`` and the handler's attributes."""
    c = abi_constants()
    batch = tuple(int(s) for s in batch)
    if len(arrays) > c["MAX_INPUTS"]:
        raise ValueError(f"{len(arrays)} inputs; the CUDA ABI takes at most {c['MAX_INPUTS']}")
    if not 1 <= len(out_types) <= c["MAX_OUTPUTS"]:
        raise ValueError(f"{len(out_types)} outputs; the CUDA ABI takes 1 to {c['MAX_OUTPUTS']}")
    if len(batch) > c["MAX_BATCH"]:
        raise ValueError(f"batch={batch} has more than {c['MAX_BATCH']} axes")
    if int(rows_per_block) < 1 or not 1 <= int(block_threads) <= 1024 or int(shared_bytes) < 0:
        raise ValueError(f"bad launch shape: rows_per_block={rows_per_block} (>= 1), "
                         f"block_threads={block_threads} (1..1024), shared_bytes={shared_bytes} (>= 0)")
    in_batch = input_batches(arrays, cats, batch, M, N)
    out_types = check_out_types(out_types, batch, M)
    attrs = dict(kernel_key=str(kernel_key), M=np.int64(M), N=np.int64(N),
                 batch=np.asarray(batch, np.int64), in_batch=np.asarray(in_batch, np.int64),
                 rows_per_block=np.int64(rows_per_block), block_threads=np.int64(block_threads),
                 shared_bytes=np.int64(shared_bytes))
    return out_types, attrs


def call(kernel_key: str, arrays: Sequence, cats: Sequence[int], out_types: Sequence,
         batch: Sequence[int], M: int, N: int, rows_per_block: int, block_threads: int,
         shared_bytes: int = 0) -> tuple:
    """Run kernel ``kernel_key`` through the ``jax_lazy_cuda`` custom call.

    Same arrays, categories, output types and batch conventions as
    :func:`jax_lazy.backends.ffi.call`; works under ``jax.jit`` and ``jax.vmap``
    (``vmap_method="broadcast_all"``: the handler passes the extra leading axes to the
    kernel as batch axes, at most ``JL_MAX_BATCH`` in all).

    Args:
      kernel_key: the key of a kernel registered by :func:`load_kernel`, or in the
        kernel cache.
      arrays, cats, out_types, batch, M, N: as for ``ffi.call``; at most
        ``JL_MAX_INPUTS`` arrays and ``JL_MAX_OUTPUTS`` outputs.
      rows_per_block: output rows per thread block (grid.x = ceil(M / rows_per_block)).
      block_threads: threads per block, 1..1024.
      shared_bytes: dynamic shared memory per block (above 48 KiB it is opted into).

    Returns:
      A tuple of arrays, one per ``out_types``.

    Raises:
      ShapeError, ValueError: inconsistent shapes or launch parameters (checked here).
      BackendError: the native handler is unavailable.
      jax.errors.JaxRuntimeError (at execution): a kernel neither registered nor cached,
        an image that reports another key, no usable driver,
        module load or launch failure (the driver's error text is in the message).
    """
    out_types, attrs = _attrs(kernel_key, arrays, cats, out_types, batch, M, N, rows_per_block,
                              block_threads, shared_bytes)
    _register(TARGET)
    fn = jax.ffi.ffi_call(TARGET, out_types, vmap_method="broadcast_all")
    return tuple(fn(*arrays, **attrs))


def dry_run(arrays: Sequence, cats: Sequence[int], out_types: Sequence, batch: Sequence[int],
            M: int, N: int, rows_per_block: int = 1, block_threads: int = 32,
            shared_bytes: int = 0) -> np.ndarray:
    """The bytes of the ``jl_cuda_args`` that :func:`call` would launch with
    (:func:`decode_args` reads them). Runs the handler's own checks and packing, no GPU
    needed, through a target registered for the CPU only: call it on CPU arrays (e.g.
    under ``jax.default_device(jax.devices("cpu")[0])``), where the pointers are the CPU
    buffers'. Traceable; under ``jax.vmap`` the result gets the vmapped axes and every
    entry holds the whole call's struct.

    Raises what :func:`call` raises, the handler's checks included.
    """
    out_types, attrs = _attrs("", arrays, cats, out_types, batch, M, N, rows_per_block,
                              block_threads, shared_bytes)
    _register(DRY_RUN_TARGET)
    dump = jax.ShapeDtypeStruct((args_dtype().itemsize,), np.uint8)
    fn = jax.ffi.ffi_call(DRY_RUN_TARGET, [*out_types, dump], vmap_method="broadcast_all")
    return fn(*arrays, **attrs)[-1]


def decode_args(dump) -> np.ndarray:
    """``dry_run``'s bytes (shape ``(*extra, size)``) as records of :func:`args_dtype`."""
    dump = np.ascontiguousarray(np.asarray(dump, np.uint8))
    return dump.view(args_dtype()).reshape(dump.shape[:-1])
