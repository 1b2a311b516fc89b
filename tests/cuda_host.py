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
import threading

import jax
import ml_dtypes
import numpy as np

from jax_lazy import compilers
from jax_lazy.backends import cuda, cuda_ffi
from jax_lazy.backends.common import out_types as _out_types

SHIM = r"""
// ---- host shim: CUDA C++ as plain C++ (tests/cuda_host.py)
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
struct jl_dim3 { unsigned x, y, z; };
static thread_local jl_dim3 threadIdx, blockIdx;
static jl_dim3 gridDim, blockDim;
static std::barrier<>* jl_block_barrier;
static std::barrier<>* jl_warp_barrier[32];  // warp w: lanes 32 w .. 32 w + 31
alignas(16) unsigned char jl_smem[1 << 17];
// entries of rows < M that the sqdist expansion's cancellation guard recomputed
static std::atomic<long long> jl_guard_hits{0};
#define JL_SQDIST_GUARD_HIT(valid) (void)((valid) && jl_guard_hits.fetch_add(1))
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
// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 mantissa bits (the low
// 13 bits cleared); inf and NaN pass through
inline unsigned jl_tf32(float x) {
  const unsigned u = __float_as_uint(x);
  return (u & 0x7f800000u) == 0x7f800000u ? u : (u + 0x1000u) & 0xffffe000u;
}
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, d += A B, as a warp executes it:
// every lane publishes its fragments, waits for the warp, then computes its own four
// elements of D (PTX ISA fragment layouts: see prelude_cuda.h). Two buffers, alternated:
// a lane can only write the next call's buffer after the whole warp has reached this
// call's barrier, i.e. has read the previous call's buffer. Operands are read as tf32
// (low 13 bits ignored); products of tf32 values are exact in float32.
static unsigned jl_mma_a[32][2][32][4], jl_mma_b[32][2][32][2];
static thread_local int jl_mma_parity;
inline void jl_mma_tf32_m16n8k8(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  const unsigned w = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int par = jl_mma_parity;
  jl_mma_parity ^= 1;
  std::memcpy(jl_mma_a[w][par][lane], a, sizeof a);
  std::memcpy(jl_mma_b[w][par][lane], b, sizeof b);
  jl_warp_barrier[w]->arrive_and_wait();
  auto A = [&](unsigned r, unsigned k) {  // a[q] = A[gid + 8 (q & 1)][tig + 4 (q >> 1)]
    return __uint_as_float(jl_mma_a[w][par][(r % 8) * 4 + k % 4][(r / 8) + 2 * (k / 4)] & 0xffffe000u);
  };
  auto B = [&](unsigned k, unsigned n) {  // b[q] = B[tig + 4 q][gid]
    return __uint_as_float(jl_mma_b[w][par][n * 4 + k % 4][k / 4] & 0xffffe000u);
  };
  for (unsigned q = 0; q < 4; ++q) {  // d[q] = D[gid + 8 (q >> 1)][2 tig + (q & 1)]
    const unsigned r = gid + 8 * (q >> 1), n = 2 * tig + (q & 1);
    float s = d[q];
    for (unsigned k = 0; k < 8; ++k) s += A(r, k) * B(k, n);
    d[q] = s;
  }
}
// ---- end of shim
"""

LAUNCHER = r"""
// ---- host launcher: blocks in sequence, each as blockDim.x threads
extern "C" long long jl_host_guard_hits() { return jl_guard_hits.exchange(0); }
extern "C" void jl_host_launch(const jl_cuda_args* a, unsigned gx, unsigned gy, unsigned threads) {
  gridDim = {gx, gy, 1};
  blockDim = {threads, 1, 1};
  for (unsigned by = 0; by < gy; ++by)
    for (unsigned bx = 0; bx < gx; ++bx) {
      std::barrier<> barrier(threads);
      jl_block_barrier = &barrier;
      std::vector<std::unique_ptr<std::barrier<>>> warps;
      for (unsigned w = 0; w < (threads + 31) / 32; ++w) {
        warps.push_back(std::make_unique<std::barrier<>>(threads - 32 * w < 32 ? threads - 32 * w : 32));
        jl_warp_barrier[w] = warps.back().get();
      }
      std::vector<std::thread> pool;
      for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([=] {
          threadIdx = {t, 0, 0};
          blockIdx = {bx, by, 0};
          jl_mma_parity = 0;
          jax_lazy_kernel(*a);
        });
      for (auto& th : pool) th.join();
    }
}
"""

