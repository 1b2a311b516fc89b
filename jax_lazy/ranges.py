"""Block-sparse ranges: the one home of KeOps' ranges 6-tuple (SPEC §3).

``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``: row block k,
the half-open rows ``ranges_i[k]``, reduces over the column intervals
``redranges_j[slices_i[k-1]:slices_i[k]]`` (``slices_i[-1]`` read as 0); the second
triplet describes the transposed matrix (columns in blocks, reduced over rows). Rows in no
block get the reduction's empty values (Sum 0, LogSumExp -inf, Min +inf, indices -1).

This module checks a user's tuple (:func:`check`), orients it for a plan (a canonical
plan reduces over j: an ``axis=0`` reduction swaps the triplets, :func:`orient`) and
knows the ranges operands of the reduction primitive (docs/design.md, "Block-sparse
ranges"): after the variables' arrays, the six int32 arrays in canonical orientation,
batch axes leading (``(*rb, R, 2)``, ``(*rb, R)``, ``(*rb, S, 2)``), broadcasting with
the variables' batch axes.

Values are checked when the arrays are concrete; under ``jit`` (tracers) only dtypes and
shapes can be, and the backends clamp whatever values come (nothing is read out of
bounds: ranges to [0, M] / [0, N], slices to [0, S]; an interval that ends before it
starts is empty), so bad traced ranges give wrong numbers, never a crash.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .errors import DtypeError, RangesError, ShapeError
from .plan import Geometry, Plan, geometry as variables_geometry

NAMES = ("ranges_i", "slices_i", "redranges_j", "ranges_j", "slices_j", "redranges_i")
INT32_LIMIT = 2**31


def swap(six):
    """The 6-tuple with its i and j triplets exchanged (``jax_lazy.cluster.swap_axes``);
    None stays None."""
    return None if six is None else tuple(six[3:6]) + tuple(six[0:3])


def orient(six, axis: int):
    """The user's 6-tuple in the canonical orientation of a reduction over ``axis``: the
    plan's own triplet (its rows, reduced over its columns) first."""
    return swap(six) if axis == 0 else six


def as_tuple(ranges, text=None):
    """``ranges`` as a tuple of its six entries (None stays None).

    Raises:
      ShapeError: not a sequence of 6 entries.
    """
    if ranges is None:
        return None
    if not isinstance(ranges, (tuple, list)) or len(ranges) != 6:
        got = f"{len(ranges)} entries" if isinstance(ranges, (tuple, list)) else type(ranges).__name__
        raise ShapeError(f"ranges must be the 6-tuple ({', '.join(NAMES)}), got {got}", text)
    return tuple(ranges)


def batch_rank(q: int, ndim: int) -> int:
    """Leading batch axes of entry ``q`` (0..5) of rank ``ndim``: all but the last one of a
    slices array ``(*rb, R)``, all but the last two of an interval array ``(*rb, R, 2)``."""
    return ndim - (1 if q % 3 == 1 else 2)


def check(ranges, M: int, N: int, batch: tuple, text=None) -> tuple:
    """The user's ``ranges`` for a call of M rows (i), N columns (j) and broadcast batch
    shape ``batch``, as six int32 arrays in the user's orientation.

    Args:
      ranges: ``(ranges_i (*rb, R, 2), slices_i (*rb, R), redranges_j (*rb, S, 2),
        ranges_j (*rb, R', 2), slices_j (*rb, R'), redranges_i (*rb, S', 2))``, integer
        arrays (NumPy, JAX, nested lists); each ``rb`` broadcasts to ``batch``.
      text: the formula, for error messages (a string or a function returning one).

    Returns:
      The six arrays as int32 ``jax.Array`` s, same shapes.

    Raises:
      ShapeError: not 6 entries; an entry of the wrong rank or last axis; ``slices_i``
        and ``ranges_i`` of different lengths (R); batch axes that do not broadcast to
        ``batch``; M or N of 2^31 or more (the kernels index in int32).
      DtypeError: a non-integer entry.
      RangesError: concrete values that break the format (intervals outside their axis
        or ending before they start, row blocks unsorted or overlapping, slices
        decreasing or outside [0, S]); traced values are not checked.
    """
    six = [a if isinstance(a, jax.Array) else np.asarray(a) for a in as_tuple(ranges, text)]
    if max(M, N) >= INT32_LIMIT:
        raise ShapeError(f"ranges index the rows and columns in int32: M = {M} and N = {N} must be below 2^31", text)
    for q, a in enumerate(six):
        _check_static(q, a, batch, text)
    for base in (0, 3):
        if six[base].shape[-2] != six[base + 1].shape[-1]:
            raise ShapeError(f"{NAMES[base + 1]} has {six[base + 1].shape[-1]} entries but {NAMES[base]} has "
                             f"{six[base].shape[-2]} blocks: one end offset per block", text)
    if not any(isinstance(a, jax.core.Tracer) for a in six):
        concrete = [np.asarray(a, np.int64) for a in six]
        for base, (rows, cols) in zip((0, 3), ((M, N), (N, M))):
            _check_values(base, *concrete[base : base + 3], rows, cols, text)
        _check_transposes(concrete, text)
    return tuple(jnp.asarray(a).astype(jnp.int32) for a in six)


def _check_static(q: int, a, batch: tuple, text) -> None:
    name = NAMES[q]
    if not np.issubdtype(a.dtype, np.integer):
        raise DtypeError(f"{name} must be an integer array, got {a.dtype}", text)
    interval = q % 3 != 1
    if a.ndim < (2 if interval else 1) or (interval and a.shape[-1] != 2):
        want = "(..., R, 2): one [start, end) per row" if interval else "(..., R): one end offset per block"
        raise ShapeError(f"{name} must have shape {want}, got {a.shape}", text)
    own = a.shape[: batch_rank(q, a.ndim)]
    try:
        fits = np.broadcast_shapes(own, batch) == tuple(batch)
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"{name} has batch axes {own}, which do not broadcast to the call's batch shape "
                         f"{tuple(batch)}", text)


