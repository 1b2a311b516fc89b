"""Run generated CUDA kernels on the CPU: a sanity oracle for machines without a GPU.

The kernel source of :func:`jax_lazy.backends.cuda.kernel_source` is compiled, unchanged,
by the host C++ compiler between a small shim (``SHIM``: the CUDA keywords as no-ops,
``threadIdx`` / ``blockIdx`` as thread-local variables, ``__syncthreads`` as a
``std::barrier``, shared memory as one static buffer) and a launcher that runs the grid's
blocks one after the other, each as ``block_threads`` std::threads. What this checks: the
kernel's arithmetic, its reduction updates, tiling (partial tiles, rows past M), batch
addressing with broadcast strides and output layouts, i.e. everything but the GPU's
memory model, its math library and its timing.

:func:`launch` runs one kernel on NumPy arrays with the handler's conventions
(``cuda_abi.h``); :func:`patch_backend` makes ``jax_lazy.backends.cuda.reduce`` run
through it (a ``jax.pure_callback`` in place of the FFI call), so the whole backend
path, the j-split included, can be compared with the jnp backend.
"""

from __future__ import annotations

import ctypes
import functools

import jax
import ml_dtypes
import numpy as np

from jax_lazy import cache
from jax_lazy.backends import cuda, cuda_ffi
from jax_lazy.backends.cpu import _out_types

SHIM = r"""
// ---- host shim: CUDA C++ as plain C++ (tests/cuda_host.py)
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>
struct jl_dim3 { unsigned x, y, z; };
static thread_local jl_dim3 threadIdx, blockIdx;
static jl_dim3 gridDim, blockDim;
static std::barrier<>* jl_block_barrier;
alignas(16) unsigned char jl_smem[1 << 17];
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __shared__
#define __syncthreads() jl_block_barrier->arrive_and_wait()
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float jl_h2f(unsigned short h) { _Float16 x; std::memcpy(&x, &h, 2); return (float)x; }
inline unsigned short jl_f2h(float f) { _Float16 x = (_Float16)f; unsigned short h; std::memcpy(&h, &x, 2); return h; }
// ---- end of shim
"""

LAUNCHER = r"""
// ---- host launcher: blocks in sequence, each as blockDim.x threads
extern "C" void jl_host_launch(const jl_cuda_args* a, unsigned gx, unsigned gy, unsigned threads) {
  gridDim = {gx, gy, 1};
  blockDim = {threads, 1, 1};
  for (unsigned by = 0; by < gy; ++by)
    for (unsigned bx = 0; bx < gx; ++bx) {
      std::barrier<> barrier(threads);
      jl_block_barrier = &barrier;
      std::vector<std::thread> pool;
      for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([=] { threadIdx = {t, 0, 0}; blockIdx = {bx, by, 0}; jax_lazy_kernel(*a); });
      for (auto& th : pool) th.join();
    }
}
"""

FLAGS = ["-O1", "-std=c++20", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas"]
STORAGE = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def host_source(plan) -> str:
    return SHIM + cuda.kernel_source(plan, "sm_90") + LAUNCHER


@functools.lru_cache(maxsize=None)
def _library(plan, idx):  # idx: the index dtype is part of the source
    lib = ctypes.CDLL(str(cache.build(f"host_{plan.red.name}", host_source(plan), FLAGS)))
    lib.jl_host_launch.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]
    lib.jl_host_launch.restype = None
    return lib


def launch(plan, arrays, out_types, batch, M, N):
    """Run ``plan``'s kernel on NumPy ``arrays`` (i-variables ``(*b, M, D)``, j-variables
    ``(*b, N, D)``, parameters ``(*b, D)``, batch axes broadcasting against ``batch``) as the
    CUDA handler would launch it; returns NumPy outputs of ``out_types``."""
    from jax_lazy.reductions import index_dtype

    lib = _library(plan, str(np.dtype(index_dtype())))
    rows, threads, shared = cuda.launch_config(plan)
    assert shared <= 1 << 17
    nb = len(batch)
    ins = [np.ascontiguousarray(np.asarray(a).astype(STORAGE[plan.dtype])) for a in arrays]
    outs = [np.zeros(o.shape, o.dtype) for o in out_types]
    args = np.zeros((), cuda_ffi.args_dtype())
    args["M"], args["N"], args["nb"], args["nin"] = M, N, nb, len(ins)
    args["nbatch"] = int(np.prod(batch, dtype=np.int64))
    args["bdims"][:nb] = batch
    for k, (v, a) in enumerate(zip(plan.variables, ins)):
        own = a.ndim - (1 if v.attr[1] == 2 else 2)
        shape = (1,) * (nb - own) + a.shape[:own]
        strides = (1,) * (nb - own) + tuple(s // a.itemsize for s in a.strides[:own])
        args["in"][k] = a.ctypes.data
        args["in_bstride"][k][:nb] = [0 if n == 1 and B != 1 else s for n, B, s in zip(shape, batch, strides)]
    for k, o in enumerate(outs):
        args["out"][k] = o.ctypes.data
        args["out_bstride"][k] = int(np.prod(o.shape[nb:], dtype=np.int64))
    if M and args["nbatch"]:
        lib.jl_host_launch(args.ctypes.data, -(-M // rows), min(int(args["nbatch"]), 65535), threads)
    return outs


def patch_backend(monkeypatch, multiprocessors=4):
    """Route ``cuda.reduce`` through :func:`launch` (``jax.pure_callback``), pretending a
    GPU of ``multiprocessors`` SMs (few: small problems get their j axis split)."""
    plans = {}

    def kernel_id(plan, arch=None):
        return plans.setdefault(plan, len(plans) + 1)

    def call(kid, arrays, cats, out_types, batch, M, N, rows_per_block, block_threads, shared_bytes=0):
        plan = next(p for p, k in plans.items() if k == kid)
        assert (rows_per_block, block_threads, shared_bytes) == cuda.launch_config(plan)
        run = lambda *xs: tuple(launch(plan, xs, out_types, tuple(batch), M, N))  # noqa: E731
        return jax.pure_callback(run, tuple(out_types), *arrays)

    monkeypatch.setattr(cuda, "kernel_id", kernel_id)
    monkeypatch.setattr(cuda, "_multiprocessors", lambda: multiprocessors)
    monkeypatch.setattr(cuda_ffi, "call", call)


def out_types(plan, geom):
    return _out_types(plan, geom)
