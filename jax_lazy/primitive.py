"""The reduction primitive: every jax_lazy reduction is one ``jax_lazy_reduction`` equation.

``reduction_p.bind(*arrays, plan=plan)`` returns the finalized outputs of a canonical
:class:`~jax_lazy.plan.Plan` (a reduction over j). Like JAX's own operations, the
primitive carries the rules that let every transformation compose with it:

- **abstract evaluation**: output shapes and dtypes from the plan and the input shapes;
- **lowering**: the plan's backend (``cpu`` / ``cuda``: the FFI custom call of its
  kernel; ``jnp``: the tiled ``lax.scan`` / ``lax.map`` lowering), traced into the module;
- **batching**: a vmapped axis becomes a leading batch axis of one reduction;
- **JVP**: the family's rule (:data:`JVP`): a Sum reduction of the formulas' directional
  derivatives (:func:`jax_lazy.autodiff.jvp`), linear in new tangent variables, or for
  Min/Max/KMin the derivative at the selected pairs only;
- **transpose**: a Sum reduction linear in some of its inputs (every tangent reduction;
  ``K @ b`` in ``b``) transposes into Sum reductions of the VJP formulas
  (:func:`jax_lazy.autodiff.vjp`): over j for i-variables and parameters, over i for
  j-variables.

Reverse mode is JAX's: linearize (the JVP rule) then transpose. Every derivative is a
reduction of the same primitive, so derivatives of any order, forward or reverse, go
through the same planning, code generation and cache.
"""

from __future__ import annotations

import sys
from functools import partial

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from . import backends, memo, sharding
from . import ranges as ranges_mod
from .autodiff import jvp, vjp
from .backends import common
from .errors import FormulaError
from .options import options
from .ir import I, J, P, Var, substitute, to_string, variables
from .ir.ops import Add, Concat, Exp, Mult, Subtract
from .ir.evaluate import evaluate
from .plan import Geometry, Plan, batch_rank, out_shapes, swap_ij, swap_var
from .ranges import geometry
from .reductions import FAMILIES, KMIN, LSE, MIN, REDUCTIONS, SOFTMAX, SUM

reduction_p = Primitive("jax_lazy_reduction")
reduction_p.multiple_results = True


def bind(plan: Plan, arrays, ranges=None) -> tuple:
    """Bind the reduction primitive: the finalized outputs of ``plan`` on ``arrays``.

    Args:
      plan: a canonical plan (a reduction over j), whose kernels the backend can get.
      arrays: one per variable, in index order, of the plan's dtype: i-variables
        ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters ``(*b, D)`` (batch axes
        broadcast).
      ranges: with ``plan.ranges``, the six int32 arrays in canonical orientation
        (:mod:`jax_lazy.ranges`), bound after the arrays.

    Returns:
      Every finalized output of the family (:func:`jax_lazy.plan.out_shapes`):
      ``(*batch, M, width)``, or ``(*batch, M, K, D)`` for KMin; indices are int32 (int64
      under x64).
    """
    operands = tuple(arrays) + (tuple(ranges) if plan.ranges else ())
    expanded = sharding.expand_explicit(plan, operands, partial(_bind, plan))
    return tuple(_bind(plan, *operands) if expanded is None else expanded)


def _bind(plan: Plan, *arrays) -> list:
    """The primitive bound on operands cast to vary alike over ``shard_map``'s manual axes."""
    return reduction_p.bind(*common.vary_like(arrays, arrays), plan=plan)


def run(*operands, plan: Plan):
    """What the primitive computes: ``backend.reduce``, except when an axis is empty:
    then every backend returns the same identities (:func:`backends.common.empty_outputs`)
    without building a kernel. A ranges plan passes its own triplet (its rows, reduced
    over j) as ``ranges=``."""
    geom = geometry(plan, operands)
    if geom.empty:
        return common.empty_outputs(plan, geom)
    # Derivative reductions are bound unchecked (a tangent reduction that is only
    # transposed never runs): the kernels are looked for here, when one does run.
    plan = backends.with_kernels(plan, plan.auto)
    _dump(plan)
    arrays, six = ranges_mod.split(plan, operands)
    extra = {} if six is None else {"ranges": six[:3]}
    return backends.get(plan.backend).reduce(plan, arrays, geom, **extra)


@memo.lru(memo.KERNELS)
def _dump(plan: Plan) -> None:
    if options().dump:  # one line per new plan: "show me the formula"
        print(f"[jax_lazy] plan {plan.backend}/{plan.dtype}: {plan.describe()}", file=sys.stderr)


