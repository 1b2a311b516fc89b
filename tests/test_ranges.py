"""Block-sparse reductions through the public API (issue 13): ``ranges=`` on every
reduction method, ``Genred(...)(..., ranges=R)`` and ``LazyArray.ranges``, both axes,
batch axes, under ``jit`` / ``vmap`` / ``grad`` / ``jvp`` and sharding, against dense
masked oracles: float64 NumPy (``oracle.masked_reduce`` of ``oracle.random_ranges``) for
the values, ``jax.grad`` / ``jax.jvp`` of a dense masked ``jax.numpy`` formula for the
derivatives; and the checks of bad ranges (:mod:`jax_lazy.ranges`).

A backend runs these once its module sets ``RANGES = True`` (the contract of
``tests/test_ranges_backends.py``); until then its cases skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import oracle as o
from conftest import precision, skip_if_unsupported
from jax_lazy import Genred, Pm, Vi, Vj, backends
from jax_lazy.errors import BackendError, DtypeError, RangesError, ShapeError

K = 3
M, N = 19, 23

# method name -> (reduction name of the oracle, whether it takes K, whether F is scalar)
METHODS = {
    "sum": ("Sum", False, False), "logsumexp": ("LogSumExp", False, True),
    "sumsoftmaxweight": ("SumSoftMaxWeight", False, True), "min": ("Min", False, False),
    "argmin": ("ArgMin", False, False), "min_argmin": ("Min_ArgMin", False, False),
    "max": ("Max", False, False), "argmax": ("ArgMax", False, False),
    "max_argmax": ("Max_ArgMax", False, False), "Kmin": ("KMin", True, False),
    "argKmin": ("ArgKMin", True, False), "Kmin_argKmin": ("KMin_ArgKMin", True, False),
}


def _needs_ranges(backend):
    if not getattr(backends.get(backend), "RANGES", False):
        pytest.skip(f"backend {backend!r} has no ranges yet")


def _data(rng, dtype, batch=(), m=M, n=N, d=2):
    x = rng.normal(size=batch + (m, d))
    y = rng.normal(size=(n, d))
    p = rng.uniform(0.5, 1.5, (d,))
    v = rng.uniform(0.5, 2.0, batch + (m, 2))  # weights indexed by i (for axis=0)
    w = rng.uniform(0.5, 2.0, batch + (n, 2))  # and by j (axis=1)
    return [a.astype(dtype) for a in (x, y, p, v, w)]


def _lazy(x, y, p):
    """G = (x_i - y_j) * p (dim 2) and F = -|G|^2 / 2 (scalar)."""
    G = (Vi(x) - Vj(y)) * Pm(p)
    return G, -0.5 * G.sqnorm2()


def _dense(x, y, p):
    """G and F densely, float64 NumPy, ``(*b, M, N, D)``."""
    X, Y, P = (np.asarray(a, np.float64) for a in (x, y, p))
    G = (X[..., :, None, :] - Y[None, :, :]) * P
    return G, -0.5 * (G**2).sum(-1, keepdims=True)


def _call(method, axis, nb, x, y, p, v, w, ranges, backend):
    G, F = _lazy(x, y, p)
    red, uses_k, scalar = METHODS[method]
    kw = dict(axis=nb + axis, ranges=ranges, backend=backend)
    if method == "sumsoftmaxweight":
        return F.sumsoftmaxweight(Vj(w) if axis == 1 else Vi(v), **kw)
    if uses_k:
        return getattr(G, method)(K, **kw)
    return getattr(F if scalar else G, method)(**kw)


def _expected(method, axis, x, y, p, v, w, mask):
    """The oracle in the canonical orientation: over i, the transposed matrix and mask."""
    red, _, scalar = METHODS[method]
    G, F = _dense(x, y, p)
    D = F if scalar else G
    W = np.asarray(w, np.float64)[..., None, :, :]
    if axis == 0:
        D, mask = np.swapaxes(D, -3, -2), np.swapaxes(mask, -1, -2)
        W = np.asarray(v, np.float64)[..., None, :, :]
    return o.masked_reduce(red, D, mask, K=K, W=W if red == "SumSoftMaxWeight" else None)


def _compare(got, want, dtype):
    got = got if isinstance(got, tuple) else (got,)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert len(got) == len(want)
    for g, e in zip(got, want):
        g = np.asarray(g)
        e = e[..., 0] if g.ndim == e.ndim - 1 else e  # (..., K, 1) -> (..., K) when D = 1
        assert g.shape == e.shape, (g.shape, e.shape)
        if np.issubdtype(g.dtype, np.integer):
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


def _check(method, axis, backend, rng, dtype=np.float32, batch=()):
    _needs_ranges(backend)
    skip_if_unsupported(backend, dtype)
    with precision(dtype):
        x, y, p, v, w = _data(rng, dtype, batch)
        six, mask = o.random_ranges(rng, M, N, batch, (4, 5), 0.4)
        got = _call(method, axis, len(batch), x, y, p, v, w, six, backend)
    _compare(got, _expected(method, axis, x, y, p, v, w, mask), dtype)


# ---------------------------------------------------------------- values


# The fast suite: one method per family (and Max's negation) over i; the rest is slow.
FAST_METHODS = ["sum", "logsumexp", "sumsoftmaxweight", "max_argmax", "Kmin_argKmin"]


@pytest.mark.parametrize("method", FAST_METHODS)
def test_reductions_over_i(method, backend, rng):
    """axis=0 reads the mirrored triplet: the public API's own orientation work (the
    backends' tests cover the canonical one)."""
    _check(method, 0, backend, rng)


