"""Empty axes: M = 0 (no output rows), N = 0 (an empty reduced axis) and empty batch
axes, for every reduction, over i and over j, values and gradients, on every backend.

The rule (docs/api.md, "Empty axes"): over an empty axis each reduction returns its
identity, as NumPy's reductions with an ``initial`` value do: Sum 0, LogSumExp -inf,
SumSoftMaxWeight 0 (an empty weighted sum), Min +inf, Max -inf, and the indices of
ArgMin / ArgMax are -1 (there is no column to point to). KMin needs K <= N, so N = 0 is a
ShapeError. Gradients of all of them are zero. The oracle is NumPy float64 on the dense
(M, N, D) array, with the identities written as NumPy's ``initial`` / empty sums.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import precision, skip_if_unsupported
from jax_lazy import Pm, ShapeError, Vi, Vj

D, DW, K = 2, 3, 2
REDUCTIONS = ["sum", "logsumexp", "sumsoftmaxweight", "min", "max", "argmin", "argmax", "min_argmin",
              "max_argmax", "Kmin", "argKmin", "Kmin_argKmin"]
SIZES = {"M=0": (0, 4), "N=0": (3, 0), "M=N=0": (0, 0)}  # (kept size, reduced size)


def _oracle(red, G, F, W, axis):
    """The float64 outputs of ``red`` on the dense G (..., M, N, D), F (..., M, N, 1) and
    W (..., M, N, DW), over ``axis`` (0: i, 1: j), with the identities of the rule."""
    ax = (-3, -2)[axis]
    if red == "sum":
        return (G.sum(ax),)
    if red == "logsumexp":
        with np.errstate(divide="ignore"):
            return (np.log(np.exp(F).sum(ax)),)
    if red == "sumsoftmaxweight":  # F = 0 here: the softmax is uniform, 1 / (reduced size)
        n = F.shape[ax]
        return ((W / max(n, 1)).sum(ax),)
    base = red.split("_")[0].replace("arg", "")
    values = G.min(ax, initial=np.inf) if base == "min" else G.max(ax, initial=-np.inf)
    index = np.full(values.shape, -1)  # only reached with an empty reduced axis or no output
    return {"min": (values,), "max": (values,), "argmin": (index,), "argmax": (index,),
            "min_argmin": (values, index), "max_argmax": (values, index)}[red]


def _call(red, x, y, wi, wj, p, axis, backend):
    G = (Vi(x) - Vj(y)) * Pm(p)
    F = 0.0 * G.sqnorm2()  # a uniform softmax: the oracle needs no exp of random data
    W = (Vi(wi), Vj(wj))[axis]
    lib_axis = x.ndim - 2 + axis
    if red in ("logsumexp", "sumsoftmaxweight"):
        out = getattr(F, red)(W, axis=lib_axis, backend=backend) if red == "sumsoftmaxweight" else \
            F.logsumexp(axis=lib_axis, backend=backend)
    elif "K" in red:
        out = getattr(G, red)(K, axis=lib_axis, backend=backend)
    else:
        out = getattr(G, red)(axis=lib_axis, backend=backend)
    return out if isinstance(out, tuple) else (out,)


def _data(kept, reduced, axis, batch=(), dtype=np.float32):
    rng = np.random.default_rng(3)
    M, N = (kept, reduced) if axis == 1 else (reduced, kept)
    x, y = rng.normal(size=batch + (M, D)).astype(dtype), rng.normal(size=batch + (N, D)).astype(dtype)
    wi, wj = rng.normal(size=batch + (M, DW)).astype(dtype), rng.normal(size=batch + (N, DW)).astype(dtype)
    p = rng.uniform(0.5, 1.5, size=(D,)).astype(dtype)
    return x, y, wi, wj, p


def _index_dtype(dtype):
    return np.int64 if np.dtype(dtype) == np.float64 else np.int32


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("axis", [0, 1], ids=["over_i", "over_j"])
@pytest.mark.parametrize("red", REDUCTIONS)
def test_empty_axis_values(red, axis, size, backend):
    kept, reduced = SIZES[size]
    x, y, wi, wj, p = _data(kept, reduced, axis)
    if "K" in red:
        if reduced < K:
            with pytest.raises(ShapeError, match=f"K = {K} must be between 1 and the reduced size {reduced}"):
                _call(red, x, y, wi, wj, p, axis, backend)
            return
    outs = _call(red, x, y, wi, wj, p, axis, backend)
    X, Y, P = (a.astype(np.float64) for a in (x, y, p))
    G = (X[:, None] - Y[None]) * P  # (M, N, D)
    F = np.zeros(G.shape[:-1] + (1,))
    W = np.broadcast_to((wi[:, None] if axis == 0 else wj[None]).astype(np.float64), G.shape[:-1] + (DW,))
    if "K" in red:  # K <= N: only the kept axis is empty, every output has no rows
        for o in outs:
            assert o.shape == (kept, K, D)
        assert outs[-1].dtype == (_index_dtype(np.float32) if "arg" in red else np.float32)
        return
    want = _oracle(red, G, F, W, axis)
    assert len(outs) == len(want)
    for got, ref in zip(outs, want):
        assert got.shape == ref.shape, (got.shape, ref.shape)
        assert got.dtype == (_index_dtype(np.float32) if ref.dtype.kind == "i" else np.float32), got.dtype
        np.testing.assert_array_equal(np.asarray(got, np.float64), ref.astype(np.float64))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("axis", [0, 1], ids=["over_i", "over_j"])
@pytest.mark.parametrize("red", ["sum", "logsumexp", "sumsoftmaxweight", "min", "max_argmax", "Kmin"])
def test_empty_axis_gradients(red, axis, size, backend):
    """The outputs over an empty axis are constants (or have no entries): every gradient
    is zero, of the input's shape and dtype, never NaN, never a crash."""
    kept, reduced = SIZES[size]
    if "K" in red and reduced < K:
        return  # a ShapeError (test_empty_axis_values)
    data = _data(kept, reduced, axis)

    def loss(*arrays):
        outs = _call(red, *arrays, axis=axis, backend=backend)
        return sum(jnp.sum(o) for o in outs if jnp.issubdtype(o.dtype, jnp.floating))

    grads = jax.grad(loss, argnums=tuple(range(5)))(*data)
    for g, a in zip(grads, data):
        assert g.shape == a.shape and g.dtype == a.dtype
        np.testing.assert_array_equal(np.asarray(g), np.zeros(a.shape, a.dtype))


