"""The cpu backend's block-sparse kernels (issue 13) beyond the shared contract of
``tests/test_ranges_backends.py``: narrow column intervals packed side by side in one
chunk (``cpu._packed``), the kernels that cannot pack (component loops run before the
lanes), the numerics options' accumulators, float16 / bfloat16 data, ranges with batch
axes of their own and under ``vmap``, unchecked slices, and a snapshot of the generated
code. Oracles: dense float64 NumPy restricted to the kept pairs (``oracle.masked_reduce``).

Most cases reuse the kernels of ``test_ranges_backends`` (same formulas and dtype: no
new compile)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle as o
import test_codegen_snapshots as snap
from conftest import precision
from test_ranges_backends import K, _case, _plan_and_oracle
from jax_lazy import Pm, Vi, Vj, backends
from jax_lazy import plan as plan_mod
from jax_lazy.backends import cpu
from jax_lazy.reductions import REDUCTIONS


def _run(plan, arrays, ranges, geom=None):
    arrays = [jnp.asarray(a) for a in arrays]
    geom = geom or plan_mod.geometry(plan, arrays)
    plan = backends.with_kernels(plan, False)
    outs = cpu.reduce(plan, arrays, geom, ranges=tuple(jnp.asarray(a, jnp.int32) for a in ranges))
    return [np.asarray(outs[q]) for q in plan.red.public]


def _assert_outputs(got, want, tol):
    for g, e in zip(got, want):
        assert g.shape == e.shape, (g.shape, e.shape)
        if np.issubdtype(g.dtype, np.integer):
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(np.asarray(g, np.float64), e, rtol=tol, atol=tol)


def _plan(red, *lazies, dtype="float32", **options):
    nodes, (vars_, arrays, *_rest) = lazies[0]._join(*lazies[1:])
    k = K if REDUCTIONS[red].uses_k else None
    return plan_mod.Plan(tuple(nodes), REDUCTIONS[red], k, tuple(vars_), dtype, "cpu", ranges=True, **options), arrays


# ---------------------------------------------------------------- packed narrow intervals


@pytest.mark.parametrize("red", ["Sum", "SumSoftMaxWeight", "Min_ArgMin", "KMin_ArgKMin"])
def test_narrow_intervals(red, rng):
    """150 column blocks of about 20 columns (some empty, kept ones often adjacent:
    merged) over 3,000 columns: many intervals per chunk, chunks across intervals and
    the Sum's j blocks; 300 rows in 7 blocks: several threads' row chunks cut blocks."""
    x, y, p, w = _case(rng, np.float32, (), 300, 3000)
    six, mask = o.random_ranges(rng, 300, 3000, (), (7, 150), 0.3)
    plan, arrays, Fd, Wd = _plan_and_oracle(red, "cpu", x, y, p, w)
    got = _run(plan, arrays, six[:3])
    want = o.masked_reduce(red, Fd, mask, K=K, W=Wd if REDUCTIONS[red].weighted else None)
    _assert_outputs(got, want, 1e-4)


def test_inner_product_stage(rng):
    """A Gaussian sum at D = 16: the squared distances are computed by the stage, from
    the packed j-stage buffer."""
    M, N, D = 200, 1500, 16
    x, y = rng.normal(size=(M, D)) / 4, rng.normal(size=(N, D)) / 4
    b = rng.normal(size=(N, 2))
    plan, arrays = _plan("Sum", (-Vi(x.astype(np.float32)).sqdist(Vj(y.astype(np.float32)))).exp()
                         * Vj(b.astype(np.float32)))
    six, mask = o.random_ranges(rng, M, N, (), (5, 60), 0.3)
    F = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1, keepdims=True)) * b[None]
    _assert_outputs(_run(plan, arrays, six[:3]), o.masked_reduce("Sum", F, mask), 1e-4)


def test_buffered_stage(rng):
    """KMin of squared distances at D = 16: the buffered kernel packs the intervals' pieces
    into its chunks with the inner-product stage, the indices from ``jl_col``; row blocks
    of 1,000 to 2,500 columns."""
    M, N, D = 90, 5000, 16
    x, y = rng.normal(size=(M, D)), rng.normal(size=(N, D))
    plan, arrays = _plan("KMin_ArgKMin", Vi(x.astype(np.float32)).sqdist(Vj(y.astype(np.float32))))
    six, mask = o.random_ranges(rng, M, N, (), (6, 50), 0.35)
    F = ((x[:, None] - y[None]) ** 2).sum(-1, keepdims=True)
    _assert_outputs(_run(plan, arrays, six[:3]), o.masked_reduce("KMin_ArgKMin", F, mask, K=K), 1e-4)


@pytest.mark.slow
def test_unpacked_kernels(rng):
    """Kernels whose component loops run before the lane loop read j-variables at column
    jb + w and loop over each interval in turn: a Laplace sum at D = 40 (its Sum of
    |x - y| is such a loop) and the Min of x - y at D = 40 (a looped root); then a
    Kahan-summed float32 Sum (its per-row-block accumulator array)."""
    M, N, D = 120, 900, 40
    x, y, b = rng.normal(size=(M, D)), rng.normal(size=(N, D)), rng.normal(size=(N, 1))
    x32, y32, b32 = (a.astype(np.float32) for a in (x, y, b))
    six, mask = o.random_ranges(rng, M, N, (), (4, 40), 0.4)
    plan, arrays = _plan("Sum", (-(Vi(x32) - Vj(y32)).abs().sum() / 40).exp() * Vj(b32))
    F = np.exp(-np.abs(x[:, None] - y[None]).sum(-1, keepdims=True) / 40) * b[None]
    _assert_outputs(_run(plan, arrays, six[:3]), o.masked_reduce("Sum", F, mask), 1e-4)

    plan, arrays = _plan("Min_ArgMin", Vi(x32) - Vj(y32))
    want = o.masked_reduce("Min_ArgMin", x[:, None] - y[None], mask)
    _assert_outputs(_run(plan, arrays, six[:3]), want, 1e-5)

    x, y, p, w = _case(rng, np.float32, (), 100, 700)
    plan, arrays, Fd, _ = _plan_and_oracle("Sum", "cpu", x, y, p, w)
    import dataclasses

    plan = dataclasses.replace(plan, sum_scheme="kahan_scheme")
    six, mask = o.random_ranges(rng, 100, 700, (), (5, 30), 0.4)
    _assert_outputs(_run(plan, arrays, six[:3]), o.masked_reduce("Sum", Fd, mask), 1e-5)


# ---------------------------------------------------------------- data types, batch axes, vmap


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision(dtype, rng):
    """float16 / bfloat16 data run the float32 kernel (converted around the call): the
    ranges go with them."""
    x, y, p, w = _case(rng, np.float32, (), 37, 45)
    six, mask = o.random_ranges(rng, 37, 45, (), (4, 5), 0.4)
    plan, arrays, _, _ = _plan_and_oracle("Sum", "cpu", x, y, p, w)
    arrays = [jnp.asarray(a, dtype) for a in arrays]
    plan = plan_mod.Plan(plan.formulas, plan.red, None, plan.variables, jnp.dtype(dtype).name, "cpu", ranges=True)
    X, Y, P = (np.asarray(jnp.asarray(a, jnp.float32), np.float64) for a in arrays[:3])
    Fd = (X[:, None] - Y[None]) * P
    (got,) = _run(plan, arrays, six[:3])
    assert got.dtype == dtype
    _assert_outputs([got], o.masked_reduce("Sum", Fd, mask), 0.05)


def test_batch_axes_of_the_ranges(rng):
    """Ranges with a batch axis that the variables lack: the output gets it. Under
    ``vmap`` the ranges are per batch element too."""
    x, y, p, w = _case(rng, np.float32, (), 30, 40)
    six, mask = o.random_ranges(rng, 30, 40, (3,), (3, 4), 0.5)
    plan, arrays, Fd, _ = _plan_and_oracle("Sum", "cpu", x, y, p, w)
    (want,) = o.masked_reduce("Sum", np.broadcast_to(Fd, (3,) + Fd.shape), mask)
    (got,) = _run(plan, arrays, six[:3])
    _assert_outputs([got], [want], 1e-4)

    arrays = [jnp.asarray(a) for a in arrays]
    geom = plan_mod.geometry(plan, arrays)
    plan = backends.with_kernels(plan, False)
    one = jax.jit(jax.vmap(lambda *rg: cpu.reduce(plan, arrays, geom, ranges=rg)[0]))
    _assert_outputs([np.asarray(one(*(jnp.asarray(a, jnp.int32) for a in six[:3])))], [want], 1e-4)


@pytest.mark.parametrize("red", ["Sum", "KMin_ArgKMin"])
def test_unchecked_slices(red, rng):
    """Slices past [0, S], decreasing slices (an empty block), row blocks past [0, M]:
    clamped; nothing is read out of bounds. The last block has 2 columns, fewer than K:
    its KMin rows end in (+inf, -1)."""
    M, N = 20, 30
    x, y, p, w = _case(rng, np.float32, (), M, N)
    plan, arrays, Fd, _ = _plan_and_oracle(red, "cpu", x, y, p, w)
    ranges_i = np.asarray([[-5, 3], [3, 8], [8, 12], [12, 1000]])
    slices_i = np.asarray([-4, 3, 1, 2])  # block 0: none; 1: [0, 3); 2: [3, 1), none; 3: [1, 2)
    red_j = np.asarray([[0, 5], [5, 7], [20, 40]])
    mask = np.zeros((M, N), bool)
    mask[3:8, 0:7] = True
    mask[3:8, 20:] = True
    mask[12:, 5:7] = True
    want = o.masked_reduce(red, Fd, mask, K=K)
    _assert_outputs(_run(plan, arrays, (ranges_i, slices_i, red_j)), want, 1e-4)


@pytest.mark.parametrize("red", ["Min_ArgMin", "Max_ArgMax"])
def test_special_values(red, rng):
    """The ranges kernels' vectorised reduction of Min's lanes (prelude: jl_lanes_min)
    keeps the dense semantics: NaN wins (its first column), +-inf, ties to the smallest
    column."""
    M, N = 20, 150
    x, y, p, w = _case(rng, np.float32, (), M, N)
    y[40] = y[3]  # ties: the same values in two columns, in different lanes
    y[100:110] = y[3]
    y[7, 0], y[90, 0], y[120, 1] = np.nan, np.nan, np.inf
    y[130, 1] = -np.inf
    six, mask = o.random_ranges(rng, M, N, (), (4, 6), 0.6)
    plan, arrays, Fd, _ = _plan_and_oracle(red, "cpu", x, y, p, w)
    with np.errstate(invalid="ignore"):
        want = o.masked_reduce(red, Fd, mask)
    _assert_outputs(_run(plan, arrays, six[:3]), want, 1e-5)


# ---------------------------------------------------------------- generated code


@pytest.mark.parametrize("name", ["gauss_sum", "argkmin"])
def test_ranges_kernel_snapshot(name):
    """The ranges variant of two snapshot kernels (``test_codegen_snapshots``): the
    dense body inside the loop over row blocks, with packed columns."""
    build, red, k = snap.CASES[name]
    lazies = build()
    nodes, (vars_, *_rest) = lazies[0]._join(*lazies[1:])
    plan = plan_mod.Plan(tuple(nodes), REDUCTIONS[red], k, tuple(vars_), "float32", "cpu", ranges=True)
    source = cpu.kernel_source(plan)
    body = source[source.index('extern "C"'):]
    path = snap.HERE / f"ranges_{name}.cpp"
    if os.environ.get("JAX_LAZY_UPDATE_SNAPSHOTS"):
        path.write_text(body)
    assert path.exists(), f"missing snapshot {path}: run with JAX_LAZY_UPDATE_SNAPSHOTS=1"
    assert body == path.read_text()
