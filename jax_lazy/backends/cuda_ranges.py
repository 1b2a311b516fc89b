"""The cuda backend's block-sparse input, built in JAX around the launch (issue 13): the
ranges table the ranges kernels read (``cuda._ranges_body``: one CUDA block per chunk of
a kept row block, over that block's column intervals), and the fill of the rows they do
not compute. The kernel side stays in :mod:`cuda` with the tile loop it reuses."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from . import common


def table(ranges, M: int, N: int, rows: int):
    """The block-sparse kernel's input from the plan's triplet: ``(table, covered,
    chunks)``. ``table`` (*rb, 4 + 4 chunks + 2 S) int32 per batch element of the ranges:
    a header (chunks to run, ``chunks``, 0, 0), then ``chunks`` entries (row start, row
    end, first interval, last interval + 1), then the S column intervals ``[j0, j1)``.
    Each row block with a kept column is cut into chunks of at most ``rows`` rows;
    ``chunks`` = R + ceil(M / rows) bounds their number for disjoint blocks (overlapping
    ones, invalid, lose the chunks past it). Every user value is clamped here (rows to
    [0, M], columns to [0, N], slices to [0, S], an end before its start is empty), so
    nothing the kernel reads is out of bounds. ``covered`` (*rb, M) bool: the rows the
    kernel computes (in a block with a kept column)."""
    ri, si, rj = ranges
    R, S = si.shape[-1], rj.shape[-2]
    rb = jnp.broadcast_shapes(ri.shape[:-2], si.shape[:-1], rj.shape[:-2])
    chunks = R + -(-M // rows)
    if R == 0:  # no row block: no chunk
        length = 4 + 4 * chunks + 2 * S
        table = jnp.zeros(rb + (length,), jnp.int32).at[..., 1].set(chunks)
        return table, jnp.zeros(rb + (M,), bool), chunks
    flat = [jnp.broadcast_to(a, rb + a.shape[a.ndim - d:]).reshape((-1,) + a.shape[a.ndim - d:])
            for a, d in ((ri, 2), (si, 1), (rj, 2))]
    table, covered = jax.vmap(partial(_one, M=M, N=N, rows=rows, chunks=chunks))(*flat)
    return table.reshape(rb + table.shape[1:]), covered.reshape(rb + (M,)), chunks


def _one(ri, si, rj, *, M, N, rows, chunks):
    """:func:`table` for one batch element of the ranges."""
    i32 = jnp.int32
    ri, si, rj = (jnp.asarray(a, i32) for a in (ri, si, rj))
    R, S = si.shape[0], rj.shape[0]
    r0 = jnp.clip(ri[:, 0], 0, M)
    r1 = jnp.clip(ri[:, 1], r0, M)
    j0 = jnp.clip(rj[:, 0], 0, N)
    j1 = jnp.clip(rj[:, 1], j0, N)
    q1 = jnp.clip(si, 0, S)
    q0 = jnp.concatenate([jnp.zeros(1, i32), q1[:-1]])  # slices_i[-1] = 0
    q1 = jnp.maximum(q1, q0)
    nonempty = jnp.concatenate([jnp.zeros(1, i32), jnp.cumsum(j1 > j0, dtype=i32)])  # intervals before q
    kept = (nonempty[q1] > nonempty[q0]) & (r1 > r0)
    n = jnp.where(kept, (r1 - r0 + rows - 1) // rows, 0)  # chunks of each row block
    ends = jnp.cumsum(n, dtype=i32)
    c = jnp.arange(chunks, dtype=i32)
    k = jnp.minimum(jnp.searchsorted(ends, c, side="right"), R - 1).astype(i32)  # the block of chunk c
    first = r0[k] + (c - (ends - n)[k]) * rows
    entries = jnp.stack([first, jnp.minimum(first + rows, r1[k]), q0[k], q1[k]], -1)
    header = jnp.stack([jnp.minimum(ends[-1], chunks), jnp.asarray(chunks, i32), jnp.zeros((), i32),
                        jnp.zeros((), i32)])
    table = jnp.concatenate([header, entries.ravel(), jnp.stack([j0, j1], -1).ravel()])
    w = kept.astype(i32)
    edges = jnp.zeros(M + 1, i32).at[r0].add(w).at[r1].add(-w)
    return table, jnp.cumsum(edges[:M]) > 0


def fill_empty(plan, geom, outs, covered):
    """The finalized ``outs`` with the rows outside ``covered`` (*rb, M) set to the
    family's empty values (:func:`common.empty_outputs`): the kernel never wrote them."""
    nb = len(geom.batch)
    covered = covered.reshape((1,) * (nb + 1 - covered.ndim) + covered.shape)
    return tuple(jnp.where(covered.reshape(covered.shape + (1,) * (o.ndim - nb - 1)), o, e)
                 for o, e in zip(outs, common.empty_outputs(plan, geom)))
