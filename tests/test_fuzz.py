"""The fuzz gate (issue 9): random formulas x every reduction x both axes x broadcast
batch shapes x float32/float64 x every available backend, against float64 NumPy (values)
and dense ``jax.numpy`` (gradients), with special values (NaN, +-inf, +-0), exact ties
and K = N among the draws (``fuzz_cases.py`` draws the cases and holds the oracle).

``make test`` runs a fixed slice (hypothesis ``derandomize``: the same cases on every
run, about 200 over the backends); ``make test-slow`` draws thousands of new ones. A
failure prints its ``Case``; each becomes a named regression test at the end of this
file (``test_regression_*``), written with ``check(Case(...), backend)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_cases as fc
import oracle as o
from conftest import backend_params, precision, skip_if_unsupported
from jax_lazy import Pm, Vi, Vj

BACKENDS = [p for p in backend_params() if p.id != "backend=cuda-host"]
FAST_EXAMPLES = {"jnp": 120, "cpu": 40, "cuda": 100}  # the cpu backend compiles each kernel with g++
SLOW_EXAMPLES = {"jnp": 1500, "cpu": 400, "cuda": 1500}
DOMAINS = ("normal", "normal", "int", "special")
RTOL = {"float32": 2e-4, "float64": 1e-9}
GRAD_RTOL = {"float32": 2e-3, "float64": 1e-8}


# ---------------------------------------------------------------- drawing cases


def cases():
    """Cases drawn from a hypothesis-chosen seed by ``fuzz_cases.random_case`` (uniform over
    ops, reductions and sizes: hypothesis' own draws favour the simplest values)."""
    return st.integers(0, 2**32 - 1).map(lambda seed: fc.random_case(seed, DOMAINS))


# ---------------------------------------------------------------- checking one case


def _dense_operands(case, arrays, xp):
    nb = max(len(s) for s in fc.BATCH[case.batch])
    return [xp.asarray(o.dense_operand(a, cat, nb)) for a, cat in zip(arrays, "ijp")]


def _dense_F(case, arrays, xp=np):
    tree = case.formula_tree()
    ops = _dense_operands(case, arrays, xp)
    F = fc.dense(tree, xp, ops)
    lead = np.broadcast_shapes(*(a.shape[:-1] for a in ops))
    return xp.broadcast_to(F, lead + F.shape[-1:])


def _weight(case, w, nb):
    return o.dense_operand(w, "ij"[case.axis], nb)


def _lazy_outputs(case, arrays, backend):
    a, b, c, w = arrays
    F = fc.build(case.formula_tree(), [Vi(a), Vj(b), Pm(c)])
    method, *_ = fc.REDUCTIONS[case.reduction]
    kw = {"axis": len(F.shape) - 3 + case.axis, "backend": backend}
    W = (Vj if case.axis == 1 else Vi)(w)
    if case.reduction == "logsumexp_w":
        kw["weight"] = W
    if case.reduction == "sumsoftmaxweight":
        out = F.sumsoftmaxweight(W, **kw)
    elif fc.REDUCTIONS[case.reduction][3]:
        out = getattr(F, method)(case.K, **kw)
    else:
        out = getattr(F, method)(**kw)
    return out if isinstance(out, tuple) else (out,)


def _assert_values(got, want, scale, rtol, what):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert (nan_g == nan_w).all(), f"{what}: NaN at {np.argwhere(nan_g != nan_w)[:5].tolist()}\ngot {got}\nwant {want}"
    inf_w = np.isinf(want)
    assert (got[inf_w] == want[inf_w]).all() and np.isfinite(got[~inf_w & ~nan_w]).all(), (
        f"{what}: infinities differ\ngot {got}\nwant {want}")
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=rtol * scale, err_msg=what)


def _assert_indices(got, want, F, case, rtol, scale):
    """Indices are valid, distinct within a K-list, select the oracle's values, and equal
    the oracle's indices wherever no two candidate values are within rounding (so the
    tie rule is checked on exact ties only)."""
    ax = (-3, -2)[case.axis]
    got = np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.issubdtype(got.dtype, np.integer), got.dtype
    R = F.shape[ax]
    if R == 0:
        assert (got == want).all(), f"an empty axis gives index -1: {got}"
        return
    assert ((got >= 0) & (got < R)).all(), f"index out of [0, {R}): {got}"
    Fm = np.moveaxis(F, ax, -2)  # (..., other, R, E)
    klist = fc.REDUCTIONS[case.reduction][3]
    g, w = (got[..., None], want[..., None]) if klist and F.shape[-1] == 1 else (got, want)
    if not klist:
        g, w = g[..., None, :], w[..., None, :]
    if klist:
        s = np.sort(g, axis=-2)
        assert (np.diff(s, axis=-2) != 0).all(), f"repeated index in a K-list: {got}"
    Fm = np.broadcast_to(Fm, np.broadcast_shapes(Fm.shape[:-2], g.shape[:-2]) + Fm.shape[-2:])
    gv, wv = np.take_along_axis(Fm, g, -2), np.take_along_axis(Fm, w, -2)
    _assert_values(gv, wv, scale, rtol, "values at the returned indices")
    # exact index agreement on rows whose candidates are well separated or exactly tied
    srt = np.sort(Fm, axis=-2)
    with np.errstate(invalid="ignore"):
        gaps = np.abs(np.diff(srt, axis=-2))
    near = ((gaps > 0) & (gaps <= rtol * max(scale, 1.0))).any(axis=-2, keepdims=True)
    sure = np.broadcast_to(~near, g.shape)
    assert (g[sure] == w[sure]).all(), f"indices differ from the oracle's (ties: smallest index)\ngot {got}\nwant {want}"


