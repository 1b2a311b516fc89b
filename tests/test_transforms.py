"""Reductions under JAX transformations: jit (no retracing), vmap (several in_axes,
nested), grad inside jit / vmap, LazyArray as a pytree, control flow."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_close
from jax_lazy import LazyArray, Pm, Vi, Vj

M, N, D = 5, 6, 2


def gauss(x, y, p, backend):
    """sum_j exp(-p |x_i - y_j|^2) y_j: i-data x (M, D), j-data y (N, D), param p (1,)."""
    K = (-(Vi(x).sqdist(Vj(y))) * Pm(p)).exp()
    return (K * Vj(y)).sum(axis=1, backend=backend)


def gauss_ref(x, y, p):
    x, y, p = (np.asarray(a, np.float64) for a in (x, y, p))
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    return np.exp(-d2 * p[0]) @ y


REDS = {
    "sum": lambda x, y, p, b: gauss(x, y, p, b),
    "logsumexp": lambda x, y, p, b: (-(Vi(x).sqdist(Vj(y))) * Pm(p)).logsumexp(axis=0, backend=b),
    "min_argmin": lambda x, y, p, b: ((Vi(x) - Vj(y)) * Pm(p)).min_argmin(axis=1, backend=b),
    "argKmin": lambda x, y, p, b: (Vi(x).sqdist(Vj(y)) * Pm(p)).argKmin(2, axis=1, backend=b),
    "sumsoftmaxweight": lambda x, y, p, b: (-(Vi(x).sqdist(Vj(y))) * Pm(p)).sumsoftmaxweight(Vj(y), axis=1, backend=b),
}


@pytest.fixture
def data(rng):
    x = rng.normal(size=(M, D)).astype(np.float32)
    y = rng.normal(size=(N, D)).astype(np.float32)
    p = np.asarray([0.7], np.float32)
    return x, y, p


# ---------------------------------------------------------------- jit


def test_jit_does_not_retrace(data, backend):
    x, y, p = data
    traces = []

    @jax.jit
    def f(x, y, p):
        traces.append(1)  # Python side effect: runs once per trace
        return gauss(x, y, p, backend)

    out1 = f(x, y, p)
    out2 = f(x + 1, y * 2, p)
    assert len(traces) == 1
    assert_close(out1, gauss_ref(x, y, p), np.float32)
    assert_close(out2, gauss_ref(x + 1, y * 2, p), np.float32)
    f(np.concatenate([x, x]), y, p)  # new shape: one new trace
    assert len(traces) == 2
    f(x - 1, y, p)
    assert len(traces) == 2


def test_jit_matches_eager(data, backend):
    x, y, p = data
    for name, fn in REDS.items():
        eager = fn(x, y, p, backend)
        jitted = jax.jit(lambda x, y, p: fn(x, y, p, backend))(x, y, p)
        for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_lazyarray_is_a_pytree_through_jit(data, backend):
    x, y, p = data
    K = (-(Vi(x).sqdist(Vj(y))) * Pm(p)).exp()
    leaves, treedef = jax.tree_util.tree_flatten(K)
    assert len(leaves) == 3 and all(isinstance(a, jax.Array) for a in leaves)
    traces = []

    @jax.jit
    def f(K, b):
        traces.append(1)
        assert isinstance(K, LazyArray)
        return (K * Vj(b[:, None])).sum(axis=1, backend=backend)[:, 0]

    b = np.arange(N, dtype=np.float32)
    out = f(K, b)
    want = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1) * p[0]) @ b
    assert_close(out, want, np.float32, terms=np.abs(want) + 1)
    # same formula, new values: no retrace; the rebuilt LazyArray keeps its formula
    K2 = jax.tree_util.tree_unflatten(treedef, [a * 0.5 for a in leaves])
    assert K2.formula is K.formula and K2.shape == K.shape
    f(K2, b)
    assert len(traces) == 1
    # another formula: a new trace
    f(K * 2, b)
    assert len(traces) == 2


# ---------------------------------------------------------------- vmap


VMAP_CASES = {
    # name: (in_axes, batched argument shapes builder)
    "i_data": (0, None, None),
    "j_data": (None, 0, None),
    "param": (None, None, 0),
    "i_and_j": (0, 0, None),
    "i_axis1_and_param": (1, None, 0),
    "all": (0, 0, 0),
}


def _batch(a, axis, rng, B=3):
    if axis is None:
        return a
    stack = np.stack([a * (1 + 0.2 * k) + 0.1 * k for k in range(B)], axis=axis)
    return stack.astype(a.dtype)


def _unbatch(a, axis, k):
    return a if axis is None else np.take(a, k, axis=axis)


def _vmap_params():
    """Every in_axes case for Sum and Min_ArgMin; the other reductions on two cases in the
    fast suite, all cases in the slow one."""
    out = []
    for case in VMAP_CASES:
        for red in REDS:
            fast = red in ("sum", "min_argmin") or case in ("i_axis1_and_param", "all")
            out.append(pytest.param(case, red, id=f"{case}-{red}", marks=() if fast else pytest.mark.slow))
    return out


@pytest.mark.parametrize("case,red", _vmap_params())
def test_vmap_in_axes(case, red, data, backend, rng):
    in_axes = VMAP_CASES[case]
    args = [_batch(a, ax, rng) for a, ax in zip(data, in_axes)]
    fn = REDS[red]
    out = jax.vmap(lambda x, y, p: fn(x, y, p, backend), in_axes=in_axes)(*args)
    loop = [fn(*[_unbatch(a, ax, k) for a, ax in zip(args, in_axes)], backend) for k in range(3)]
    want = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *loop)
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(want)):
        assert a.shape == b.shape and a.dtype == b.dtype
        if jnp.issubdtype(a.dtype, jnp.integer):
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    if red == "sum":
        ref = np.stack([gauss_ref(*[_unbatch(a, ax, k) for a, ax in zip(args, in_axes)]) for k in range(3)])
        assert_close(out, ref, np.float32, terms=np.abs(ref) + 1)


def test_vmap_of_batched_lazyarrays(backend, rng):
    """The vmapped axis comes on top of the LazyArrays' own batch axes (x: (2, M, D))."""
    x = rng.normal(size=(4, 2, M, D)).astype(np.float32)  # vmapped axis 0, own batch (2,)
    y = rng.normal(size=(N, D)).astype(np.float32)
    p = rng.uniform(0.5, 1.5, size=(4, 1)).astype(np.float32)

    def f(x, p):
        return (-(Vi(x).sqdist(Vj(y))) * Pm(p)).exp().sum(axis=2, backend=backend)  # over j

    out = jax.vmap(f)(x, p)
    assert out.shape == (4, 2, M, 1)
    d2 = ((x[..., :, None, :].astype(np.float64) - y[None, None, None]) ** 2).sum(-1)
    want = np.exp(-d2 * p[:, None, None, :]).sum(-1, keepdims=True)
    assert_close(out, want, np.float32, terms=np.abs(want) + 1)


