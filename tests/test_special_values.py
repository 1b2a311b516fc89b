"""Special values (NaN, +-inf, +-0, ties) on every backend, against dense jax.numpy.

The rules (docs/api.md, "Special values") are those of jax.numpy: element-wise ops as
``jnp`` (NaN propagates through sign, relu, clamp; pow's special cases), logsumexp as
``jax.nn.logsumexp``, the softmax-weighted sum as ``jax.nn.softmax`` times the weights,
Min/ArgMin as ``jnp.min`` / ``jnp.argmin`` (NaN wins), KMin/ArgKMin as a stable
``jnp.argsort`` (NaN last, ties and +-0 to the smallest index, every index a column).
The oracle is always the dense float64 computation in jax.numpy / NumPy.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import Vi, Vj

from conftest import clear_plan_caches, precision

DTYPES = [np.float32, np.float64]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, -3.0, 2.0]

# ---------------------------------------------------------------- element-wise ops
# name -> (arity, LazyArray spelling, dense jax.numpy reference, exact)
ELEMENTWISE = {
    "Minus": (1, lambda x: -x, lambda x: -x, True),
    "Inv": (1, lambda x: x.inv(), lambda x: 1 / x, True),
    "Square": (1, lambda x: x.square(), jnp.square, True),
    "Sqrt": (1, lambda x: x.sqrt(), jnp.sqrt, True),
    "Rsqrt": (1, lambda x: x.rsqrt(), lambda x: jnp.where(x == 0, 0.0, jax.lax.rsqrt(x)), False),
    "Exp": (1, lambda x: x.exp(), jnp.exp, False),
    "Log": (1, lambda x: x.log(), jnp.log, False),
    "Sin": (1, lambda x: x.sin(), jnp.sin, False),
    "Cos": (1, lambda x: x.cos(), jnp.cos, False),
    "Abs": (1, lambda x: x.abs(), jnp.abs, True),
    "Sign": (1, lambda x: x.sign(), jnp.sign, True),
    "Step": (1, lambda x: x.step(), lambda x: (x >= 0).astype(x.dtype), True),
    "ReLU": (1, lambda x: x.relu(), jax.nn.relu, True),
    "Add": (2, lambda x, y: x + y, jnp.add, True),
    "Subtract": (2, lambda x, y: x - y, jnp.subtract, True),
    "Mult": (2, lambda x, y: x * y, jnp.multiply, True),
    "Divide": (2, lambda x, y: x / y, jnp.divide, True),
    "Powf": (2, lambda x, y: x.powf(y), jnp.power, False),
    "LessThan": (2, lambda x, y: x < y, lambda x, y: (x < y).astype(x.dtype), True),
    "LessOrEqual": (2, lambda x, y: x <= y, lambda x, y: (x <= y).astype(x.dtype), True),
    "Equal": (2, lambda x, y: x == y, lambda x, y: (x == y).astype(x.dtype), True),
    "NotEqual": (2, lambda x, y: x != y, lambda x, y: (x != y).astype(x.dtype), True),
    "Clamp": (3, lambda x, lo, hi: x.clamp(lo, hi), jnp.clip, True),
    "IfElse": (3, lambda x, a, b: x.ifelse(a, b), lambda x, a, b: jnp.where(x >= 0, a, b), True),
}

# Element-wise math (issue 12): in the slow suite (tests/test_cpu_math.py checks the cpu
# kernels' special values in the fast one). Mod is not exact: CUDA contracts m * floor + x.
ELEMENTWISE_MATH = {
    "XLogX": (1, lambda x: x.xlogx(), lambda x: jnp.where(x == 0, 0.0, x * jnp.log(jnp.where(x == 0, 1.0, x))), False),
    "Asin": (1, lambda x: x.asin(), jnp.arcsin, False),
    "Acos": (1, lambda x: x.acos(), jnp.arccos, False),
    "Atan": (1, lambda x: x.atan(), jnp.arctan, False),
    "Atan2": (2, lambda y, x: y.atan2(x), jnp.arctan2, False),
    "SinXDivX": (1, lambda x: x.sinxdivx(), lambda x: jnp.where(x == 0, 1.0, jnp.sin(x) / jnp.where(x == 0, 1.0, x)),
                 False),
    "Floor": (1, lambda x: x.floor(), jnp.floor, True),
    "Round": (1, lambda x: x.round(), jnp.round, True),
    "Mod": (3, lambda x, m, off: x.mod(m, off), lambda x, m, off: x - m * jnp.floor((x - off) / m), False),
    "Tanh": (1, lambda x: x.tanh(), jnp.tanh, False),
    "Sigmoid": (1, lambda x: x.sigmoid(), jax.nn.sigmoid, False),
    "Erf": (1, lambda x: x.erf(), jax.lax.erf, False),
}
ELEMENTWISE_PARAMS = list(ELEMENTWISE) + [pytest.param(op, marks=pytest.mark.slow) for op in ELEMENTWISE_MATH]
ELEMENTWISE.update(ELEMENTWISE_MATH)


def _same_special(got, ref, exact, dtype, what):
    """NaN where ref is NaN, the same infinities, the same sign of zero, and equal (or,
    for the approximate math functions, close) finite values."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    with np.errstate(invalid="ignore"):
        _check_special(got, ref, exact, dtype, what)


