"""Numerics options (``dtype_acc``, ``sum_scheme``: docs/api.md, "Numerics options") on
every backend, and float16 / bfloat16 data on the cpu backend, against float64 NumPy."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from jax_lazy import Vi, Vj, backends, numerics
from jax_lazy.backends import cpu
from jax_lazy.options import OptionError
from jax_lazy.plan import Plan
from jax_lazy.reductions import REDUCTIONS

from conftest import precision

CPU = cpu.available() is None and cpu.limitation() is None
OPTIONS = [{}, {"dtype_acc": "float64"}, {"sum_scheme": "kahan_scheme"}]


def _ulps(got, exact):
    """|got - exact| in float32 ulps of the exact value."""
    exact = np.asarray(exact, np.float64)
    return np.abs(np.asarray(got, np.float64) - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)


def test_options_recover_the_digits_of_a_long_float32_sum(backend):
    """sum_j (x_i + 0.1) over N = 1e6 columns: the running float32 sum (1e5) is ~1e6 times
    each term, so every addition rounds (the same way: 0.1 is not a float); float64
    accumulation gives the correctly rounded result (~1e-7 relative), Kahan a few ulps."""
    N = 10**6
    x = np.array([[0.0], [0.25], [3.0]], np.float32)
    y = np.full((N, 1), 0.1, np.float32)
    exact = N * x.astype(np.float64) + y.astype(np.float64).sum()
    with precision(np.float32):
        F = Vi(x) + Vj(y)
        plain, acc64, kahan = (np.asarray(F.sum(1, backend=backend, **kw)) for kw in OPTIONS)
    assert _ulps(plain, exact).max() > 4, "the default lost no digits: the test shows nothing"
    assert np.abs(acc64 / exact - 1).max() < 1.2e-7 and _ulps(acc64, exact).max() <= 1
    assert _ulps(kahan, exact).max() <= 4


def _lse_data(rng, N):
    x = rng.random((3, 1)).astype(np.float32)
    y = rng.random((N, 1)).astype(np.float32)
    w = (1 + rng.random((N, 2))).astype(np.float32)
    F = -((x.astype(np.float64) - y.astype(np.float64).T) ** 2) * 3
    e = np.exp(F - F.max(1, keepdims=True))
    lse = F.max(1) + np.log(e.sum(1))
    return (x, y, w), lse[:, None], (e @ w.astype(np.float64)) / e.sum(1, keepdims=True)


@pytest.mark.parametrize("kw", OPTIONS[1:], ids=lambda kw: next(iter(kw.values())))
def test_logsumexp_and_softmax_with_options(backend, kw):
    """The rescaled sums of LogSumExp / SumSoftMaxWeight in A or compensated: values
    within float32 rounding of float64 NumPy (N over many tiles and chunks)."""
    (x, y, w), lse, soft = _lse_data(np.random.default_rng(1), 20000)
    with precision(np.float32):
        F = -((Vi(x) - Vj(y)) ** 2) * 3
        got_lse = F.logsumexp(1, backend=backend, **kw)
        got_soft = F.sumsoftmaxweight(Vj(w), axis=1, backend=backend, **kw)
    np.testing.assert_allclose(np.asarray(got_lse, np.float64), lse, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got_soft, np.float64), soft, rtol=1e-6)


def test_gradients_inherit_the_options(backend):
    """The derivative reductions of a plan are Sums with its options (primitive.derived_sum):
    the gradient of a Kahan Gaussian-kernel sum is right, and its tangent plan carries them."""
    rng = np.random.default_rng(3)
    x, y, b = rng.normal(size=(5, 2)), rng.normal(size=(40, 2)), rng.normal(size=(40, 1))
    x, y, b = (a.astype(np.float32) for a in (x, y, b))

    def loss(x):
        K = (-Vi(x).sqdist(Vj(y))).exp() * Vj(b)
        return K.sum(1, backend=backend, sum_scheme="kahan_scheme", dtype_acc="float64").sum()

    with precision(np.float32):
        g = np.asarray(jax.grad(loss)(x), np.float64)
        eqns = jax.make_jaxpr(jax.grad(loss))(x).jaxpr.eqns
    plans = [e.params["plan"] for e in eqns if "plan" in e.params]
    assert len(plans) >= 2 and all((p.dtype_acc, p.sum_scheme) == ("float64", "kahan_scheme") for p in plans)
    X, Y, B = x.astype(np.float64), y.astype(np.float64), b.astype(np.float64)
    d = X[:, None] - Y[None]
    want = (-2 * d * (np.exp(-(d**2).sum(-1)) * B[:, 0])[..., None]).sum(1)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


def _plan(red="Sum", dtype="float32", **kw):
    F = Vi(np.zeros((2, 1), np.float32)) * Vj(np.zeros((3, 1), np.float32))
    nodes, (vars_, *_rest) = F._join()
    return Plan(tuple(nodes), REDUCTIONS[red], 2 if "K" in red else None, tuple(vars_), dtype, "cpu", **kw)


def test_options_resolve_into_the_plan():
    """"auto" is replaced by its meaning, so equal options make equal plans (one kernel)."""
    assert _plan() == _plan(dtype_acc="float32", sum_scheme="block_sum")
    assert (_plan().dtype_acc, _plan().sum_scheme) == ("float32", "block_sum")
    assert (_plan("ArgKMin").sum_scheme, _plan(dtype="float16").dtype_acc) == ("direct_sum", "float32")
    assert _plan(dtype_acc="float64") != _plan(sum_scheme="kahan_scheme") != _plan()
    assert "acc=float64 kahan_scheme" in repr(_plan(dtype_acc="float64", sum_scheme="kahan_scheme"))


@pytest.mark.skipif(not CPU, reason="needs the cpu backend and a compiler")
def test_options_are_part_of_the_kernel_key():
    """Two options, two kernels (different sources); the same options, one."""
    keys = {str(o): cpu.kernel_key(_plan(**o))[0] for o in ({}, {"dtype_acc": "float64"}, {"sum_scheme": "kahan_scheme"})}
    assert len(set(keys.values())) == 3
    assert cpu.kernel_key(_plan(sum_scheme="block_sum", dtype_acc="float32"))[0] == keys["{}"]
    assert "#define JL_A double" in cpu.kernel_source(_plan(dtype_acc="float64"))
    assert "jl_kadd" in cpu.kernel_source(_plan(sum_scheme="kahan_scheme"))


@pytest.mark.parametrize("red, dtype, kw, match", [
    ("Sum", "float32", {"dtype_acc": "float128"}, "dtype_acc='float128': expected one of"),
    ("Sum", "float32", {"sum_scheme": "pairwise"}, "sum_scheme='pairwise': expected one of"),
    ("Sum", "float64", {"dtype_acc": "float32"}, "narrower than the float64 data"),
    ("Min", "float32", {"dtype_acc": "float64"}, "applies to sum-type reductions.*not to Min"),
    ("ArgKMin", "float32", {"sum_scheme": "kahan_scheme"}, "not to ArgKMin"),
    ("Max_ArgMax", "float32", {"sum_scheme": "block_sum"}, "not to Max_ArgMax"),
])
def test_bad_options_raise(red, dtype, kw, match):
    with pytest.raises(OptionError, match=match):
        numerics.resolve(REDUCTIONS[red], dtype, **kw)


def test_bad_options_raise_from_the_methods():
    x = Vi(np.ones((3, 1), np.float32)) * Vj(np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="not to Max.*\n  formula: Max_Reduction"):
        x.max(1, sum_scheme="kahan_scheme", backend="jnp")
    with pytest.raises(OptionError, match="expected one of"):
        x.sum(1, dtype_acc="double", backend="jnp")
    # direct_sum and the compute type are what a Min does anyway
    np.testing.assert_array_equal(x.min(1, sum_scheme="direct_sum", dtype_acc="float32", backend="jnp"), np.ones((3, 1)))


# ---------------------------------------------------------------- float16 / bfloat16 on cpu

HALF = {"float16": (np.float16, 2e-3), "bfloat16": (ml_dtypes.bfloat16, 1.6e-2)}  # dtype, eps-ish tolerance


def _families(x, y, w):
    """One reduction per family: (name, lazy reduction, float64 NumPy reference)."""
    X, Y, W = (np.asarray(a, np.float64) for a in (x, y, w))
    d = ((X[:, None] - Y[None]) ** 2).sum(-1)
    e = np.exp(-d - (-d).max(1, keepdims=True))
    k = np.sort(d, 1)[:, :3]
    return [
        ("Sum", lambda: (-Vi(x).sqdist(Vj(y))).exp().sum(1), np.exp(-d).sum(1, keepdims=True)),
        ("LogSumExp", lambda: (-Vi(x).sqdist(Vj(y))).logsumexp(1), np.log(np.exp(-d).sum(1, keepdims=True))),
        ("SumSoftMaxWeight", lambda: (-Vi(x).sqdist(Vj(y))).sumsoftmaxweight(Vj(w), axis=1), e @ W / e.sum(1, keepdims=True)),
        ("Min", lambda: Vi(x).sqdist(Vj(y)).min(1), d.min(1, keepdims=True)),
        ("KMin", lambda: Vi(x).sqdist(Vj(y)).Kmin(3, axis=1), k),
    ]


@pytest.mark.skipif(not CPU or jax.default_backend() != "cpu", reason="needs the cpu backend on a CPU platform")
@pytest.mark.parametrize("dtype", sorted(HALF))
def test_half_precision_on_the_cpu_backend(dtype):
    """float16 / bfloat16 data: "auto" takes the cpu backend (no fallback warning), which
    computes in float32 and stores in the data's dtype; every family, and a gradient."""
    np_dtype, tol = HALF[dtype]
    rng = np.random.default_rng(4)
    x, y, w = (rng.normal(size=s).astype(np_dtype) for s in ((7, 2), (300, 2), (300, 2)))
    assert backends.resolve("auto", dtype) == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to jnp
        for name, run, want in _families(x, y, w):
            got = run()
            assert got.dtype == np_dtype, name
            scale = np.abs(want).max()
            np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol * scale, err_msg=name)
        idx = Vi(x).sqdist(Vj(y)).argmin(1)
        assert idx.dtype == jnp.int32
        g = jax.grad(lambda x: (-Vi(x).sqdist(Vj(y))).exp().sum(1).astype(jnp.float32).sum())(x)
    assert g.dtype == np_dtype
    X, Y = x.astype(np.float64), y.astype(np.float64)
    diff = X[:, None] - Y[None]
    want = (-2 * diff * np.exp(-(diff**2).sum(-1))[..., None]).sum(1)
    np.testing.assert_allclose(np.asarray(g, np.float64), want, rtol=tol, atol=tol * np.abs(want).max())
    with precision(np.float32):
        sx, sy = x.astype(np.float32), y.astype(np.float32)
        np.testing.assert_array_equal(idx, Vi(sx).sqdist(Vj(sy)).argmin(1))