def check(case: fc.Case, backend: str):
    """Run one case on ``backend`` and compare with the oracle (values, indices and, when
    ``case.grad``, the gradients with respect to a, b and c)."""
    skip_if_unsupported(backend, case.dtype)
    arrays = fc.sample(case)
    F = _dense_F(case, arrays)
    nb = F.ndim - 3
    W = _weight(case, arrays[3], nb)
    want = fc.oracle(case, F, W)
    finite = np.abs(F[np.isfinite(F)])
    scale = float(finite.max()) if finite.size else 1.0
    if case.reduction == "sum":
        scale *= (case.M, case.N)[case.axis]
    rtol = RTOL[case.dtype]
    with precision(case.dtype):
        args = [jnp.asarray(a, case.dtype) for a in arrays]
        got = _lazy_outputs(case, args, backend)
    assert len(got) == len(want), (len(got), len(want))
    kinds = fc.REDUCTIONS[case.reduction][2]
    for g, wnt, kind in zip(got, want, kinds):
        if kind == "i":
            _assert_indices(g, wnt, F, case, rtol, scale)
        else:
            assert np.asarray(g).dtype == np.dtype(case.dtype)
            _assert_values(g, wnt, scale, rtol, case.reduction)
    if case.grad:
        _check_grad(case, arrays, want, backend)


def _check_grad(case, arrays, want, backend):
    idx = want[-1] if fc.REDUCTIONS[case.reduction][2] == "vi" else None
    if case.reduction in ("min", "max", "Kmin"):
        idx = fc.oracle(fc.dataclasses.replace(case, reduction={"min": "argmin", "max": "argmax",
                                                                "Kmin": "argKmin"}[case.reduction]),
                        _dense_F(case, arrays), None)[0]
    ct = np.random.default_rng(case.seed + 1).normal(size=want[0].shape)

    def lazy_loss(a, b, c):
        out = _lazy_outputs(case, [a, b, c, jnp.asarray(arrays[3], case.dtype)], backend)[0]
        return jnp.sum(out * jnp.asarray(ct, out.dtype))

    def dense_loss(a, b, c):
        F = _dense_F(case, [a, b, c], jnp)
        W = jnp.asarray(_weight(case, arrays[3], F.ndim - 3))
        return jnp.sum(fc.dense_reduce_jnp(case, F, W, None if idx is None else jnp.asarray(idx)) * ct)

    with precision(case.dtype):
        got = jax.grad(lazy_loss, argnums=(0, 1, 2))(*(jnp.asarray(a, case.dtype) for a in arrays[:3]))
    with jax.enable_x64(True):
        ref = jax.grad(dense_loss, argnums=(0, 1, 2))(*(jnp.asarray(a, jnp.float64) for a in arrays[:3]))
    for name, g, r in zip("abc", got, ref):
        r = np.asarray(r)
        tol = GRAD_RTOL[case.dtype]
        np.testing.assert_allclose(np.asarray(g, np.float64), r, rtol=tol, atol=tol * max(np.abs(r).max(), 1.0),
                                   err_msg=f"gradient with respect to {name}")


# ---------------------------------------------------------------- the gate


def _fuzz(backend, n, derandomize):
    @settings(max_examples=n, derandomize=derandomize, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def run(case):
        check(case, backend)

    run()


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz(backend):
    """The fixed slice of ``make test``: the same cases on every run."""
    _fuzz(backend, FAST_EXAMPLES[backend], derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_many(backend):
    """New random cases on every run of ``make test-slow``."""
    _fuzz(backend, SLOW_EXAMPLES[backend], derandomize=False)


# ---------------------------------------------------------------- regressions found by the fuzz


@pytest.mark.parametrize("backend", BACKENDS)
def test_regression_all_nan_columns_of_a_batched_max_over_i(backend):
    """Found by the fuzz: whole columns of F are NaN (-inf + inf in a vector sum, with
    relu(-inf) = 0 on the way) in a batched max_argmax over i: the value is NaN, the index
    that of the first NaN, on every backend. (The failure was the oracle's relu(-inf).)"""
    tree = ("bin", "add", ("bin", "add", ("bin", "div1", ("leaf", 1), ("un", "relu", ("leaf", 1))), ("leaf", 0)),
            ("leaf", 2))
    check(fc.Case(tree=tree, dims=(3, 3, 2), reduction="max_argmax", axis=0, K=1, M=3, N=5, batch="bcast",
                  dtype="float64", domain="special", seed=2007792140, grad=False), backend)
