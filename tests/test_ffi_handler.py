"""The XLA FFI handler ``jax_lazy_cpu`` (xla_ffi/cpu_handler.cc) with hand-written kernels.

Kernels (tests/ffi_kernels.py) are compiled once per module through the kernel cache
(into a temporary JAX_LAZY_CACHE_DIR) and called through jax_lazy.backends.ffi.call under
jit/vmap; results are compared with dense float64 NumPy.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_lazy import compilers
from jax_lazy.backends import ffi

sys.path.insert(0, str(Path(__file__).parent))
import ffi_kernels as K  # noqa: E402
from conftest import set_env  # noqa: E402

pytestmark = pytest.mark.skipif(ffi.available() is not None or compilers.find_compiler() is None,
                                reason=f"FFI handler: {ffi.available()}; compiler: {compilers.compiler_problem()}")

I, J, P = ffi.CAT_I, ffi.CAT_J, ffi.CAT_P
INDEX = {np.float32: np.int32, np.float64: np.int64}


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """Kernel ids: ("gauss", dtype), ("argmin", dtype), "chunks"."""
    with pytest.MonkeyPatch.context() as mp:
        set_env(mp, JAX_LAZY_CACHE_DIR=tmp_path_factory.mktemp("kernel_cache"))
        ids = {"chunks": compilers.build_and_load("chunks", K.chunks_source())}
        for dt in (np.float32, np.float64):
            ids["gauss", dt] = compilers.build_and_load(f"gauss_{np.dtype(dt)}", K.gauss_source(dt))
            ids["argmin", dt] = compilers.build_and_load(f"argmin_{np.dtype(dt)}", K.argmin_source(dt, INDEX[dt]))
        yield ids


@pytest.fixture
def threads():
    """Restores the pool size after a test changes it."""
    yield
    ffi.set_num_threads(0)


def rng_arrays(seed, dtype, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2, 2, size=s).astype(dtype) for s in shapes]


def batch_of(*shapes_and_cats):
    return tuple(np.broadcast_shapes(*[s[:-2] if c != P else s[:-1] for s, c in shapes_and_cats]))


def gauss(kernels, dtype, row_block=8):
    kid = kernels["gauss", dtype]

    @jax.jit
    def f(x, y, b):
        batch = batch_of((x.shape, I), (y.shape, J), (b.shape, J))
        M, N = x.shape[-2], y.shape[-2]
        (out,) = ffi.call(kid, (x, y, b), (I, J, J), [jax.ShapeDtypeStruct(batch + (M, 1), dtype)],
                          batch, M, N, row_block=row_block)
        return out

    return f


def argmin(kernels, dtype):
    kid = kernels["argmin", dtype]

    @jax.jit
    def f(x, y, p):
        batch = batch_of((x.shape, I), (y.shape, J), (p.shape, P))
        M, N = x.shape[-2], y.shape[-2]
        outs = [jax.ShapeDtypeStruct(batch + (M, 1), dtype), jax.ShapeDtypeStruct(batch + (M, 1), INDEX[dtype])]
        return ffi.call(kid, (x, y, p), (I, J, P), outs, batch, M, N)

    return f


def check_gauss(out, x, y, b, dtype):
    out = np.asarray(out)
    ref = K.gauss_ref(x, y, b)
    assert out.dtype == np.dtype(dtype) and out.shape == ref.shape
    terms = np.abs(b).sum(axis=-2, keepdims=True) + 0 * ref  # scale of the summed terms
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol * terms.max())


def check_argmin(outs, x, y, p, dtype):
    vmin, amin = (np.asarray(o) for o in outs)
    ref_min, ref_arg = K.argmin_ref(x, y, p)
    assert vmin.dtype == np.dtype(dtype) and amin.dtype == np.dtype(INDEX[dtype])
    assert vmin.shape == ref_min.shape and amin.shape == ref_arg.shape
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(vmin, ref_min, rtol=rtol, atol=rtol * np.abs(ref_min).max())
    # The index selects the minimum (float32 may break near-ties differently).
    x64, y64, p64 = (np.asarray(a, np.float64) for a in (x, y, p))
    yt = np.swapaxes(y64, -1, -2)
    f = (x64 - yt) ** 2 + p64[..., None] * yt
    picked = np.take_along_axis(f, amin.astype(np.int64), axis=-1)
    np.testing.assert_allclose(picked, ref_min, rtol=rtol, atol=rtol * np.abs(ref_min).max())
    if dtype == np.float64:
        np.testing.assert_array_equal(amin, ref_arg)
    else:
        assert (amin == ref_arg).mean() > 0.99


# ------------------------------------------------------------------ values

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N", [(37, 23), (1, 50), (64, 1), (8, 8)])
def test_gauss_matches_numpy(kernels, dtype, M, N):
    with jax.enable_x64(dtype == np.float64):
        x, y, b = rng_arrays(M * 100 + N, dtype, (M, 1), (N, 1), (N, 1))
        check_gauss(gauss(kernels, dtype)(x, y, b), x, y, b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_outputs_min_argmin(kernels, dtype):
    with jax.enable_x64(dtype == np.float64):
        x, y, p = rng_arrays(1, dtype, (45, 1), (77, 1), (1,))
        check_argmin(argmin(kernels, dtype)(x, y, p), x, y, p, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_broadcasting(kernels, dtype):
    M, N = 19, 13
    with jax.enable_x64(dtype == np.float64):
        x, y, b, p = rng_arrays(2, dtype, (2, 1, M, 1), (1, 3, N, 1), (3, N, 1), (3, 1))
        out = gauss(kernels, dtype)(x, y, b)
        assert out.shape == (2, 3, M, 1)
        check_gauss(out, x, y, b, dtype)
        outs = argmin(kernels, dtype)(x, y, p)
        assert outs[0].shape == outs[1].shape == (2, 3, M, 1)
        check_argmin(outs, x, y, p, dtype)
        # A parameter with its own full batch, an i-variable without batch.
        x2, p2 = rng_arrays(3, dtype, (M, 1), (2, 3, 1))
        check_argmin(argmin(kernels, dtype)(x2, y, p2), x2, y, p2, dtype)


def test_empty_reduction_axis(kernels):
    # N = 0: the kernel still runs and writes its initial values.
    x, y, b = rng_arrays(4, np.float32, (10, 1), (0, 1), (0, 1))
    out = np.asarray(gauss(kernels, np.float32)(x, y, b))
    np.testing.assert_array_equal(out, np.zeros((10, 1), np.float32))


# ------------------------------------------------------------------ thread pool

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_uses_pool_and_matches(kernels, dtype, threads):
    M, N = 5000, 300
    with jax.enable_x64(dtype == np.float64):
        x, y, b = rng_arrays(5, dtype, (M, 1), (N, 1), (N, 1))
        f = gauss(kernels, dtype)
        ffi.set_num_threads(0)
        default = np.asarray(f(x, y, b))
        check_gauss(default, x, y, b, dtype)
        ffi.set_num_threads(1)
        assert ffi.num_threads() == 1
        single = np.asarray(f(x, y, b))
        ffi.set_num_threads(3)  # more threads than cores still works
        three = np.asarray(f(x, y, b))
    # Each row is computed by the same code whatever the split: bitwise equal.
    np.testing.assert_array_equal(single, default)
    np.testing.assert_array_equal(three, default)


@pytest.mark.parametrize("M,row_block,batch", [(1000, 8, ()), (1003, 7, ()), (1000, 1, (3,)),
                                               (50, 64, (4, 5)), (999, 1000, ())])
def test_work_units(kernels, threads, M, row_block, batch):
    """Every row is written by exactly one unit [i0, i1); units start at multiples of
    row_block and, with several threads, a large call is split."""
    N = 200
    ffi.set_num_threads(2)
    kid = kernels["chunks"]
    x = np.zeros(batch + (M, 1), np.float32)
    y = np.zeros((N, 1), np.float32)

    @jax.jit
    def f(x, y):
        out = [jax.ShapeDtypeStruct(batch + (M, 4), np.int64)]
        return ffi.call(kid, (x, y), (I, J), out, batch, M, N, row_block=row_block)[0]

    with jax.enable_x64(True):
        rec = np.asarray(f(x, y)).reshape(-1, M, 4)
    rows = np.arange(M)
    for r in rec:
        i0, i1 = r[:, 0], r[:, 1]
        assert (r[:, 2] == M).all() and (r[:, 3] == N).all()
        assert ((i0 <= rows) & (rows < i1)).all()
        assert (i0 % row_block == 0).all()
        starts = np.unique(i0)
        # units are contiguous and cover [0, M)
        np.testing.assert_array_equal(np.unique(i1), np.append(starts[1:], M))
        if M * N * max(1, int(np.prod(batch))) >= 1 << 16 and len(batch) == 0 and M > row_block:
            assert len(starts) > 1, "a large call should be split into several units"


def test_concurrent_callers_share_the_pool(kernels, threads):
    """Several Python threads run large calls at once (XLA may call the handler
    concurrently); each gets its own correct result."""
    ffi.set_num_threads(2)
    f = gauss(kernels, np.float32)
    inputs = [rng_arrays(10 + t, np.float32, (2000, 1), (300, 1), (300, 1)) for t in range(6)]
    f(*inputs[0]).block_until_ready()  # compile once

    def run(args):
        return np.asarray(f(*args))

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(run, inputs * 3))
    for k, out in enumerate(results):
        check_gauss(out, *inputs[k % len(inputs)], np.float32)


def test_num_threads_env(monkeypatch, threads):
    # Read at first use in a fresh process...
    code = "from jax_lazy import _native as n; print(n.num_threads())"
    env = dict(os.environ, JAX_LAZY_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1"]
    # ... and again whenever the default is restored.
    for value, expected in (("3", 3), ("junk", os.cpu_count() or 1), ("0", os.cpu_count() or 1)):
        monkeypatch.setenv("JAX_LAZY_NUM_THREADS", value)
        ffi.set_num_threads(0)
        assert ffi.num_threads() == expected, value


# ------------------------------------------------------------------ vmap

def test_vmap_broadcast_all(kernels):
    dtype = np.float32
    M, N = 21, 17
    f = gauss(kernels, dtype)
    xs, y, b = rng_arrays(6, dtype, (4, M, 1), (N, 1), (N, 1))
    out = jax.jit(jax.vmap(f, in_axes=(0, None, None)))(xs, y, b)
    assert out.shape == (4, M, 1)
    check_gauss(out, xs, y, b, dtype)
    # vmapped axis not in front, over a j-variable
    ys = rng_arrays(7, dtype, (N, 3, 1))[0]
    out = jax.vmap(f, in_axes=(None, 1, None))(xs[0], ys, b)
    check_gauss(out, xs[0], np.moveaxis(ys, 1, 0), b, dtype)
    # nested vmap over a call that already has a batch
    xb, yb, bb = rng_arrays(8, dtype, (5, 2, 1, M, 1), (3, N, 1), (N, 1))
    out = jax.vmap(jax.vmap(f, in_axes=(0, None, None)), in_axes=(0, None, None))(xb, yb, bb)
    assert out.shape == (5, 2, 3, M, 1)
    check_gauss(out, xb, yb, bb, dtype)


def test_vmap_two_outputs(kernels):
    dtype = np.float32
    g = argmin(kernels, dtype)
    x, y, ps = rng_arrays(9, dtype, (30, 1), (40, 1), (6, 1))
    outs = jax.vmap(g, in_axes=(None, None, 0))(x, y, ps)
    assert outs[0].shape == outs[1].shape == (6, 30, 1)
    check_argmin(outs, x, y, ps, dtype)


# ------------------------------------------------------------------ errors

def test_unknown_kernel_key_raises():
    bad = "9" * 64  # neither registered nor in the kernel cache
    x = np.ones((4, 1), np.float32)

    @jax.jit
    def f(x):
        return ffi.call(bad, (x, x), (I, J), [jax.ShapeDtypeStruct((4, 1), np.float32)], (), 4, 4)[0]

    with pytest.raises(Exception, match=str(bad)):
        np.asarray(f(x))


def test_handler_rejects_inconsistent_attributes(kernels):
    """Bypassing ffi.call's checks: the handler itself answers with an error, not a crash."""
    ffi.ensure_registered()
    kid = kernels["gauss", np.float32]
    x = np.ones((4, 1), np.float32)
    out = [jax.ShapeDtypeStruct((4, 1), np.float32)]
    call = jax.ffi.ffi_call(ffi.TARGET, out)
    attrs = dict(kernel_key=kid, M=np.int64(4), N=np.int64(4), row_block=np.int64(8))
    with pytest.raises(Exception, match="in_batch"):
        np.asarray(call(x, x, x, batch=np.zeros(1, np.int64) + 1, in_batch=np.ones(2, np.int64), **attrs)[0])
    with pytest.raises(Exception, match="output 0"):  # output rank does not match batch
        np.asarray(call(x, x, x, batch=np.array([2], np.int64), in_batch=np.ones(3, np.int64), **attrs)[0])
    with pytest.raises(Exception, match="broadcast"):
        outb = [jax.ShapeDtypeStruct((2, 4, 1), np.float32)]
        np.asarray(jax.ffi.ffi_call(ffi.TARGET, outb)(
            x, x, x, batch=np.array([2], np.int64), in_batch=np.array([3, 1, 1], np.int64), **attrs)[0])
    with pytest.raises(Exception, match="multiple"):  # 4 elements, batch 3
        outb = [jax.ShapeDtypeStruct((3, 4, 1), np.float32)]
        np.asarray(jax.ffi.ffi_call(ffi.TARGET, outb)(
            x, x, x, batch=np.array([3], np.int64), in_batch=np.array([3, 1, 1], np.int64), **attrs)[0])
    with pytest.raises(Exception, match="row_block"):
        np.asarray(call(x, x, x, batch=np.zeros(0, np.int64), in_batch=np.zeros(0, np.int64),
                        **dict(attrs, row_block=np.int64(0)))[0])