def _where(name: str, idx) -> str:
    return f"{name}[{', '.join(map(str, idx))}]"


def _first(bad):
    """The index of the first True of ``bad`` (a tuple), or None."""
    hits = np.argwhere(bad)
    return None if len(hits) == 0 else tuple(int(k) for k in hits[0])


def _check_intervals(name: str, iv, size: int, axis: str, text) -> None:
    start, end = iv[..., 0], iv[..., 1]
    k = _first((start < 0) | (end > size))
    if k is not None:
        raise RangesError(f"{_where(name, k)} = [{start[k]}, {end[k]}) is not inside [0, {size}] "
                          f"({size} = the size of the {axis} axis)", text)
    k = _first(end < start)
    if k is not None:
        raise RangesError(f"{_where(name, k)} = [{start[k]}, {end[k]}) ends before it starts", text)


def _check_values(base: int, blocks, slices, red, rows: int, cols: int, text) -> None:
    """One triplet: row blocks inside [0, rows], sorted and disjoint; slices
    non-decreasing in [0, S]; reduction intervals inside [0, cols]."""
    names = NAMES[base : base + 3]
    row_axis, col_axis = ("i", "j") if base == 0 else ("j", "i")
    _check_intervals(names[0], blocks, rows, row_axis, text)
    k = _first(blocks[..., 1:, 0] < blocks[..., :-1, 1])
    if k is not None:
        prev = k[:-1] + (k[-1],)
        nxt = k[:-1] + (k[-1] + 1,)
        raise RangesError(f"{_where(names[0], nxt)} = [{blocks[nxt][0]}, {blocks[nxt][1]}) starts before "
                          f"{_where(names[0], prev)} = [{blocks[prev][0]}, {blocks[prev][1]}) ends: the row "
                          "blocks must be sorted and disjoint", text)
    S = red.shape[-2]
    k = _first((slices < 0) | (slices > S))
    if k is not None:
        raise RangesError(f"{_where(names[1], k)} = {slices[k]} is not inside [0, {S}] ({S} = the number of "
                          f"intervals of {names[2]})", text)
    k = _first(np.diff(slices, axis=-1) < 0)
    if k is not None:
        nxt = k[:-1] + (k[-1] + 1,)
        raise RangesError(f"{_where(names[1], nxt)} = {slices[nxt]} is below {_where(names[1], k)} = {slices[k]}: "
                          "slices are cumulative end offsets, non-decreasing", text)
    _check_intervals(names[2], red, cols, col_axis, text)


def _pairs(blocks, slices, red):
    """The number of (row, column) pairs a triplet reduces, per batch entry: block k's
    rows times the columns of its intervals (O(R + S))."""
    widths = np.cumsum(red[..., 1] - red[..., 0], axis=-1)
    widths = np.concatenate([np.zeros(widths.shape[:-1] + (1,), np.int64), widths], axis=-1)
    ends = np.take_along_axis(widths, slices, axis=-1)
    starts = np.concatenate([np.zeros(ends.shape[:-1] + (1,), np.int64), ends[..., :-1]], axis=-1)
    return ((blocks[..., 1] - blocks[..., 0]) * (ends - starts)).sum(-1)


def _check_transposes(six, text) -> None:
    """The two triplets must describe one mask (the second transposed: the derivatives
    over i read it). Comparing the masks costs O(M N); their pair counts, O(R + S),
    catch most mismatches."""
    first, second = np.broadcast_arrays(_pairs(*six[:3]), _pairs(*six[3:]))
    k = _first(first != second)
    if k is not None:
        at = f" (batch entry {list(k)})" if k else ""
        raise RangesError(f"the two triplets do not describe one mask{at}: (ranges_i, slices_i, redranges_j) keeps "
                          f"{first[k]} pairs but (ranges_j, slices_j, redranges_i) keeps {second[k]}", text)


# ---------------------------------------------------------------- the primitive's operands


def split(plan: Plan, operands) -> tuple:
    """The primitive's operands as (the variables' arrays, the canonical six or None)."""
    n = len(plan.variables)
    return tuple(operands[:n]), (tuple(operands[n:]) if plan.ranges else None)


def geometry(plan: Plan, operands, text=None) -> Geometry:
    """The geometry of the primitive's operands (arrays or abstract values): the
    variables', its batch shape broadcast with the ranges' batch axes (vmapped ranges
    add one the variables may not have)."""
    arrays, six = split(plan, operands)
    geom = variables_geometry(plan, arrays, text)
    if six is None:
        return geom
    batches = [a.shape[: batch_rank(q, a.ndim)] for q, a in enumerate(six)]
    try:
        batch = tuple(np.broadcast_shapes(geom.batch, *batches))
    except ValueError:
        raise ShapeError(f"the ranges' batch axes {batches} do not broadcast with {geom.batch}",
                         text or plan.describe) from None
    return Geometry(batch, geom.M, geom.N, geom.dtype)


def shift_rows(six, offset):
    """The canonical six for the rows ``[offset, offset + M_local)`` of a row shard: the
    row indices (``ranges_i``, ``redranges_i``) shifted by ``-offset``; the backends clamp
    them to the shard's rows, so blocks of other shards become empty."""
    ranges_i, slices_i, red_j, ranges_j, slices_j, red_i = six
    off = jnp.asarray(offset, jnp.int32)
    return ranges_i - off, slices_i, red_j, ranges_j, slices_j, red_i - off
