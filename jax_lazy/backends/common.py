"""What the compiled backends (``cpu``, ``cuda``) share around their kernels: the
formulas a kernel evaluates per pair, the inner products they stage, the outputs they
write (and what every backend returns over empty axes), and the j-split (a j axis
cut into parts run as one more batch axis, whose finalized outputs are merged with the
reduction's ``combine``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from ..errors import BackendError
from ..ir import I, J, P, Node, topo_order
from ..ir.ops import Concat, IntCst, Minus
from ..plan import out_shapes
from ..reductions import KMIN, LSE, SOFTMAX, SUM, index_dtype


def roots(plan):
    """The formulas a kernel evaluates per pair: F (negated for Max), and the weights
    ((1, W) for the softmax: the normaliser and the weighted sums share one max)."""
    red = plan.red
    F = Minus(plan.formulas[0]) if red.negate else plan.formulas[0]
    if red.kernel is SOFTMAX:
        return (F, Concat(IntCst(1), plan.formulas[1]))
    if red.kernel is LSE:
        return (F, plan.formulas[1])
    return (F,)


STAGE_MIN_DIM = 16  # inner products over fewer components stay in the lane loop


@dataclass(frozen=True)
class Inner:
    """An inner product ``Sum(x * y)`` ("dot") or ``Sum((x - y)**2)`` ("sqdist") of an
    i-variable x and a j-variable y: the compiled backends compute these in a stage of
    their own (register tiles, tensor cores) before the rest of the formula."""

    node: Node
    kind: str
    x: Node
    y: Node


def inner_products(plan, roots) -> list[Inner]:
    """The (i, j) inner products of dim >= STAGE_MIN_DIM in ``roots``."""
    found = []
    for n in topo_order(*roots):
        if n.op != "Sum":
            continue
        (a,) = n.args
        if a.op == "Mult":
            kind, pair = "dot", a.args
        elif a.op == "Square" and a.args[0].op == "Subtract":
            kind, pair = "sqdist", a.args[0].args
        else:
            continue
        if any(v.op != "Var" for v in pair) or pair[0].dim != pair[1].dim or pair[0].dim < STAGE_MIN_DIM:
            continue
        if {v.attr[1] for v in pair} != {I, J}:
            continue
        x, y = sorted(pair, key=lambda v: v.attr[1] != I)
        found.append(Inner(n, kind, x, y))
    return found


def out_types(plan, geom):
    """The kernel's outputs, ``(*batch, M, width)`` each: the finalized outputs
    (:func:`jax_lazy.plan.out_shapes`) with their trailing axes flattened (KMin values and
    indices: K * D each, element (q, e) at q * D + e)."""
    return [jax.ShapeDtypeStruct(s.shape[: len(geom.batch) + 1] + (math.prod(s.shape[len(geom.batch) + 1 :]),), s.dtype)
            for s in out_shapes(plan, geom)]


def empty_outputs(plan, geom):
    """The finalized outputs of ``plan`` when there is nothing to reduce or to write
    (M = 0, N = 0 or an empty batch axis): no backend runs; each output is filled with
    its reduction family's ``empty`` value (the identity: Sum 0, LogSumExp -inf,
    SumSoftMaxWeight 0, Min +inf, Max -inf, indices -1), shaped as the backends'."""
    red = plan.red
    outs = [jnp.full(t.shape, v, t.dtype) for t, v in zip(out_shapes(plan, geom), red.kernel.empty)]
    if red.negate:  # Max runs Min on -F
        outs[0] = -outs[0]
    return tuple(outs)


def reduce(plan, arrays, geom, *, supports, split_count, call):
    """The ``reduce`` of a compiled backend: check the dtype (``supports``), then one
    ``call(plan, arrays, geom)``, or, when ``split_count(plan, geom)`` says the output rows
    are too few to fill the machine, the j axis split in that many parts
    (:func:`split_columns`).

    Raises:
      BackendError: the backend does not compute in the plan's dtype.
    """
    reason = supports(plan.dtype)
    if reason:
        raise BackendError(reason, plan.describe())
    parts = split_count(plan, geom)
    if parts < 2:
        return call(plan, arrays, geom)
    return split_columns(plan, arrays, geom, parts, call)


def split_columns(plan, arrays, geom, parts: int, call):
    """``call(plan, arrays, geom)`` with the j axis cut into ``parts`` equal parts, run as
    one more batch axis (one launch), plus a second launch for the remainder; the parts'
    outputs are merged (:func:`merge`)."""
    size = geom.N // parts
    main, rest = parts * size, geom.N - parts * size
    nb = len(geom.batch)
    split, tail = [], []
    for v, a in zip(plan.variables, arrays):
        own = a.ndim - (1 if v.attr[1] == P else 2)
        a = a.reshape((1,) * (nb - own) + a.shape)  # align batch axes
        if v.attr[1] == J:  # (*b, N, D) -> (*b, parts, size, D)
            split.append(a[..., :main, :].reshape(a.shape[:nb] + (parts, size, v.dim)))
            tail.append(a[..., main:, :])
        else:  # a new batch axis of size 1, before the rows (or the vector) axis
            split.append(jnp.expand_dims(a, nb))
            tail.append(a)
    outs = [jnp.moveaxis(o, nb, 0) for o in call(plan, split, replace(geom, batch=geom.batch + (parts,), N=size))]
    offsets = [k * size for k in range(parts)]
    if rest:
        outs = [jnp.concatenate([o, t[None]]) for o, t in zip(outs, call(plan, tail, replace(geom, N=rest)))]
        offsets.append(main)
    return merge(plan, outs, jnp.asarray(offsets, index_dtype()))


def merge(plan, outs, offsets):
    """Merge finalized outputs of disjoint column ranges stacked on axis 0 (column
    offsets ``offsets``) into the outputs of the whole range."""
    family, red = plan.red.kernel, plan.red
    if family is SUM:
        return (outs[0].sum(0),)
    if family is LSE:  # log sum_parts exp(lse_part)
        return (jax.nn.logsumexp(outs[0], axis=0),)
    if family is SOFTMAX:  # weights exp(lse_part - lse)
        lse = jax.nn.logsumexp(outs[1], axis=0)
        w = jnp.exp(outs[1] - lse)  # NaN where lse is NaN or +-inf: so is the result
        # a part whose columns are all -inf has weight 0 and average 0 / 0: it adds nothing
        return (jnp.where(w == 0, 0, w * outs[0]).sum(0), lse)
    sign = -1 if red.negate else 1
    shift = offsets.reshape((-1,) + (1,) * (outs[1].ndim - 1))
    unfilled = outs[1] < 0  # a part with fewer than K columns: (NaN, max index) sorts last
    values, idx = sign * outs[0], jnp.where(unfilled, jnp.iinfo(outs[1].dtype).max, outs[1] + shift)
    if family is KMIN:  # states are (..., D, K)
        values = jnp.where(unfilled, jnp.nan, values)
        values, idx = jnp.swapaxes(values, -1, -2), jnp.swapaxes(idx, -1, -2)
    state = (values[0], idx[0])
    for k in range(1, values.shape[0]):  # few parts: a Python fold of the kernel's combine
        state = family.combine(state, (values[k], idx[k]), plan.k)
    values, idx = state
    if family is KMIN:
        values, idx = jnp.swapaxes(values, -1, -2), jnp.swapaxes(idx, -1, -2)
    return (sign * values, idx)