@memo.lru(memo.PLANS)
def _executable(plan: Plan):
    """Eager calls: one jitted function per plan, so they reuse one compiled executable
    per shape instead of re-tracing."""
    return jax.jit(lambda *arrays: reduction_p.bind(*arrays, plan=plan))


def _abstract_eval(*avals, plan: Plan):
    like = avals[0] if avals else None  # inside shard_map: the outputs vary as the operands
    return [sharding.out_aval(like, s.shape, s.dtype) for s in out_shapes(plan, geometry(plan, avals))]


reduction_p.def_impl(lambda *arrays, plan: _executable(plan)(*arrays))
reduction_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(reduction_p, sharding.lowering(run))
sharding.requires_devices(reduction_p)


# ---------------------------------------------------------------- batching


def _batch(args, dims, *, plan: Plan):
    """vmap: the mapped axis goes in front (size 1 where an array is not mapped), after
    aligning every array's batch axes to the common batch rank; NumPy broadcasting does
    the rest, in one reduction. Vmapped ranges become a batch axis of the ranges."""
    mapped = [d is not None for d in dims]  # None: not mapped
    n = len(plan.variables)
    own = [batch_rank(v, a.ndim - m) for v, a, m in zip(plan.variables, args, mapped)]
    own += [ranges_mod.batch_rank(q, a.ndim - m) for q, (a, m) in enumerate(zip(args[n:], mapped[n:]))]
    nb = max(own, default=0)
    lifted = []
    for a, d, m, k in zip(args, dims, mapped, own):
        a = jnp.moveaxis(a, d, 0) if m else a[None]
        lifted.append(a.reshape(a.shape[:1] + (1,) * (nb - k) + a.shape[1:]))
    outs = _bind(plan, *lifted)
    return outs, [0] * len(outs)


batching.primitive_batchers[reduction_p] = _batch


# ---------------------------------------------------------------- derived reductions


def derived_sum(parent: Plan, formula, pairs, geom: Geometry, axis: int = 1, ranges=None):
    """Bind the Sum of ``formula`` over j (``axis=1``) or i (``axis=0``) for a derivative
    of ``parent``: same dtype, same backend policy, same block-sparse ranges.

    Args:
      parent: the plan being differentiated (canonical).
      formula: a formula over the variables of ``pairs``.
      pairs: maps variables to arrays; only those ``formula`` uses are bound (renumbered
        0..n-1), so the output's rows or batch axes may be 1 where the parent's are not.
      geom: the parent's geometry: the reduced axis counts even if ``formula`` has no
        variable indexed by it.
      ranges: the parent's six in its canonical orientation, or None; a sum over i
        (``axis=0``) reads them swapped.

    Returns:
      The sum, ``(*batch, rows, formula.dim)``.
    """
    used = variables(formula)
    reduced = J if axis == 1 else I
    size = geom.N if axis == 1 else geom.M
    if ranges is not None:
        # Blocks decide which pairs count: the reduction needs the parent's M and N (a
        # row's sum is over its own kept columns). Unused zero variables give them.
        used, pairs = _sized(used, pairs, geom)
    # Without a variable of the reduced axis the formula is constant along it: a Sum over
    # one column, times the parent's size (Σ_j G_i = N G_i).
    scale = 1 if any(v.attr[1] == reduced for v in used) else size
    renumber = {v: Var(q, v.dim, v.attr[1]) for q, v in enumerate(used)}
    formula = substitute(formula, renumber)
    vars_ = tuple(renumber[v] for v in used)
    if axis == 0:
        formula, vars_ = swap_ij(formula), tuple(swap_var(v) for v in vars_)
    backend = backends.resolve("auto", parent.dtype) if parent.auto else parent.backend
    # the parent's numerics options: its family is a sum (only Sums are differentiated
    # through derived_sum), so its accumulator and scheme apply to its derivatives' sums
    plan = Plan((formula,), REDUCTIONS["Sum"], None, vars_, parent.dtype, backend, auto=parent.auto,
                dtype_acc=parent.dtype_acc, sum_scheme=parent.sum_scheme, ranges=ranges is not None)
    (out,) = bind(plan, [pairs[v] for v in used], ranges_mod.orient(ranges, axis))
    return out if scale == 1 else out * scale


