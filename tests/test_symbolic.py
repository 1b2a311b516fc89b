"""Python floats as runtime parameters, symbolic variables and callable reductions
(issue 12, items 5 and 6; SPEC §1.2, §1.10, §4.1).

- A Python (or NumPy) float in a formula is a weakly typed parameter, not a compile-time
  constant: a loop over bandwidths outside ``jit`` compiles one kernel, and a traced
  bandwidth differentiates as before.
- ``Vi(0, 3)``, ``Vj(1, 3)``, ``Pm(2, 1)`` build formulas without data; their reductions
  (and any reduction with ``call=False``) are functions of the arrays, composing with
  jit, vmap, grad and jvp.

Oracles: float64 NumPy (values, closed-form gradients) and dense ``jax.numpy`` in float64
for the transformations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lazy
from jax_lazy import DtypeError, FormulaError, LazyReduction, Pm, ShapeError, Vi, Vj, compilers, primitive
from jax_lazy.ir import P, Var

from conftest import assert_close, set_env

D = 3


def gauss_np(x, y, s, b):
    """sum_j exp(-s |x_i - y_j|^2) b_j in float64 NumPy, and its gradient in x of <out, 1>."""
    d = x[:, None, :] - y[None, :, :]
    k = np.exp(-s * (d**2).sum(-1))
    out = k @ b
    dx = -2 * s * ((k * b.sum(-1)[None, :])[:, :, None] * d).sum(1)
    return out, dx


def data(rng, m=7, n=5, batch=()):
    return tuple(rng.normal(size=batch + (r, D)) for r in (m, n, n))


def gaussian():
    """The LDDMM kernel of pykeops' tutorials, symbolic in its four arguments."""
    return (-(Vi(0, D).sqdist(Vj(1, D)) * Pm(2, 1))).exp() * Vj(3, D)


# ---------------------------------------------------------------- Python floats are parameters


def test_float_is_a_weak_parameter_shared_by_value(x64):
    x = np.ones((4, D), np.float32)
    K = Vi(x) * 2.5 + 2.5
    assert str(K.formula) == "(Var(0,3,0) * Var(1,1,2)) + Var(1,1,2)"  # one parameter for one value
    assert K.dtype == np.float32 and K.variables[1].dtype == np.float64  # weak: adopts float32
    assert str((Vi(x) * 0.0 + -0.0).formula) == "(Var(0,3,0) * Var(1,1,2)) + Var(2,1,2)"  # -0.0 is not 0.0
    assert str((Vi(x) * np.float32(0.5)).formula) == "Var(0,3,0) * Var(1,1,2)"
    assert (Vi(x) * np.float32(0.5)).sum(axis=1, backend="jnp").dtype == np.float32
    assert (Vi(x.astype(np.float64)) * np.float32(0.5)).sum(axis=1, backend="jnp").dtype == np.float64
    assert str((Vi(x) + 1).formula) == "Var(0,3,0) + IntCst(1)"  # ints stay exact constants


def test_two_bandwidths_compile_one_kernel(tmp_path, monkeypatch, rng):
    """The plan (the kernel's key) holds no float value: the second bandwidth reuses the
    first one's kernel and jitted executable."""
    if compilers.find_compiler() is None:
        pytest.skip(compilers.compiler_problem())
    set_env(monkeypatch, JAX_LAZY_CACHE_DIR=tmp_path)
    jax_lazy.clear_cache()  # nothing compiled or memoised in this process either
    x, y, b = (a.astype(np.float32) for a in data(rng))
    built, traced = len(compilers.build_times), primitive._executable.cache_info().misses
    for k, s in enumerate((0.5, 0.75, 1.5)):
        out = ((-(Vi(x).sqdist(Vj(y)) * s)).exp() * Vj(b)).sum(axis=1, backend="cpu")
        assert_close(out, gauss_np(x, y, s, b)[0], np.float32)
        assert len(compilers.build_times) - built == 1, k
        assert primitive._executable.cache_info().misses - traced == 1, k


@pytest.mark.parametrize("build,ref", [
    (lambda X: X.clamp(-0.5, 0.25), lambda x: np.clip(x, -0.5, 0.25)),
    (lambda X: X.ifelse(1.5, -2.5), lambda x: np.where(x >= 0, 1.5, -2.5)),
    (lambda X: X.weightedsqnorm(0.3), lambda x: 0.3 * (x**2).sum(-1, keepdims=True)),
    (lambda X: 1.5 / (X.abs() + 0.5), lambda x: 1.5 / (np.abs(x) + 0.5)),
    (lambda X: X ** 2.0 + X ** 3.0, lambda x: x**2 + x**3),  # integral exponents: exact Pow, any sign
    (lambda X: (X.abs() + 0.1) ** 1.5, lambda x: (np.abs(x) + 0.1) ** 1.5),  # Powf with a parameter
])
def test_float_operands_values(build, ref, x64, rng):
    x = rng.normal(size=(6, D))
    assert_close(build(Vi(x)).sum(axis=1, backend="jnp")[:, : ref(x).shape[-1]], ref(x), np.float64)
    assert_close(build(Vi(x)).dense()[:, 0], ref(x), np.float64)


