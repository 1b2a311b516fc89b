"""Tests for the compiled extension ``jax_lazy._native`` and its loader.

The extension must be built wherever the tests run (CI included), so a missing
module is a failure. Set JAX_LAZY_ALLOW_NO_NATIVE=1 to skip these tests instead
(e.g. when testing a pure-Python checkout on purpose).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pathlib
import re
import sys

import pytest

from jax_lazy import _native_loader

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def native():
    try:
        return importlib.import_module("jax_lazy._native")
    except ImportError as exc:
        msg = (
            f"jax_lazy._native is not importable ({exc}). Build/install the "
            "package first, e.g. `make test` or `pip install -e .[test]`."
        )
        if os.environ.get("JAX_LAZY_ALLOW_NO_NATIVE") == "1":
            pytest.skip(msg)
        pytest.fail(msg, pytrace=False)


def _pyproject_version() -> str:
    text = PYPROJECT.read_text(encoding="utf-8")
    # [project] is the only table with a top-level `version = "..."` key.
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert match, f"no version in {PYPROJECT}"
    return match.group(1)


def test_native_imports(native):
    assert native.__name__ == "jax_lazy._native"
    # A compiled module, not some Python stand-in.
    assert pathlib.Path(native.__file__).suffix in {".so", ".pyd"}


def test_version_matches_pyproject(native):
    assert native.version() == _pyproject_version()


def test_version_matches_installed_metadata(native):
    assert native.version() == importlib.metadata.version("jax_lazy")


def test_version_matches_package_dunder(native):
    import jax_lazy

    assert getattr(jax_lazy, "__version__", native.version()) == native.version()


def test_health(native):
    health = native.health()
    assert isinstance(health, dict)
    assert {"compiler", "cxx_standard", "ffi_headers"} <= health.keys()
    assert isinstance(health["compiler"], str) and health["compiler"]
    assert isinstance(health["cxx_standard"], int)
    assert health["cxx_standard"] >= 201703  # built as C++17 or later
    assert isinstance(health["ffi_headers"], bool)
    if health["ffi_headers"]:
        major, minor = health["xla_ffi_api_version"]
        assert major >= 0 and minor >= 0
    else:
        assert health["xla_ffi_api_version"] is None


def test_loader_returns_native(native, monkeypatch):
    monkeypatch.setattr(_native_loader, "_result", None)
    assert _native_loader.load_native() is native
    assert _native_loader.native_error() is None


def test_loader_records_import_error(monkeypatch):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "jax_lazy._native", None)
    monkeypatch.setattr(_native_loader, "_result", None)
    assert _native_loader.load_native() is None
    error = _native_loader.native_error()
    assert error is not None and "jax_lazy._native" in error
