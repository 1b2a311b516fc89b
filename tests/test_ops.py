"""Every op of the formula language, generated from the op table (``op_table.py``).

Each row is reduced over i and over j on random data with batch broadcasting, in
float32 and float64, and compared with the NumPy float64 oracle; ``.dense()`` is
checked on a small case. ``test_table_covers_every_op`` fails when an op is added to
``jax_lazy.ir.OPS`` without a row that reaches it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jax_lazy
from jax_lazy.ir import topo_order

from conftest import assert_close, precision, use_tiling
from op_table import (
    FAST_GRAD_ROWS,
    LEAVES,
    REACHED_BY_GRADIENT,
    ROW_BY_NAME,
    ROWS,
    SLOW_ONLY_ROWS,
    dense_reference,
    lazy_operands,
    sample_operands,
)

ROW_PARAMS = [pytest.param(r, id=r.name) for r in ROWS]

# (dtype, batch pattern, tiling). In the fast suite, the core rows (those whose
# gradients are also checked in the fast suite: one or two per op) run in float32 on tiny
# tiles (many padded i- and j-tiles) AND in float64 with batch broadcasting; the other
# rows (spelling / dim-1 variants) run one of the two, alternately. Everything else is
# marked slow: the slow suite runs every row in all five configurations.
slow = pytest.mark.slow
CONFIGS = [
    (np.float32, "plain", "tiny", "f32-plain-tiny"),
    (np.float64, "bcast", "default", "f64-bcast"),
    (np.float32, "bcast", "default", "f32-bcast"),
    (np.float64, "plain", "tiny", "f64-plain-tiny"),
    (np.float64, "bcast", "tiny", "f64-bcast-tiny"),
]


def _reduction_params():
    out = []
    for k, r in enumerate(ROWS):
        for c, (dtype, pattern, tiling, cid) in enumerate(CONFIGS):
            fast = c < 2 and (r.name in FAST_GRAD_ROWS or c == k % 2) and r.name not in SLOW_ONLY_ROWS
            out.append(pytest.param(r, dtype, pattern, tiling, id=f"{r.name}-{cid}", marks=() if fast else slow))
    return out


def _formula_ops(formula):
    return {n.op for n in topo_order(formula)}


def _build_small(r, dtype=np.float64):
    rng = np.random.default_rng(0)
    arrays = sample_operands(r, rng, "plain", M=2, N=3)
    with precision(dtype):
        return r.build(*lazy_operands(r, [a.astype(dtype) for a in arrays]))


# ---------------------------------------------------------------- coverage of the op table


def test_table_covers_every_op():
    """Every non-leaf op of jax_lazy.ir.OPS is reached by some row (directly, or through
    the symbolic gradient of the rows named in REACHED_BY_GRADIENT)."""
    covered = set()
    for r in ROWS:
        covered |= _formula_ops(_build_small(r).formula)
    covered |= set(REACHED_BY_GRADIENT)  # checked by test_ops_reached_by_gradient
    missing = set(jax_lazy.ir.OPS) - LEAVES - covered
    assert not missing, f"ops without a row in tests/op_table.py: {sorted(missing)}"


@pytest.mark.parametrize("op", sorted(REACHED_BY_GRADIENT))
def test_ops_reached_by_gradient(op):
    """The internal-only ops appear in the symbolic VJP of their row, and that row is
    differentiable (so test_grad.py evaluates them)."""
    from jax_lazy.autodiff import vjp
    from jax_lazy.ir import I, Var, variables

    r = ROW_BY_NAME[REACHED_BY_GRADIENT[op]]
    assert r.diff
    F = _build_small(r).formula
    assert op not in _formula_ops(F)
    wrt = variables(F)
    G = Var(len(wrt), F.dim, I)
    grads = vjp([(F, G)], wrt)
    assert any(op in _formula_ops(g) for g in grads), [str(g) for g in grads]


def test_every_row_has_an_i_and_a_j_operand():
    """Rows reduce over both axes: each must depend on i and on j."""
    for r in ROWS:
        assert "i" in r.cats and "j" in r.cats, r.name


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("r,dtype,pattern,tiling", _reduction_params())
def test_op_reductions(r, dtype, pattern, tiling, backend, rng, monkeypatch):
    use_tiling(monkeypatch, tiling)
    arrays = [a.astype(dtype) for a in sample_operands(r, rng, pattern)]
    dense = dense_reference(r, np, [a.astype(np.float64) for a in arrays])
    with precision(dtype):
        F = r.build(*lazy_operands(r, arrays))
        assert F.shape == dense.shape
        assert F.dim == dense.shape[-1]
        nb = F.nbatchdims
        over_i = F.sum(axis=nb, backend=backend)
        over_j = F.sum(axis=nb + 1, backend=backend)
    assert_close(over_i, dense.sum(-3), dtype, terms=np.abs(dense).sum(-3), err_msg=f"{r.name} over i")
    assert_close(over_j, dense.sum(-2), dtype, terms=np.abs(dense).sum(-2), err_msg=f"{r.name} over j")


@pytest.mark.parametrize("dtype,pattern", [
    pytest.param(np.float64, "bcast_ij", id="f64-bcast_ij"),  # batched i and j, 1-D parameters
    pytest.param(np.float32, "plain", id="f32-plain", marks=slow),
    pytest.param(np.float32, "bcast", id="f32-bcast", marks=slow),
])
@pytest.mark.parametrize("r", ROW_PARAMS)
def test_op_dense(r, dtype, pattern, rng):
    arrays = [a.astype(dtype) for a in sample_operands(r, rng, pattern, M=3, N=2)]
    dense = dense_reference(r, np, [a.astype(np.float64) for a in arrays])
    with precision(dtype):
        F = r.build(*lazy_operands(r, arrays))
        out = F.dense()
    assert isinstance(out, jnp.ndarray)
    assert_close(out, dense, dtype, terms=np.maximum(np.abs(dense), 1.0), err_msg=r.name)
