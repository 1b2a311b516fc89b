"""The sharding rule of the reduction primitive: one reduction split over a device mesh.

XLA's SPMD partitioner cannot see inside a custom call: without a rule, every device
gathers every operand and computes the whole reduction. This module decides, from the
operands' shardings, how one reduction splits over the mesh (a :class:`Split`), and builds
the per-device computation:

- **rows** (the output axis, M: rows of the i-variables and of the outputs) sharded: each
  device reduces its own rows; no communication, and the outputs keep that sharding;
- **batch** axes sharded: the same, per batch entry;
- **columns** (the reduced axis, N: rows of the j-variables) sharded: each device reduces
  its own columns, then the partial outputs are merged across those mesh axes
  (:func:`combine`): ``psum`` for Sum; a max-shifted ``psum`` of exponentials for
  LogSumExp and SumSoftMaxWeight; for Min/Max/KMin (and their ``Arg`` variants) an
  all-gather of each device's M x K candidates merged by the family's own ``merge``, the
  local indices shifted to global ones (the shard's first column), with the tie rule of
  one device (the smallest index);
- feature axes and parameters are replicated (they are small), and so is an axis whose
  length the mesh axes do not divide.

A mesh axis serves one role: batch first, then rows, then columns, except when the rows and
the columns are sharded over the same mesh axes: then the j-variables' shards travel round
a ``ppermute`` ring past the i-shards (:func:`ring`), and memory per device stays
O((M + N) / devices).

Two entry points, one rule:

- meshes with ``Auto`` axes (shardings chosen by XLA's propagation, known only when the
  module is partitioned): the primitive's custom call (``cpu``, ``cuda``) lowers through
  ``custom_partitioning``
  (:func:`lowering`), whose Shardy sharding rule states the factors (batch, M, N as a
  reduction factor, replicated feature axes) and whose ``partition`` callback picks the
  split from the shardings XLA proposes;
- ``Explicit`` axes (shardings in the types, known at trace time): :func:`bind` expands the
  reduction into a ``jax.shard_map`` over those axes, so the jaxpr holds the per-device
  reduction and its collectives, and the outputs are typed with their sharding.

Inside ``jax.shard_map`` (every axis manual) a reduction is already per device: it is
bound as is, its outputs typed as varying over the inputs' manual axes (:func:`out_aval`).

Block-sparse reductions (``plan.ranges``; :mod:`jax_lazy.ranges`) split over batch axes
and rows only: their ranges arrays are replicated (split with their batch axes), each row
shard reads them shifted by its first row (:func:`jax_lazy.ranges.shift_rows`; the
backends clamp the blocks of other shards to nothing); the columns are never split (a
shard's blocks would need their column intervals rebased per column shard too), so the
j-variables are gathered whole on each device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.interpreters import mlir
from jax.sharding import NamedSharding, PartitionSpec

from . import ranges as ranges_mod
from .backends import common
from .ir import I, J, P
from .plan import Plan, batch_rank, out_shapes
from .ranges import geometry
from .reductions import KMIN, LSE, MIN, SOFTMAX, SUM, index_dtype


@dataclass(frozen=True)
class Split:
    """How one reduction is split over a mesh: the mesh axes (a tuple, empty when not
    split) of each broadcast batch axis, of the rows (M) and of the reduced columns (N)."""

    batch: tuple
    rows: tuple
    cols: tuple
    ring: int = 0  # > 0: the columns are split over the rows' axes too, this many shards


def _axes(entry) -> tuple:
    """A PartitionSpec entry as a tuple of mesh axis names."""
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _entry(axes: tuple):
    """A tuple of mesh axis names as a PartitionSpec entry."""
    return None if not axes else axes[0] if len(axes) == 1 else axes


def choose(plan: Plan, shapes, specs, mesh_shape) -> Split:
    """The split of ``plan`` on operands of ``shapes`` whose shardings are ``specs`` (one
    tuple of mesh-axis tuples per operand, one per dimension) on a mesh of ``mesh_shape``
    (axis name -> size). An axis is split only where its length is a multiple of the
    product of its mesh axes (and, for KMin, where each device keeps at least K columns)."""
    geom = geometry(plan, shapes)
    nb = len(geom.batch)
    used: set = set()

    def size(axes):
        return math.prod(mesh_shape[a] for a in axes)

    def divides(axes, length, fits=lambda n: True):
        return length % size(axes) == 0 and length >= size(axes) and fits(length // size(axes))

    def take(candidates, length, fits=lambda n: True):
        for axes in candidates:
            if axes and not used & set(axes) and divides(axes, length, fits):
                used.update(axes)
                return axes
        return ()

    batch = []
    for d in range(nb):
        cands = []
        for v, s, sp in zip(plan.variables, shapes, specs):
            k = d - (nb - batch_rank(v, len(s.shape)))
            if k >= 0 and s.shape[k] == geom.batch[d]:
                cands.append(sp[k])
        batch.append(take(cands, geom.batch[d]))
    rows = take([sp[-2] for v, sp in zip(plan.variables, specs) if v.attr[1] == I], geom.M)
    if plan.ranges:  # blocks over global columns: the columns stay whole (module docstring)
        return Split(tuple(batch), rows, ())
    enough = (lambda n: n >= plan.k) if plan.red.family is KMIN else (lambda n: True)
    jspecs = [sp[-2] for v, sp in zip(plan.variables, specs) if v.attr[1] == J]
    if rows and rows in jspecs and divides(rows, geom.N, enough):  # both sides on the same axes
        return Split(tuple(batch), rows, rows, ring=size(rows))
    return Split(tuple(batch), rows, take(jspecs, geom.N, enough))


def operand_specs(plan: Plan, shapes, split: Split) -> list:
    """The PartitionSpec each operand takes under ``split`` (size-1 broadcast axes and
    feature axes replicated)."""
    nb = len(split.batch)

    def lead(s, own):
        return [_entry(split.batch[nb - own + k]) if s.shape[k] != 1 else None for k in range(own)]

    specs = []
    for v, s in zip(plan.variables, shapes):
        own = batch_rank(v, len(s.shape))
        if v.attr[1] == P:
            specs.append(PartitionSpec(*lead(s, own), None))
        else:
            specs.append(PartitionSpec(*lead(s, own), _entry(split.rows if v.attr[1] == I else split.cols), None))
    for q, s in enumerate(shapes[len(plan.variables):]):  # ranges: split with their batch axes only
        own = ranges_mod.batch_rank(q, len(s.shape))
        specs.append(PartitionSpec(*lead(s, own), *(None,) * (len(s.shape) - own)))
    return specs


def output_specs(plan: Plan, shapes, split: Split) -> list:
    """The PartitionSpec of each finalized output: batch axes and rows as split."""
    lead = [_entry(a) for a in split.batch] + [_entry(split.rows)]
    return [PartitionSpec(*lead, *(None,) * (len(o.shape) - len(lead)))
            for o in out_shapes(plan, geometry(plan, shapes))]


# ---------------------------------------------------------------- merging across devices


def _logsumexp(lse, axes):
    """log sum over devices of exp(lse), shifted by the largest (a constant for the
    derivative: the result does not depend on it); ±inf and NaN as one device."""
    m = lax.stop_gradient(lax.pmax(lse, axes))
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    return m + jnp.log(lax.psum(jnp.exp(lse - m), axes))


def combine(plan: Plan, outs, axes: tuple, n_local: int) -> list:
    """The finalized outputs of the whole reduced axis from each device's outputs over its
    ``n_local`` columns (device k's first column: k * n_local along ``axes``).

    Sum: ``psum``. LogSumExp: ``_logsumexp``. SumSoftMaxWeight: the same for its lse,
    and each device's weighted average weighted by exp(lse_k - lse) (0 where the device's
    columns are all -inf). Min/Max/KMin: an all-gather of every device's candidates
    (M x D, or M x K x D values and indices), merged as the parts of one device's split
    columns (:func:`jax_lazy.backends.common.merge`): global indices, same tie rule.
    """
    family = plan.red.family
    if family is SUM:
        return [lax.psum(outs[0], axes)]
    if family is LSE:
        return [_logsumexp(outs[0], axes)]
    if family is SOFTMAX:
        avg, lse = outs
        total = _logsumexp(lse, axes)
        w = jnp.exp(lse - total)
        return [lax.psum(jnp.where(w == 0, jnp.zeros_like(avg), w * avg), axes), total]
    assert family in (MIN, KMIN), family
    gathered = [lax.all_gather(o, axes) for o in outs]
    offsets = jnp.arange(gathered[0].shape[0], dtype=index_dtype()) * n_local
    return list(common.merge(plan, gathered, offsets))


def per_device(plan: Plan, split: Split, reduce_local):
    """The per-device computation of ``plan`` under ``split``: ``reduce_local`` on the
    local operands, then :func:`combine` across the column axes (or :func:`ring`)."""
    if split.ring:
        return partial(ring, plan, split, reduce_local)
    if plan.ranges and split.rows:
        return partial(_shifted_rows, plan, split, reduce_local)
    if not split.cols:
        return reduce_local

    def body(*arrays):
        return combine(plan, reduce_local(*arrays), split.cols, geometry(plan, arrays).N)

    return body


def _shifted_rows(plan: Plan, split: Split, reduce_local, *operands):
    """A row shard of a ranges reduction: its ranges' row indices shifted by its first
    row (:func:`jax_lazy.ranges.shift_rows`)."""
    arrays, six = ranges_mod.split(plan, operands)
    first = lax.axis_index(split.rows) * geometry(plan, operands).M
    return reduce_local(*arrays, *ranges_mod.shift_rows(six, first))


def ring(plan: Plan, split: Split, reduce_local, *arrays):
    """Rows and columns split over the same mesh axes (``split.ring`` shards): the
    j-variables' shards travel round the ring (``ppermute``) past the fixed i-shards; each
    device reduces its rows against the shard it holds and merges the result into its
    running outputs (the family's ``merge``, global indices). ``ring - 1`` steps; memory
    per device stays O((M + N) / devices); each device receives N·D values in all."""
    axes, n = split.cols, split.ring
    me = lax.axis_index(axes)
    is_j = [v.attr[1] == J for v in plan.variables]
    n_local = geometry(plan, arrays).N
    perm = [(k, (k - 1) % n) for k in range(n)]  # device k receives the shard of k + 1

    outs = reduce_local(*arrays)
    own = (me * n_local).astype(index_dtype())
    outs = [o + own if plan.red.is_index(p) else o for p, o in enumerate(outs)]  # global indices
    blocks = list(arrays)
    # Unrolled (n is a mesh axis size): XLA can overlap each ppermute with the previous
    # step's reduction, and no while loop reaches XLA's loop simplifier (whose call
    # inliner stalled on custom-partitioned loops with deep source locations).
    for s in range(1, n):
        blocks = [lax.ppermute(b, axes, perm) if j else b for b, j in zip(blocks, is_j)]
        new = reduce_local(*blocks)
        offsets = jnp.stack([0, ((me + s) % n) * n_local]).astype(index_dtype())
        outs = list(common.merge(plan, [jnp.stack([o, q]) for o, q in zip(outs, new)], offsets))
    return outs


def _spec_axes(spec, ndim: int) -> tuple:
    """A PartitionSpec as one tuple of mesh axes per dimension."""
    spec = tuple(spec) + (None,) * (ndim - len(spec))
    return tuple(_axes(e) for e in spec)


# ---------------------------------------------------------------- Auto axes: custom_partitioning


def _partition(run, plan, mesh, arg_shapes, result_shape):
    """``custom_partitioning``'s partition callback: the split from the operands'
    shardings XLA proposes; XLA reshards the operands to what this returns."""
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arg_shapes]
    named = all(isinstance(a.sharding, NamedSharding) for a in arg_shapes)
    if named and not mesh.empty:
        specs = [_spec_axes(a.sharding.spec, len(a.shape)) for a in arg_shapes]
        split = choose(plan, shapes, specs, dict(mesh.shape))
    else:  # shardings without a mesh (no axis names for collectives): replicate
        devices = sorted(arg_shapes[0].sharding.device_set, key=lambda d: d.id)
        mesh = jax.sharding.Mesh(devices, ("devices",))
        split = Split(((),) * len(geometry(plan, shapes).batch), (), ())
    ins = [NamedSharding(mesh, s) for s in operand_specs(plan, shapes, split)]
    outs = [NamedSharding(mesh, s) for s in output_specs(plan, shapes, split)]
    return mesh, per_device(plan, split, partial(run, plan=plan)), outs, tuple(ins)


def _sharding_rule(plan, mesh, operand_types, result_types):
    """The Shardy rule of a reduction, from its operand and result types: broadcast batch
    axes and M pass through, N is a reduction factor, everything else (feature axes,
    size-1 broadcast axes, output tails) must stay replicated."""
    shapes = [tuple(mlir.ir.RankedTensorType(t).shape) for t in operand_types]
    geom = geometry(plan, [jax.ShapeDtypeStruct(s, plan.dtype) for s in shapes])
    nb = len(geom.batch)
    replicated = []

    def fresh():
        replicated.append(f"r{len(replicated)}")
        return replicated[-1]

    operands = []
    for v, s in zip(plan.variables, shapes):
        own = batch_rank(v, len(s))
        lead = [f"b{nb - own + k}" if s[k] == geom.batch[nb - own + k] else fresh() for k in range(own)]
        # a ranges reduction keeps its columns whole: N replicated, not a reduction factor
        axis = {I: ["m"], J: ["n"], P: []}[v.attr[1]]
        axis = [fresh()] if plan.ranges and axis == ["n"] else axis
        operands.append(lead + axis + [fresh()])
    for q, s in enumerate(shapes[len(plan.variables):]):  # ranges: batch axes, the rest replicated
        own = ranges_mod.batch_rank(q, len(s))
        lead = [f"b{nb - own + k}" if s[k] == geom.batch[nb - own + k] else fresh() for k in range(own)]
        operands.append(lead + [fresh() for _ in range(len(s) - own)])
    results = []
    for t in result_types:
        rank = mlir.ir.RankedTensorType(t).rank
        results.append([f"b{d}" for d in range(nb)] + ["m"] + [fresh() for _ in range(rank - nb - 1)])
    text = ", ".join(" ".join(f) for f in operands) + " -> " + ", ".join(" ".join(f) for f in results)
    extra = {"need_replication_factors": tuple(replicated)}
    if any(v.attr[1] == J for v in plan.variables) and not plan.ranges:
        extra["reduction_factors"] = ("n",)
    return text, extra


def lowering(run):
    """The primitive's lowering rule: ``run(*arrays, plan=plan)`` (one device's
    reduction) wrapped in ``custom_partitioning``, so that when the module is partitioned
    over several devices each gets its split (:func:`choose`); on one device, or inside
    ``shard_map``, it lowers as ``run``."""

    def fun(plan, *arrays):
        return list(run(*arrays, plan=plan))

    partitioned = custom_partitioning(fun, static_argnums=(0,))
    partitioned.def_partition(partial(_partition, run), sharding_rule=_sharding_rule)

    def lower(*arrays, plan):
        return partitioned(plan, *arrays)

    split, plain = mlir.lower_fun(lower, multiple_results=True), mlir.lower_fun(run, multiple_results=True)

    def rule(ctx, *args, plan):
        # Partitioned by XLA (jit over several devices): a split per device. One device,
        # inside shard_map (manual axes), or for jax.export (the partition callback is
        # Python: it cannot be serialized): one device's reduction.
        context = ctx.module_context.axis_context
        devices = getattr(context, "device_assignment", None)
        exporting = getattr(getattr(ctx.module_context, "lowering_parameters", None), "for_export", False)
        multi = devices is not None and len(devices) > 1 and not hasattr(context, "manual_axes") and not exporting
        # The jnp backend is plain JAX: XLA partitions it itself. (Wrapped, two of its
        # reductions in one module hang XLA's CPU compiler, jax 0.10.2: found by the tests.)
        native = plan.backend == "jnp"
        return (split if multi and args and not native else plain)(ctx, *args, plan=plan)

    return rule


def requires_devices(primitive) -> None:
    """Tell JAX that ``primitive`` lowers differently per device assignment (its
    lowering holds a ``custom_partitioning`` call), so that jit lowers it knowing its
    devices. JAX has no public hook for this; its own cuDNN attention uses this set."""
    from jax._src import dispatch  # noqa: PLC0415  (private: no public equivalent)

    dispatch.prim_requires_devices_during_lowering.add(primitive)


# ---------------------------------------------------------------- Explicit axes: shard_map


def _explicit(aval) -> tuple:
    """(mesh, spec axes) of an aval sharded over Explicit mesh axes, else None."""
    sharding = getattr(aval, "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or not getattr(mesh, "explicit_axes", ()):
        return None
    explicit = set(mesh.explicit_axes)
    axes = tuple(tuple(a for a in e if a in explicit) for e in _spec_axes(sharding.spec, len(aval.shape)))
    return (mesh, axes) if any(axes) else None


def expand_explicit(plan: Plan, arrays, bind_local):
    """``bind_local(*arrays)`` split over the Explicit mesh axes the operands are typed
    with, as a ``jax.shard_map``: operands resharded to their split's specs, outputs typed
    with theirs. Returns None when no operand is sharded over an Explicit axis."""
    found = [_explicit(jax.typeof(a)) for a in arrays]
    meshes = {f[0] for f in found if f is not None}
    if not meshes:
        return None
    (mesh,) = meshes  # JAX itself refuses operands on different meshes
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
    specs = [f[1] if f is not None else ((),) * len(a.shape) for f, a in zip(found, arrays)]
    split = choose(plan, shapes, specs, dict(mesh.shape))
    ins = operand_specs(plan, shapes, split)
    arrays = [jax.sharding.reshard(a, NamedSharding(mesh, s)) for a, s in zip(arrays, ins)]
    body = per_device(plan, split, bind_local)
    mapped = jax.shard_map(lambda *a: list(body(*a)), mesh=mesh, in_specs=tuple(ins),
                           out_specs=output_specs(plan, shapes, split), axis_names=set(mesh.explicit_axes))
    return mapped(*arrays)


# ---------------------------------------------------------------- inside shard_map: varying axes


def out_aval(like, shape, dtype):
    """The aval of an output of ``shape``, ``dtype``: replicated on the mesh of ``like``
    (an operand's aval, after :func:`~jax_lazy.backends.common.vary_like`) and varying over its manual axes."""
    mesh = getattr(getattr(like, "sharding", None), "mesh", None)
    if mesh is None:
        return jax.core.ShapedArray(shape, dtype)
    return like.update(shape=tuple(shape), dtype=jnp.dtype(dtype), weak_type=False,
                       sharding=NamedSharding(mesh, PartitionSpec()))
