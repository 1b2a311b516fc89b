"""Backend selection: "auto" prefers the compiled cpu backend, falls back to jnp with one
warning when no compiler is found, and an explicit backend that cannot run raises."""

import os
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import pytest

import jax_lazy
from jax_lazy import BackendError, Vi, Vj
from jax_lazy.backends import cpu

CPU = cpu.available() is None


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


NO_COMPILER = """
    import warnings, numpy as np, jax.numpy as jnp
    from jax_lazy import Vi, Vj, doctor
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = (-Vi(x).sqdist(Vj(x))).exp().sum(axis=1)
        b = (-Vi(x).sqdist(Vj(x))).exp().sum(axis=0)
    ref = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1)).sum(1)[:, None]
    assert np.allclose(a, ref, rtol=1e-5) and np.allclose(b, ref, rtol=1e-5)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    print("WARNINGS", len(msgs), msgs[0] if msgs else "")
    print("DOCTOR", doctor(verbose=False)["backends"]["cpu"])
"""


def test_no_compiler_falls_back_to_jnp_with_one_warning(tmp_path):
    # an empty cache: without a compiler, cached kernels would be used (test_cache_faults.py)
    out = _run(NO_COMPILER, JAX_LAZY_CXX="/nonexistent/c++", JAX_LAZY_CACHE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "WARNINGS 1 " in out.stdout, out.stdout
    assert "/nonexistent/c++" in out.stdout  # the warning and doctor() say why


def test_explicit_cpu_backend_without_compiler_raises(tmp_path):
    code = """
        import numpy as np
        from jax_lazy import Vi, Vj, BackendError
        x = np.ones((3, 2), np.float32)
        try:
            Vi(x).sqdist(Vj(x)).sum(axis=1, backend="cpu")
        except BackendError as e:
            print("RAISED", e)
    """
    out = _run(code, JAX_LAZY_CXX="/nonexistent/c++", JAX_LAZY_CACHE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "RAISED" in out.stdout and "Var(0,2,0)" in out.stdout, out.stdout


@pytest.mark.skipif(not CPU or jax.default_backend() != "cpu", reason="needs the cpu backend on a CPU platform")
def test_auto_prefers_cpu_for_float32():
    assert jax_lazy.backends.resolve("auto", "float32") == "cpu"
    assert jax_lazy.backends.resolve("auto", "float16") == "cpu"  # computed in float32 (test_numerics.py)


def test_auto_warns_once_when_the_dtype_sends_it_to_jnp(monkeypatch):
    """docs/api.md: "auto" falls back to jnp "with one warning saying why"; also when the
    reason is the dtype (every float dtype a LazyArray takes runs on cpu and cuda now:
    a backend that refuses one is simulated)."""
    from jax_lazy import backends

    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.setattr(backends, "_available", lambda name: None)
    monkeypatch.setattr(cpu, "supports", lambda dtype: f"the cpu backend computes in float64 only, not {dtype}")
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    with pytest.warns(RuntimeWarning, match="cpu backend is unavailable.*not float32"):
        assert backends.resolve("auto", "float32") == "jnp"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        assert backends.resolve("auto", "float32") == "jnp"


@pytest.mark.skipif(not CPU, reason=f"cpu backend unavailable: {cpu.available()}")
def test_cpu_backend_rejects_an_integer_dtype():
    from jax_lazy import backends

    assert "not int32" in cpu.supports("int32")
    with pytest.raises(BackendError, match="int32"):
        backends.resolve("cpu", "int32")


def test_auto_order_follows_the_platform(monkeypatch):
    """On a GPU platform "auto" tries cuda first, on CPU the cpu backend; a compiled
    backend that cannot run falls back to jnp with one warning naming the reason."""
    from jax_lazy import backends

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(backends, "_available", lambda name: "no device here" if name == "cuda" else None)
    monkeypatch.setattr(backends, "_warned", set())
    with pytest.warns(RuntimeWarning, match="cuda backend is unavailable.*no device here"):
        assert backends.resolve("auto", "float32") == "jnp"
    monkeypatch.setattr(backends, "_available", lambda name: None)
    assert backends.resolve("auto", "bfloat16") == "cuda"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert backends.resolve("auto", "float32") == "cpu"
    assert backends.resolve("auto", "bfloat16") == "cpu"
    with pytest.raises(BackendError, match="unknown backend 'tpu'"):
        backends.resolve("tpu", "float32")