FLAGS = ["-O1", "-std=c++20", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas"]
STORAGE = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def host_source(plan, arch="sm_90", cfg=None) -> str:
    """The kernel with launch configuration ``cfg`` (default ``cuda.config``) as compiled
    for ``arch`` (sm_80+: with tensor-core paths, emulated)."""
    return SHIM + cuda.kernel_source(plan, arch, cfg=cfg) + LAUNCHER


def _library(plan, cfg=None):
    return _library_of(plan.red.name, host_source(plan, cfg=cfg))


@functools.lru_cache(maxsize=None)
def _library_of(name, source):  # by source: the index dtype and the JAX_LAZY_CUDA_* options change it
    lib = ctypes.CDLL(str(compilers.build(f"host_{name}", source, FLAGS)))
    lib.jl_host_launch.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]
    lib.jl_host_launch.restype = None
    lib.jl_host_guard_hits.restype = ctypes.c_longlong
    return lib


def launch(plan, arrays, out_types, batch, M, N, cfg=None, rows=None):
    """Run ``plan``'s kernel with launch configuration ``cfg`` (default ``cuda.config``)
    on NumPy ``arrays`` (i-variables ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters
    ``(*b, D)``, batch axes broadcasting against ``batch``; with ``plan.ranges``, then the
    int32 ranges table ``(*b, length)``) as the CUDA handler would launch it, with grid.x =
    ceil(M / ``rows``) (default: the configuration's rows per block); returns NumPy outputs
    of ``out_types``."""
    lib = _library(plan, cfg)
    own_rows, threads, shared = cuda.launch_config(plan, cfg=cfg)
    rows = rows or own_rows
    assert shared <= 1 << 17
    nb = len(batch)
    nvar = len(plan.variables)
    ins = [np.ascontiguousarray(np.asarray(a).astype(STORAGE[plan.dtype] if k < nvar else np.int32))
           for k, a in enumerate(arrays)]
    cats = [v.attr[1] for v in plan.variables] + [2] * (len(ins) - nvar)  # the ranges table: a "parameter"
    outs = [np.zeros(o.shape, o.dtype) for o in out_types]
    args = np.zeros((), cuda_ffi.args_dtype())
    args["M"], args["N"], args["nb"], args["nin"] = M, N, nb, len(ins)
    args["nbatch"] = int(np.prod(batch, dtype=np.int64))
    args["bdims"][:nb] = batch
    for k, (cat, a) in enumerate(zip(cats, ins)):
        own = a.ndim - (1 if cat == 2 else 2)
        shape = (1,) * (nb - own) + a.shape[:own]
        strides = (1,) * (nb - own) + tuple(s // a.itemsize for s in a.strides[:own])
        args["in"][k] = a.ctypes.data
        args["in_bstride"][k][:nb] = [0 if n == 1 and B != 1 else s for n, B, s in zip(shape, batch, strides)]
    for k, o in enumerate(outs):
        args["out"][k] = o.ctypes.data
        args["out_bstride"][k] = int(np.prod(o.shape[nb:], dtype=np.int64))
    lib.jl_host_guard_hits()
    if M and args["nbatch"]:
        lib.jl_host_launch(args.ctypes.data, -(-M // rows), min(int(args["nbatch"]), 65535), threads)
    global guard_hits
    guard_hits = lib.jl_host_guard_hits()
    return outs


guard_hits = 0  # (i, j) entries that the last launch's sqdist guard recomputed (JAX_LAZY_CUDA_SQDIST=mma)


_launch_lock = threading.Lock()  # a kernel library's shim state (barriers, grid) is global


def patch_backend(monkeypatch, multiprocessors=4, choose=None):
    """Route ``cuda.reduce`` through :func:`launch` (``jax.pure_callback``), pretending a
    GPU of ``multiprocessors`` SMs (few: small problems get their j axis split).
    ``choose(plan)``: the launch configuration (default: ``cuda.config``, no tuning).
    Under ``jax.vmap`` the callback gets the vmapped axes in front of every operand
    (``broadcast_all``, as the FFI call) and runs one launch per vmapped element."""
    kernels = {}

    def kernel_key(plan, arch=None, cfg=None):
        return kernels.setdefault((plan, cfg or cuda.config(plan)), f"{len(kernels) + 1:064x}")

    def call(kid, arrays, cats, out_types, batch, M, N, rows_per_block, block_threads, shared_bytes=0):
        plan, cfg = next(pc for pc, k in kernels.items() if k == kid)
        rows, threads, shared = cuda.launch_config(plan, cfg=cfg)
        assert (block_threads, shared_bytes) == (threads, shared)
        assert plan.ranges or rows_per_block == rows  # ranges: grid.x from the chunk count
        ranks = [np.ndim(a) for a in arrays]
        x64 = jax.dtypes.canonicalize_dtype(np.float64) == np.float64  # of the tracing thread

        # The thread that runs the callback (an XLA worker for larger computations) has
        # its own x64 setting, and JAX converts the operands under it before `run`: 64-bit
        # operands travel as uint32 pairs, so that float64 is not rounded to float32.
        wide = [np.dtype(a.dtype) if np.dtype(a.dtype).itemsize == 8 else None for a in arrays]
        arrays = [jax.lax.bitcast_convert_type(a, np.uint32) if w else a for a, w in zip(arrays, wide)]

        def run(*xs):
            # JAX checks the results against the x64 setting of the thread that runs the
            # callback, which is not the tracing thread's (a thread-local `enable_x64`):
            # give this thread the tracer's setting (a state object, safe to leave entered)
            if (jax.dtypes.canonicalize_dtype(np.float64) == np.float64) != x64:
                jax.enable_x64(x64).__enter__()
            xs = [np.ascontiguousarray(x).view(w)[..., 0] if w else x for x, w in zip(xs, wide)]
            extra = xs[0].shape[: xs[0].ndim - ranks[0]]
            with _launch_lock:
                if not extra:
                    return tuple(launch(plan, xs, out_types, tuple(batch), M, N, cfg, rows_per_block))
                parts = [launch(plan, [x[e] for x in xs], out_types, tuple(batch), M, N, cfg, rows_per_block)
                         for e in np.ndindex(*extra)]
            return tuple(np.stack(o).reshape(extra + o[0].shape) for o in zip(*parts))

        return jax.pure_callback(run, tuple(out_types), *arrays, vmap_method="broadcast_all")

    monkeypatch.setattr(cuda, "kernel_key", kernel_key)
    monkeypatch.setattr(cuda, "launch_choice", choose or cuda.config)
    monkeypatch.setattr(cuda, "_multiprocessors", lambda: multiprocessors)
    monkeypatch.setattr(cuda_ffi, "call", call)


def out_types(plan, geom):
    return _out_types(plan, geom)


def use_as_cuda_backend(request) -> None:
    """Make ``backend="cuda"`` available and run it through the shim for one test (the
    ``backend=cuda-host`` param of conftest's ``backend`` fixture)."""
    from jax_lazy import backends

    monkeypatch = request.getfixturevalue("monkeypatch")
    patch_backend(monkeypatch)
    monkeypatch.setattr(cuda, "available", lambda: None)
    backends.reset()
    request.addfinalizer(backends.reset)  # runs before monkeypatch's undo: the real check comes back