# ---------------------------------------------------------------- the cuda kernels, compiled


@pytest.mark.parametrize("syntax_only", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_cuda_kernels_with_options_compile(syntax_only):
    """Every sum-type family with each option (float32, float16 and float64 data, plain and
    wide Sums) through NVRTC (its front end in the fast suite, to sm_90 cubins in the slow
    one): the accumulators and jl_lse_update_acc."""
    from jax_lazy.backends import nvrtc

    if nvrtc.status() is not None:
        pytest.skip(f"NVRTC unavailable: {nvrtc.status()}")
    from test_cuda_compile import compile_all, make_plan

    x, y, w = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)
    F = -Vi(x).sqdist(Vj(y))
    cases = [((F.exp() * Vj(w),), "Sum"), ((Vi(x) * Vj(y) * Vj(y).sum(),), "Sum"), ((F, Vj(w)), "LogSumExp"),
             ((F, Vj(w)), "SumSoftMaxWeight")]
    plans = []
    for lazies, red in cases:
        for dtype in ("float32", "float16", "float64"):
            for kw in ({"dtype_acc": "float64"}, {"sum_scheme": "kahan_scheme"}, {"sum_scheme": "direct_sum"}):
                p = make_plan(lazies, red, dtype=dtype)
                plans.append(Plan(p.formulas, p.red, p.k, p.variables, dtype, "cuda", **kw))
    compile_all(plans, "sm_90", syntax_only=syntax_only)


