"""Gradients: every differentiable op row and every differentiable reduction.

Each is checked twice, in float64 and at points away from kinks and ties:
- numerically, to second order (``jax.test_util.check_grads(order=2, modes=["rev"])``);
- against JAX autodiff of a dense ``jax.numpy`` reference written here (not the
  library's), with batch broadcasting (gradients summed over broadcast batch axes).
Plus safe subgradients at zero distance, zero gradients of index outputs and of
piecewise-constant ops, Hessian-vector products (reverse over reverse) and
``jit(grad(grad))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from conftest import use_tiling
from jax_lazy import Pm, Vi, Vj
from reduction_table import REDUCTIONS, _red_dense, _red_lazy, _reduction_data, assert_tree_close
from op_table import (
    DIFF_ROWS,
    FAST_GRAD_ROWS,
    NONDIFF_ROWS,
    batch_rank,
    dense_reference,
    lazy_operands,
    sample_operands,
)

pytestmark = pytest.mark.usefixtures("x64")

RTOL = 1e-9
DIFF_PARAMS = [
    pytest.param(r, id=r.name, marks=() if r.name in FAST_GRAD_ROWS else pytest.mark.slow) for r in DIFF_ROWS
]
NONDIFF_PARAMS = [
    pytest.param(r, id=r.name, marks=() if r.name in ("sign", "step", "lt", "eq") else pytest.mark.slow)
    for r in NONDIFF_ROWS
]


def _all_argnums(arrays):
    return tuple(range(len(arrays)))


def _assert_grads_close(got, want, rtol=RTOL):
    assert_tree_close(got, want, rtol)


# ---------------------------------------------------------------- op rows


@pytest.mark.parametrize("r", DIFF_PARAMS)
def test_op_check_grads(r, backend, rng):
    """Second-order numerical check of sum-over-j of the row's formula, w.r.t. every operand."""
    arrays = tuple(jnp.asarray(a) for a in sample_operands(r, rng, "plain", M=4, N=3))

    def f(*arrays):
        return r.build(*lazy_operands(r, arrays)).sum(axis=1, backend=backend)

    check_grads(jax.jit(f), arrays, order=2, modes=["rev"])


@pytest.mark.parametrize("r", DIFF_PARAMS)
def test_op_grad_matches_dense(r, backend, rng):
    """Gradient of both reductions (with broadcast batch axes) vs the dense reference."""
    arrays = tuple(jnp.asarray(a) for a in sample_operands(r, rng, "bcast", M=4, N=3))
    dense = dense_reference(r, np, [np.asarray(a) for a in arrays])
    w_i = jnp.asarray(rng.normal(size=dense.sum(-3).shape))  # cotangent of the sum over i
    w_j = jnp.asarray(rng.normal(size=dense.sum(-2).shape))
    nb = batch_rank(r, arrays)

    def loss(*arrays):
        F = r.build(*lazy_operands(r, arrays))
        return jnp.vdot(F.sum(axis=nb, backend=backend), w_i) + jnp.vdot(F.sum(axis=nb + 1, backend=backend), w_j)

    def loss_ref(*arrays):
        D = dense_reference(r, jnp, arrays)
        return jnp.vdot(D.sum(-3), w_i) + jnp.vdot(D.sum(-2), w_j)

    argnums = _all_argnums(arrays)
    got = jax.jit(jax.grad(loss, argnums=argnums))(*arrays)
    want = jax.jit(jax.grad(loss_ref, argnums=argnums))(*arrays)
    _assert_grads_close(got, want)


