"""Optional access to the compiled extension ``jax_lazy._native``.

The pure-Python package must keep working when the extension was not built
(e.g. running from a source checkout), so callers go through
:func:`load_native` and fall back to Python code when it returns ``None``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# (module or None, error text or None) once the import has been attempted.
_result: tuple[ModuleType | None, str | None] | None = None


def load_native() -> ModuleType | None:
    """Return the ``jax_lazy._native`` module, or ``None`` if it can't be imported.

    The import is attempted once; the outcome (including the error text, see
    :func:`native_error`) is cached for later calls.
    """
    global _result
    if _result is None:
        try:
            _result = (importlib.import_module("jax_lazy._native"), None)
        except ImportError as exc:
            _result = (None, f"{type(exc).__name__}: {exc}")
    return _result[0]


def native_error() -> str | None:
    """Return why ``jax_lazy._native`` could not be imported, or ``None`` if it could."""
    load_native()
    assert _result is not None
    return _result[1]
