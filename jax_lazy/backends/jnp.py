"""The ``jnp`` backend: reductions lowered to pure JAX.

The formula is evaluated on (i-block x j-block) tiles with :mod:`jax.numpy`; the j-blocks
are folded into the reduction state with ``lax.scan`` and the i-blocks are mapped with
``lax.map``, so memory stays linear in M + N while XLA fuses each tile. It runs wherever
JAX runs (CPU, GPU, TPU); it is the fallback of the compiled backends and, evaluated
densely, the reference of the tests.

Block-sparse reductions (``ranges=``, issue 13; the contract is the docstring of
``tests/test_ranges_backends.py``) visit only the kept blocks. The rows of each row
block are cut into row tiles of ``ti`` rows, ``lax.map``-ped (a static count of tiles,
``min(M, R + M / ti)``, which the tiles of disjoint blocks never exceed); each row tile
walks, in a ``lax.while_loop``, the column intervals of its block in column tiles of
``tj`` columns read with ``lax.dynamic_slice``. A row tile's rows past its block are
computed with the block's columns and dropped at the end: no row mask.

Cost model: one tile evaluation of ``ti * tj`` pairs per (row tile, column tile of an
interval), i.e. the kept pairs plus the padding of each block's last row tile and each
interval's last column tile (at most ``ti * tj`` pairs per (row tile, interval)), plus
O(M + N + R + S) bookkeeping. So the work follows the kept blocks when blocks have
about ``ti`` rows or more and intervals about ``tj`` columns or more. ``ti`` and ``tj``
are the multiples of 8 a fifth above the mean block size ``M / R`` and ``N / R``
(clamped to [16, 256] and [16, 512]): most blocks of a clustering alike on both sides
then fit one tile, padded by ~20 % per axis. Measured (``python bench/run.py --ranges
--quick --backend jnp``, 2e4 points, 6.4 % of the pairs kept): x5 to x8 faster than
without ranges, the kept pairs at about half the dense pairs/s. Under ``vmap`` (and for
batch axes, which are ``vmap``-ped) the while loop runs the longest batch element's
count of steps, the others masked.

Overlapping intervals are visited twice, as a kernel's loop would (a Sum counts their
pairs twice, a KMin can return a column twice); row blocks must be disjoint and sorted
(``from_matrix``'s are), else rows may be missed or overwritten (never read out of
bounds).
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
from ..plan import out_shapes

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


RANGES = True  # block-sparse reductions: reduce(..., ranges=)
RANGE_TILES = ((16, 256), (16, 512))  # bounds of the ranges path's ti and tj


def reduce(plan, arrays, geom, ranges=None):
    """Run ``plan`` (canonical j-reduction) on ``arrays`` (one per variable, in index
    order; i-variables ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters ``(*b, D)``).
    With ``ranges`` = ``(ranges_i, slices_i, redranges_j)`` (int32 ``(*rb, R, 2)``,
    ``(*rb, R)``, ``(*rb, S, 2)``, ``rb`` broadcasting against ``geom.batch``), only the
    kept blocks are reduced (module docstring; ``tests/test_ranges_backends.py``).

    Returns the reduction's finalized outputs, each of shape ``geom.batch + (M, ...)``.
    """
    if ranges is not None:
        return _reduce_ranges(plan, arrays, geom, ranges)
    red = plan.red
    batch, M, N = geom.batch, geom.M, geom.N
    nb = len(batch)
    ti, tj = _tiles(plan, M, N)
    nbi, nbj = -(-M // ti), -(-N // tj)
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
    tile = _Tile(plan, geom, arrays, batch + (ti,), tj)

    def i_block(xblk):
        def j_step(state, inp):
            yblk, j0 = inp
            env = {**pm, **dict(zip(ivars, xblk)), **dict(zip(jvars, yblk))}
            return tile.update(state, env, (j0 + jnp.arange(tj) < N)[:, None], j0), None

        state, _ = lax.scan(j_step, tile.init(), (yj, jnp.arange(nbj) * tj))
        return tile.states.finalize(state)

    # each output (nbi, *b, ti, ...); with no i-variable there is a single row (M = 1).
    outs = lax.map(i_block, xi) if xi else tuple(o[None] for o in i_block(()))
    result = []
    for o in outs:
        o = jnp.moveaxis(o, 0, nb)
        o = o.reshape(batch + (nbi * ti,) + o.shape[nb + 2 :])[(slice(None),) * nb + (slice(0, M),)]
        result.append(_out_dtype(o, geom))
    return red.signed(result)


def _out_dtype(o, geom):
    """A finalized output in the call's dtype (from the accumulator's); indices stay."""
    return o if jnp.issubdtype(o.dtype, jnp.integer) else o.astype(geom.dtype)


class _Tile:
    """The reduction state of a block of rows ``L`` (leading axes, e.g. ``(*b, ti)``) and
    its update by one tile of ``tj`` columns: the formula evaluated on the tile's
    variables, the pairs where ``valid`` is false padded with the family's neutral
    value (weights with 0)."""

    def __init__(self, plan, geom, arrays, L, tj):
        self.plan, self.L, self.tj, self.dtype = plan, L, tj, geom.dtype
        self.roots = plan.red.roots(plan.formulas)  # F (-F for Max), and the weights if any
        self.dims = [f.dim for f in self.roots]
        self.acc, self.states = _numerics(plan, plan.red.family)  # float16 / bfloat16 sums accumulate in float32
        self.arrays = arrays

    def init(self):
        dw = self.dims[1] if len(self.dims) > 1 else 1
        state = self.states.init(self.L, self.dims[0], dw, self.plan.k, self.acc)
        return common.vary_like(state, self.arrays)  # inside shard_map

    def update(self, state, env, valid, j0):
        vals = evaluate(self.roots, env, self.dtype)
        vals = [jnp.broadcast_to(val, self.L + (self.tj, d)).astype(self.acc) for val, d in zip(vals, self.dims)]
        F = jnp.where(valid, vals[0], self.plan.red.family.pad)  # F is negated already (Max): padding stays neutral
        W = jnp.where(valid, vals[1], 0) if len(vals) > 1 else jnp.ones((1,), self.acc)
        return self.states.update(state, F, W, j0, self.plan.k)


# ---------------------------------------------------------------- block-sparse ranges


def _range_tiles(plan, M: int, N: int, R: int) -> tuple[int, int]:
    """``(ti, tj)`` of the ranges path: multiples of 8 a fifth above the mean block size
    (module docstring), within ``RANGE_TILES`` and the tile budget."""
    width = sum(n.dim for n in topo_order(*plan.formulas)) + (plan.k or 0)
    size = lambda n, lo, hi: min(hi, max(lo, 8 * math.ceil(1.2 * n / 8)))  # noqa: E731
    (ilo, ihi), (jlo, jhi) = RANGE_TILES
    ti, tj = min(M, size(M / max(R, 1), ilo, ihi)), min(N, size(N / max(R, 1), jlo, jhi))
    while ti > 1 and ti * tj * width > TILE_BUDGET:
        ti //= 2
    return ti, tj


def _reduce_ranges(plan, arrays, geom, ranges):
    """:func:`reduce` with ranges: the batch axes (of the arrays and the ranges) flattened
    and ``vmap``-ped over :func:`_ranges_one` (an array with no batch extent is shared)."""
    batch = geom.batch
    B = math.prod(batch)
    tails = [1 if v.attr[1] == P else 2 for v in plan.variables] + [2, 1, 2]
    operands, axes = [], []
    for a, tail in zip(list(arrays) + list(ranges), tails):
        core = a.shape[a.ndim - tail :]
        if math.prod(a.shape[: a.ndim - tail]) == 1:
            operands.append(a.reshape(core))
            axes.append(None)
        else:
            operands.append(jnp.broadcast_to(a, batch + core).reshape((B,) + core))
            axes.append(0)
    nv = len(plan.variables)
    one = lambda *ops: _ranges_one(plan, geom, ops[:nv], *ops[nv:])  # noqa: E731
    if 0 in axes:
        outs = [o.reshape(batch + o.shape[1:]) for o in jax.vmap(one, in_axes=tuple(axes))(*operands)]
    else:  # nothing varies along the batch axes
        outs = [jnp.broadcast_to(o, batch + o.shape) for o in one(*operands)]
    return plan.red.signed(_out_dtype(o, geom) for o in outs)


def _ranges_one(plan, geom, ops, ranges_i, slices_i, redranges_j):
    """The finalized outputs ``(M, ...)`` of one batch element: ``ops`` the variables'
    arrays without batch axes, the triplet ``(R, 2)``, ``(R,)``, ``(S, 2)``."""
    family, M, N = plan.red.family, geom.M, geom.N
    R, S = slices_i.shape[0], redranges_j.shape[0]
    empty = [jnp.full((M,) + s.shape[len(geom.batch) + 1 :], e, s.dtype)
             for s, e in zip(out_shapes(plan, geom), family.empty)]
    if R == 0 or S == 0:
        return empty
    ti, tj = _range_tiles(plan, M, N, R)
    # Clamped: rows in [0, M], columns in [0, N], slices in [0, S]; an end before its start is empty.
    r0 = jnp.clip(ranges_i[:, 0], 0, M)
    r1 = jnp.clip(ranges_i[:, 1], r0, M)
    a = jnp.clip(redranges_j[:, 0], 0, N)
    b = jnp.clip(redranges_j[:, 1], a, N)
    s_end = jnp.clip(slices_i, 0, S)
    s_start = jnp.concatenate([jnp.zeros((1,), s_end.dtype), s_end[:-1]])
    # The row tiles: block k has ceil(rows / ti) of them; tile c is in block searchsorted(C, c).
    count = (r1 - r0 + ti - 1) // ti
    C = jnp.cumsum(count)
    NC = max(1, min(M, -(-(M + R * (ti - 1)) // ti)))
    c = jnp.arange(NC)
    k = jnp.searchsorted(C, c, side="right")
    active = k < R
    k = jnp.minimum(k, R - 1)
    row0 = jnp.where(active, r0[k] + (c - (C[k] - count[k])) * ti, 0)
    row_end = jnp.where(active, r1[k], 0)
    s_lo = jnp.where(active, s_start[k], 0)
    s_hi = jnp.where(active, jnp.maximum(s_end[k], s_lo), s_lo)

    vars_ = plan.variables
    ivars = [v for v in vars_ if v.attr[1] == I]
    jvars = [v for v in vars_ if v.attr[1] == J]
    xs = tuple(_pad_rows(ops[v.attr[0]], M + ti, 0) for v in ivars)  # a slice at row0 <= M fits
    ys = tuple(_pad_rows(ops[v.attr[0]], N + tj, 0) for v in jvars)
    pm = {v: ops[v.attr[0]].reshape(1, 1, -1) for v in vars_ if v.attr[1] == P}
    tile = _Tile(plan, geom, list(ops) + [ranges_i, slices_i, redranges_j], (ti,), tj)
    first = lambda s: a[jnp.minimum(s, S - 1)]  # noqa: E731  (first column of interval s, read in bounds)

    def row_tile(args):
        row0, s_lo, s_hi = args
        env_i = {v: lax.dynamic_slice_in_dim(x, row0, ti)[:, None, :] for v, x in zip(ivars, xs)}

        def step(carry):  # column tile [j, j + tj) of interval s
            s, j, state, seen = carry
            env = {**pm, **env_i, **{v: lax.dynamic_slice_in_dim(y, j, tj)[None] for v, y in zip(jvars, ys)}}
            end = b[jnp.minimum(s, S - 1)]  # s < S, except for a vmapped element already done
            cols_ok = j + jnp.arange(tj) < end
            state = tile.update(state, env, cols_ok[:, None], j)
            done = j + tj >= end
            seen = seen + cols_ok.sum(dtype=seen.dtype)
            return jnp.where(done, s + 1, s), jnp.where(done, first(s + 1), j + tj), state, seen

        carry = common.vary_like((s_lo, first(s_lo), tile.init(), jnp.zeros((), jnp.int32)), tile.arrays)
        _, _, state, seen = lax.while_loop(lambda cr: cr[0] < s_hi, step, carry)
        return _empty_rows(plan, tile.states.finalize(state), seen)

    outs = lax.map(row_tile, (row0, s_lo, s_hi))  # each (NC, ti, ...)
    rows = jnp.where(row0[:, None] + jnp.arange(ti) < row_end[:, None], row0[:, None] + jnp.arange(ti), M).reshape(-1)
    return [e.at[rows].set(o.reshape((-1,) + o.shape[2:]).astype(e.dtype), mode="drop") for e, o in zip(empty, outs)]


def _empty_rows(plan, outs, seen):
    """``outs`` (finalized, ``(ti, ...)``) of a row tile that reduced ``seen`` columns:
    the family's empty values if none and, for KMin, in the slots past ``seen`` (they
    hold padded columns)."""
    short = jnp.arange(plan.k)[:, None] >= seen if plan.k is not None else seen == 0  # KMin outputs (ti, K, D)
    return [jnp.where(short, jnp.asarray(e, o.dtype), o) for o, e in zip(outs, plan.red.family.empty)]


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
