"""Bounded per-plan memo tables, all emptied by :func:`jax_lazy.clear_cache`.

Plans are memoised (plan once, run many), but every distinct formula is a new plan (a
Python float is a runtime parameter, not part of the plan; when floats were compile-time
constants, each value was a plan). Each plan's jitted function holds XLA executables:
about 1.8 MB per plan, measured. Unbounded, a loop over changing formulas (then: floats)
grew by ~1.8 GB per 1,000 of them. So every per-plan table is
an LRU of bounded size registered here, and :func:`clear` empties them all.

``JAX_LAZY_PLAN_CACHE`` (:attr:`jax_lazy.options.Options.plan_cache`, read at import) is the
number of plans whose functions are kept (default 64: about 120 MB of executables for small problems); an evicted plan is traced and compiled
again when it is next used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

from .options import options

PLANS = options().plan_cache
KERNELS = 8 * PLANS  # small entries (kernel keys, sources, launch choices): keep more

_tables: list = []


def lru(maxsize: int):
    """``functools.lru_cache(maxsize)``, registered for :func:`clear`."""

    def wrap(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        _tables.append(cached)
        return cached

    return wrap


def clear() -> None:
    """Empty every registered table, collect the garbage (the jitted functions and their
    executables die with their table entries) and hand the freed heap back to the
    operating system: glibc keeps freed memory for reuse, so without ``malloc_trim`` the
    process's RSS would not go down."""
    for table in _tables:
        table.cache_clear()
    gc.collect()
    _trim()


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None  # not glibc (macOS, musl): nothing to trim


def _trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