def _check_special(got, ref, exact, dtype, what):
    bad = np.isnan(got) != np.isnan(ref)
    fin = np.isfinite(ref)
    bad |= ~fin & ~np.isnan(ref) & (got != ref)
    bad |= (ref == 0) & (np.signbit(got) != np.signbit(ref))
    rtol = 0 if exact else (1e-5 if dtype == np.float32 else 1e-12)
    bad |= fin & ~(np.abs(got - ref) <= rtol * np.abs(ref) + (0 if exact else rtol))
    assert not bad.any(), f"{what}: {np.flatnonzero(bad)[:10]} got {got[bad][:10]} expected {ref[bad][:10]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ELEMENTWISE_PARAMS)
def test_elementwise_special_values_as_jax_numpy(backend, op, dtype):
    """Every element-wise op on every combination of NaN, +-inf, +-0 and a few numbers
    (the operands as i-variables, reduced by Min over a single column, which keeps the
    value, its NaN and its sign of zero): the values of dense jax.numpy."""
    arity, spell, ref, exact = ELEMENTWISE[op]
    combos = np.array(list(itertools.product(SPECIAL, repeat=arity)), dtype).T  # (arity, M)
    with precision(dtype):
        got = spell(*[Vi(c[:, None]) for c in combos]).min(axis=1, backend=backend)[:, 0]
    with jax.enable_x64(True):
        expected = np.asarray(ref(*[jnp.asarray(c, jnp.float64) for c in combos])).astype(dtype)
    _same_special(got, expected, exact, dtype, f"{op}{tuple(map(tuple, combos.T))}")


# ---------------------------------------------------------------- logsumexp, softmax
# Columns of F_j = y_j (plus x_i = 0, 1, -2 per row), N = 130: two full chunks of 64
# columns and a partial one in the cpu kernels.
N_LSE = 130


def _lse_columns(kind):
    y = np.random.default_rng(5).normal(size=N_LSE)
    if kind == "nan_chunk":  # a whole 64-column chunk of NaN, the rest finite
        y[:64] = np.nan
    elif kind == "nan_last":
        y[-1] = np.nan
    elif kind == "all_nan":
        y[:] = np.nan
    elif kind == "one_posinf":
        y[70] = np.inf
    elif kind == "two_posinf":
        y[[3, 100]] = np.inf
    elif kind == "posinf_and_nan":
        y[[3, 100]] = np.inf, np.nan
    elif kind == "all_neginf":
        y[:] = -np.inf
    elif kind == "neginf_chunk":  # -inf in a chunk of its own, then finite values
        y[:64] = -np.inf
    elif kind == "neginf_and_nan":
        y[:] = -np.inf
        y[65] = np.nan
    return y


LSE_KINDS = ["nan_chunk", "nan_last", "all_nan", "one_posinf", "two_posinf", "posinf_and_nan", "all_neginf",
             "neginf_chunk", "neginf_and_nan"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LSE_KINDS)
