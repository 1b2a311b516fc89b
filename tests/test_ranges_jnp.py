"""The jnp backend's block-sparse path (``backends/jnp.py``) beyond the backends' contract
(``tests/test_ranges_backends.py``): overlapping intervals count twice, traced ranges
under ``jit`` and ``vmap``, and row / column tiles smaller than the blocks, against the
dense NumPy float64 oracle (``oracle.ranges_mask``, ``oracle.masked_reduce``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle as o
from jax_lazy import backends
from jax_lazy import plan as plan_mod
from jax_lazy.backends import jnp as jnp_backend
from jax_lazy.reductions import REDUCTIONS
from test_ranges_backends import K, _case, _plan_and_oracle


def _setup(red, rng, batch, M, N):
    x, y, p, w = _case(rng, np.float32, batch, M, N)
    plan, arrays, Fd, Wd = _plan_and_oracle(red, "jnp", x, y, p, w)
    arrays = [jnp.asarray(a) for a in arrays]
    return backends.with_kernels(plan, False), arrays, Fd, Wd


def test_overlapping_intervals_count_twice(rng):
    """Block 0 reduces over [2, 9) and [5, 12): the columns 5..8 twice."""
    M, N = 10, 14
    plan, arrays, Fd, _ = _setup("Sum", rng, (), M, N)
    triple = (np.array([[0, 6], [6, 10]]), np.array([2, 3]), np.array([[2, 9], [5, 12], [0, 3]]))
    (out,) = jnp_backend.reduce(plan, arrays, plan_mod.geometry(plan, arrays),
                                ranges=tuple(jnp.asarray(a, jnp.int32) for a in triple))
    counts = o.ranges_mask(*triple, M, N)
    np.testing.assert_allclose(np.asarray(out), (counts[..., None] * Fd).sum(-2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("red", ["Sum", "Min_ArgMin", "KMin_ArgKMin"])
def test_traced_ranges_jit_vmap_small_tiles(red, rng, monkeypatch):
    """jax.vmap of a jitted reduce over (x, ranges), with 2 x 2 tiles: many row tiles per
    block and column tiles per interval, each batch element its own count of steps."""
    monkeypatch.setattr(jnp_backend, "RANGE_TILES", ((2, 2), (2, 2)))
    M, N = 13, 11
    plan, arrays, Fd, _ = _setup(red, rng, (3,), M, N)
    six, mask = o.random_ranges(rng, M, N, (3,), (3, 4), 0.5)
    geom = plan_mod.geometry(plan, [a[0] for a in arrays[:1]] + arrays[1:2] + arrays[2:])

    @jax.jit
    def one(x, ri, si, rj):
        return jnp_backend.reduce(plan, [x] + arrays[1:], geom, ranges=(ri, si, rj))

    outs = jax.vmap(one)(arrays[0], *(jnp.asarray(a, jnp.int32) for a in six[:3]))
    want = o.masked_reduce(red, Fd, mask, K=K)
    for g, e in zip((outs[q] for q in REDUCTIONS[red].public), want):
        if np.issubdtype(e.dtype, np.integer):
            np.testing.assert_array_equal(np.asarray(g), e)
        else:
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-4, atol=1e-4)
