"""``jax_lazy.doctor()``: what each backend needs and whether this machine has it."""

from __future__ import annotations

import jax

from . import backends
from ._native_loader import load_native, native_error


def doctor(verbose: bool = True) -> dict:
    """Report the JAX setup, the native module and every backend's availability.

    Returns:
      A dict ``{"jax": str, "x64": bool, "devices": [str], "native": str,
      "backends": {name: "available" | "available (limitation)" | reason}}``; printed
      when ``verbose``.
    """
    native = load_native()
    report = {
        "jax": jax.__version__,
        "x64": bool(jax.config.jax_enable_x64),
        "devices": [str(d) for d in jax.devices()],
        "native": f"{native.version()} {native.health()}" if native else f"missing ({native_error()})",
        "backends": {name: _status(backends.get(name)) for name in backends.NAMES},
    }
    if verbose:
        for key, value in report.items():
            if isinstance(value, dict):
                for name, status in value.items():
                    print(f"backend {name:<6} {status}")
            else:
                print(f"{key:<14} {value}")
    return report


def _status(backend) -> str:
    reason = backend.available()
    if reason:
        return reason
    limitation = getattr(backend, "limitation", lambda: None)()
    return f"available ({limitation})" if limitation else "available"
