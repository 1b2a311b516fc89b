"""Formulas with shared sub-formulas (iterated maps, MLPs, Runge-Kutta steps) cost time
and memory linear in their number of distinct nodes (issue 9, item 2).

The map ``f <- f + c * sin(f * y)`` uses ``f`` twice per step, so its formula printed as a
tree doubles at each step: printing it for an error message that is never raised took
15-35 s and 6 GB at depth 24, and the gradient ran out of memory at depth 14. The value
tests check deep formulas forward and backward against a float64 NumPy iteration of the
same map; the structural tests count work (printed length, Python calls into jax_lazy)
at growing depths, not time.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lazy
from jax_lazy import Vi, Vj
from jax_lazy.plan import Plan
from jax_lazy.autodiff import vjp
from jax_lazy.ir import I, Var, topo_order, to_string
from jax_lazy.ir import printing
from jax_lazy.reductions import REDUCTIONS

from conftest import assert_close, set_env

C = 0.1  # step size of the map: (1 + C |y|)^depth keeps the derivatives moderate


def iterate(F, Y, depth):
    """``depth`` steps of ``F <- F + C * sin(F * Y)`` (LazyArrays or NumPy arrays)."""
    for _ in range(depth):
        F = F + C * (F * Y).sin() if isinstance(F, jax_lazy.LazyArray) else F + C * np.sin(F * Y)
    return F


def oracle(x, y, depth):
    """float64 NumPy: F (M, N, D) and its derivatives dF/dx[i, d], dF/dy[j, d] (the map
    acts on each (i, j, d) entry separately), by forward-mode iteration."""
    F = np.broadcast_to(x[:, None, :], (len(x), len(y), x.shape[1])).copy()
    Y = y[None, :, :]
    dx, dy = np.ones_like(F), np.zeros_like(F)
    for _ in range(depth):
        c = np.cos(F * Y)
        dx, dy = dx * (1 + C * c * Y), dy * (1 + C * c * Y) + C * c * F
        F = F + C * np.sin(F * Y)
    return F, dx, dy


@pytest.mark.parametrize("depth", [24, 40])
@pytest.mark.parametrize("dim", [1, 3])
def test_iterated_map_sum_value_and_grad(backend, x64, rng, depth, dim):
    x, y = rng.normal(size=(7, dim)), rng.normal(size=(9, dim))

    def loss(x, y):
        return iterate(Vi(x), Vj(y), depth).sum(axis=1, backend=backend).sum()

    F, dx, dy = oracle(x, y, depth)
    out = iterate(Vi(jnp.asarray(x)), Vj(jnp.asarray(y)), depth).sum(axis=1, backend=backend)
    assert_close(out, F.sum(axis=1), np.float64, terms=np.abs(F).sum(axis=1))
    gx, gy = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(y))
    assert_close(gx, dx.sum(axis=1), np.float64, terms=np.abs(dx).sum(axis=1))
    assert_close(gy, dy.sum(axis=0), np.float64, terms=np.abs(dy).sum(axis=0))


@pytest.mark.parametrize("depth", [30])
def test_iterated_map_min_value_and_grad(backend, x64, rng, depth):
    """Min differentiates through the selected pairs (the jnp evaluator of the VJP)."""
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3))

    def loss(x, y):
        return iterate(Vi(x), Vj(y), depth).min(axis=1, backend=backend).sum()

    F, dx, dy = oracle(x, y, depth)
    j = F.argmin(axis=1)  # (M, D)
    pick = lambda a: np.take_along_axis(a, j[:, None, :], axis=1)[:, 0, :]  # noqa: E731
    out = iterate(Vi(jnp.asarray(x)), Vj(jnp.asarray(y)), depth).min(axis=1, backend=backend)
    assert_close(out, F.min(axis=1), np.float64)
    gx, gy = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(y))
    assert_close(gx, pick(dx), np.float64)
    want_gy = np.zeros_like(y)
    np.add.at(want_gy, (j, np.arange(3)[None, :]), pick(dy))
    assert_close(gy, want_gy, np.float64, terms=np.abs(dy).sum(axis=0))


# ---------------------------------------------------------------- work counts


def _formula(depth, dim=3):
    return iterate(Vi(np.ones((2, dim), np.float32)), Vj(np.ones((3, dim), np.float32)), depth).formula


def _linear(counts: dict) -> bool:
    """Counts at depths d, 2d, 4d grow linearly: doubling the depth again adds twice what
    the first doubling did (a quadratic adds three times as much, an exponential more)."""
    a, b, c = (counts[d] for d in sorted(counts))
    return c - b <= 2.3 * (b - a)


def test_printing_is_linear_in_distinct_nodes():
    lengths = {d: len(to_string(_formula(d))) for d in (10, 20, 40)}
    assert _linear(lengths), lengths
    assert lengths[40] < 5000, lengths


def test_gradient_formula_is_linear_in_distinct_nodes():
    """The reverse sweep adds O(1) nodes per node, and prints as compactly."""
    nodes, lengths = {}, {}
    for d in (10, 20, 40):
        F = _formula(d)
        G = Var(2, F.dim, I)
        (gx,) = vjp([(F, G)], [Var(0, 3, I)])
        nodes[d] = len(topo_order(gx))
        lengths[d] = len(to_string(gx))
    assert _linear(nodes) and _linear(lengths), (nodes, lengths)


def test_plan_describe_is_linear():
    lengths = {d: len(Plan((_formula(d),), REDUCTIONS["Sum"], None, (), "float32", "jnp").describe())
               for d in (10, 20, 40)}
    assert _linear(lengths), lengths


def test_printing_binds_shared_nodes_once():
    text = to_string(_formula(2, dim=1))
    assert text == ("a = Var(0,1,0) + (Var(2,1,2) * Sin(Var(0,1,0) * Var(1,1,1))); "  # C: one parameter
                    "a + (Var(2,1,2) * Sin(a * Var(1,1,1)))")


def _count_calls(fn) -> int:
    """Python calls into jax_lazy made by ``fn()`` (tracing by JAX included)."""
    root = os.path.dirname(jax_lazy.__file__)
    count = 0

    def prof(frame, event, arg):
        nonlocal count
        if event == "call" and frame.f_code.co_filename.startswith(root):
            count += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def test_build_reduce_and_grad_do_linear_work(rng):
    """Building the formula, planning, the jnp evaluation, the symbolic gradient and its
    reductions: Python calls into jax_lazy grow linearly with the depth."""
    x, y = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)

    def run(depth):
        def loss(x):
            return iterate(Vi(x), Vj(y), depth).sum(axis=1, backend="jnp").sum()

        return lambda: jax.block_until_ready(jax.grad(loss)(x))

    run(1)()  # first-use imports and registrations
    calls = {d: _count_calls(run(d)) for d in (8, 16, 32)}
    assert _linear(calls), calls


def test_no_formula_is_printed_without_an_error(monkeypatch, rng):
    """Error messages are built when raised, not up front on every call."""
    printed = []
    real = printing.render
    monkeypatch.setattr(printing, "render", lambda roots: printed.append(roots) or real(roots))
    set_env(monkeypatch, JAX_LAZY_DUMP=None)
    x, y = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    jax.grad(lambda x: iterate(Vi(x), Vj(y), 3).sum(axis=1, backend="jnp").sum())(x)
    assert printed == []
    with pytest.raises(jax_lazy.ShapeError, match="KMin_Reduction"):
        iterate(Vi(x), Vj(y), 3).Kmin(K=9, axis=1, backend="jnp")
    assert printed
