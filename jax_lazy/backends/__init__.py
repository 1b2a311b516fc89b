"""Backends: siblings behind one small interface.

A backend module provides

- ``available() -> str | None``: None when usable on this machine, else the reason;
- ``supports(dtype: str) -> str | None``: None when it computes in that dtype, else why not;
- ``reduce(plan, arrays, geometry) -> tuple of outputs``: the forward reduction of a
  canonical plan (gradients are other reductions, built by :mod:`jax_lazy.api`);
- optionally ``missing(plan) -> str | None``: None when the plan's kernels can be had
  (compiled, or found in the cache), else why not;
- ``RANGES = True`` when its ``reduce`` takes block-sparse ``ranges=`` (the contract of
  ``tests/test_ranges_backends.py``); a ranges plan on a backend without it falls back
  to ``jnp`` under "auto", else raises.

``"auto"`` picks the first usable backend of :data:`AUTO_ORDER` for JAX's default
platform and the dtype: the compiled backend of the platform (``cpu`` on CPU, ``cuda`` on
GPU), else ``jnp``, with one warning saying why the compiled one cannot run (unavailable,
a dtype it does not compute in, or a kernel it can neither compile nor find in the cache).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import warnings

from ..errors import BackendError

NAMES = ("cpu", "cuda", "jnp")
AUTO_ORDER = {"cpu": ("cpu", "jnp"), "gpu": ("cuda", "jnp")}  # by jax.default_backend()
COMPILED = ("cpu", "cuda")


def get(name: str):
    """The backend module called ``name``; raises BackendError for an unknown name."""
    if name not in NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of 'auto', {', '.join(map(repr, NAMES))}")
    return importlib.import_module(f"{__name__}.{name}")


@functools.lru_cache(maxsize=None)
def _available(name: str):
    return get(name).available()


@functools.lru_cache(maxsize=None)
def _kernel_check(name: str):
    return getattr(get(name), "missing", None)


def reset() -> None:
    """Forget the memoised availability checks (after installing a compiler, in tests)."""
    _available.cache_clear()
    _warned.clear()


_warned: set = set()


def resolve(name: str, dtype: str) -> str:
    """The concrete backend for ``name`` and ``dtype`` ("auto": the first usable one).

    Raises:
      BackendError: an unknown name, or a requested backend that cannot run here (the
        message gives the reason and how to fix it).
    """
    if name == "auto":
        import jax

        for candidate in AUTO_ORDER.get(jax.default_backend(), ("jnp",)):
            reason = _available(candidate) or get(candidate).supports(dtype)
            if reason is None:
                return candidate
            if candidate in COMPILED:
                _warn_fallback(candidate, reason, once=(candidate, reason))
        raise BackendError(f"no backend can reduce {dtype} arrays")
    reason = _available(name) or get(name).supports(dtype)
    if reason is not None:
        raise BackendError(f"backend {name!r} cannot run: {reason}")
    return name


def register_targets() -> None:
    """Register the FFI targets ``jax_lazy_cpu`` and ``jax_lazy_cuda`` and the kernel
    resolver, when the native module has them (else do nothing: the backends say why
    when used). ``import jax_lazy`` calls it: XLA compiles a custom call only if its
    target is registered, and a module made by ``jax.export`` in another process calls
    them before any jax_lazy reduction runs here."""
    from . import cuda_ffi, ffi

    if ffi.available() is not None:
        return
    try:
        ffi.ensure_registered()
        cuda_ffi.register()
    except Exception:  # noqa: BLE001 - never break the import: the same calls run (and raise) on first use
        pass


def with_kernels(plan, auto: bool):
    """``plan`` when its backend can get the plan's kernels (a compiler, or the cache);
    else, when the backend was chosen by "auto", the same plan on ``jnp`` (with one
    warning saying why).

    Raises:
      BackendError: an explicitly requested backend cannot get the kernels (no compiler
        and not in the cache); the message says why and shows the plan.
    """
    check = _kernel_check(plan.backend)
    reason = _no_ranges(plan.backend) if plan.ranges else None
    reason = reason or (check(plan) if check else None)
    if reason is None:
        return plan
    if not auto or plan.backend == "jnp":
        raise BackendError(f"backend {plan.backend!r} cannot run: {reason}", plan.describe())
    _warn_fallback(plan.backend, reason, once=(plan.backend, "ranges" if plan.ranges else "kernels"))
    return with_kernels(dataclasses.replace(plan, backend="jnp"), False)


def _no_ranges(name: str):
    """Why backend ``name`` cannot run block-sparse ranges (None: it can)."""
    return None if getattr(get(name), "RANGES", False) else "it has no block-sparse ranges (ranges=) yet"


def _warn_fallback(backend: str, reason: str, once) -> None:
    """"auto" uses jnp instead of ``backend``: a RuntimeWarning, once per ``once`` key
    (the stack level points at the user's reduction call)."""
    if once not in _warned:
        _warned.add(once)
        warnings.warn(f"jax_lazy: the compiled {backend} backend is unavailable, using the slower jnp backend: "
                      f"{reason}", RuntimeWarning, stacklevel=6)
