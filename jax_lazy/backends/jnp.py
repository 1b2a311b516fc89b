"""The ``jnp`` backend: reductions lowered to pure JAX.

The formula is evaluated on (i-block x j-block) tiles with :mod:`jax.numpy`; the j-blocks
are folded into the reduction state with ``lax.scan`` and the i-blocks are mapped with
``lax.map``, so memory stays linear in M + N while XLA fuses each tile. It runs wherever
JAX runs (CPU, GPU, TPU); it is the fallback of the compiled backends and, evaluated
densely, the reference of the tests.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from . import common
from .. import numerics
from ..ir import I, J, P, topo_order
from ..ir.evaluate import evaluate

# Elements of one tile's intermediates (all nodes' dims summed) that a step may hold.
TILE_BUDGET = 1 << 21
MAX_TJ = 2048


def available():
    """Always available: returns no reason."""
    return None


def supports(dtype: str):
    """Every floating dtype JAX has."""
    return None


def _tiles(plan, M: int, N: int) -> tuple[int, int]:
    width = sum(n.dim for n in topo_order(*plan.formulas)) + (plan.k or 0)
    tj = min(N, MAX_TJ)
    ti = max(1, min(M, TILE_BUDGET // max(1, tj * width)))
    ti = 1 << int(math.log2(ti)) if ti < M else M
    return ti, tj


def _pad_rows(x, rows: int, axis: int):
    extra = rows - x.shape[axis]
    if extra == 0:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, extra)
    return jnp.pad(x, pad)


def reduce(plan, arrays, geom):
    """Run ``plan`` (canonical j-reduction) on ``arrays`` (one per variable, in index
    order; i-variables ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters ``(*b, D)``).

    Returns the reduction's finalized outputs, each of shape ``geom.batch + (M, ...)``.
    """
    red, family = plan.red, plan.red.family
    roots = red.roots(plan.formulas)  # F (-F for Max), and the weights if any
    batch, M, N = geom.batch, geom.M, geom.N
    nb = len(batch)
    ti, tj = _tiles(plan, M, N)
    nbi, nbj = -(-M // ti), -(-N // tj)
    dtype = geom.dtype
    acc, states = _numerics(plan, family)  # float16 / bfloat16 sums accumulate in float32
    vars_ = plan.variables

    # Lay every array out as (blocks, *b, rows, 1 | cols, D), batch axes padded with 1s.
    def blocks(x, rows_per_block, nblocks, cat):
        b = x.shape[:-2]
        x = x.reshape((1,) * (nb - len(b)) + x.shape)
        x = _pad_rows(x, rows_per_block * nblocks, nb)
        x = x.reshape(x.shape[:nb] + (nblocks, rows_per_block, x.shape[-1]))
        x = jnp.moveaxis(x, nb, 0)
        return x[..., :, None, :] if cat == I else x[..., None, :, :]

    # Pytrees of tuples (nodes do not sort as dict keys), zipped back with their variables.
    ivars = [v for v in vars_ if v.attr[1] == I]
    jvars = [v for v in vars_ if v.attr[1] == J]
    xi = tuple(blocks(arrays[v.attr[0]], ti, nbi, I) for v in ivars)
    yj = tuple(blocks(arrays[v.attr[0]], tj, nbj, J) for v in jvars)
    pm = {}
    for v, a in zip(vars_, arrays):
        if v.attr[1] == P:
            pm[v] = a.reshape((1,) * (nb - (a.ndim - 1)) + a.shape[:-1] + (1, 1, a.shape[-1]))
    dims = [f.dim for f in roots]
    L = batch + (ti,)

    def i_block(xblk):
        def j_step(state, inp):
            yblk, j0 = inp
            env = {**pm, **dict(zip(ivars, xblk)), **dict(zip(jvars, yblk))}
            vals = evaluate(roots, env, dtype)
            valid = (j0 + jnp.arange(tj) < N)[:, None]
            vals = [jnp.broadcast_to(val, L + (tj, d)).astype(acc) for val, d in zip(vals, dims)]
            F = jnp.where(valid, vals[0], family.pad)  # F is negated already (Max): padding stays neutral
            W = jnp.where(valid, vals[1], 0) if len(vals) > 1 else jnp.ones((1,), acc)
            return states.update(state, F, W, j0, plan.k), None

        dw = dims[1] if len(dims) > 1 else 1
        state = common.vary_like(states.init(L, dims[0], dw, plan.k, acc), arrays)  # inside shard_map
        state, _ = lax.scan(j_step, state, (yj, jnp.arange(nbj) * tj))
        return states.finalize(state)

    # each output (nbi, *b, ti, ...); with no i-variable there is a single row (M = 1).
    outs = lax.map(i_block, xi) if xi else tuple(o[None] for o in i_block(()))
    result = []
    for o in outs:
        o = jnp.moveaxis(o, 0, nb)
        o = o.reshape(batch + (nbi * ti,) + o.shape[nb + 2 :])[(slice(None),) * nb + (slice(0, M),)]
        result.append(o if jnp.issubdtype(o.dtype, jnp.integer) else o.astype(dtype))  # from the accumulator
    return red.signed(result)


def _numerics(plan, family):
    """The accumulator dtype and the state machine (the family's, or its compensated twin
    for kahan_scheme) of ``plan`` (:mod:`jax_lazy.numerics`). Without ``jax_enable_x64``
    JAX has no float64 arrays: a float64 accumulator is then the compensated float32 pair,
    as accurate for sums of float32 terms (about 48 bits)."""
    if family not in numerics.SUM_FAMILIES:
        return jnp.dtype(plan.dtype), family
    acc = jnp.dtype(plan.dtype_acc)
    if acc != jnp.dtype(jax.dtypes.canonicalize_dtype(acc)):  # float64 without x64
        return jnp.dtype("float32"), numerics.COMPENSATED[family]
    return acc, numerics.COMPENSATED[family] if plan.sum_scheme == "kahan_scheme" else family