@pytest.mark.parametrize("r", NONDIFF_PARAMS)
def test_piecewise_constant_op_has_zero_gradient(r, backend, rng):
    """Comparisons, sign, step, rsqrt/sqrt at 0...: no error, no NaN, a zero gradient
    (the derivative of a piecewise-constant op is 0 almost everywhere)."""
    arrays = tuple(jnp.asarray(a) for a in sample_operands(r, rng, "plain", M=4, N=3))
    if r.name in ("sqrt_zero", "rsqrt_zero"):
        pytest.skip("not piecewise constant: checked for finiteness in test_safe_subgradients")

    def loss(*arrays):
        F = r.build(*lazy_operands(r, arrays))
        return F.sum(axis=1, backend=backend).sum() + F.sum(axis=0, backend=backend).sum()

    grads = jax.grad(loss, argnums=_all_argnums(arrays))(*arrays)
    for g, a in zip(grads, arrays):
        assert g.shape == a.shape
        np.testing.assert_array_equal(np.asarray(g), 0.0)


# ---------------------------------------------------------------- reductions
RED_PARAMS = [pytest.param(name, id=name) for name in REDUCTIONS]


@pytest.mark.parametrize("name", RED_PARAMS)
def test_reduction_check_grads(name, backend, rng):
    args = _reduction_data(rng, batched=False)
    check_grads(jax.jit(_red_lazy(name, backend)), args, order=2, modes=["rev"])