@pytest.mark.parametrize("red", ["sum", "min_argmin", "sumsoftmaxweight"])
def test_empty_axis_batched_float64_and_vmap(red, backend):
    """Batch axes and float64 keep the rule; an empty batch axis gives empty outputs;
    ``vmap`` over empty reductions, and ``jit``, agree with the direct call."""
    skip_if_unsupported(backend, np.float64)
    with precision(np.float64):
        x, y, wi, wj, p = _data(3, 0, 1, batch=(2,), dtype=np.float64)
        outs = _call(red, x, y, wi, wj, p, 1, backend)
        fill = {"sum": [0.0], "min_argmin": [np.inf, -1], "sumsoftmaxweight": [0.0]}[red]
        for o, v in zip(outs, fill):
            assert o.shape[:2] == (2, 3) and o.dtype in (np.float64, np.int64)
            np.testing.assert_array_equal(np.asarray(o), np.full(o.shape, v))
        mapped = jax.vmap(lambda *a: _call(red, *a, 1, backend), in_axes=(0, 0, 0, 0, None))(x, y, wi, wj, p)
        jitted = jax.jit(lambda *a: _call(red, *a, 1, backend))(x, y, wi, wj, p)
        for a, b, c in zip(outs, mapped, jitted):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        x, y, wi, wj, p = _data(3, 4, 1, batch=(0,), dtype=np.float64)
        for o in _call(red, x, y, wi, wj, p, 1, backend):
            assert o.shape[:2] == (0, 3)
