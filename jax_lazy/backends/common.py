"""What the compiled backends (``cpu``, ``cuda``) share around their kernels: the inner
products they stage, the outputs they write (and what every backend returns over empty
axes), and the j-split (a j axis cut into parts run as one more batch axis, whose
finalized outputs are merged by the reduction family's ``merge``). The formulas a kernel
evaluates per pair are the reduction's (:meth:`jax_lazy.reductions.Reduction.roots`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
from jax import lax

from ..errors import BackendError
from ..ir import I, J, Node, topo_order
from ..plan import batch_rank, out_shapes
from .. import numerics
from ..reductions import SUM, index_dtype


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


def finalized(plan, geom, outs) -> tuple:
    """The kernel's outputs (:func:`out_types`) reshaped as the finalized outputs (KMin's
    ``(*batch, M, K, D)``; the others are already)."""
    return tuple(o.reshape(s.shape) for o, s in zip(outs, out_shapes(plan, geom)))


def value_sign(plan) -> str:
    """What a kernel writes before each value of the family's state: "-" for a reduction
    that runs its family on -F (Max from Min: :meth:`Reduction.signed`), else nothing."""
    return "-" if plan.red.negate else ""


def empty_outputs(plan, geom):
    """The finalized outputs of ``plan`` when there is nothing to reduce or to write
    (M = 0, N = 0 or an empty batch axis): no backend runs; each output is filled with
    its reduction family's ``empty`` value (the identity: Sum 0, LogSumExp -inf,
    SumSoftMaxWeight 0, Min +inf, Max -inf, indices -1), shaped as the backends'."""
    red = plan.red
    return red.signed(jnp.full(t.shape, v, t.dtype) for t, v in zip(out_shapes(plan, geom), red.family.empty))


def reduce(plan, arrays, geom, *, supports, split_count, call, ranges=None):
    """The ``reduce`` of a compiled backend: check the dtype (``supports``), then one
    ``call(plan, arrays, geom)``, or, when ``split_count(plan, geom)`` says the output rows
    are too few to fill the machine, the j axis split in that many parts
    (:func:`split_columns`). Block-sparse calls (``ranges``: the plan's triplet, see
    ``tests/test_ranges_backends.py``) are one ``call(plan, arrays, geom, ranges=ranges)``:
    their blocks, not a split, decide the work.

    Raises:
      BackendError: the backend does not compute in the plan's dtype.
    """
    reason = supports(plan.dtype)
    if reason:
        raise BackendError(reason, plan.describe())
    if ranges is not None:
        return call(plan, arrays, geom, ranges=ranges)
    parts = split_count(plan, geom) if numerics.splits(plan) else 1
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
        a = a.reshape((1,) * (nb - batch_rank(v, a.ndim)) + a.shape)  # align batch axes
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
    offsets ``offsets``) into the outputs of the whole range: the family's ``merge``, on
    the family's values (Max: on -values)."""
    red = plan.red
    fold = red.family.merge
    if red.family is SUM and not numerics.is_default(plan):  # the parts' sums, compensated
        fold = numerics.merge_sum
    return red.signed(fold(red.signed(outs), offsets, plan.k))


# ---------------------------------------------------------------- shard_map's varying axes


def _varying(aval) -> frozenset:
    """The manual mesh axes ``aval`` varies over (``shard_map``'s check_vma typing)."""
    mat = getattr(aval, "mat", None)  # jax 0.10: ShapedArray.mat.varying; else .vma
    return frozenset(mat.varying if mat is not None else getattr(aval, "vma", ()))


def _vary(x, axes: frozenset):
    return lax.pcast(x, tuple(sorted(axes)), to="varying") if axes else x


def vary_like(tree, arrays):
    """Every leaf of ``tree`` cast to vary over the union of the manual axes ``arrays``
    vary over, as JAX's own operations do inside ``shard_map``: the operands themselves
    (the reduction's outputs, typed like its first operand, then vary over every axis an
    input varies over), or a fresh reduction state (a loop carry beside them)."""
    union = frozenset().union(*(_varying(jax.typeof(a)) for a in arrays))
    return jax.tree.map(lambda x: _vary(x, union - _varying(jax.typeof(x))), tree)
