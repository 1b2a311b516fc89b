"""Backends: siblings behind one small interface.

A backend module provides ``available() -> str | None`` (None when usable, else the
reason it is not) and ``reduce(plan, arrays, geometry) -> tuple of outputs`` (the forward
reduction of a canonical plan; gradients are built by :mod:`jax_lazy.api` from other
reductions). The compiled backends (``cpu``, ``cuda``) are added next to ``jnp``.
"""

from __future__ import annotations

import importlib

from ..errors import BackendError

NAMES = ("jnp",)
_AUTO_ORDER = ("jnp",)


def get(name: str):
    """The backend module called ``name``."""
    if name not in NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of 'auto', {', '.join(map(repr, NAMES))}")
    return importlib.import_module(f"{__name__}.{name}")


def resolve(name: str) -> str:
    """The concrete backend for ``name`` ("auto" picks the first available); raises
    BackendError naming the reason when the requested backend cannot run."""
    if name == "auto":
        for candidate in _AUTO_ORDER:
            if get(candidate).available() is None:
                return candidate
    reason = get(name).available()
    if reason is not None:
        raise BackendError(f"backend {name!r} is unavailable: {reason}")
    return name