def test_call_validates_shapes(kernels):
    kid = kernels["gauss", np.float32]
    x = np.ones((4, 1), np.float32)
    with pytest.raises(ValueError, match="broadcast"):
        ffi.call(kid, (np.ones((2, 4, 1), np.float32), x, x), (I, J, J),
                 [jax.ShapeDtypeStruct((3, 4, 1), np.float32)], (3,), 4, 4)
    with pytest.raises(ValueError, match="more batch axes"):
        ffi.call(kid, (np.ones((2, 4, 1), np.float32), x, x), (I, J, J),
                 [jax.ShapeDtypeStruct((4, 1), np.float32)], (), 4, 4)
    with pytest.raises(ValueError, match="output 0"):
        ffi.call(kid, (x, x, x), (I, J, J), [jax.ShapeDtypeStruct((5, 1), np.float32)], (), 4, 4)


def test_registry_bindings(kernels):
    """Registration checks the library's own key (jax_lazy_kernel_key) against the key."""
    import ctypes

    from jax_lazy import _native

    key = kernels["chunks"]
    lib = ffi._libraries[key]
    kernel, own = (ctypes.cast(getattr(lib, s), ctypes.c_void_p).value for s in (ffi.SYMBOL, ffi.KEY_SYMBOL))
    before = _native.registered_kernels()
    _native.register_kernel(key, kernel, own)  # already there: keeps its entry
    assert _native.registered_kernels() == before
    with pytest.raises(ValueError, match=f"reports kernel key {key}, not {'a' * 64}"):
        _native.register_kernel("a" * 64, kernel, own)
    with pytest.raises(ValueError, match="null"):
        _native.register_kernel("a" * 64, 0, own)
    with pytest.raises(ValueError, match="empty"):
        _native.register_kernel("", kernel, own)
    assert _native.registered_kernels() == before
    assert _native.unregister_kernel(key) is True
    assert _native.unregister_kernel(key) is False
    _native.register_kernel(key, kernel, own)  # the other tests of this module still use it