def _sized(used, pairs, geom: Geometry):
    """``used`` plus an unused i- (j-) variable of zeros ``(M, 1)`` (``(N, 1)``) where it
    has none, and ``pairs`` with them."""
    used, pairs = list(used), dict(pairs)
    n = max(v.attr[0] for v in pairs) + 1
    for cat, size in ((I, geom.M), (J, geom.N)):
        if not any(v.attr[1] == cat for v in used):
            v = Var(n, 1, cat)
            n += 1
            used.append(v)
            pairs[v] = jnp.zeros((size, 1), geom.dtype)
    return used, pairs


def _sum_to(x, shape):
    """Sum ``x`` down to ``shape`` (undo NumPy broadcasting)."""
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(a for a, (n, s) in enumerate(zip(shape, x.shape)) if n == 1 and s != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


# ---------------------------------------------------------------- JVP rules, one per family
# Each rule gets the plan, its primal outputs, ``dF`` (the tangent formulas of the plan's
# formulas F, and W if weighted, linear in new tangent variables), ``pairs`` (variable ->
# array, for the primals and the tangents), the primal's geometry and its ranges (the
# canonical six, or None: the tangent sums keep the same blocks). It returns one
# tangent per finalized output (None: zero). Plans are canonical: every sum is over j.


def _jvp_sum(plan, outs, dF, pairs, geom, six):
    return [derived_sum(plan, dF[0], pairs, geom, ranges=six)]


def _saved(pairs, *outs):
    """New i-variables bound to primal outputs (the residuals of a tangent formula)."""
    n = max(v.attr[0] for v in pairs) + 1
    vs = [Var(n + q, o.shape[-1], I) for q, o in enumerate(outs)]
    pairs.update(zip(vs, outs))
    return vs


def _jvp_lse(plan, outs, dF, pairs, geom, six):
    # out^e = log sum_j exp(F_j) W_j^e:  d out^e = sum_j exp(F_j - out^e) (W_j^e dF_j + dW_j^e)
    F, W = plan.formulas
    (R,) = _saved(pairs, outs[0])
    return [derived_sum(plan, Mult(Exp(Subtract(F, R)), Add(Mult(W, dF[0]), dF[1])), pairs, geom, ranges=six)]


def _jvp_softmax(plan, outs, dF, pairs, geom, six):
    # out = sum_j p_j W_j with p_j = exp(F_j - lse):  d out = sum_j p_j (dF_j (W_j - out) + dW_j),
    # and d lse = sum_j p_j dF_j.
    F, W = plan.formulas
    O, R = _saved(pairs, outs[0], outs[1])
    p = Exp(Subtract(F, R))
    body = Concat(Mult(p, Add(Mult(dF[0], Subtract(W, O)), dF[1])), Mult(p, dF[0]))
    t = derived_sum(plan, body, pairs, geom, ranges=six)
    return [t[..., : W.dim], t[..., W.dim :]]


def _jvp_select(plan, outs, dF, pairs, geom, six):
    """Min/Max/KMin: each value is F_d at one selected pair (i, j = idx), so its tangent
    is dF_d at that pair: evaluated on the M x S selected pairs (S = D, or K * D) with
    jax.numpy, O(M * K * D) work; JAX transposes the gathers into scatter-adds. A row
    that selected no pair (index -1: no kept column under ranges) has tangent 0."""
    values, idx = outs
    batch, M, nb = geom.batch, geom.M, len(geom.batch)
    D = plan.formulas[0].dim
    flat = jnp.broadcast_to(idx, batch + idx.shape[nb:]).reshape(batch + (M, -1))  # (*b, M, S)
    S = flat.shape[-1]
    env = {}
    for v, a in pairs.items():
        cat = v.attr[1]
        a = a.reshape((1,) * (nb - batch_rank(v, a.ndim)) + a.shape)
        if cat == I:
            env[v] = a[..., :, None, :]
        elif cat == J:
            full = jnp.broadcast_to(a, batch + a.shape[-2:])
            picked = jnp.take_along_axis(full, flat.reshape(batch + (M * S, 1)), axis=-2)
            env[v] = picked.reshape(batch + (M, S, v.dim))
        else:
            env[v] = a[..., None, None, :]
    (val,) = evaluate([dF[0]], env, geom.dtype)
    val = jnp.broadcast_to(val, batch + (M, S, D))
    coord = (jnp.arange(S) % D).reshape((1,) * nb + (1, S, 1))
    t = jnp.take_along_axis(val, jnp.broadcast_to(coord, batch + (M, S, 1)), axis=-1)
    t = jnp.where(flat[..., None] < 0, jnp.zeros_like(t), t)
    return [t.reshape(values.shape), None]


JVP = {SUM: _jvp_sum, LSE: _jvp_lse, SOFTMAX: _jvp_softmax, MIN: _jvp_select, KMIN: _jvp_select}
assert set(JVP) == set(FAMILIES), "a reduction family has no JVP rule"


def _jvp(primals, tangents, *, plan: Plan):
    outs = _bind(plan, *primals)
    n = len(plan.variables)
    # the ranges operands (after the variables' arrays) are integers: no tangent
    live = [(v, t) for v, t in zip(plan.variables, tangents) if type(t) is not ad.Zero]
    arrays, six = ranges_mod.split(plan, primals)
    pairs = dict(zip(plan.variables, arrays))
    tmap = {}
    for q, (v, t) in enumerate(live):
        tmap[v] = Var(n + q, v.dim, v.attr[1])
        pairs[tmap[v]] = t
    dF = jvp(plan.formulas, tmap)
    geom = geometry(plan, primals)
    if all(d.op == "Zero" for d in dF) or geom.empty:
        touts = [None] * len(outs)
    else:
        touts = JVP[plan.red.family](plan, outs, dF, pairs, geom, six)
    # A derivative reduction binds only the variables its formula uses: its rows or batch
    # axes may be 1 where the primal's are not (e.g. d(x_i + y_j) along y alone).
    return outs, [_zero_tangent(o) if t is None else jnp.broadcast_to(t, o.shape) for o, t in zip(outs, touts)]


def _zero_tangent(x):
    return ad.Zero(jax.core.ShapedArray(x.shape, x.dtype).to_tangent_aval())


ad.primitive_jvps[reduction_p] = _jvp


# ---------------------------------------------------------------- transposition


def _transpose(cts, *args, plan: Plan):
    """Cotangents of the inputs a Sum reduction is linear in (the undefined primals),
    given the output cotangent: one Sum reduction over j of the concatenated VJP formulas
    of the i-variables and parameters, one over i for the j-variables.

    Raises:
      FormulaError: the reduction is not a Sum, or its formula is not linear in them.
    """
    undefined = [v for v, a in zip(plan.variables, args) if ad.is_undefined_primal(a)]
    shapes = {v: (a.aval if ad.is_undefined_primal(a) else a) for v, a in zip(plan.variables, args)}
    text = plan.describe
    if plan.red.family is not SUM:
        raise FormulaError(f"{plan.red.name} is not linear in its inputs: it cannot be transposed", text)
    (ct,) = cts
    if type(ct) is ad.Zero or not undefined:
        return [None] * len(args)
    F = plan.formulas[0]
    G = Var(len(plan.variables), F.dim, I)  # the output cotangent, an i-variable
    forms = dict(zip(undefined, vjp([(F, G)], undefined)))
    for v, f in forms.items():
        bad = set(variables(f)) & set(undefined)
        if bad:
            raise FormulaError(f"the formula is not linear in {', '.join(map(to_string, sorted(bad, key=lambda u: u.attr[0])))}: "
                               "it cannot be transposed", text)
    six = ranges_mod.split(plan, args)[1]  # integers, never undefined
    geom = geometry(plan, [shapes[v] for v in plan.variables] + list(six or ()))
    grads = {}
    if geom.empty:
        grads = {v: jnp.zeros(shapes[v].shape, shapes[v].dtype) for v in undefined}
    pairs = {v: a for v, a in zip(plan.variables, args) if not ad.is_undefined_primal(a)}
    pairs[G] = ct
    # One j-reduction for the i-variables and parameters, one i-reduction for the
    # j-variables (under ranges: the same blocks, read through the transposed triplet).
    for axis, cats in ((1, (I, P)), (0, (J,))):
        group = [v for v in undefined if v.attr[1] in cats and v not in grads and forms[v].op != "Zero"]
        if not group:
            continue
        body = forms[group[0]]
        for v in group[1:]:
            body = Concat(body, forms[v])
        total = derived_sum(plan, body, pairs, geom, axis, ranges=six)
        start = 0
        for v in group:
            part = total[..., start : start + v.dim]
            start += v.dim
            if v.attr[1] == P:
                part = part.sum(axis=-2)
            # broadcast: the reduction binds only the variables its formula uses (see _jvp)
            grads[v] = jnp.broadcast_to(_sum_to(part, shapes[v].shape), shapes[v].shape).astype(shapes[v].dtype)
    wanted = set(undefined)
    return [grads.get(v, ad.Zero(shapes[v].to_tangent_aval())) if v in wanted else None for v in plan.variables] \
        + [None] * (len(args) - len(plan.variables))


ad.primitive_transposes[reduction_p] = _transpose
