"""The backends' side of block-sparse reductions (issue 13), below the public API: each
backend's ``reduce(plan, arrays, geom, ranges=(ranges_i, slices_i, redranges_j))`` on a
canonical (over j) plan with ``ranges=True``, against the dense masked NumPy float64
oracle (``oracle.masked_reduce`` of ``oracle.random_ranges``).

The contract every backend meets (docs/design.md, "Block-sparse ranges"):

- ``ranges`` holds int32 arrays ``(*rb, R, 2)``, ``(*rb, R)``, ``(*rb, S, 2)``, their
  batch axes ``rb`` broadcasting against ``geom.batch`` as the variables' do; row block
  k = ranges_i[k] reduces over the column intervals redranges_j[slices_i[k-1]:slices_i[k]]
  (slices_i[-1] = 0);
- a row in no block, or in a block whose intervals hold no column, gets the family's
  empty values (``Family.empty``: Sum 0, LogSumExp -inf, Min +inf, indices -1; KMin rows
  of fewer than K columns end in (+inf, -1));
- a backend reads no index out of bounds whatever the values (under ``jit`` they are not
  checked): ranges are clamped to [0, M] / [0, N], slices to [0, S], and an interval
  whose end is before its start is empty;
- the work is proportional to the kept blocks (compiled backends: excluded blocks are
  skipped, not masked).

A backend meets it when its module sets ``RANGES = True``; until then its cases skip.
"""

from __future__ import annotations

import numpy as np
import pytest

import oracle as o
from conftest import precision, skip_if_unsupported
from jax_lazy import Pm, Vi, Vj, backends
from jax_lazy import plan as plan_mod
from jax_lazy.reductions import REDUCTIONS

REDS = ["Sum", "LogSumExp", "SumSoftMaxWeight", "Min", "ArgMin", "Min_ArgMin", "Max", "ArgMax",
        "Max_ArgMax", "KMin", "ArgKMin", "KMin_ArgKMin"]
K = 3


def _case(rng, dtype, batch, M, N, D=2):
    x = rng.normal(size=batch + (M, D))
    y = rng.normal(size=(N, D))  # no batch axes: they broadcast
    p = rng.uniform(0.5, 1.5, (D,))
    w = rng.uniform(0.5, 2.0, batch + (N, 2))
    return [a.astype(dtype) for a in (x, y, p, w)]


def _plan_and_oracle(red, backend, x, y, p, w):
    """The canonical plan of ``red`` on G = (x_i - y_j) * p (dim 2) or, for the scalar
    reductions, F = -|G|^2 / 2 weighted by w_j; its arrays; the dense float64 formulas."""
    G = (Vi(x) - Vj(y)) * Pm(p)
    lazies = (-0.5 * G.sqnorm2(), Vj(w)) if REDUCTIONS[red].scalar else (G,)
    nodes, (vars_, arrays, *_rest) = lazies[0]._join(*lazies[1:])
    k = K if REDUCTIONS[red].uses_k else None
    plan = plan_mod.Plan(tuple(nodes), REDUCTIONS[red], k, tuple(vars_), str(x.dtype), backend, ranges=True)
    X, Y, P = (np.asarray(a, np.float64) for a in (x, y, p))
    Gd = (X[..., :, None, :] - Y[None, :, :]) * P
    Fd = -0.5 * (Gd**2).sum(-1, keepdims=True) if REDUCTIONS[red].scalar else Gd
    Wd = np.asarray(w, np.float64)[..., None, :, :]
    return plan, arrays, Fd, Wd


def _check(red, backend, rng, dtype, batch, M, N, blocks, density):
    import jax.numpy as jnp

    module = backends.get(backend)
    if not getattr(module, "RANGES", False):
        pytest.skip(f"backend {backend!r} has no ranges yet")
    skip_if_unsupported(backend, dtype)
    with precision(dtype):
        x, y, p, w = _case(rng, dtype, batch, M, N)
        six, mask = o.random_ranges(rng, M, N, batch, blocks, density)
        plan, arrays, Fd, Wd = _plan_and_oracle(red, backend, x, y, p, w)
        arrays = [jnp.asarray(a) for a in arrays]
        geom = plan_mod.geometry(plan, arrays)
        plan = backends.with_kernels(plan, False)
        triple = tuple(jnp.asarray(a, jnp.int32) for a in six[:3])
        outs = module.reduce(plan, arrays, geom, ranges=triple)
        got = [np.asarray(outs[q]) for q in REDUCTIONS[red].public]
    want = o.masked_reduce(red, Fd, mask, K=K, W=Wd if REDUCTIONS[red].weighted else None)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for g, e in zip(got, want):
        assert g.shape == e.shape, (g.shape, e.shape)
        if np.issubdtype(g.dtype, np.integer):
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


@pytest.mark.parametrize("red", REDS)
def test_every_reduction_f32(red, backend, rng):
    _check(red, backend, rng, np.float32, (), 37, 45, (4, 5), 0.4)


@pytest.mark.parametrize("red", ["Sum", "SumSoftMaxWeight", "Min_ArgMin", "KMin_ArgKMin"])
def test_batch_f64(red, backend, rng):
    _check(red, backend, rng, np.float64, (2,), 23, 29, (3, 4), 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("red", REDS)
def test_large_blocks(red, backend, rng):
    """Blocks larger than the kernels' row and column tiles, many of them."""
    _check(red, backend, rng, np.float32, (), 1500, 2100, (9, 11), 0.3)


def test_out_of_bounds_values_read_nothing(backend, rng):
    """Unchecked (traced) values past the bounds are clamped: [M - 3, M + 100) is the
    rows [M - 3, M); [-7, 5) the columns [0, 5); an interval [9, 2) is empty."""
    import jax.numpy as jnp

    module = backends.get(backend)
    if not getattr(module, "RANGES", False):
        pytest.skip(f"backend {backend!r} has no ranges yet")
    M, N = 20, 30
    x, y, p, w = _case(rng, np.float32, (), M, N)
    plan, arrays, Fd, _ = _plan_and_oracle("Sum", backend, x, y, p, w)
    arrays = [jnp.asarray(a) for a in arrays]
    geom = plan_mod.geometry(plan, arrays)
    plan = backends.with_kernels(plan, False)
    ranges_i = jnp.asarray([[0, 4], [M - 3, M + 100]], jnp.int32)
    slices_i = jnp.asarray([2, 3], jnp.int32)
    red_j = jnp.asarray([[-7, 5], [9, 2], [N - 2, N + 50]], jnp.int32)
    (out,) = module.reduce(plan, arrays, geom, ranges=(ranges_i, slices_i, red_j))
    mask = np.zeros((M, N), bool)
    mask[0:4, 0:5] = True
    mask[M - 3 :, N - 2 :] = True
    (want,) = o.masked_reduce("Sum", Fd, mask)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-4)
