"""The cpu backend's inner-product stage: Sum kernels whose formula holds ``x_i | y_j``
or ``sqdist(x_i, y_j)`` of dim >= STAGE_MIN_DIM compute them in register tiles before
the rest of the formula. Checked against a float64 NumPy oracle at sizes around the
tile edges (rows per block, two vectors of columns, the j block), in both dtypes."""

import jax
import numpy as np
import pytest

from jax_lazy import Pm, Vi, Vj
from jax_lazy.backends import common, cpu

from conftest import precision

pytestmark = pytest.mark.skipif((cpu.available() or cpu.limitation()) is not None,
                                reason=f"cpu backend unavailable: {cpu.available() or cpu.limitation()}")


def _oracle(name, x, y, b, s):
    x, y, b = (a.astype(np.float64) for a in (x, y, b))
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    dot = x @ y.T
    if name == "gauss":
        return np.exp(-d2 * s) @ b
    if name == "dot":
        return dot @ b
    if name == "both":
        return (np.exp(-d2 * s) * dot) @ b
    if name == "sqdist_only":
        return d2.sum(1, keepdims=True)
    raise KeyError(name)


FORMULAS = {
    "gauss": lambda x, y, b, s: ((-Vi(x).sqdist(Vj(y)) * Pm(s)).exp() * Vj(b)).sum(axis=1, backend="cpu"),
    "dot": lambda x, y, b, s: ((Vi(x) | Vj(y)) * Vj(b)).sum(axis=1, backend="cpu"),
    "both": lambda x, y, b, s: ((-Vi(x).sqdist(Vj(y)) * Pm(s)).exp() * (Vi(x) | Vj(y)) * Vj(b)).sum(axis=1, backend="cpu"),
    "sqdist_only": lambda x, y, b, s: Vi(x).sqdist(Vj(y)).sum(axis=1, backend="cpu"),
}


def _staged(monkeypatch, formula, args) -> int:
    """How many inner products the kernel of ``formula(*args)`` stages."""
    plans = []
    orig = cpu.kernel_source
    monkeypatch.setattr(cpu, "kernel_source", lambda plan: plans.append(plan) or orig(plan))
    cpu._kernel_key.cache_clear()
    formula(*args)
    return max(len(common.inner_products(p, p.red.roots(p.formulas))) for p in plans)


@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("M,N,D", [(1, 1, 16), (13, 33, 16), (9, 100, 17), (30, 1100, 64), (5, 70, 300)])
def test_stage_matches_float64(name, M, N, D, dtype, rtol):
    rng = np.random.default_rng(M * 1000 + N + D)
    x = rng.normal(size=(M, D)).astype(dtype)
    y = rng.normal(size=(N, D)).astype(dtype)
    b = rng.normal(size=(N, 2)).astype(dtype)
    s = np.asarray([0.5 / D], dtype)
    with precision(dtype):
        got = np.asarray(FORMULAS[name](x, y, b, s))
    ref = _oracle(name, x, y, b, s[0])
    np.testing.assert_allclose(got, ref[:, : got.shape[1]], rtol=rtol, atol=rtol * np.abs(ref).max())


def test_stage_is_used(monkeypatch):
    """The formulas above really go through the stage (else this file tests nothing new)."""
    x, y = np.ones((5, 16), np.float32), np.ones((7, 16), np.float32)
    b, s = np.ones((7, 1), np.float32), np.ones(1, np.float32)
    assert _staged(monkeypatch, FORMULAS["both"], (x, y, b, s)) == 2
    assert _staged(monkeypatch, FORMULAS["gauss"], (x[:, :3], y[:, :3], b, s)) == 0
    assert _staged(monkeypatch, lambda x, y: Vi(x).sqdist(Vj(y)).argKmin(3, axis=1, backend="cpu"), (x, y)) == 1


def test_stage_propagates_nan_and_inf():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 32)).astype(np.float32)
    y = rng.normal(size=(40, 32)).astype(np.float32)
    x[1, 3], y[5, 7], x[2, 0] = np.nan, np.inf, np.inf
    b = np.ones((40, 1), np.float32)
    got = np.asarray(FORMULAS["sqdist_only"](x, y, b, None))
    with np.errstate(invalid="ignore"):
        ref = _oracle("sqdist_only", x, y, b, None)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=2e-5)


def test_stage_under_vmap_and_grad():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 11, 20)).astype(np.float32)
    y = rng.normal(size=(70, 20)).astype(np.float32)
    b = rng.normal(size=(70, 1)).astype(np.float32)
    s = np.asarray([0.05], np.float32)
    got = jax.vmap(lambda xx: FORMULAS["gauss"](xx, y, b, s))(x)
    for k in range(3):
        np.testing.assert_allclose(got[k], _oracle("gauss", x[k], y, b, s[0]), rtol=2e-5, atol=1e-6)
    g = jax.grad(lambda yy: FORMULAS["gauss"](x[0], yy, b, s).sum())(y)
    x64, y64, b64 = (a.astype(np.float64) for a in (x[0], y, b))
    k = np.exp(-((x64[:, None] - y64[None]) ** 2).sum(-1) * 0.05)  # (M, N)
    ref = 2 * 0.05 * (k * b64[:, 0][None]).T @ x64 - 2 * 0.05 * (k * b64[:, 0][None]).sum(0)[:, None] * y64
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("red", ["argkmin", "min_argmin", "lse", "softmax"])
def test_stage_in_buffered_reductions(red):
    """Min/KMin/LSE/softmax kernels stage their inner products per chunk of columns."""
    rng = np.random.default_rng(2)
    M, N, D = 21, 150, 24
    x = rng.normal(size=(M, D)).astype(np.float32)
    y = rng.normal(size=(N, D)).astype(np.float32)
    b = rng.normal(size=(N, 3)).astype(np.float32)
    x64, y64, b64 = (a.astype(np.float64) for a in (x, y, b))
    d2 = ((x64[:, None] - y64[None]) ** 2).sum(-1)
    dot = x64 @ y64.T
    if red == "argkmin":
        got = Vi(x).sqdist(Vj(y)).argKmin(10, axis=1, backend="cpu")
        np.testing.assert_array_equal(got, np.argsort(d2, axis=1, kind="stable")[:, :10])
    elif red == "min_argmin":
        v, k = (-(Vi(x) | Vj(y))).min_argmin(axis=1, backend="cpu")
        np.testing.assert_array_equal(k[:, 0], np.argmin(-dot, axis=1))
        np.testing.assert_allclose(v[:, 0], (-dot).min(1), rtol=2e-5)
    elif red == "lse":
        got = (-Vi(x).sqdist(Vj(y)) / D).logsumexp(axis=1, backend="cpu")
        m = (-d2 / D).max(1, keepdims=True)
        np.testing.assert_allclose(got, m + np.log(np.exp(-d2 / D - m).sum(1, keepdims=True)), rtol=2e-5)
    else:
        got = ((Vi(x) | Vj(y)) / D).sumsoftmaxweight(Vj(b), axis=1, backend="cpu")
        w = np.exp(dot / D - (dot / D).max(1, keepdims=True))
        np.testing.assert_allclose(got, (w @ b64) / w.sum(1, keepdims=True), rtol=2e-5, atol=1e-6)