@pytest.mark.slow
@pytest.mark.parametrize("kw", OPTIONS[1:], ids=lambda kw: next(iter(kw.values())))
@pytest.mark.parametrize("shape", ["looped", "outer"])
def test_wide_sums_with_options(kw, shape):
    """The cpu Sum kernel's other two forms with the options: a root looped over its
    components (Gaussian weights times a 300-wide Vj(b)) and one computed components
    outermost (Vi(x) * Vj(y) at D = 300, no lane-level scalar)."""
    if not CPU:
        pytest.skip("needs the cpu backend and a compiler")
    rng = np.random.default_rng(5)
    D = 300
    x, y = rng.normal(size=(9, 3 if shape == "looped" else D)), rng.normal(size=(2000, 3 if shape == "looped" else D))
    b = rng.normal(size=(2000, D))
    x, y, b = (a.astype(np.float32) for a in (x, y, b))
    X, Y, B = (a.astype(np.float64) for a in (x, y, b))
    with precision(np.float32):
        if shape == "looped":
            got = ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(1, backend="cpu", **kw)
            want = np.exp(-((X[:, None] - Y[None]) ** 2).sum(-1)) @ B
        else:
            got = (Vi(x) * Vj(y)).sum(1, backend="cpu", **kw)
            want = X * Y.sum(0)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
