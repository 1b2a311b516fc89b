"""Symbolic calculus methods (issue 12, item 3): grad, diff, laplacian, divergence,
trace_operator, grad_matrix on LazyArrays, against jax.vjp / jax.jvp / jax.jacobian /
jax.hessian of the same per-pair function written densely in jax.numpy (float64), through
sum reductions over j."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lazy as jl
from jax_lazy import FormulaError, Vi, Vj

M, N, D = 5, 4, 3


@pytest.fixture
def data(x64):
    rng = np.random.default_rng(0)
    return {k: jnp.asarray(rng.normal(size=s)) for k, s in
            (("x", (M, D)), ("y", (N, D)), ("e", (N, D)), ("u", (M, D)), ("A", (N, D * D)), ("w", (N, D)))}


def lazy_f(x, y):
    """A vector formula of dim D, nonlinear in x: exp(-|x-y|^2) * sin(x) * y."""
    return (-(x.sqdist(y))).exp() * x.sin() * y


def dense_f(x, y):
    return jnp.exp(-jnp.sum((x - y) ** 2)) * jnp.sin(x) * y


def pairs(fn, d):
    """``fn(x_i, y_j, extra_i, extra_j)`` over all pairs, summed over j."""
    return jax.vmap(lambda xi, ui: jax.vmap(lambda yj, ej: fn(xi, yj, ui, ej))(d["y"], d["e"]).sum(0))(d["x"], d["u"])


def reduce_j(lazy, backend="jnp"):
    return lazy.sum(axis=1, backend=backend)


def test_grad_diff(data):
    x, y, e, u = Vi(data["x"]), Vj(data["y"]), Vj(data["e"]), Vi(data["u"])
    f = lazy_f(x, y)
    want = pairs(lambda xi, yj, ui, ej: jax.vjp(lambda a: dense_f(a, yj), xi)[1](ej)[0], data)
    np.testing.assert_allclose(reduce_j(f.grad(x, e)), want, rtol=1e-12, atol=1e-14)
    want = pairs(lambda xi, yj, ui, ej: jax.jvp(lambda a: dense_f(a, yj), (xi,), (ui,))[1], data)
    np.testing.assert_allclose(reduce_j(f.diff(x, u)), want, rtol=1e-12, atol=1e-14)
    # with respect to the j-variable, and a number as cotangent of a scalar formula
    g = f.sum(-1)
    dgdy = jax.grad(lambda b, a: jnp.sum(dense_f(a, b)))
    want = jax.vmap(lambda xi: jax.vmap(dgdy, (0, None))(data["y"], xi).sum(0))(data["x"])
    np.testing.assert_allclose(reduce_j(g.grad(y, 1)), want, rtol=1e-12, atol=1e-14)


def test_divergence_laplacian_grad_matrix(data):
    x, y = Vi(data["x"]), Vj(data["y"])
    f = lazy_f(x, y)
    jac = lambda xi, yj: jax.jacobian(dense_f)(xi, yj)  # noqa: E731  (D, D): [k, l] = df_k / dx_l
    want = pairs(lambda xi, yj, ui, ej: jnp.trace(jac(xi, yj))[None], data)
    np.testing.assert_allclose(reduce_j(f.divergence(x)), want, rtol=1e-12, atol=1e-14)
    want = pairs(lambda xi, yj, ui, ej: jac(xi, yj).reshape(-1), data)
    gm = f.grad_matrix(x)
    assert gm.dim == D * D
    np.testing.assert_allclose(reduce_j(gm), want, rtol=1e-12, atol=1e-14)
    s = f.sum(-1)
    want = pairs(lambda xi, yj, ui, ej: jnp.trace(jax.hessian(lambda a: jnp.sum(dense_f(a, yj)))(xi))[None], data)
    np.testing.assert_allclose(reduce_j(s.laplacian(x)), want, rtol=1e-12, atol=1e-14)


def test_trace_operator(data):
    x, A, w = Vi(data["x"]), Vj(data["A"]), Vj(data["w"])
    f = A.matvecmult(x) * 2  # linear in x: the matrix 2 A_j
    tr = lambda a: jnp.trace(a.reshape(D, D))  # noqa: E731
    want = np.broadcast_to(jax.vmap(tr)(2 * data["A"]).sum(), (M,))[:, None]
    np.testing.assert_allclose(reduce_j(f.trace_operator(x)), want, rtol=1e-12)
    np.testing.assert_allclose(reduce_j(f.divergence(x)), want, rtol=1e-12)
    diag = jax.vmap(lambda a: jnp.diag(a.reshape(D, D)))(2 * data["A"])
    want = np.broadcast_to(jnp.sum(diag * data["w"]), (M,))[:, None]
    np.testing.assert_allclose(reduce_j(f.trace_operator(x, w)), want, rtol=1e-12)
    # a scalar f (a row A): sum_k w_k A_k, as KeOps
    want = np.broadcast_to(jnp.sum((2 * data["A"][:, :D]) * data["w"]), (M,))[:, None]
    np.testing.assert_allclose(reduce_j(f[0].trace_operator(x, w)), want, rtol=1e-12)


def test_results_are_formulas(data):
    x, y = Vi(data["x"]), Vj(data["y"])
    f = lazy_f(x, y)
    g1, g2 = f.grad(x, y), f.grad(x, y)
    assert g1.formula is g2.formula  # interned: the same node, one kernel
    assert "Var(0,3,0)" in repr(g1)


def test_errors(data):
    x, y = Vi(data["x"]), Vj(data["y"])
    f = lazy_f(x, y)
    with pytest.raises(FormulaError, match="not a variable of the formula"):
        f.grad(Vi(data["x"] + 1), y)
    with pytest.raises(FormulaError, match="must be a variable"):
        f.grad(x * 2, y)
    with pytest.raises(FormulaError, match="cotangent e has dim 1, expected 3"):
        f.grad(x, 1.0)
    with pytest.raises(FormulaError, match="Laplacian"):
        f.laplacian(x)
    with pytest.raises(FormulaError, match="TraceOperator: the formula has dim 2"):
        f[:2].trace_operator(x)
    with pytest.raises(FormulaError, match="Divergence"):
        f.sum(-1).divergence(x)
    assert isinstance(f.grad(x, y), jl.LazyArray)
