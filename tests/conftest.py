"""Shared fixtures and helpers of the jax_lazy test suite.

- ``backend``: every name of ``jax_lazy.backends.NAMES``, skipped (with the backend's
  own reason) when it is unavailable here.
- ``precision(dtype)``: a context that enables x64 for float64 (float64 arrays cannot
  be created otherwise) and leaves the default (x64 off) for float32.
- ``use_tiling(monkeypatch, kind)``: "tiny" shrinks the jnp backend's tiles so that
  small problems run on many padded i- and j-tiles; the memoised plans are dropped
  around the change (see ``clear_plan_caches`` for why not ``jax.clear_caches()``).
- ``JAX_LAZY_TEST_BACKENDS=jnp`` (comma-separated) restricts the backends tested.
- ``set_env(monkeypatch, NAME=value, OTHER=None)``: set (or unset, None) environment
  variables for one test and re-read jax_lazy's options (:func:`jax_lazy.options.reset`);
  every test starts and ends with the options of the environment of that moment.
- ``assert_close``: per-dtype tolerances, the absolute part scaled by the size of the
  summed terms (sums of signed terms cancel).
"""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np
import pytest

import jax_lazy
import jax_lazy.primitive
import jax_lazy.backends
import jax_lazy.backends.cpu
import jax_lazy.backends.jnp
from jax_lazy import options

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}

# Tiny tiles: at most 4 columns per j-tile, and i-blocks of 4 rows for formulas of width
# (sum of the dims of their nodes) 6 to 10, 2 rows up to width 20, 1 row beyond
# (TILE_BUDGET // (MAX_TJ * width), rounded down to a power of 2): with M = 5 or 7 and
# N = 5 or 7, both the i-blocks and the j-tiles end padded.
TINY_TILES = {"MAX_TJ": 4, "TILE_BUDGET": 160}


def pytest_configure(config):
    # pyproject.toml registers the marker too; registering twice is harmless and keeps
    # the suite runnable from a checkout without that section.
    config.addinivalue_line("markers", "slow: long-running test, excluded from the fast suite")


# ---------------------------------------------------------------- backends


def backend_params():
    """One pytest param per backend name; unavailable backends are skipped with their reason.

    ``JAX_LAZY_TEST_BACKENDS=jnp,cpu`` restricts the run to the listed backends.
    """
    only = [b for b in os.environ.get("JAX_LAZY_TEST_BACKENDS", "").split(",") if b]
    params = []
    for name in jax_lazy.backends.NAMES:
        if only and name not in only:
            continue
        reason = jax_lazy.backends.get(name).available()
        if reason is None and name == "cpu":  # the tests compile kernels no cache holds
            reason = jax_lazy.backends.cpu.limitation()
        platform = {"cpu": "cpu", "cuda": "gpu"}.get(name)
        if reason is None and platform and jax.default_backend() != platform:
            reason = f"its kernels run in {platform} computations; JAX's default platform is {jax.default_backend()}"
        marks = [pytest.mark.skip(reason=f"backend {name!r} unavailable: {reason}")] if reason else []
        params.append(pytest.param(name, marks=marks, id=f"backend={name}"))
        if name == "cuda" and reason and (not only or "cuda-host" in only):
            params.append(_cuda_host_param())
    return params


def _cuda_host_param():
    """Without a GPU: the cuda backend's generated kernels run on the CPU through the host
    shim (``cuda_host.py``, slow: a g++ build per kernel)."""
    from jax_lazy import compilers

    marks = [pytest.mark.slow]
    if compilers.find_compiler() is None:
        marks.append(pytest.mark.skip(reason=f"the cuda host shim needs a C++20 compiler: {compilers.compiler_problem()}"))
    return pytest.param("cuda-host", marks=marks, id="backend=cuda-host")


@pytest.fixture(params=backend_params())
def backend(request):
    if request.param == "cuda-host":
        import cuda_host

        cuda_host.use_as_cuda_backend(request)
        return "cuda"
    return request.param


# ---------------------------------------------------------------- precision