@pytest.mark.slow
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_reduction(method, axis, backend, rng):
    _check(method, axis, backend, rng)


@pytest.mark.parametrize("method, axis", [("sum", 1), ("Kmin_argKmin", 0)])
def test_batch_float64(method, axis, backend, rng):
    _check(method, axis, backend, rng, np.float64, batch=(2,))


@pytest.mark.slow
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("method", ["sum", "sumsoftmaxweight", "min_argmin", "Kmin_argKmin"])
def test_batch_float64_slow(method, axis, backend, rng):
    _check(method, axis, backend, rng, np.float64, batch=(2,))


def test_keep_all_is_dense(backend, rng):
    """Ranges that keep every block (from ``cluster.from_matrix``) give the dense result
    on both axes (SPEC §3: checked in pykeops too)."""
    from jax_lazy import cluster

    _needs_ranges(backend)
    x, y, p, v, w = _data(rng, np.float32)
    R = cluster.from_matrix(np.array([[0, 7], [7, M]]), np.array([[0, 10], [10, 15], [15, N]]),
                            np.ones((2, 3), bool))
    _, F = _lazy(x, y, p)
    for axis in (0, 1):
        np.testing.assert_allclose(F.exp().sum(axis, ranges=R, backend=backend), F.exp().sum(axis, backend=backend),
                                   rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the attribute, .T, Genred


def test_attribute_and_transpose(backend, rng):
    """``K.ranges = R`` is every reduction's default; ops keep it; ``.T`` swaps the
    triplets; a per-call ``ranges=`` wins (``None``: dense)."""
    _needs_ranges(backend)
    x, y, p, v, w = _data(rng, np.float32)
    six, mask = o.random_ranges(rng, M, N, (), (4, 5), 0.4)
    _, F = _lazy(x, y, p)
    F.ranges = six
    assert F.ranges is not None and len(F.ranges) == 6
    E = F.exp() * 2.0  # the ops keep it
    assert E.ranges is not None
    want = np.where(mask[..., None], 2.0 * np.exp(_dense(x, y, p)[1]), 0.0).sum(1)
    _compare(E.sum(1, backend=backend), (want,), np.float32)
    _compare(E.T.sum(0, backend=backend), (want,), np.float32)  # .T: the swapped triplets
    np.testing.assert_array_equal(E.T.ranges[0], six[3])
    dense = (2.0 * np.exp(_dense(x, y, p)[1])).sum(1)
    _compare(E.sum(1, ranges=None, backend=backend), (dense,), np.float32)
    _compare(E.sum_reduction(1, backend=backend), (want,), np.float32)  # the *_reduction aliases too


@pytest.mark.slow
def test_matvec_transpose_complex(backend, rng):
    """With ``K.ranges`` set: ``K @ c``, ``K.T @ b``, ``jax.linear_transpose`` of ``K @``
    and a complex LazyArray built from K (which keeps the ranges)."""
    import jax

    _needs_ranges(backend)
    x, y, p, v, w = _data(rng, np.float32)
    six, mask = o.random_ranges(rng, M, N, (), (4, 5), 0.4)
    E = np.where(mask, np.exp(_dense(x, y, p)[1][..., 0]), 0.0)  # (M, N)
    K = _lazy(x, y, p)[1].exp()
    K.ranges = six
    c, b = w[:, 0], v[:, 0]
    np.testing.assert_allclose(K.matvec(c, backend=backend), E @ c, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(K.rmatvec(b, backend=backend), E.T @ b, rtol=1e-4, atol=1e-5)
    (t,) = jax.linear_transpose(lambda c: K.matvec(c, backend=backend), c)(b)
    np.testing.assert_allclose(t, E.T @ b, rtol=1e-4, atol=1e-5)
    Z = K * (1 + 2j)
    assert Z.is_complex and Z.ranges is not None
    np.testing.assert_allclose(Z.sum(1, backend=backend)[:, 0], (1 + 2j) * E.sum(1), rtol=1e-4, atol=1e-5)


def test_genred(backend, rng):
    """``Genred(...)(..., ranges=R)``, both axes, R in the formula's orientation."""
    _needs_ranges(backend)
    x, y, p, v, w = _data(rng, np.float32)
    six, mask = o.random_ranges(rng, M, N, (), (4, 5), 0.4)
    aliases = ["x = Vi(2)", "y = Vj(2)", "a = Vi(2)", "b = Vj(2)"]
    G, F = _dense(x, y, p * 0 + 1)
    for axis, weight, arg in ((1, w, "b"), (0, v, "a")):
        g = Genred(f"Exp(-SqDist(x, y) / 2) * {arg}", aliases, "Sum", axis=axis)
        got = g(x, y, v, w, ranges=six, backend=backend)
        E = np.exp(F) * (np.asarray(weight, np.float64)[None, :, :] if axis == 1 else
                         np.asarray(weight, np.float64)[:, None, :])
        want = np.where(mask[..., None], E, 0).sum(axis=1 if axis == 1 else 0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- transformations


def _sum_case(rng, batch=()):
    import jax.numpy as jnp

    x, y, p, v, w = _data(rng, np.float64, batch)
    six, mask = o.random_ranges(rng, M, N, batch, (4, 5), 0.4)
    six = tuple(jnp.asarray(a) for a in six)

    def lazy(x, y, p, axis, ranges=six):
        G = (Vi(x) - Vj(y)) * Pm(p)
        return (-0.5 * G.sqnorm2()).exp().sum(len(batch) + axis, ranges=ranges, backend=_sum_case.backend)

    def dense(x, y, p, axis):
        G = (x[..., :, None, :] - y[None, :, :]) * p
        E = jnp.exp(-0.5 * (G**2).sum(-1, keepdims=True))
        return jnp.where(jnp.asarray(mask)[..., None], E, 0.0).sum(len(batch) + axis)

    return (x, y, p), six, lazy, dense


@pytest.mark.parametrize("axis", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_grad(axis, backend, rng):
    """Gradients w.r.t. i-variables, j-variables and parameters: the same blocks over j,
    the swapped ones over i."""
    import jax

    _needs_ranges(backend)
    with precision(np.float64):
        _sum_case.backend = backend
        args, six, lazy, dense = _sum_case(rng)
        c = np.asarray(rng.normal(size=(N if axis == 0 else M, 1)))
        got = jax.grad(lambda *a: (lazy(*a, axis) * c).sum(), argnums=(0, 1, 2))(*args)
        want = jax.grad(lambda *a: (dense(*a, axis) * c).sum(), argnums=(0, 1, 2))(*args)
        for g, e in zip(got, want):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-11)
        t = tuple(np.asarray(rng.normal(size=np.shape(a))) for a in args)
        (_, dg), (_, de) = jax.jvp(lambda *a: lazy(*a, axis), args, t), jax.jvp(lambda *a: dense(*a, axis), args, t)
        np.testing.assert_allclose(dg, de, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", [pytest.param("logsumexp", marks=pytest.mark.slow), "min"])
def test_grad_families(method, backend, rng):
    """LogSumExp and Min gradients with rows that keep nothing (their values -inf / +inf
    stay out of the loss; their tangents are 0, not a gather at index -1)."""
    import jax
    import jax.numpy as jnp

    _needs_ranges(backend)
    with precision(np.float64):
        x, y, p, v, w = _data(rng, np.float64)
        six = _good()  # rows 12, 13 are in no block; row block 2 keeps no column
        mask = o.ranges_mask(*six[:3], M, N) > 0
        assert not mask.any(1).all(), "the case must hold rows with no kept column"

        def lazy(x, y):
            G, F = _lazy(x, y, p)
            out = F.logsumexp(1, ranges=six, backend=backend) if method == "logsumexp" else \
                G.min(1, ranges=six, backend=backend)
            return jnp.where(jnp.isfinite(out), out, 0.0).sum()

        def dense(x, y):
            G = (x[:, None, :] - y[None, :, :]) * p
            m = jnp.asarray(mask)[..., None]
            if method == "logsumexp":
                F = jnp.where(m, -0.5 * (G**2).sum(-1, keepdims=True), -jnp.inf)
                out = jax.nn.logsumexp(F, axis=1)
            else:
                out = jnp.where(m, G, jnp.inf).min(1)
            return jnp.where(jnp.isfinite(out), out, 0.0).sum()

        got = jax.grad(lazy, argnums=(0, 1))(x, y)
        want = jax.grad(dense, argnums=(0, 1))(x, y)
        for g, e in zip(got, want):
            assert np.isfinite(np.asarray(g)).all()
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-11)


def test_jit_and_vmap(backend, rng):
    """Traced ranges under jit; vmap over the data and over the ranges."""
    import jax
    import jax.numpy as jnp

    _needs_ranges(backend)
    with precision(np.float64):
        _sum_case.backend = backend
        (x, y, p), six, lazy, dense = _sum_case(rng)
        want = dense(x, y, p, 1)
        np.testing.assert_allclose(jax.jit(lambda x, R: lazy(x, y, p, 1, R))(x, six), want, rtol=1e-10)
        xs = np.stack([x, x[::-1]])
        got = jax.vmap(lambda x: lazy(x, y, p, 1))(xs)
        np.testing.assert_allclose(got[0], want, rtol=1e-10)
        np.testing.assert_allclose(got[1], lazy(x[::-1], y, p, 1), rtol=1e-10)
        # two draws of ranges, padded alike by random_ranges: vmap over them
        six2, mask2 = o.random_ranges(rng, M, N, (2,), (4, 5), 0.4)
        got = jax.vmap(lambda R: lazy(x, y, p, 1, R))(tuple(jnp.asarray(a) for a in six2))
        for b in range(2):
            np.testing.assert_allclose(got[b], lazy(x, y, p, 1, tuple(a[b] for a in six2)), rtol=1e-10)


@pytest.mark.slow
def test_vmap_of_grad_over_ranges(backend, rng):
    import jax
    import jax.numpy as jnp

    _needs_ranges(backend)
    with precision(np.float64):
        _sum_case.backend = backend
        (x, y, p), six, lazy, dense = _sum_case(rng)
        six2, mask2 = o.random_ranges(rng, M, N, (2,), (4, 5), 0.4)
        g = jax.vmap(jax.grad(lambda x, R: lazy(x, y, p, 0, R).sum()), in_axes=(None, 0))(x, tuple(map(jnp.asarray, six2)))
        for b in range(2):
            e = jax.grad(lambda x: lazy(x, y, p, 0, tuple(a[b] for a in six2)).sum())(x)
            np.testing.assert_allclose(g[b], e, rtol=1e-10)


def test_no_ranges_backend(monkeypatch, rng):
    """A backend without RANGES raises when asked by name."""
    from jax_lazy.backends import jnp as jnp_backend

    monkeypatch.setattr(jnp_backend, "RANGES", False, raising=False)
    x, y, p, v, w = _data(rng, np.float32)
    six, _ = o.random_ranges(rng, M, N)
    with pytest.raises(BackendError, match="no block-sparse ranges"):
        _lazy(x, y, p)[1].sum(1, ranges=six, backend="jnp")


# ---------------------------------------------------------------- bad ranges


def _good():
    """A valid 6-tuple for M = 19 rows, N = 23 columns: rows [0, 5) keep the columns
    [0, 4), rows [5, 12) the columns [10, 23) and [2, 3), the others none; the second
    triplet is the same mask by column blocks."""
    return [np.array([[0, 5], [5, 12], [14, 19]]), np.array([1, 3, 3]), np.array([[0, 4], [10, 23], [2, 3]]),
            np.array([[0, 2], [2, 3], [3, 4], [10, 23]]), np.array([1, 3, 4, 5]),
            np.array([[0, 5], [0, 5], [5, 12], [0, 5], [5, 12]])]


def test_good_is_consistent():
    six = _good()
    np.testing.assert_array_equal(o.ranges_mask(*six[:3], M, N), o.ranges_mask(*six[3:], N, M).T)


def _bad(q, value):
    six = _good()
    six[q] = np.asarray(value)
    return six


BAD = {  # name -> (ranges, error, words of the message)
    "five entries": (_good()[:5], ShapeError, "6-tuple"),
    "float dtype": (_bad(1, [1.0, 3.0, 3.0]), DtypeError, "slices_i must be an integer array"),
    "interval shape": (_bad(0, [0, 5, 12]), ShapeError, "ranges_i must have shape"),
    "slices length": (_bad(1, [1, 3]), ShapeError, "slices_i has 2 entries but ranges_i has 3"),
    "batch": (_bad(2, np.zeros((3, 3, 2), int)), ShapeError, "redranges_j has batch axes (3,)"),
    "row past M": (_bad(0, [[0, 5], [5, 12], [14, 20]]), RangesError, "ranges_i[2] = [14, 20) is not inside [0, 19]"),
    "negative row": (_bad(0, [[-1, 5], [5, 12], [14, 19]]), RangesError, "ranges_i[0] = [-1, 5)"),
    "end before start": (_bad(0, [[0, 5], [12, 5], [14, 19]]), RangesError, "ends before it starts"),
    "unsorted rows": (_bad(0, [[5, 12], [0, 5], [14, 19]]), RangesError, "sorted and disjoint"),
    "overlapping rows": (_bad(0, [[0, 6], [5, 12], [14, 19]]), RangesError, "ranges_i[1] = [5, 12) starts before"),
    "slices decrease": (_bad(1, [2, 1, 3]), RangesError, "slices_i[1] = 1 is below slices_i[0] = 2"),
    "slice past S": (_bad(1, [1, 3, 4]), RangesError, "slices_i[2] = 4 is not inside [0, 3]"),
    "column past N": (_bad(2, [[0, 4], [10, 24], [2, 3]]), RangesError, "redranges_j[1] = [10, 24)"),
    "mirrored past N": (_bad(3, [[0, 2], [2, 3], [3, 4], [10, 24]]), RangesError, "ranges_j[3] = [10, 24)"),
    "mirrored rows past M": (_bad(5, [[0, 5], [0, 5], [5, 12], [0, 5], [5, 20]]), RangesError,
                             "redranges_i[4] = [5, 20)"),
    "not transposes": (_bad(5, [[0, 5], [0, 5], [5, 12], [0, 5], [5, 11]]), RangesError,
                       "keeps 118 pairs but (ranges_j, slices_j, redranges_i) keeps 105"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_ranges_raise(case, rng):
    """Every check of ``jax_lazy.ranges.check`` raises its error, naming the array, the
    index and the formula, on both axes and through the attribute."""
    ranges, error, words = BAD[case]
    x, y, p, v, w = _data(rng, np.float32)
    _, F = _lazy(x, y, p)
    for axis in (0, 1):
        with pytest.raises(error, match=r"(?s)" + __import__("re").escape(words) + r".*formula: "):
            F.sum(axis, ranges=ranges)
    if case != "five entries":
        F.ranges = ranges
        with pytest.raises(error):
            F.exp().logsumexp(1)
    else:
        with pytest.raises(ShapeError):
            F.ranges = ranges


def test_bad_ranges_batch_values(rng):
    """Value checks see each batch entry: the index names it."""
    x, y, p, v, w = _data(rng, np.float32, batch=(2,))
    six, _ = o.random_ranges(rng, M, N, (2,), (4, 5), 0.6)
    six = [np.array(a) for a in six]
    six[0][1, 0, 1] = M + 1
    with pytest.raises(RangesError, match=r"ranges_i\[1, 0\] = \[0, 20\)"):
        _lazy(x, y, p)[1].sum(2, ranges=six)


def test_traced_ranges_are_not_value_checked(rng):
    """Under jit only dtypes and shapes are checked: traced values cannot be (the
    backends clamp them, tests/test_ranges_backends.py)."""
    import jax

    x, y, p, v, w = _data(rng, np.float32)
    with pytest.raises(DtypeError):
        jax.jit(lambda R: _lazy(x, y, p)[1].sum(1, ranges=R))(_bad(1, [1.0, 3.0, 3.0]))
    _needs_ranges("jnp")
    out = jax.jit(lambda R: _lazy(x, y, p)[1].sum(1, ranges=R, backend="jnp"))(_bad(0, [[0, 5], [5, 12], [14, 20]]))
    assert out.shape == (M, 1)


# ---------------------------------------------------------------- sharding


@pytest.mark.slow
def test_sharded_rows(backend):
    """Rows sharded over 4 forced CPU devices (Auto and Explicit mesh axes): each shard
    reads the ranges shifted by its first row; values and gradients equal one device's."""
    _needs_ranges(backend)
    if backend == "cuda":
        pytest.skip("4 forced CPU devices")
    out = subprocess.run([sys.executable, __file__, "shard", backend], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                              "JAX_PLATFORMS": "cpu"})
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stderr[-3000:]
    bad = [r for r in lines if not r["ok"]]
    assert not bad, bad


def _shard_worker(backend):  # runs in a process of its own (XLA_FLAGS before JAX starts)
    import jax
    import jax.numpy as jnp
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as PS

    rng = np.random.default_rng(0)
    m, n = 48, 40
    x, y, p, v, w = _data(rng, np.float32, m=m, n=n)
    six, mask = o.random_ranges(rng, m, n, (), (5, 4), 0.5)

    def f(x, y, axis):
        G, F = _lazy(x, y, p)
        return F.exp().sum(axis, ranges=six, backend=backend), G.min_argmin(axis, ranges=six, backend=backend)

    for kind in (AxisType.Auto, AxisType.Explicit):
        mesh = jax.make_mesh((4,), ("d",), axis_types=(kind,))
        for axis in (0, 1):
            name = f"{kind.name}-axis{axis}"
            try:
                want = f(x, y, axis)
                gwant = jax.grad(lambda x, y: f(x, y, axis)[0].sum(), argnums=(0, 1))(x, y)
                xs, ys = (jax.device_put(a, NamedSharding(mesh, PS("d"))) for a in (x, y))
                with jax.set_mesh(mesh):
                    got = jax.jit(f, static_argnums=2)(xs, ys, axis)
                    ggot = jax.jit(jax.grad(lambda x, y: f(x, y, axis)[0].sum(), argnums=(0, 1)))(xs, ys)
                for g, e in zip(jax.tree.leaves((got, ggot)), jax.tree.leaves((want, gwant))):
                    np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=2e-5, atol=2e-5)
                print(json.dumps({"case": name, "ok": True}), flush=True)
            except Exception as e:  # noqa: BLE001 - reported to the test
                print(json.dumps({"case": name, "ok": False, "msg": f"{type(e).__name__}: {e}"[:2000]}), flush=True)
    del jnp


if __name__ == "__main__" and sys.argv[1:2] == ["shard"]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _shard_worker(sys.argv[2])
