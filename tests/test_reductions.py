"""Every reduction, over i and over j, with batch broadcasting, float32 and float64,
on default and tiny tiles, against the NumPy float64 oracle (``oracle.py``)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jax_lazy.backends.jnp
import oracle as o
from conftest import (
    assert_close,
    precision,
    skip_if_unsupported,
    use_tiling,
)
from jax_lazy import LazyArray, Pm, Vi, Vj

M, N = 5, 7  # with tiny tiles (4 columns) both axes end in a padded tile

# batch shapes of the i-, j-variables and of the parameter
PATTERNS = {
    "plain": ((), (), ()),
    "bcast": ((2, 1), (1, 3), (3,)),
    "bcast2": ((), (2, 1), (1, 3)),
}

slow = pytest.mark.slow
# The fast suite runs tiny tiles (padded i-blocks and j-tiles) with batch broadcasting;
# the plain single-tile path is also exercised by test_ops / test_transforms.
CONFIGS = [
    pytest.param(np.float32, "bcast", "tiny", id="f32-bcast-tiny"),
    pytest.param(np.float64, "bcast2", "tiny", id="f64-bcast2-tiny"),
    pytest.param(np.float64, "plain", "default", id="f64-plain", marks=slow),
    pytest.param(np.float32, "plain", "default", id="f32-plain", marks=slow),
    pytest.param(np.float64, "bcast", "default", id="f64-bcast", marks=slow),
]
AXES = [pytest.param(0, id="over_i"), pytest.param(1, id="over_j")]


class Data:
    """Random inputs and the dense float64 formulas of one test.

    G = (x_i - y_j) * p                 dim D (per-coordinate reductions)
    F = -|(x_i - y_j) * p|^2 / 2        dim 1 (LogSumExp, SumSoftMaxWeight, KMin)
    wi, wj: weights (positive) indexed by i and by j.
    """

    def __init__(self, rng, dtype, pattern="plain", D=2, Dw=2, m=M, n=N, integer=False):
        bi, bj, bp = PATTERNS[pattern]
        draw = (lambda s: rng.integers(0, 3, s).astype(np.float64)) if integer else (lambda s: rng.normal(size=s))
        self.dtype = dtype
        self.x = draw(bi + (m, D)).astype(dtype)
        self.y = draw(bj + (n, D)).astype(dtype)
        self.p = (np.ones(bp + (D,)) if integer else rng.uniform(0.5, 1.5, bp + (D,))).astype(dtype)
        self.wi = rng.uniform(0.5, 2.0, bi + (m, Dw)).astype(dtype)
        self.wj = rng.uniform(0.5, 2.0, bj + (n, Dw)).astype(dtype)
        self.nb = max(len(bi), len(bj), len(bp))
        X, Y, P, WI, WJ = (np.asarray(a, np.float64) for a in (self.x, self.y, self.p, self.wi, self.wj))
        X, Y = o.dense_operand(X, "i", self.nb), o.dense_operand(Y, "j", self.nb)
        P = o.dense_operand(P, "p", self.nb)
        self.WI, self.WJ = o.dense_operand(WI, "i", self.nb), o.dense_operand(WJ, "j", self.nb)
        self.G = (X - Y) * P
        self.F = -0.5 * np.sum(self.G**2, axis=-1, keepdims=True)  # same leading shape as G

    def lazy(self):
        """(G, F, Wi, Wj) as LazyArrays; call under ``precision(dtype)``."""
        X, Y, P = Vi(self.x), Vj(self.y), Pm(self.p)
        G = (X - Y) * P
        F = -0.5 * G.sqnorm2()
        return G, F, Vi(self.wi), Vj(self.wj)

    def axis(self, ax):
        """Library axis (batch-relative) and oracle axis of reduction ``ax`` (0: i, 1: j)."""
        return self.nb + ax, (-3, -2)[ax]


def _setup(backend, dtype, tiling, monkeypatch):
    skip_if_unsupported(backend, dtype)
    use_tiling(monkeypatch, tiling)


def _index_dtype(dtype):
    return np.int64 if np.dtype(dtype) == np.float64 else np.int32


# ---------------------------------------------------------------- Sum, LogSumExp, SumSoftMaxWeight


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype,pattern,tiling", CONFIGS)
def test_sum(axis, dtype, pattern, tiling, backend, rng, monkeypatch):
    _setup(backend, dtype, tiling, monkeypatch)
    d = Data(rng, dtype, pattern)
    lib_axis, ref_axis = d.axis(axis)
    with precision(dtype):
        G, F, _, _ = d.lazy()
        out = G.sum(axis=lib_axis, backend=backend)
    assert_close(out, o.red_sum(d.G, ref_axis), dtype, terms=np.abs(d.G).sum(ref_axis))


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype,pattern,tiling", CONFIGS)
def test_logsumexp(weighted, axis, dtype, pattern, tiling, backend, rng, monkeypatch):
    _setup(backend, dtype, tiling, monkeypatch)
    d = Data(rng, dtype, pattern)
    lib_axis, ref_axis = d.axis(axis)
    with precision(dtype):
        G, F, Wi, Wj = d.lazy()
        W = (Wi, Wj)[axis] if weighted else None
        out = F.logsumexp(axis=lib_axis, weight=W, backend=backend)
    ref = o.red_logsumexp(d.F, ref_axis, (d.WI, d.WJ)[axis] if weighted else None)
    assert out.shape == ref.shape == d.G.shape[:-3] + (d.G.shape[-2 - axis], 2 if weighted else 1)
    assert_close(out, ref, dtype, terms=np.abs(ref) + 1)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype,pattern,tiling", CONFIGS)
def test_sumsoftmaxweight(axis, dtype, pattern, tiling, backend, rng, monkeypatch):
    _setup(backend, dtype, tiling, monkeypatch)
    d = Data(rng, dtype, pattern, Dw=3)
    lib_axis, ref_axis = d.axis(axis)
    with precision(dtype):
        G, F, Wi, Wj = d.lazy()
        W = ((Wi, Wj)[axis] - 1.0) * 3  # signed weights
        out = F.sumsoftmaxweight(W, axis=lib_axis, backend=backend)
    ref = o.red_softmax(d.F, ref_axis, ((d.WI, d.WJ)[axis] - 1.0) * 3)
    assert_close(out, ref, dtype, terms=np.full(ref.shape, 3.0))


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("offset", [1000.0, -1000.0])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logsumexp_is_stable(weighted, offset, axis, dtype, backend, rng, monkeypatch):
    """F ~ +-1000 (exp over/underflows): the running-max shift keeps it finite and exact,
    across several tiles whose maxima differ."""
    _setup(backend, dtype, "tiny", monkeypatch)
    d = Data(rng, dtype, "plain")
    lib_axis, ref_axis = d.axis(axis)
    with precision(dtype):
        G, F, Wi, Wj = d.lazy()
        F = F * 3 + offset
        out = F.logsumexp(axis=lib_axis, weight=(Wi, Wj)[axis] if weighted else None, backend=backend)
        soft = F.sumsoftmaxweight((Wi, Wj)[axis], axis=lib_axis, backend=backend)
    ref = o.red_logsumexp(d.F * 3 + offset, ref_axis, (d.WI, d.WJ)[axis] if weighted else None)
    assert np.all(np.isfinite(np.asarray(out)))
    assert_close(out, ref, dtype, terms=np.abs(ref))
    ref_soft = o.red_softmax(d.F * 3 + offset, ref_axis, (d.WI, d.WJ)[axis])
    assert_close(soft, ref_soft, dtype, terms=np.full(ref_soft.shape, 2.0))


# ---------------------------------------------------------------- Min / Max / ArgMin / ArgMax


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype,pattern,tiling", CONFIGS)
@pytest.mark.parametrize("red", ["min", "max", "argmin", "argmax", "min_argmin", "max_argmax"])
def test_min_max_family(red, dtype, pattern, tiling, axis, backend, rng, monkeypatch):
    _setup(backend, dtype, tiling, monkeypatch)
    d = Data(rng, dtype, pattern)
    lib_axis, ref_axis = d.axis(axis)
    with precision(dtype):
        G, _, _, _ = d.lazy()
        out = getattr(G, red)(axis=lib_axis, backend=backend)
    base = red.split("_")[0].replace("arg", "")
    values = (o.red_min if base == "min" else o.red_max)(d.G, ref_axis)
    index = (o.red_argmin if base == "min" else o.red_argmax)(d.G, ref_axis)
    if red.startswith("arg"):
        expected = [(out, index)]
    elif "_" in red:
        assert isinstance(out, tuple) and len(out) == 2
        expected = [(out[0], values), (out[1], index)]
    else:
        expected = [(out, values)]
    for got, want in expected:
        if want.dtype.kind == "i":
            assert got.dtype == _index_dtype(dtype), got.dtype
            np.testing.assert_array_equal(got, want)
        else:
            assert_close(got, want, dtype)


@pytest.mark.parametrize("red", ["argmin", "argmax", "min_argmin", "argKmin", "Kmin_argKmin"])
def test_index_dtype_follows_x64(red, backend, rng):
    """int32 without x64 (even though float64 inputs cannot exist then), int64 with x64,
    also for float32 inputs."""
    x = rng.normal(size=(4, 2)).astype(np.float32)
    y = rng.normal(size=(5, 2)).astype(np.float32)

    def indices():
        G = Vi(x) - Vj(y)
        out = getattr(G, red)(2, axis=1, backend=backend) if "K" in red else getattr(G, red)(axis=1, backend=backend)
        return out[1] if isinstance(out, tuple) else out

    with jax.enable_x64(False):
        assert indices().dtype == np.int32
    with jax.enable_x64(True):
        assert indices().dtype == np.int64


# ---------------------------------------------------------------- KMin family


def _k_params(fast_configs):
    out = []
    for K in (1, 3, "N"):
        for D in (1, 2):
            for k, cfg in enumerate(CONFIGS):
                marks = list(cfg.marks) + ([] if k < fast_configs else [slow])
                out.append(pytest.param(K, D, *cfg.values, id=f"K={K}-D={D}-{cfg.id}", marks=marks))
    return out


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("K,D,dtype,pattern,tiling", _k_params(fast_configs=1))
def test_kmin_argkmin(K, D, dtype, pattern, tiling, axis, backend, rng, monkeypatch):
    _setup(backend, dtype, tiling, monkeypatch)
    d = Data(rng, dtype, pattern, D=D)
    lib_axis, ref_axis = d.axis(axis)
    K = d.G.shape[ref_axis] if K == "N" else K
    with precision(dtype):
        G, _, _, _ = d.lazy()
        vals, idx = G.Kmin_argKmin(K, axis=lib_axis, backend=backend)
    want_vals, want_idx = o.red_kmin(d.G, ref_axis, K), o.red_argkmin(d.G, ref_axis, K)
    if D == 1:  # (..., K, 1) -> (..., K)
        want_vals, want_idx = want_vals[..., 0], want_idx[..., 0]
    assert idx.dtype == _index_dtype(dtype)
    np.testing.assert_array_equal(idx, want_idx)
    assert_close(vals, want_vals, dtype)
    assert np.all(np.diff(np.asarray(vals), axis=-1 if D == 1 else -2) >= 0), "sorted ascending"


@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("red", ["Kmin", "argKmin"])
def test_kmin_and_argkmin_alone(red, D, backend, rng):
    d = Data(rng, np.float32, "bcast", D=D)
    with precision(np.float32):
        G, _, _, _ = d.lazy()
        out = getattr(G, red)(3, axis=d.nb + 1, backend=backend)
        both = G.Kmin_argKmin(3, axis=d.nb + 1, backend=backend)
    shape = d.G.shape[:-2] + ((3,) if D == 1 else (3, D))
    assert out.shape == shape
    np.testing.assert_array_equal(out, both[0 if red == "Kmin" else 1])
    want = (o.red_kmin if red == "Kmin" else o.red_argkmin)(d.G, -2, 3)
    want = want[..., 0] if D == 1 else want
    if red == "Kmin":
        assert_close(out, want, np.float32)
    else:
        np.testing.assert_array_equal(out, want)


def test_kmin_scalar_formula_shape(backend, rng):
    """pykeops convention: Kmin of a scalar formula is (M, K), not (M, K, 1)."""
    x, y = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(9, 3)).astype(np.float32)
    D2 = Vi(x).sqdist(Vj(y))
    idx = D2.argKmin(4, axis=1, backend=backend)
    assert idx.shape == (6, 4)
    dense = ((x[:, None] - y[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, np.argsort(dense, axis=1, kind="stable")[:, :4])
    assert D2.argKmin(4, axis=0, backend=backend).shape == (9, 4)


# ---------------------------------------------------------------- ties: smallest index


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("tiling", ["default", "tiny"])
@pytest.mark.parametrize("red", ["argmin", "argmax", "min_argmin", "max_argmax", "argKmin", "Kmin_argKmin"])
def test_ties_go_to_the_smallest_index(red, tiling, axis, backend, rng, monkeypatch):
    """Integer data: G = x_i - y_j has many exact ties, also across tiles."""
    _setup(backend, np.float32, tiling, monkeypatch)
    d = Data(rng, np.float32, "plain", integer=True, m=6, n=9)
    lib_axis, ref_axis = d.axis(axis)
    G, _, _, _ = d.lazy()
    if "K" in red:
        out = getattr(G, red)(4, axis=lib_axis, backend=backend)
        want = o.red_argkmin(d.G, ref_axis, 4)
    else:
        out = getattr(G, red)(axis=lib_axis, backend=backend)
        want = (o.red_argmax if "max" in red else o.red_argmin)(d.G, ref_axis)
    idx = out[1] if isinstance(out, tuple) else out
    # the data does have ties at the extremum
    ext = d.G.max(ref_axis, keepdims=True) if "max" in red else d.G.min(ref_axis, keepdims=True)
    assert np.any((d.G == ext).sum(ref_axis) > 1)
    np.testing.assert_array_equal(idx, want)


# ---------------------------------------------------------------- K @ b, transpose


@pytest.mark.parametrize("case", ["b1d", "b2d", "b_batched", "K_batched_b1d", "rmatvec"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matmul(case, dtype, backend, rng):
    skip_if_unsupported(backend, dtype)

    def mv(K, b):
        return K.matvec(b, backend=backend)

    x = rng.normal(size=(5, 2))
    y = rng.normal(size=(7, 2))
    s = rng.uniform(0.5, 1.5, size=(3, 1))  # batch of bandwidths for K_batched
    Kd = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1))  # (M, N)
    with precision(dtype):
        K = (-(Vi(x.astype(dtype)).sqdist(Vj(y.astype(dtype))))).exp()
        if case == "b1d":
            b = rng.normal(size=7)
            out, want = mv(K, b.astype(dtype)), Kd @ b
        elif case == "b2d":
            b = rng.normal(size=(7, 3))
            out, want = mv(K, b.astype(dtype)), Kd @ b
        elif case == "b_batched":
            b = rng.normal(size=(2, 7, 3))
            out, want = mv(K, b.astype(dtype)), np.einsum("mn,bne->bme", Kd, b)
        elif case == "K_batched_b1d":
            b = rng.normal(size=7)
            Kb = (-(Vi(x.astype(dtype)).sqdist(Vj(y.astype(dtype)))) * Pm(s.astype(dtype))).exp()
            out, want = mv(Kb, b.astype(dtype)), np.einsum("smn,n->sm", Kd[None] ** s[:, :, None], b)
        else:
            b = rng.normal(size=5)
            out, want = K.rmatvec(b.astype(dtype), backend=backend), Kd.T @ b
    assert out.shape == want.shape
    assert_close(out, want, dtype, terms=np.abs(want) + 1)


def test_transpose(backend, rng):
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    y = rng.normal(size=(7, 3)).astype(np.float32)
    G = (Vi(x) - Vj(y)) * Vj(y).exp()
    T = G.t()
    assert T.shape == (2, 7, 5, 3) and G.T.shape == T.shape
    assert str(T.formula) == str(G.T.formula) != str(G.formula)
    np.testing.assert_allclose(T.sum(axis=2, backend=backend), G.sum(axis=1, backend=backend), rtol=1e-6)
    np.testing.assert_allclose(T.sum(axis=1, backend=backend), G.sum(axis=2, backend=backend), rtol=1e-6)
    np.testing.assert_array_equal(T.argmin(axis=2, backend=backend), G.argmin(axis=1, backend=backend))
    np.testing.assert_allclose(np.asarray(T.dense()), np.swapaxes(np.asarray(G.dense()), 1, 2))
    assert T.t().formula is G.formula


# ---------------------------------------------------------------- axis spellings


@pytest.mark.parametrize("spelling", ["negative", "dim_keyword", "pykeops_alias"])
def test_axis_spellings(spelling, backend, rng):
    x = rng.normal(size=(2, 4, 2)).astype(np.float32)
    y = rng.normal(size=(6, 2)).astype(np.float32)
    G = Vi(x) * Vj(y)
    want_i, want_j = G.sum(axis=1, backend=backend), G.sum(axis=2, backend=backend)
    assert want_i.shape == (2, 6, 2) and want_j.shape == (2, 4, 2)
    if spelling == "negative":
        got_i, got_j = G.sum(axis=-3, backend=backend), G.sum(axis=-2, backend=backend)
    elif spelling == "dim_keyword":
        got_i, got_j = G.sum(dim=1, backend=backend), G.sum(dim=2, backend=backend)
    else:
        got_i, got_j = G.sum_reduction(axis=1, backend=backend), G.sum_reduction(dim=2, backend=backend)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_j, want_j)
    np.testing.assert_array_equal(G.min_reduction(axis=-2, backend=backend), G.min(axis=2, backend=backend))


def test_vector_axis_sum_is_lazy(rng):
    G = Vi(rng.normal(size=(4, 3)).astype(np.float32)) * Vj(rng.normal(size=(5, 3)).astype(np.float32))
    for s in (G.sum(), G.sum(-1), G.sum(axis=2)):
        assert isinstance(s, LazyArray) and s.shape == (4, 5, 1)
        assert s.formula is G.sum(-1).formula


# ---------------------------------------------------------------- missing categories, dtype


def test_formula_without_j_variable(backend, rng):
    """No j-variable: N = 1; reducing over j gives F itself, over i a single row."""
    x = rng.normal(size=(4, 3)).astype(np.float32)
    p = rng.normal(size=(3,)).astype(np.float32)
    F = Vi(x) * Pm(p)
    assert F.shape == (4, 1, 3)
    np.testing.assert_allclose(F.sum(axis=1, backend=backend), x * p, rtol=1e-6)
    np.testing.assert_allclose(F.sum(axis=0, backend=backend), (x * p).sum(0, keepdims=True), rtol=1e-5)


def test_formula_without_i_variable(backend, rng):
    y = rng.normal(size=(6, 2)).astype(np.float32)
    F = Vj(y).exp()
    assert F.shape == (1, 6, 2)
    np.testing.assert_allclose(F.sum(axis=1, backend=backend), np.exp(y).sum(0, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(F.argmax(axis=1, backend=backend), y.argmax(0)[None])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_output_dtype_matches_input(dtype, backend, rng):
    skip_if_unsupported(backend, dtype)
    with precision(dtype):
        x = rng.normal(size=(3, 2)).astype(dtype)
        y = rng.normal(size=(4, 2)).astype(dtype)
        F = -(Vi(x).sqdist(Vj(y)))
        assert F.dtype == dtype
        for out in (F.sum(axis=1, backend=backend), F.logsumexp(axis=0, backend=backend),
                    F.Kmin(2, axis=1, backend=backend), (F * 2.5 + 1).min(axis=0, backend=backend)):
            assert out.dtype == dtype


# ---------------------------------------------------------------- tiling


def test_tiny_tiling_really_tiles(monkeypatch, rng):
    """The "tiny" setting used throughout the suite does split M = 5, N = 7 into several
    padded tiles (guards the suite against a silent change of the jnp backend's knobs)."""
    use_tiling(monkeypatch, "tiny")
    seen = []
    tiles = jax_lazy.backends.jnp._tiles

    def spy(plan, m, n):
        out = tiles(plan, m, n)
        seen.append((m, n) + tuple(out))
        return out

    monkeypatch.setattr(jax_lazy.backends.jnp, "_tiles", spy)
    d = Data(rng, np.float32, "plain", D=2)  # G has width 10: i-blocks of 4 rows
    G, _, _, _ = d.lazy()
    out = G.sum(axis=1, backend="jnp")
    assert_close(out, d.G.sum(-2), np.float32, terms=np.abs(d.G).sum(-2))
    (m, n, ti, tj), = seen
    assert (m, n) == (M, N) and ti < m and m % ti and tj < n and n % tj


@pytest.mark.parametrize("red", ["sum", "logsumexp", "min_argmin", "argKmin", "sumsoftmaxweight", "max_argmax"])
@pytest.mark.parametrize("axis", AXES)
def test_large_reduced_axis(red, axis, backend, rng):
    """A reduced axis of 4500 > 2048: several j-tiles with the default tiling, the last
    one padded."""
    big, small = 4500, 5
    x = rng.normal(size=(big if axis == 0 else small, 1)).astype(np.float32)
    y = rng.normal(size=(small if axis == 0 else big, 1)).astype(np.float32)
    d_axis = (-3, -2)[axis]
    F = -((Vi(x) - Vj(y)) ** 2)
    Fd = -((x.astype(np.float64)[:, None] - y.astype(np.float64)[None]) ** 2)
    W = Vi(x) if axis == 0 else Vj(y)
    Wd = (x[:, None] if axis == 0 else y[None]).astype(np.float64)
    if red == "sum":
        assert_close(F.sum(axis=axis, backend=backend), Fd.sum(d_axis), np.float32, terms=np.abs(Fd).sum(d_axis))
    elif red == "logsumexp":
        assert_close(F.logsumexp(axis=axis, backend=backend), o.red_logsumexp(Fd, d_axis), np.float32)
    elif red == "sumsoftmaxweight":
        assert_close(F.sumsoftmaxweight(W, axis=axis, backend=backend), o.red_softmax(Fd, d_axis, Wd), np.float32,
                     terms=np.full((small, 1), 3.0))
    elif red == "argKmin":
        np.testing.assert_array_equal(F.argKmin(3, axis=axis, backend=backend), o.red_argkmin(Fd, d_axis, 3)[..., 0])
    else:
        base = red.split("_")[0]
        vals, idx = getattr(F, red)(axis=axis, backend=backend)
        want_idx = (o.red_argmin if base == "min" else o.red_argmax)(Fd, d_axis)
        np.testing.assert_array_equal(idx, want_idx)
        assert_close(vals, (o.red_min if base == "min" else o.red_max)(Fd, d_axis), np.float32)


@pytest.mark.slow
def test_default_budget_splits_rows(backend, rng):
    """M = N = 3000: with the default TILE_BUDGET the rows go in several padded i-blocks."""
    x = rng.normal(size=(3000, 2)).astype(np.float32)
    y = rng.normal(size=(3000, 2)).astype(np.float32)
    K = (-(Vi(x).sqdist(Vj(y)))).exp()
    out = np.asarray(K.sum(axis=1, backend=backend))
    ref = np.zeros((3000, 1))
    for s in range(0, 3000, 500):
        d2 = ((x[s:s + 500, None].astype(np.float64) - y[None]) ** 2).sum(-1)
        ref[s:s + 500, 0] = np.exp(-d2).sum(1)
    assert_close(out, ref, np.float32)


# ---------------------------------------------------------------- regressions and known bugs


def test_max_over_padded_tile(backend):
    """Regression: the +inf padding was written before F was negated for Max, so padded
    columns (N = 4500 is not a multiple of the 2048-column tile) won."""
    x = np.zeros((1, 1), np.float32)
    y = np.linspace(-1.0, 1.0, 4500, dtype=np.float32)[:, None]
    vals, idx = (Vi(x) - Vj(y)).max_argmax(axis=1, backend=backend)
    assert float(vals[0, 0]) == 1.0 and int(idx[0, 0]) == 0


def test_min_argmin_with_nan_propagates(backend):
    x = np.asarray([[np.nan], [1.0]], np.float32)
    y = np.asarray([[0.0], [2.0]], np.float32)
    vals, idx = (Vi(x) - Vj(y)).min_argmin(axis=1, backend=backend)
    assert 0 <= int(idx[0, 0]) < 2, "index out of range"
    assert np.isnan(vals[0, 0])


# ---------------------------------------------------------------- reductions as data


@pytest.mark.parametrize("name", ["Sum", "LogSumExp", "SumSoftMaxWeight", "Min_ArgMin", "KMin_ArgKMin"])
@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_kernel_combine_equals_one_pass(name, order, rng):
    """Each reduction's state machine: folding two column ranges separately and merging
    the states with ``combine`` (how a backend splits j over threads / blocks) gives the
    one-pass result, whatever the merge order -- ties included (integer data): the
    smallest index wins."""
    from jax_lazy.reductions import REDUCTIONS

    red = REDUCTIONS[name]
    kern, K = red.family, (3 if red.uses_k else None)
    L, n, D = (4,), 9, (1 if red.scalar else 2)
    F = rng.integers(-2, 3, L + (n, D)).astype(np.float64) * 0.5
    W = rng.uniform(0.5, 2.0, L + (n, 2))
    if name == "SumSoftMaxWeight":
        W = np.concatenate([np.ones(L + (n, 1)), W], -1)
    if not red.weighted:
        W = np.ones((1,))
    dw = W.shape[-1] if red.weighted else 1

    def fold(lo, hi):
        w = W[..., lo:hi, :] if red.weighted else W
        return kern.update(kern.init(L, D, dw, K, np.float64), F[..., lo:hi, :], w, lo, K)

    with jax.enable_x64(True):
        whole = kern.finalize(fold(0, n))
        a, b = fold(0, 4), fold(4, n)
        merged = kern.finalize(kern.combine(a, b, K) if order == "in_order" else kern.combine(b, a, K))
    for got, want in zip(merged, whole):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12)