def test_nested_vmap(data, backend):
    x, y, p = data
    xs = np.stack([x + k for k in range(3)])  # (3, M, D)
    ps = np.asarray([[0.5], [1.0]], np.float32)  # (2, 1)
    f = jax.vmap(jax.vmap(lambda x, p: gauss(x, y, p, backend), in_axes=(0, None)), in_axes=(None, 0))
    out = f(xs, ps)
    assert out.shape == (2, 3, M, D)
    want = np.stack([np.stack([gauss_ref(xs[a], y, ps[b]) for a in range(3)]) for b in range(2)])
    assert_close(out, want, np.float32, terms=np.abs(want) + 1)


def test_vmap_of_grad(data, backend):
    """Per-example gradients w.r.t. the parameter and the i-data."""
    x, y, p = data
    xs = np.stack([x * (1 + 0.1 * k) for k in range(3)])

    def loss(x, p):
        return gauss(x, y, p, backend).sum()

    def loss_ref(x, p):
        d2 = jnp.sum((x[:, None] - y[None]) ** 2, -1)
        return jnp.sum(jnp.exp(-d2 * p[0]) @ y)

    gx, gp = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None))(xs, p)
    wx, wp = jax.vmap(jax.grad(loss_ref, argnums=(0, 1)), in_axes=(0, None))(xs, p)
    assert gx.shape == xs.shape and gp.shape == (3, 1)
    np.testing.assert_allclose(gx, wx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gp, wp, rtol=1e-4, atol=1e-5)


