"""Every JAX transformation on reductions: forward mode (``jvp``, ``jacfwd``, ``hessian``,
``linearize``), transposition (``linear_transpose``), and their compositions with ``vjp``,
``grad``, ``vmap``, ``jit`` and ``checkpoint``.

Generated from the op table (each differentiable row, summed over i and over j, with
broadcast batch axes) and from the reduction list of ``reduction_table`` (every
reduction, w.r.t. i-variables, j-variables, parameters and weights), against JAX's own
transformations of dense ``jax.numpy`` references in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import FormulaError, Pm, Vi, Vj
from op_table import DIFF_ROWS, FAST_GRAD_ROWS, batch_rank, dense_reference, lazy_operands, sample_operands
from reduction_table import REDUCTIONS, _red_dense, _red_lazy, _reduction_data, assert_tree_close

pytestmark = pytest.mark.usefixtures("x64")

RTOL = 1e-9
ROW_PARAMS = [pytest.param(r, id=r.name, marks=() if r.name in FAST_GRAD_ROWS else pytest.mark.slow) for r in DIFF_ROWS]
# Hessians in the fast suite: one row per kind of rule (broadcast, quotient, kink, power,
# clamp, select, vector ops, a composite); every row in the slow suite.
FAST_HESSIAN_ROWS = {"add_dim1_right", "div", "abs", "powf_lazy", "clamp_lazy", "ifelse", "concat", "matvecmult",
                     "tensorprod", "gaussian", "mixed"}
HESSIAN_PARAMS = [pytest.param(r, id=r.name, marks=() if r.name in FAST_HESSIAN_ROWS else pytest.mark.slow)
                  for r in DIFF_ROWS]
FAST_REDUCTIONS = {"sum_j", "logsumexp_weight_j", "sumsoftmaxweight_i", "max_i", "kmin_argkmin_i", "matmul"}
RED_PARAMS = [pytest.param(n, id=n, marks=() if n in FAST_REDUCTIONS else pytest.mark.slow) for n in REDUCTIONS]


def _close(got, want, rtol=RTOL):
    assert_tree_close(got, want, rtol)


def _tangents(rng, args):
    return tuple(jnp.asarray(rng.normal(size=a.shape)) for a in args)


# ---------------------------------------------------------------- op rows


def _row_fns(r, arrays, backend):
    nb = batch_rank(r, arrays)

    def f(*a):  # both reductions of the row's formula
        F = r.build(*lazy_operands(r, a))
        return F.sum(axis=nb, backend=backend), F.sum(axis=nb + 1, backend=backend)

    def f_ref(*a):
        D = dense_reference(r, jnp, a)
        return D.sum(-3), D.sum(-2)

    return f, f_ref


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_op_jvp_matches_dense(r, backend, rng):
    """Forward mode of every op row (derived from its VJP row), w.r.t. every operand."""
    arrays = tuple(jnp.asarray(a) for a in sample_operands(r, rng, "bcast", M=4, N=3))
    f, f_ref = _row_fns(r, arrays, backend)
    t = _tangents(rng, arrays)
    _close(jax.jit(lambda a, t: jax.jvp(f, a, t))(arrays, t), jax.jvp(f_ref, arrays, t))


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_op_linearize_and_transpose_match_dense(r, backend, rng):
    """``linearize`` then ``linear_transpose`` of the linear map: the tangent reductions
    transpose into reductions over the other axis."""
    arrays = tuple(jnp.asarray(a) for a in sample_operands(r, rng, "bcast", M=4, N=3))
    f, f_ref = _row_fns(r, arrays, backend)
    t = _tangents(rng, arrays)
    out, lin = jax.linearize(f, *arrays)
    out_ref, lin_ref = jax.linearize(f_ref, *arrays)
    _close((out, lin(*t)), (out_ref, lin_ref(*t)))
    cts = _tangents(rng, out_ref)
    _close(jax.linear_transpose(lin, *arrays)(cts), jax.linear_transpose(lin_ref, *arrays)(cts))


@pytest.mark.parametrize("r", HESSIAN_PARAMS)
def test_op_jacfwd_and_hessian_match_dense(r, backend, rng):
    """jacfwd of both reductions and the Hessian of a scalar contraction, w.r.t. every
    operand of the row at once (forward over reverse)."""
    arrays = tuple(jnp.asarray(a) for a in sample_operands(r, rng, "plain", M=4, N=3))
    f, f_ref = _row_fns(r, arrays, backend)
    argnums = tuple(range(len(arrays)))
    _close(jax.jacfwd(f, argnums=argnums)(*arrays), jax.jacfwd(f_ref, argnums=argnums)(*arrays))
    cts = _tangents(rng, f_ref(*arrays))

    def scalar(fn):
        return lambda *a: sum(jnp.vdot(o, c) for o, c in zip(fn(*a), cts))

    _close(jax.jit(jax.hessian(scalar(f), argnums=argnums))(*arrays), jax.hessian(scalar(f_ref), argnums=argnums)(*arrays),
           rtol=1e-8)


# ---------------------------------------------------------------- reductions


@pytest.mark.parametrize("name", RED_PARAMS)
def test_reduction_jvp_matches_dense(name, backend, rng):
    """jvp of every reduction w.r.t. x (i), y (j), p (parameter) and w (j, a weight),
    broadcast batch axes, under jit."""
    args = _reduction_data(rng, batched=True)
    f, f_ref = _red_lazy(name, backend), _red_dense(name)
    t = _tangents(rng, args)
    _close(jax.jit(lambda a, t: jax.jvp(f, a, t))(args, t), jax.jvp(f_ref, args, t))


@pytest.mark.parametrize("name", RED_PARAMS)
def test_reduction_linearize_transpose_vjp(name, backend, rng):
    """linearize, the transpose of the linearized map, and vjp agree with dense JAX."""
    args = _reduction_data(rng, batched=True)
    f, f_ref = _red_lazy(name, backend), _red_dense(name)
    t = _tangents(rng, args)
    out, lin = jax.linearize(f, *args)
    out_ref, lin_ref = jax.linearize(f_ref, *args)
    _close((out, lin(*t)), (out_ref, lin_ref(*t)))
    ct = jnp.asarray(rng.normal(size=out_ref.shape))
    _close(jax.linear_transpose(lin, *args)(ct), jax.linear_transpose(lin_ref, *args)(ct))
    _close(jax.vjp(f, *args)[1](ct), jax.vjp(f_ref, *args)[1](ct))


@pytest.mark.parametrize("name", RED_PARAMS)
def test_reduction_jacfwd_jacrev_hessian(name, backend, rng):
    """Jacobians both ways and the Hessian of a scalar contraction, w.r.t. p and x."""
    x, y, p, w = _reduction_data(rng, batched=False)
    f, f_ref = _red_lazy(name, backend), _red_dense(name)
    ct = jnp.asarray(rng.normal(size=f_ref(x, y, p, w).shape))

    def scalar(fn):
        return lambda p, x: jnp.vdot(fn(x, y, p, w), ct)

    for jac in (jax.jacfwd, jax.jacrev):
        _close(jac(lambda p: f(x, y, p, w))(p), jac(lambda p: f_ref(x, y, p, w))(p))
    _close(jax.jit(jax.hessian(scalar(f), argnums=(0, 1)))(p, x), jax.hessian(scalar(f_ref), argnums=(0, 1))(p, x),
           rtol=1e-8)


@pytest.mark.parametrize("name", RED_PARAMS)
def test_reduction_hvp_forward_over_reverse(name, backend, rng):
    """Hessian-vector products, forward over reverse: jvp of grad, all four inputs."""
    args = _reduction_data(rng, batched=True)
    f, f_ref = _red_lazy(name, backend), _red_dense(name)
    ct = jnp.asarray(rng.normal(size=f_ref(*args).shape))
    vs = _tangents(rng, args)

    def hvp(fn):
        g = jax.grad(lambda *a: jnp.vdot(fn(*a), ct), argnums=(0, 1, 2, 3))
        return lambda *a: jax.jvp(g, a, vs)[1]

    _close(jax.jit(hvp(f))(*args), hvp(f_ref)(*args), rtol=1e-8)


@pytest.mark.parametrize("name", ["sum_j", "logsumexp_weight_j", "max_i", "kmin_argkmin_i"])
def test_vmap_of_forward_mode_and_transpose(name, backend, rng):
    """vmap of jvp, of grad, of the transpose of the linearized map, and jvp of a vmap."""
    args = _reduction_data(rng, batched=False)
    f, f_ref = _red_lazy(name, backend), _red_dense(name)
    xs = jnp.stack([args[0], 2 * args[0], -args[0]])  # a vmapped x
    ts = jnp.asarray(rng.normal(size=xs.shape))
    rest = args[1:]

    def jvp_x(fn):
        return jax.vmap(lambda x, t: jax.jvp(lambda x: fn(x, *rest), (x,), (t,)))

    _close(jax.jit(jvp_x(f))(xs, ts), jvp_x(f_ref)(xs, ts))
    ct = jnp.asarray(rng.normal(size=f_ref(*args).shape))

    def grad_x(fn):
        return jax.vmap(jax.grad(lambda x: jnp.vdot(fn(x, *rest), ct)))

    _close(grad_x(f)(xs), grad_x(f_ref)(xs))

    def transposed(fn):
        def one(x):
            _, lin = jax.linearize(lambda x: fn(x, *rest), x)
            return jax.linear_transpose(lin, x)(ct)

        return jax.vmap(one)

    _close(transposed(f)(xs), transposed(f_ref)(xs))
    _close(jax.jvp(jax.vmap(lambda x: f(x, *rest)), (xs,), (ts,)), jax.jvp(jax.vmap(lambda x: f_ref(x, *rest)), (xs,), (ts,)))


def test_checkpoint_grad_and_jvp(backend, rng):
    """``jax.checkpoint`` recomputes the reduction in the backward pass: same values."""
    args = _reduction_data(rng, batched=True)
    f, f_ref = _red_lazy("logsumexp_weight_j", backend), _red_dense("logsumexp_weight_j")
    ct = jnp.asarray(rng.normal(size=f_ref(*args).shape))
    loss = jax.checkpoint(lambda *a: jnp.vdot(f(*a), ct))
    loss_ref = lambda *a: jnp.vdot(f_ref(*a), ct)  # noqa: E731
    _close(jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(*args), jax.grad(loss_ref, argnums=(0, 1, 2, 3))(*args))
    t = _tangents(rng, args)
    _close(jax.jvp(loss, args, t), jax.jvp(loss_ref, args, t))


# ---------------------------------------------------------------- linear operators


def _gauss(x, y, s):
    return (-Pm(s) * Vi(x).sqdist(Vj(y))).exp()


def test_linear_transpose_of_a_kernel_matvec(backend, rng):
    """``K @ b`` is linear in b: its transpose is ``K^T @ c``, a reduction over i."""
    x, y = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.normal(size=(5, 3)))
    b, c, s = jnp.asarray(rng.normal(size=(5, 2))), jnp.asarray(rng.normal(size=(6, 2))), jnp.asarray([0.7])
    K = np.exp(-0.7 * ((np.asarray(x)[:, None] - np.asarray(y)[None]) ** 2).sum(-1))
    Kb = lambda b: (_gauss(x, y, s) * Vj(b)).sum(axis=1, backend=backend)  # noqa: E731
    np.testing.assert_allclose(Kb(b), K @ np.asarray(b), rtol=RTOL)
    (got,) = jax.jit(jax.linear_transpose(Kb, b))(c)
    np.testing.assert_allclose(got, K.T @ np.asarray(c), rtol=RTOL)
    # also through the @ operator of a LazyArray, and for i-variables and parameters
    (got,) = jax.linear_transpose(lambda b: _gauss(x, y, s) @ b, b)(c)
    np.testing.assert_allclose(got, K.T @ np.asarray(c), rtol=RTOL)
    a, q = jnp.asarray(rng.normal(size=(6, 2))), jnp.asarray(rng.normal(size=(2,)))
    lin = lambda a, q: ((_gauss(x, y, s) * (Vi(a) + Pm(q))) * 2.0).sum(axis=0, backend=backend)  # noqa: E731
    d = jnp.asarray(rng.normal(size=(5, 2)))
    ga, gq = jax.linear_transpose(lin, a, q)(d)
    np.testing.assert_allclose(ga, 2 * K @ np.asarray(d), rtol=RTOL)
    np.testing.assert_allclose(gq, 2 * (K.T @ np.ones(6)) @ np.asarray(d), rtol=RTOL)


def test_transpose_of_a_nonlinear_reduction_is_a_clear_error(backend, rng):
    x, y = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.normal(size=(5, 3)))
    b = jnp.asarray(rng.normal(size=(5, 1)))
    with pytest.raises(FormulaError, match=r"(?s)not linear in Var\(.*Exp"):
        jax.linear_transpose(lambda b: (Vi(x).sqdist(Vj(y)) * Vj(b)).exp().sum(axis=1, backend=backend), b)(
            jnp.ones((6, 1)))
    with pytest.raises(FormulaError, match="LogSumExp is not linear"):
        jax.linear_transpose(lambda b: (Vi(x).sqdist(Vj(y)) * Vj(b)).logsumexp(axis=1, backend=backend), b)(
            jnp.ones((6, 1)))


def test_index_outputs_have_float0_tangents(backend, rng):
    x, y = jnp.asarray(rng.normal(size=(6, 2))), jnp.asarray(rng.normal(size=(5, 2)))
    f = lambda x: (Vi(x) - Vj(y)).sin().Kmin_argKmin(2, axis=1, backend=backend)  # noqa: E731
    (v, idx), (tv, tidx) = jax.jvp(f, (x,), (jnp.ones_like(x),))
    assert tidx.dtype == jax.dtypes.float0 and tidx.shape == idx.shape
    d = np.asarray(x)[:, None] - np.asarray(y)[None]
    order = np.argsort(np.sin(d), axis=1, kind="stable")[:, :2]  # (M, K, D)
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(tv, np.take_along_axis(np.cos(d), order, axis=1), rtol=RTOL)


def test_jvp_along_some_inputs_only(backend, rng):
    """Tangents along one input (the others are symbolic zeros): the tangent reduction
    binds only the variables its formula uses, with the reduced size kept (Σ_j of a
    formula without j-variables is N times it) and the output broadcast back."""
    x, y = jnp.asarray(rng.normal(size=(6, 2))), jnp.asarray(rng.normal(size=(5, 2)))
    f = lambda x, y: (Vi(x) + 0 * Vj(y).sum()).sum(axis=1, backend=backend)  # noqa: E731
    out, t = jax.jvp(lambda y: f(x, y), (y,), (jnp.ones_like(y),))
    np.testing.assert_allclose(out, 5 * np.asarray(x), rtol=RTOL)
    np.testing.assert_array_equal(t, 0.0)
    g = lambda x, y: (Vi(x) * Vj(y)).sum(axis=1, backend=backend)  # noqa: E731
    _, t = jax.jvp(lambda x: g(x, y), (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(t, np.broadcast_to(np.asarray(y).sum(0), (6, 2)), rtol=RTOL)
    h = lambda x, y: (Vi(x) + Vj(y)).sum(axis=1, backend=backend)  # noqa: E731
    _, t = jax.jvp(lambda x: h(x, y), (x,), (2 * jnp.ones_like(x),))  # Σ_j of t_x: 5 * 2
    np.testing.assert_allclose(t, np.full((6, 2), 10.0), rtol=RTOL)


def test_jaxpr_holds_one_reduction_primitive_per_call(rng):
    """A reduction is one ``jax_lazy_reduction`` equation (not a custom_vjp wrapper); its
    tangent is one more."""
    x, y = jnp.asarray(rng.normal(size=(6, 2))), jnp.asarray(rng.normal(size=(5, 2)))
    f = lambda x: (-(Vi(x).sqdist(Vj(y)))).exp().sum(axis=1, backend="jnp")  # noqa: E731
    eqns = jax.make_jaxpr(f)(x).eqns
    assert [e.primitive.name for e in eqns] == ["jax_lazy_reduction"]
    jvp_eqns = jax.make_jaxpr(lambda x, t: jax.jvp(f, (x,), (t,)))(x, x).eqns
    assert [e.primitive.name for e in jvp_eqns].count("jax_lazy_reduction") == 2
    assert "Sum_Reduction(" in str(eqns[0].params["plan"])


def test_export_of_a_forward_over_reverse_function(backend, rng):
    """``jax.export`` of jvp(grad(f)): the derivative reductions serialise like any
    reduction and the deserialised module gives the same values."""
    pytest.importorskip("flatbuffers", reason="jax.export needs flatbuffers (the test extra)")
    if backend == "cuda" and jax.default_backend() != "gpu":
        pytest.skip("the cuda host shim runs kernels in-process, not through the exported custom call")
    x, y = jnp.asarray(rng.normal(size=(30, 3))), jnp.asarray(rng.normal(size=(20, 3)))
    f = lambda x, y: (-(Vi(x).sqdist(Vj(y)))).exp().sum(axis=1, backend=backend).sum()  # noqa: E731
    g = jax.jit(lambda x, y: jax.jvp(jax.grad(f), (x, y), (y[:1] + x, x[:20]))[1])
    checks = [jax.export.DisabledSafetyCheck.custom_call(t) for t in ("jax_lazy_cpu", "jax_lazy_cuda")]
    module = jax.export.deserialize(jax.export.export(g, disabled_checks=checks)(x, y).serialize())
    f_ref = lambda x, y: jnp.exp(-((x[:, None] - y[None]) ** 2).sum(-1)).sum()  # noqa: E731
    want = jax.jvp(jax.grad(f_ref), (x, y), (y[:1] + x, x[:20]))[1]
    _close(module.call(x, y), want)