@pytest.mark.parametrize("table", ["backends.cpu.EMIT", "backends.cuda.EMIT", "primitive.JVP"])
def test_family_tables_cover_every_family(table):
    """Each table keyed by reduction family (a backend's emitters, the JVP rules) has a
    row for every family, and no other key (the modules also check this at import)."""
    import importlib

    from jax_lazy.reductions import FAMILIES

    module, name = table.rsplit(".", 1)
    rows = getattr(importlib.import_module(f"jax_lazy.{module}"), name)
    assert set(rows) == set(FAMILIES) and len(rows) == len(FAMILIES)


def test_family_records_agree_with_reductions():
    """Index outputs, roots and the Max negation come from the family records: the
    families with an index output are those whose reductions' index outputs have no
    gradient, and Max evaluates -F and negates its values only."""
    from jax_lazy.ir.ops import Minus
    from jax_lazy.reductions import REDUCTIONS

    F = Vi(np.zeros((2, 3), np.float32)).sqdist(Vj(np.zeros((4, 3), np.float32)))._join()[0][0]
    for red in REDUCTIONS.values():
        assert all(p < red.family.outputs for p in red.public + red.family.index)
        if red.grad is None:  # ArgMin, ArgMax, ArgKMin: indices only
            assert all(red.is_index(p) for p in red.public)
        if not red.weighted:
            assert red.roots((F,)) == ((Minus(F),) if red.negate else (F,))
    red = REDUCTIONS["Max_ArgMax"]
    values, idx = red.signed((np.array([1.0, -2.0]), np.array([3, 4])))
    np.testing.assert_array_equal(values, [-1.0, 2.0])
    np.testing.assert_array_equal(idx, [3, 4])


def test_matmul_operator_is_matvec(rng):
    x, y, b = rng.normal(size=(5, 2)), rng.normal(size=(7, 2)), rng.normal(size=(7, 3))
    K = (-(Vi(x.astype(np.float32)).sqdist(Vj(y.astype(np.float32))))).exp()
    np.testing.assert_array_equal(K @ b.astype(np.float32), K.matvec(b.astype(np.float32)))