def test_integral_float_exponents_are_pow():
    x = np.ones((2, D), np.float32)
    assert str((Vi(x) ** 2.0).formula) == "Square(Var(0,3,0))"
    assert str((Vi(x) ** 3.0).formula) == "Pow(Var(0,3,0),3)"
    assert str((Vi(x) ** 0.5).formula) == "Sqrt(Var(0,3,0))" and str((Vi(x) ** -0.5).formula) == "Rsqrt(Var(0,3,0))"
    assert str((Vi(x) ** 2.5).formula) == "Powf(Var(0,3,0),Var(1,1,2))"


def test_float_formula_under_transformations(backend, x64, rng):
    """A float in a formula under jit and vmap; gradients in x with a float bandwidth, and
    in a traced bandwidth (a Python float argument of grad)."""
    x, y, b = data(rng)

    def f(x, s=0.7):
        return ((-(Vi(x).sqdist(Vj(y)) * s)).exp() * Vj(b)).sum(axis=1, backend=backend)

    out, dx = gauss_np(x, y, 0.7, b)
    assert_close(jax.jit(f)(x), out, np.float64)
    assert_close(jax.vmap(f)(np.stack([x, 2 * x]))[1], gauss_np(2 * x, y, 0.7, b)[0], np.float64)
    assert_close(jax.grad(lambda x: f(x).sum())(x), dx, np.float64)
    ds = jax.grad(lambda s: f(x, s).sum())(0.7)
    h = 1e-6
    assert_close(ds, (gauss_np(x, y, 0.7 + h, b)[0].sum() - gauss_np(x, y, 0.7 - h, b)[0].sum()) / (2 * h),
                 np.float64, rtol=1e-6)


# ---------------------------------------------------------------- symbolic variables


def test_lddmm_kernel_called_many_times(backend, x64, rng):
    """One LazyReduction, called with arrays of several sizes, batch shapes and bandwidths."""
    f = gaussian().sum(axis=1, backend=backend)
    assert isinstance(f, LazyReduction)
    for m, n, s in ((7, 5, 0.5), (3, 9, 1.3), (11, 2, 0.5)):
        x, y, b = data(rng, m, n)
        assert_close(f(x, y, np.array([s]), b), gauss_np(x, y, s, b)[0], np.float64)
    assert_close(f(x, y, 2.0, b), gauss_np(x, y, 2.0, b)[0], np.float64)  # a Python float for Pm(2, 1)
    x32, y32, b32 = (a.astype(np.float32) for a in (x, y, b))  # the dtype comes from the call too
    assert_close(f(x32, y32, 2.0, b32), gauss_np(x, y, 2.0, b)[0], np.float32)
    x, y, b = data(rng, batch=(2,))
    out = f(x, y, np.array([0.5]), b)
    for k in range(2):
        assert_close(out[k], gauss_np(x[k], y[k], 0.5, b[k])[0], np.float64)


def test_argkmin_called_as_f_x_y(x64, rng):
    f = Vi(0, D).sqdist(Vj(1, D)).argKmin(3, dim=1, backend="jnp")
    x, y, _ = data(rng, 6, 8)
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(f(x, y), np.argsort(d2, axis=1, kind="stable")[:, :3])


def test_mixed_symbolic_and_bound(backend, x64, rng):
    """Bound arrays come after the symbolic variables: ``f(y)`` fills Vj(0, 3)."""
    x, y, b = data(rng)
    f = (Vi(x).sqdist(Vj(0, D)) * Vj(b)).sum(1, backend=backend)
    assert "Var(0,3,1)" in repr(f) and "arguments: Vj(0,3)" in repr(f)
    ref = (((x[:, None] - y[None]) ** 2).sum(-1)[:, :, None] * b[None]).sum(1)
    assert_close(f(y), ref, np.float64)


def test_symbolic_reduction_under_transformations(backend, x64, rng):
    """jit, vmap, grad and jvp of a LazyReduction against dense jax.numpy in float64."""
    f = gaussian().sum(axis=1, backend=backend)
    x, y, b = data(rng)
    s = np.array([0.8])

    def dense(x, y, s, b):
        return (jnp.exp(-s * ((x[:, None] - y[None]) ** 2).sum(-1)) @ b)

    assert_close(jax.jit(f)(x, y, s, b), dense(x, y, s, b), np.float64)
    xs = np.stack([x, x + 1])
    assert_close(jax.vmap(f, in_axes=(0, None, None, None))(xs, y, s, b),
                 jax.vmap(dense, in_axes=(0, None, None, None))(xs, y, s, b), np.float64)
    for g, h in zip(jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2, 3))(x, y, s, b),
                    jax.grad(lambda *a: dense(*a).sum(), argnums=(0, 1, 2, 3))(x, y, s, b)):
        assert_close(g, h, np.float64)
    tangents = data(rng)[:2]
    _, t = jax.jvp(lambda x, y: f(x, y, s, b), (x, y), tangents)
    _, t_ref = jax.jvp(lambda x, y: dense(x, y, s, b), (x, y), tangents)
    assert_close(t, t_ref, np.float64)