def test_logsumexp_and_softmax_special_values_as_jax_nn(backend, kind, dtype):
    """logsumexp is jax.nn.logsumexp (NaN anywhere: NaN; else +inf anywhere: +inf; all
    -inf: -inf) and the softmax-weighted sum is jax.nn.softmax times the weights (NaN
    where a column is NaN or +inf, or every column is -inf)."""
    x = np.array([0.0, 1.0, -2.0])
    y = _lse_columns(kind)
    w = np.stack([np.arange(N_LSE) % 7 + 1.0, np.cos(np.arange(N_LSE))], -1)
    F = x[:, None] + y[None, :]
    with jax.enable_x64(True):
        lse_ref = jax.nn.logsumexp(jnp.asarray(F), axis=1)[:, None]
        sm_ref = jnp.einsum("ij,je->ie", jax.nn.softmax(jnp.asarray(F), axis=1), jnp.asarray(w))
        lse_ref, sm_ref = np.asarray(lse_ref).astype(dtype), np.asarray(sm_ref).astype(dtype)
    with precision(dtype):
        f = Vi(x[:, None].astype(dtype)) + Vj(y[:, None].astype(dtype))
        lse = f.logsumexp(axis=1, backend=backend)
        sm = f.sumsoftmaxweight(Vj(w.astype(dtype)), axis=1, backend=backend)
    _same_special(lse, lse_ref, False, dtype, f"logsumexp {kind}")
    _same_special(sm, sm_ref, False, dtype, f"sumsoftmaxweight {kind}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_logsumexp_special_values_as_jax_nn(backend, dtype):
    """log sum_j exp(F_j) W_j is jax.nn.logsumexp(F, b=W): a NaN weight makes the result
    NaN even where F = -inf (exp(-inf) NaN = NaN), an infinite weight gives +inf."""
    x = np.array([0.0, 1.0])
    y = _lse_columns("neginf_chunk")
    w = np.stack([np.arange(N_LSE) % 7 + 1.0, np.ones(N_LSE), np.ones(N_LSE)], -1)
    w[3, 0] = np.nan  # y[3] = -inf
    w[100, 1] = np.inf
    F = x[:, None] + y[None, :]
    with jax.enable_x64(True):
        ref = jax.nn.logsumexp(jnp.asarray(F)[:, :, None], b=jnp.asarray(w)[None], axis=1)
        ref = np.asarray(ref).astype(dtype)
    with precision(dtype):
        f = Vi(x[:, None].astype(dtype)) + Vj(y[:, None].astype(dtype))
        got = f.logsumexp(axis=1, weight=Vj(w.astype(dtype)), backend=backend)
    _same_special(got, ref, False, dtype, "weighted logsumexp")


@pytest.mark.parametrize("kind", ["neginf_chunk", "one_posinf", "nan_last"])
def test_logsumexp_and_softmax_special_values_through_the_j_split(backend, kind, monkeypatch):
    """One row, many columns: the compiled backends cut the j axis into parts and merge
    their outputs (common.merge); a part whose columns are all -inf adds nothing."""
    calls = _count_merges(monkeypatch)
    n = 3 * 8192
    y = np.random.default_rng(6).normal(size=n)
    y[: n // 2] = -np.inf  # whole parts of -inf
    y[n - 5] = {"neginf_chunk": y[n - 5], "one_posinf": np.inf, "nan_last": np.nan}[kind]
    w = np.cos(np.arange(n))[:, None]
    with jax.enable_x64(True):
        lse_ref = np.asarray(jax.nn.logsumexp(jnp.asarray(y)))[None, None]
        sm_ref = np.asarray(jax.nn.softmax(jnp.asarray(y)) @ jnp.asarray(w))[None]
        f = Vi(np.zeros((1, 1))) + Vj(y[:, None])
        lse = f.logsumexp(axis=1, backend=backend)
        sm = f.sumsoftmaxweight(Vj(w), axis=1, backend=backend)
    _same_special(lse, lse_ref, False, np.float64, f"logsumexp {kind}")
    _same_special(sm, sm_ref, False, np.float64, f"sumsoftmaxweight {kind}")
    _assert_split(backend, calls)


def _count_merges(monkeypatch) -> list:
    """Calls of common.merge (the j-split's) from now on, in a list."""
    from jax_lazy.backends import common

    clear_plan_caches()  # trace again: the patched merge must be seen
    calls = []
    real_merge = common.merge
    monkeypatch.setattr(common, "merge", lambda *a: calls.append(1) or real_merge(*a))
    return calls


def _assert_split(backend, calls):
    from jax_lazy._native_loader import load_native

    if backend == "cpu" and load_native().num_threads() >= 2:
        assert calls, "the j axis was not split"


# ---------------------------------------------------------------- Min, KMin and their indices


def _ranked_columns(kind, n):
    """Column values with NaN, infinities, signed zeros and exact ties (integers: exact
    in float32 too)."""
    rng = np.random.default_rng(7)
    y = rng.integers(-3, 4, n).astype(np.float64)
    if kind == "mostly_nan":  # fewer than K numbers
        y[rng.random(n) < 0.8] = np.nan
        y[[1, n - 2]] = np.inf, -np.inf
    elif kind == "all_nan":
        y[:] = np.nan
    elif kind == "infinities":  # more than K columns of +inf, one NaN before them
        y[:] = np.inf
        y[[2, 9]] = np.nan, -1.0
    elif kind == "signed_zeros":  # +0 and -0 tie: the smaller index goes first
        y = np.where(rng.random(n) < 0.5, 0.0, -0.0)
        y[[4, 11]] = 1.0, -1.0
    elif kind == "negative_nan":  # a NaN with its sign bit set sorts last too
        y[[0, 5]] = -np.nan
    return y


MIN_KINDS = ["mostly_nan", "all_nan", "infinities", "signed_zeros", "negative_nan"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [13, 150])
@pytest.mark.parametrize("kind", MIN_KINDS)
def test_kmin_orders_as_a_stable_argsort(backend, kind, n, dtype):
    """Kmin / argKmin are the first K of a stable jnp.argsort of each row: NaN last, ties
    (+0 and -0 too) to the smallest index, so every index is a distinct column in [0, N),
    whatever K <= N and however few numbers the row has."""
    x = np.array([0.0, 1.0, -2.0])
    y = np.stack([_ranked_columns(kind, n), _ranked_columns(kind, n)[::-1]], -1)  # D = 2
    F = x[:, None, None] + y[None]  # (M, N, D)
    order = np.asarray(jnp.argsort(jnp.asarray(F), axis=1, stable=True))
    for K in (1, 5, n):
        with precision(dtype):
            v, k = (Vi(x[:, None].astype(dtype)) + Vj(y.astype(dtype))).Kmin_argKmin(K, axis=1, backend=backend)
        v, k = np.asarray(v), np.asarray(k)
        np.testing.assert_array_equal(k, order[:, :K], err_msg=f"argKmin K={K}")
        _same_special(v, np.take_along_axis(F, order[:, :K], 1).astype(dtype), True, dtype, f"Kmin K={K}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", MIN_KINDS)
def test_min_argmin_max_argmax_as_jax_numpy(backend, kind, dtype):
    """min / argmin (and max / argmax) are jnp.min / jnp.argmin: NaN wins (the first NaN),
    ties (+0 and -0 too) go to the smallest index."""
    x = np.array([0.0, 1.0])
    y = np.stack([_ranked_columns(kind, 150), _ranked_columns(kind, 150)[::-1]], -1)
    F = jnp.asarray(x[:, None, None] + y[None])
    with precision(dtype):
        f = Vi(x[:, None].astype(dtype)) + Vj(y.astype(dtype))
        got = [f.min_argmin(axis=1, backend=backend), f.max_argmax(axis=1, backend=backend)]
    for (v, k), red, arg in zip(got, (jnp.min, jnp.max), (jnp.argmin, jnp.argmax)):
        np.testing.assert_array_equal(np.asarray(k), np.asarray(arg(F, axis=1)), err_msg=arg.__name__)
        _same_special(v, np.asarray(red(F, axis=1)).astype(dtype), True, dtype, red.__name__)


def test_kmin_through_the_j_split(backend, monkeypatch):
    """One row, many columns: the compiled backends cut the j axis into parts, the last
    one shorter than K (unfilled slots), and merge their K-lists (common.merge)."""
    calls = _count_merges(monkeypatch)
    n, K = 4 * 4096 + 3, 1000  # within the cuda K-list limit in float64 (1024)
    y = np.random.default_rng(8).integers(-50, 50, n).astype(np.float64)
    y[np.random.default_rng(9).random(n) < 0.9] = np.nan  # fewer than K numbers in most parts
    with jax.enable_x64(True):
        v, k = (Vi(np.zeros((1, 1))) + Vj(y[:, None])).Kmin_argKmin(K, axis=1, backend=backend)
    order = np.argsort(y, kind="stable")[:K]
    np.testing.assert_array_equal(np.asarray(k)[0], order)
    _same_special(np.asarray(v)[0], y[order], True, np.float64, "Kmin through the split")
    _assert_split(backend, calls)