@pytest.mark.parametrize("tiling", ["tiny", pytest.param("default", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", RED_PARAMS)
def test_reduction_grad_matches_dense(name, tiling, backend, rng, monkeypatch):
    use_tiling(monkeypatch, tiling)
    args = _reduction_data(rng, batched=True)
    f, f_ref = _red_lazy(name, backend), _red_dense(name)
    out, out_ref = f(*args), f_ref(*args)
    assert out.shape == out_ref.shape
    np.testing.assert_allclose(out, out_ref, rtol=RTOL, atol=RTOL)
    ct = jnp.asarray(rng.normal(size=out.shape))
    got = jax.jit(jax.grad(lambda *a: jnp.vdot(f(*a), ct), argnums=(0, 1, 2, 3)))(*args)
    want = jax.jit(jax.grad(lambda *a: jnp.vdot(f_ref(*a), ct), argnums=(0, 1, 2, 3)))(*args)
    _assert_grads_close(got, want)


@pytest.mark.parametrize("name", ["sum_j", "logsumexp_weight_j", "sumsoftmaxweight_i", "min_j", "kmin_argkmin_i"])
def test_reduction_hvp_matches_dense(name, backend, rng):
    """Hessian-vector products, reverse over reverse (forward over reverse: test_forward_transpose)."""
    args = _reduction_data(rng, batched=True)
    vs = tuple(jnp.asarray(rng.normal(size=a.shape)) for a in args)
    f, f_ref = _red_lazy(name, backend), _red_dense(name)
    ct = jnp.asarray(rng.normal(size=f_ref(*args).shape))

    def hvp(fn):
        def g(*a):
            grads = jax.grad(lambda *b: jnp.vdot(fn(*b), ct), argnums=(0, 1, 2, 3))(*a)
            return sum(jnp.vdot(gi, vi) for gi, vi in zip(grads, vs))

        return jax.grad(g, argnums=(0, 1, 2, 3))

    _assert_grads_close(jax.jit(hvp(f))(*args), hvp(f_ref)(*args), rtol=1e-8)


# ---------------------------------------------------------------- special cases


@pytest.mark.parametrize("kind", ["sqdist_sqrt", "norm2", "normalize", "sqrt_zero", "rsqrt_zero"])
def test_safe_subgradients(kind, backend, rng):
    """At zero distance (the diagonal of Vi(x) - Vj(x)) Sqrt/Rsqrt use the 0 subgradient:
    no NaN, and the gradient equals the one that skips the diagonal."""
    x = jnp.asarray(rng.normal(size=(6, 3)))
    build = {
        "sqdist_sqrt": lambda X, Y: X.sqdist(Y).sqrt(),
        "norm2": lambda X, Y: (X - Y).norm2(),
        "normalize": lambda X, Y: (X - Y).normalize(),
        "sqrt_zero": lambda X, Y: (X.sqdist(Y) * 0).sqrt(),
        "rsqrt_zero": lambda X, Y: ((X - Y) * 0).rsqrt(),
    }[kind]

    def loss(x):
        return build(Vi(x), Vj(x)).sum(axis=1, backend=backend).sum()

    def loss_ref(x):  # same, written densely with the diagonal masked out
        d = x[:, None, :] - x[None, :, :]
        off = ~np.eye(x.shape[0], dtype=bool)[..., None]
        d = jnp.where(off, d, 1.0)
        if kind in ("sqdist_sqrt", "norm2"):
            v = jnp.sqrt(jnp.sum(d * d, -1, keepdims=True))
        elif kind == "normalize":
            v = d / jnp.sqrt(jnp.sum(d * d, -1, keepdims=True))
        else:
            v = 0.0 * d
        return jnp.sum(jnp.where(off, v, 0.0))

    g = jax.grad(loss)(x)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(g, jax.grad(loss_ref)(x), rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("red", ["argmin", "max_argmax", "Kmin_argKmin", *(
    pytest.param(r, marks=pytest.mark.slow) for r in ("argmax", "argKmin", "min_argmin"))])
def test_index_outputs_have_zero_gradient(red, backend, rng):
    """Index outputs are integers: using them must not break grad, and they contribute 0."""
    x = jnp.asarray(rng.normal(size=(5, 2)))
    y = jnp.asarray(rng.normal(size=(4, 2)))

    def formula(x):
        return (Vi(x) - Vj(y)).sin()

    def indices(x):
        G = formula(x)
        if red in ("argKmin", "Kmin_argKmin"):
            out = getattr(G, red)(2, axis=1, backend=backend)
        else:
            out = getattr(G, red)(axis=1, backend=backend)
        return out[1] if isinstance(out, tuple) else out

    def loss_with(x):
        return formula(x).sum(axis=1, backend=backend).sum() + 0.5 * indices(x).astype(x.dtype).sum()

    def loss_without(x):
        return formula(x).sum(axis=1, backend=backend).sum()

    idx = indices(x)
    assert jnp.issubdtype(idx.dtype, jnp.integer)
    np.testing.assert_allclose(jax.grad(loss_with)(x), jax.grad(loss_without)(x), rtol=RTOL)
    np.testing.assert_array_equal(jax.grad(lambda x: indices(x).astype(x.dtype).sum())(x), 0.0)


def test_min_argmin_value_gradient_equals_min_gradient(backend, rng):
    x = jnp.asarray(rng.normal(size=(5, 2)))
    y = jnp.asarray(rng.normal(size=(6, 2)))

    def G(x, y):
        return (Vi(x) - Vj(y)) ** 2

    g1 = jax.grad(lambda x, y: G(x, y).min_argmin(axis=1, backend=backend)[0].sum(), argnums=(0, 1))(x, y)
    g2 = jax.grad(lambda x, y: G(x, y).min(axis=1, backend=backend).sum(), argnums=(0, 1))(x, y)
    _assert_grads_close(g1, g2)
    # The gradient flows to the selected pair only: d/dy_j = -2 (x_i - y_j) summed over
    # the i's whose minimum is attained at j.
    d = np.asarray(x)[:, None, :] - np.asarray(y)[None, :, :]
    sel = np.argmin(d**2, axis=1)  # (M, D)
    want = np.zeros(y.shape)
    for i in range(x.shape[0]):
        for c in range(2):
            want[sel[i, c], c] += -2 * d[i, sel[i, c], c]
    np.testing.assert_allclose(g1[1], want, rtol=RTOL, atol=RTOL)


def test_jit_grad_grad_of_scalar_function(backend, rng):
    x = jnp.asarray(rng.normal(size=(5, 2)))
    y = jnp.asarray(rng.normal(size=(4, 2)))

    def f(s):
        K = (-(Vi(x).sqdist(Vj(y))) * Pm(s)).exp()
        return K.sum(axis=1, backend=backend).sum()

    def f_ref(s):
        d2 = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, -1)
        return jnp.sum(jnp.exp(-d2 * s))

    s = jnp.asarray(0.7)
    got = jax.jit(jax.grad(jax.grad(f)))(s)
    assert got.shape == ()
    np.testing.assert_allclose(got, jax.grad(jax.grad(f_ref))(s), rtol=RTOL)


def test_grad_through_repeated_variable(backend, rng):
    """The same array bound as i and as j: the two cotangents add up."""
    x = jnp.asarray(rng.normal(size=(6, 2)))

    def f(x):
        return (-(Vi(x).sqdist(Vj(x)))).exp().sum(axis=1, backend=backend).sum()

    def f_ref(x):
        return jnp.sum(jnp.exp(-jnp.sum((x[:, None] - x[None]) ** 2, -1)))

    np.testing.assert_allclose(jax.grad(f)(x), jax.grad(f_ref)(x), rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("pattern", ["bcast", "bcast_p"])
def test_param_gradient_summed_over_broadcast_batch(pattern, backend, rng):
    """A parameter shared by a batch (shape (D,), or (1, 3, D) against j-batch (2, 1))."""
    from op_table import ROW_BY_NAME

    r = ROW_BY_NAME["gaussian"]
    arrays = tuple(jnp.asarray(a) for a in sample_operands(r, rng, pattern, M=4, N=3))
    nb = batch_rank(r, arrays)

    def loss(*arrays):
        return r.build(*lazy_operands(r, arrays)).sum(axis=nb + 1, backend=backend).sum()

    def loss_ref(*arrays):
        return dense_reference(r, jnp, arrays).sum()

    _assert_grads_close(jax.grad(loss, argnums=(0, 1, 2))(*arrays), jax.grad(loss_ref, argnums=(0, 1, 2))(*arrays))


def test_sumsoftmaxweight_second_order(backend):
    """Regression (the saved log-sum-exp's cotangent was dropped): d/dx of the directional
    derivative of sum_j softmax_j(-|x_i - y_j|^2) y_j."""
    x = jnp.asarray([[0.3], [-1.2]])
    y = jnp.asarray([[0.5], [-0.1], [1.0]])

    def f(x):
        return (-(Vi(x).sqdist(Vj(y)))).sumsoftmaxweight(Vj(y), axis=1, backend=backend).sum()

    def f_ref(x):
        F = -((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return (jax.nn.softmax(F, axis=1) @ y).sum()

    hess = jax.grad(lambda x: jax.grad(f)(x).sum())(x)
    hess_ref = jax.grad(lambda x: jax.grad(f_ref)(x).sum())(x)
    np.testing.assert_allclose(jax.grad(f)(x), jax.grad(f_ref)(x), rtol=1e-12)  # first order is right
    np.testing.assert_allclose(hess, hess_ref, rtol=1e-9)


def test_fast_gradient_rows_reach_every_differentiable_op():
    """The fast suite checks the VJP rule of every op that has one: each appears in the
    formula (or the symbolic gradient) of some row of FAST_GRAD_ROWS."""
    import jax_lazy
    from jax_lazy.autodiff import vjp
    from jax_lazy.ir import I, Var, topo_order, variables
    from op_table import ROW_BY_NAME

    seen = set()
    for name in FAST_GRAD_ROWS:
        r = ROW_BY_NAME[name]
        assert r.diff, name
        arrays = sample_operands(r, np.random.default_rng(0), "plain", M=2, N=3)
        F = r.build(*lazy_operands(r, arrays)).formula
        wrt = variables(F)
        grads = vjp([(F, Var(len(wrt), F.dim, I))], wrt)
        seen |= {n.op for g in (F, *grads) for n in topo_order(g)}
    with_rule = {name for name, spec in jax_lazy.ir.OPS.items() if spec.vjp is not None}
    assert not with_rule - seen, sorted(with_rule - seen)
