"""Block-sparse ranges (issue 13) in the cpu backend's kernels (:mod:`jax_lazy.backends.cpu`):
the kernel's extra input, the loop over the row blocks of the ranges around a dense
kernel body, and the loops over the column intervals of a row block.

A ranges kernel (``plan.ranges``) gets one more input, one int32 vector per batch element
``[R, S, ranges_i, slices_i, redranges_j]`` (:func:`packed_input`; the handler slices it
as a parameter), which the prelude reads as a ``jl_ranges``. For the rows [i0, i1) of its
work unit the kernel writes the family's empty values, then runs the dense kernel's body
for each row block that has rows there and columns (:func:`blocks`), with ``i0``, ``i1``
that block's rows: a register block of R rows never straddles two row blocks, and rows in
no block, or in a block without columns, keep the empty values. The body's column loops
run over the block's intervals (:func:`columns`) or, where the lane loop reads its columns
from the j-stage buffer only, over pieces of the intervals packed side by side into that
buffer (:func:`packed`): narrow intervals then make lane loops as long as a dense
kernel's. Every value is clamped in the prelude: nothing is read out of bounds whatever
the (unchecked, traced) values.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..errors import ShapeError


def _indent(lines, n):
    return [" " * n + s for s in lines]


def columns(plan, step) -> list[str]:
    """The head of a loop over the columns in blocks of up to ``step`` (``jb`` a block's
    first column, ``nw`` its width): over [0, N); with ranges, over each column interval
    of the row block (:func:`blocks`), cut in blocks of its own."""
    if not plan.ranges:
        return [f"for (int64_t jb = 0; jb < N; jb += {step}) {{", f"  const int nw = (int)jl_min64({step}, N - jb);"]
    return ["for (int64_t jl_s = jl_s0, ja, jz; jl_rg.next(jl_s, jl_s1, N, ja, jz);)",
            f"for (int64_t jb = ja; jb < jz; jb += {step}) {{", f"  const int nw = (int)jl_min64({step}, jz - jb);"]


def blocks(plan, body) -> list[str]:
    """A ranges kernel: the rows [i0, i1) of the call get the family's empty values, then
    ``body`` (the dense kernel's rows and columns) runs for each row block of the ranges
    that has rows in [i0, i1) and columns (prelude: ``jl_ranges::block``), with ``i0``,
    ``i1`` its rows there (shadowing the call's) and ``jl_s0``, ``jl_s1`` its intervals.
    The work is that of the kept (row block, interval) pairs."""
    widths = [math.prod(t) for t in plan.red.family.tails(plan.formulas, plan.k)]
    empty = plan.red.signed(plan.red.family.empty)
    return [
        f"const jl_ranges jl_rg(in_[{len(plan.variables)}]);",
        *[f"for (int64_t q = i0 * {w}; q < i1 * {w}; ++q) out{k}[q] = {_literal(v, plan.red.is_index(k))};"
          for k, (w, v) in enumerate(zip(widths, empty))],
        "const int64_t jl_i0 = i0, jl_i1 = i1;",
        "for (int64_t jl_k = 0; jl_k < jl_rg.nr; ++jl_k) {",
        "  int64_t i0, i1, jl_s0, jl_s1;",
        "  if (!jl_rg.block(jl_k, N, jl_i0, jl_i1, i0, i1, jl_s0, jl_s1)) continue;",
        *_indent(body, 2),
        "}",
    ]


def _literal(v, index: bool) -> str:
    """The C++ value of a family's empty value ``v`` (an index: -1)."""
    if index:
        return f"(IDX){int(v)}"
    return {math.inf: "jl_inf()", -math.inf: "-jl_inf()"}.get(float(v), f"T({float(v)!r})")


def packed(st, rows, indices=False) -> list[str]:
    """The loop over the columns of a row block when the lane loop reads them from the
    j-stage buffer only (prelude: ``jl_columns``): the j-stage (``st``: a
    ``cpu._Staging``) packs pieces of the block's intervals side by side into one buffer
    of up to ``st.jblock`` columns (piece [a, a + n) at lanes [nw, nw + n): ``jb = a - nw``),
    then ``rows`` sweep the buffer. ``indices``: the column of lane w is kept in
    ``jl_col[w]`` (for ArgMin and ArgKMin)."""
    return [
        "jl_columns jl_c(jl_rg, jl_s0, jl_s1, N);",
        "for (;;) {",
        "  int nw = 0;",
        f"  for (int64_t jl_a = 0; const int jl_n = jl_c.take({st.jblock} - nw, jl_a); nw += jl_n) {{",
        "    const int64_t jb = jl_a - nw;",
        *["    #pragma omp simd", "    for (int w = nw; w < nw + jl_n; ++w) jl_col[w] = (IDX)(jb + w);"] * indices,
        *_indent(st.jstage("nw", "nw + jl_n"), 4),
        "  }",
        "  if (nw == 0) break;",
        *_indent(rows, 2),
        "}",
    ]


def packed_input(plan, ranges):
    """The ranges kernel's extra input: ``(*rb, 2 + 3 R + 2 S)`` int32, per batch element
    ``[R, S, ranges_i, slices_i, redranges_j]`` flattened (prelude: ``jl_ranges``), the
    three arrays ``(*rb, R, 2)``, ``(*rb, R)``, ``(*rb, S, 2)`` (any integer dtype)
    broadcast to their common batch axes ``rb``.

    Raises:
      ShapeError: arrays of other shapes, or batch axes that do not broadcast."""
    if ranges is None or len(ranges) != 3:
        raise ShapeError("a ranges kernel needs (ranges_i, slices_i, redranges_j)", plan.describe())
    ri, sl, rj = (jnp.asarray(a).astype(jnp.int32) for a in ranges)
    if ri.ndim < 2 or rj.ndim < 2 or sl.ndim < 1 or ri.shape[-1] != 2 or rj.shape[-1] != 2 or sl.shape[-1] != ri.shape[-2]:
        raise ShapeError(f"ranges of shapes {ri.shape}, {sl.shape}, {rj.shape}: expected (*b, R, 2), (*b, R), "
                         "(*b, S, 2)", plan.describe())
    try:
        rb = tuple(np.broadcast_shapes(ri.shape[:-2], sl.shape[:-1], rj.shape[:-2]))
    except ValueError:
        raise ShapeError(f"ranges of shapes {ri.shape}, {sl.shape}, {rj.shape}: batch axes that do not "
                         "broadcast", plan.describe()) from None
    # R and S as scalar literals (an array constant would be a captured constant, which
    # custom_partitioning, under sharding, refuses)
    head = [jnp.full((1,), ri.shape[-2], jnp.int32), jnp.full((1,), rj.shape[-2], jnp.int32)]
    parts = [*head, ri.reshape(ri.shape[:-2] + (2 * ri.shape[-2],)), sl, rj.reshape(rj.shape[:-2] + (2 * rj.shape[-2],))]
    return jnp.concatenate([jnp.broadcast_to(a, rb + a.shape[-1:]) for a in parts], -1)