def test_jit_vmap_grad(data, backend):
    x, y, p = data
    ps = np.asarray([[0.3], [0.9]], np.float32)

    def loss(p):
        return (-(Vi(x).sqdist(Vj(y))) * Pm(p)).logsumexp(axis=1, backend=backend).sum()

    def loss_ref(p):
        d2 = jnp.sum((x[:, None] - y[None]) ** 2, -1)
        return jnp.sum(jax.nn.logsumexp(-d2 * p[0], axis=1))

    got = jax.jit(jax.vmap(jax.grad(loss)))(ps)
    np.testing.assert_allclose(got, jax.vmap(jax.grad(loss_ref))(ps), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- grad inside jit


def test_grad_wrt_parameter_inside_jit(data, backend):
    x, y, p = data
    traces = []

    @jax.jit
    def step(p):
        traces.append(1)
        g = jax.grad(lambda p: gauss(x, y, p, backend).sum())(p)
        return p - 0.1 * g, g

    def loss_ref(p):
        d2 = jnp.sum((x[:, None] - y[None]) ** 2, -1)
        return jnp.sum(jnp.exp(-d2 * p[0]) @ y)

    p1, g = step(p)
    np.testing.assert_allclose(g, jax.grad(loss_ref)(p), rtol=1e-4, atol=1e-6)
    p2, _ = step(p1)
    assert len(traces) == 1
    assert np.all(np.isfinite(np.asarray(p2)))


def test_jit_grad_grad(data, backend, x64):
    x, y, _ = (np.asarray(a, np.float64) for a in data)

    def f(s):
        return (-(Vi(x).sqdist(Vj(y))) * Pm(s)).logsumexp(axis=0, backend=backend).sum()

    def f_ref(s):
        d2 = jnp.sum((x[:, None] - y[None]) ** 2, -1)
        return jnp.sum(jax.nn.logsumexp(-d2 * s, axis=0))

    s = jnp.asarray(0.8)
    np.testing.assert_allclose(jax.jit(jax.grad(jax.grad(f)))(s), jax.grad(jax.grad(f_ref))(s), rtol=1e-9)


def test_reduction_inside_fori_loop(data, backend):
    """A few gradient steps on the i-data, inside lax.fori_loop (traced once)."""
    x, y, p = data

    def loss(x):
        return (-(Vi(x).sqdist(Vj(y)))).exp().sum(axis=1, backend=backend).sum()

    def loss_ref(x):
        return jnp.sum(jnp.exp(-jnp.sum((x[:, None] - y[None]) ** 2, -1)))

    def run(loss):
        return jax.jit(lambda x: jax.lax.fori_loop(0, 3, lambda k, x: x + 0.1 * jax.grad(loss)(x), x))(x)

    np.testing.assert_allclose(run(loss), run(loss_ref), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- eager calls


def test_eager_jnp_reduction_is_traced_once(monkeypatch, rng):
    import jax_lazy.backends.jnp as jnp_backend

    calls = []
    reduce = jnp_backend.reduce

    def counting(plan, arrays, geom):
        calls.append(1)  # runs once per trace
        return reduce(plan, arrays, geom)

    monkeypatch.setattr(jnp_backend, "reduce", counting)
    x = rng.normal(size=(5, 2)).astype(np.float32)
    y = rng.normal(size=(6, 2)).astype(np.float32)
    for k in range(3):
        (Vi(x + k) * Vj(y)).sum(axis=1, backend="jnp").block_until_ready()
    assert len(calls) == 1