@contextlib.contextmanager
def precision(dtype):
    """Enable x64 for float64 work; float32 runs with JAX's default (x64 off)."""
    if np.dtype(dtype) == np.float64:
        with jax.enable_x64(True):
            yield
    else:
        with jax.enable_x64(False):
            yield


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# ---------------------------------------------------------------- tiling


def clear_plan_caches(jax_caches: bool = False):
    """Forget the memoised plans (each holds the jitted eager function whose traces JAX
    caches by identity), so the next reduction is traced with the current tile sizes.
    ``jax.clear_caches()`` also drops every compiled executable of the process; that
    costs ~0.5 s of recompiling per test, so it is only done on request."""
    jax_lazy.primitive._executable.cache_clear()
    if jax_caches:
        jax.clear_caches()


_TINY_USED = []


def use_tiling(monkeypatch, kind: str):
    """Select the jnp backend's tile sizes: "default" (untouched) or "tiny"."""
    if kind == "default":
        return
    assert kind == "tiny", kind
    clear_plan_caches()
    _TINY_USED.append(True)
    for name, value in TINY_TILES.items():
        monkeypatch.setattr(jax_lazy.backends.jnp, name, value, raising=True)


@pytest.fixture(autouse=True)
def _fresh_options():
    # Before: a module-scoped fixture may have changed the environment since the last test.
    # After (torn down after monkeypatch, which this fixture precedes): its changes are undone.
    options.reset()
    yield
    options.reset()


def set_env(monkeypatch, **variables) -> None:
    """Set (a str) or unset (None) environment variables until the end of the test, then
    re-read jax_lazy's options."""
    for name, value in variables.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    options.reset()


@pytest.fixture(autouse=True)
def _restore_tiles():
    """Plans traced under tiny tiles must not leak into later tests (they would be
    correct, only slow): once the test's monkeypatch is undone (fixtures it requested
    are torn down before this autouse one), drop the memoised plans and traces."""
    yield
    if _TINY_USED:
        _TINY_USED.clear()
        clear_plan_caches()


# ---------------------------------------------------------------- comparisons


def assert_close(actual, expected, dtype, *, terms=None, rtol=None, err_msg=""):
    """Compare ``actual`` with the float64 ``expected``.

    ``terms``: the absolute values of the summed terms (same shape as ``expected``), to
    scale the absolute tolerance of sums with cancellation; default ``|expected|``.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, np.dtype(dtype))
    rtol = RTOL[np.dtype(dtype)] if rtol is None else rtol
    scale = np.abs(expected) if terms is None else np.asarray(terms)
    atol = rtol * (float(np.max(scale)) if scale.size else 1.0)
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol, atol=atol, err_msg=err_msg)


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


def skip_if_unsupported(backend: str, dtype) -> None:
    """Skip when ``backend`` does not compute in ``dtype`` (its ``supports`` says why)."""
    supports = getattr(jax_lazy.backends.get(backend), "supports", None)
    reason = supports(np.dtype(dtype).name) if supports else None
    if reason:
        pytest.skip(f"backend {backend!r} does not support {np.dtype(dtype).name}: {reason}")


# ---------------------------------------------------------------- known library bugs
# Each open bug has a minimal strict-xfail repro in the test file of its area; the
# parametrised tests it breaks are marked with the same reason (``xfail_bug`` for every
# backend, ``expect_bug`` inside a test for some backends only), so that a fix turns
# them into XPASS(strict) failures and the marks get removed.

BUGS = {  # key -> (reason, backends it affects; None: every backend)
}


def xfail_bug(key: str):
    """A strict xfail mark for a bug that affects every backend."""
    reason, backends = BUGS[key]
    assert backends is None, f"{key} is backend-specific: use expect_bug(request, key, backend)"
    return pytest.mark.xfail(strict=True, reason=reason)


def expect_bug(request, key: str, backend: str) -> None:
    """Mark the running test strict-xfail when bug ``key`` affects ``backend``."""
    reason, backends = BUGS[key]
    if backends is None or backend in backends:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
