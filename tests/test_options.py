"""jax_lazy.options: one frozen object for every JAX_LAZY_* variable, read once, checked,
documented in docs/api.md, and part of the kernel keys where it changes kernels."""

from __future__ import annotations

import dataclasses
import re
import uuid
from pathlib import Path

import pytest

import jax_lazy
from jax_lazy import compilers, options
from jax_lazy.options import OptionError, Options

from conftest import set_env

ROOT = Path(__file__).parent.parent
VARIABLES = options.variables()

# variable -> a value it cannot take (one row per variable that has invalid values)
BAD = {"JAX_LAZY_CUDA_INNER": "tensor", "JAX_LAZY_CUDA_TF32": "2", "JAX_LAZY_CUDA_SQDIST": "yes",
       "JAX_LAZY_CUDA_TUNE": "maybe", "JAX_LAZY_NUM_THREADS": "-1", "JAX_LAZY_PLAN_CACHE": "0",
       "JAX_LAZY_DUMP": "loud", "JAX_LAZY_CXXFLAGS": "-DX='unclosed"}
FREE_TEXT = {"JAX_LAZY_CACHE_DIR", "JAX_LAZY_CXX", "JAX_LAZY_NVRTC"}  # any value is taken (checked where used)


def test_every_field_is_one_documented_variable():
    names = [f.metadata["env"] for f in dataclasses.fields(Options) if f.metadata["env"]]
    assert len(set(names)) == len(names) and all(n.startswith("JAX_LAZY_") for n in names)
    api = (ROOT / "docs" / "api.md").read_text()
    for var, f in VARIABLES.items():
        assert f.metadata["doc"] and f"`{var}`" in api, var
    assert set(BAD) | FREE_TEXT == set(VARIABLES)


def test_defaults_from_an_empty_environment():
    assert Options.from_environ({}) == Options()
    opts = Options()
    assert (opts.cache_dir, opts.cxx, opts.cxxflags, opts.cuda_inner, opts.cuda_tf32, opts.cuda_sqdist,
            opts.cuda_tune, opts.plan_cache, opts.dump) == (None, "", (), "mma", False, "fma", True, 64, False)


@pytest.mark.parametrize("var", sorted(BAD))
def test_a_bad_value_names_the_variable(var):
    with pytest.raises(OptionError, match=re.escape(f"${var}=")) as info:
        Options.from_environ({var: BAD[var]})
    assert isinstance(info.value, ValueError) and isinstance(info.value, jax_lazy.JaxLazyError)


def test_values():
    opts = Options.from_environ({"JAX_LAZY_CUDA_TF32": "1", "JAX_LAZY_CUDA_TUNE": "0", "JAX_LAZY_DUMP": "yes",
                                 "JAX_LAZY_CXXFLAGS": "-O2 '-DA=1 2'", "JAX_LAZY_PLAN_CACHE": "3",
                                 "JAX_LAZY_CACHE_DIR": "~/k", "CXX": "g++ -g"})
    assert opts.cuda_tf32 and not opts.cuda_tune and opts.dump and opts.plan_cache == 3
    assert opts.cxxflags == ("-O2", "-DA=1 2") and opts.cache_dir == Path("~/k").expanduser()
    assert (opts.cxx, opts.cxx_var) == ("g++ -g", "CXX")
    assert Options.from_environ({"JAX_LAZY_CXX": "clang++", "CXX": "g++"}).cxx_var == "JAX_LAZY_CXX"


def test_read_once_until_reset(monkeypatch):
    first = options.options()
    assert options.options() is first
    monkeypatch.setenv("JAX_LAZY_CUDA_TF32", str(int(not first.cuda_tf32)))
    assert options.options() is first  # not re-read
    assert options.reset().cuda_tf32 != first.cuda_tf32 and options.options().cuda_tf32 != first.cuda_tf32


def test_no_other_module_reads_the_environment_for_jax_lazy():
    readers = []
    for path in (ROOT / "jax_lazy").rglob("*.py"):
        if path.name == "options.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(os\.environ|getenv)\S*\(\s*[\"']JAX_LAZY_", line):
                readers.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert readers == []


# ---------------------------------------------------------------- the kernel keys

# variable -> a value that changes its backend's kernels (every option with "kernel"
# metadata but JAX_LAZY_NVRTC: the library is loaded once per process; its identity,
# version and file, is in the key)
CHANGES = {"JAX_LAZY_CXXFLAGS": "-DJAX_LAZY_OPTIONS_TEST=1", "JAX_LAZY_CXX": "COMPILER -DOTHER=1",
           "JAX_LAZY_CUDA_INNER": "fma", "JAX_LAZY_CUDA_TF32": "1", "JAX_LAZY_CUDA_SQDIST": "mma"}


def test_the_key_table_is_complete():
    kernel = {v for v, f in VARIABLES.items() if f.metadata["kernel"]}
    assert set(CHANGES) == kernel - {"JAX_LAZY_NVRTC"}
    assert set(options.kernel_material("cuda")) == {v for v in CHANGES if v.startswith("JAX_LAZY_CUDA_")}
    assert options.kernel_material("cpu") == {}  # the compiler's identity and the flags carry them


@pytest.mark.parametrize("var", sorted(CHANGES))
def test_an_option_that_changes_kernels_changes_their_key(var, monkeypatch):
    source = f"// {uuid.uuid4()}\n"  # the same source text under both settings
    if var.startswith("JAX_LAZY_CUDA_"):
        from jax_lazy.backends import nvrtc

        if nvrtc.status():
            pytest.skip(f"NVRTC unavailable: {nvrtc.status()}")
        key = lambda: compilers.cubin_key(source, "sm_90", nvrtc.default_options("sm_90"))  # noqa: E731
    else:
        if compilers.find_compiler() is None:
            pytest.skip(compilers.compiler_problem())
        key = lambda: compilers.library_key(source)  # noqa: E731
    set_env(monkeypatch, **{v: None for v in CHANGES}, CXX=None)
    compilers.reset_compiler()
    before = key()
    value = CHANGES[var].replace("COMPILER", compilers.find_compiler().argv[0] if compilers.find_compiler() else "c++")
    set_env(monkeypatch, **{var: value})
    compilers.reset_compiler()
    try:
        assert key() != before
    finally:
        set_env(monkeypatch, **{var: None})
        compilers.reset_compiler()