# ---------------------------------------------------------------- call=False and the aliases

ALIASES = [  # (method, extra args, weight?)
    ("sum_reduction", (), False), ("logsumexp_reduction", (), False), ("sumsoftmaxweight_reduction", (), True),
    ("min_reduction", (), False), ("max_reduction", (), False), ("argmin_reduction", (), False),
    ("argmax_reduction", (), False), ("min_argmin_reduction", (), False), ("max_argmax_reduction", (), False),
    ("Kmin_reduction", (2,), False), ("argKmin_reduction", (2,), False), ("Kmin_argKmin_reduction", (2,), False),
]


@pytest.mark.parametrize("name,args,weighted", ALIASES, ids=[a[0] for a in ALIASES])
def test_reduction_aliases_accept_call(name, args, weighted, x64, rng):
    """Every pykeops ``*_reduction`` alias exists; ``call=False`` gives a function of no
    arguments equal to the direct call, which matches NumPy."""
    x, y, b = data(rng)
    F = -Vi(x).sqdist(Vj(y))
    kw = dict(axis=1, backend="jnp", **({"weight": Vj(b)} if weighted else {}))
    fn = getattr(F, name)(*args, call=False, **kw)
    assert isinstance(fn, LazyReduction) and "axis=1" in repr(fn)
    direct, called = getattr(F, name)(*args, **kw), fn()
    for u, v in zip(*(o if isinstance(o, tuple) else (o,) for o in (direct, called))):
        np.testing.assert_array_equal(u, v)
    f = -((x[:, None] - y[None]) ** 2).sum(-1)  # (M, N)
    ref = {"sum_reduction": f.sum(1, keepdims=True),
           "logsumexp_reduction": np.log(np.exp(f).sum(1, keepdims=True)),
           "sumsoftmaxweight_reduction": (np.exp(f) @ b) / np.exp(f).sum(1, keepdims=True),
           "min_reduction": f.min(1, keepdims=True), "max_reduction": f.max(1, keepdims=True),
           "argmin_reduction": f.argmin(1)[:, None], "argmax_reduction": f.argmax(1)[:, None],
           "min_argmin_reduction": f.min(1, keepdims=True), "max_argmax_reduction": f.max(1, keepdims=True),
           "Kmin_reduction": np.sort(f, 1)[:, :2], "argKmin_reduction": np.argsort(f, 1)[:, :2],
           "Kmin_argKmin_reduction": np.sort(f, 1)[:, :2]}[name]
    first = called[0] if isinstance(called, tuple) else called
    assert_close(first, ref, first.dtype) if first.dtype.kind == "f" else np.testing.assert_array_equal(first, ref)


def test_sum_reduction_needs_an_axis():
    with pytest.raises(jax_lazy.AxisError):
        Vi(np.ones((2, D), np.float32)).sum_reduction()


# ---------------------------------------------------------------- errors


def test_symbolic_errors(rng):
    x, y, _ = (a.astype(np.float32) for a in data(rng))
    G = Vi(0, D).sqdist(Vj(1, D))
    with pytest.raises(FormulaError, match=r"dense\(\) needs data.*Vi\(0,3\), Vj\(1,3\)"):
        G.dense()
    f = G.sum(axis=1, backend="jnp")
    with pytest.raises(FormulaError, match=r"takes 2 arrays.*got 1\n  formula: Sum_Reduction"):
        f(x)
    with pytest.raises(ShapeError, match=r"Vi\(0,3\) needs an array.*\n  formula: Sum_Reduction"):
        f(x[0], y)
    with pytest.raises(ShapeError, match="formula: Sum_Reduction"):  # dim 2 where 3 is expected
        f(x[:, :2], y)
    with pytest.raises(DtypeError, match="mixed dtypes"):
        f(x, y.astype(np.float16))
    with pytest.raises(FormulaError, match=r"used as Vi\(0,3\) and as Vj\(0,3\)"):
        Vi(0, D) + Vj(0, D)
    with pytest.raises(FormulaError, match="indices 0, 1"):
        (Vi(0, D) + Vj(2, D)).sum(axis=1)
    with pytest.raises(FormulaError, match="symbolic variable needs"):
        Vi(-1, D)
    with pytest.raises(FormulaError, match="K has symbolic variables"):
        (-G).exp() @ y[:, 0]


def test_symbolic_constructors_agree():
    """``Vi(0, 3)``, ``jax_lazy.LazyArray((0, 3, 0))``: one node; a symbolic formula prints
    its variables in KeOps notation and its repr names them."""
    assert Vi(0, D).formula is jax_lazy.LazyArray((0, D, 0)).formula is Var(0, D, 0)
    assert Pm(2, 1).formula is Var(2, 1, P)
    assert "symbolic=(Vi(0,3), Vj(1,3), Pm(2,1), Vj(3,3))" in repr(gaussian())
    assert str(gaussian().t().formula).startswith("Exp(Minus(Sum(Square(Var(0,3,1) - Var(1,3,0)))")
