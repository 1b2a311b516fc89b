"""``reduce``: plan a reduction, pick a backend, wrap it in a ``custom_vjp``.

A reduction call is described by a :class:`Plan` (hashable: interned formulas, the
reduction, K, the variables' signature, dtype, backend). Plans are canonical
j-reductions: a reduction over i is the j-reduction of the formula with i and j swapped.
For each plan we build, once, a ``jax.custom_vjp`` function of the bound arrays whose
backward pass is made of *other reductions* of symbolic derivatives (see
:mod:`jax_lazy.autodiff`), so gradients of any order go through the same backends.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from . import backends, memo
from .backends import common
from .autodiff import vjp
from .errors import BackendError, FormulaError, ShapeError
from .ir import I, J, P, Node, Var, substitute, to_string, variables
from .ir.evaluate import evaluate
from .ir.ops import Add, Concat, Exp, IntCst, Mult, Subtract, Sum
from .reductions import REDUCTIONS, Reduction


@dataclass(frozen=True)
class Plan:
    """A canonical (over j) reduction of ``formulas`` (F, and the weight W if any) whose
    variables, one per bound array, are ``variables`` (``Var`` nodes, index order)."""

    formulas: tuple
    red: Reduction
    k: Optional[int]
    variables: tuple
    dtype: str
    backend: str
    auto: bool = False  # backend chosen by "auto": the gradients' reductions choose theirs too

    def describe(self) -> str:
        """The reduction in KeOps notation, shared sub-formulas as bindings (linear size)."""
        return describe(self.formulas, self.red.name, self.k)


@dataclass(frozen=True)
class Geometry:
    """Sizes of one call: broadcast batch shape, M rows (i), N columns (j), dtype."""

    batch: tuple
    M: int
    N: int
    dtype: object


def describe(formulas, red_name: str, k, axis: Optional[int] = None) -> str:
    """A reduction as users wrote it, e.g. ``a = ...; Sum_Reduction(Exp(a) * a, axis=1)``."""
    tail = ("" if k is None else f", K={k}") + ("" if axis is None else f", axis={axis}")
    return to_string(*formulas, wrap=lambda texts: f"{red_name}_Reduction({', '.join(texts)}{tail})")


def geometry(plan: Plan, arrays, text=None) -> Geometry:
    """Batch shape and sizes of ``arrays`` bound to ``plan``'s variables; raises ShapeError
    (whose message shows ``text()``, by default the plan; built only on error)."""
    text = text or plan.describe
    sizes = {I: set(), J: set()}
    batches = []
    for v, a in zip(plan.variables, arrays):
        cat = v.attr[1]
        if a.ndim < (1 if cat == P else 2) or a.shape[-1] != v.dim:
            raise ShapeError(f"array of shape {a.shape} bound to {to_string(v)}", text)
        if cat == P:
            batches.append(a.shape[:-1])
        else:
            sizes[cat].add(a.shape[-2])
            batches.append(a.shape[:-2])
    for cat, name in ((I, "M"), (J, "N")):
        if len(sizes[cat]) > 1:
            raise ShapeError(f"{'i' if cat == I else 'j'}-variables disagree on {name}: {sorted(sizes[cat])}", text)
    try:
        batch = tuple(np.broadcast_shapes(*batches)) if batches else ()
    except ValueError:
        raise ShapeError(f"incompatible batch dimensions {batches}", text) from None
    M = sizes[I].pop() if sizes[I] else 1
    N = sizes[J].pop() if sizes[J] else 1
    return Geometry(batch, M, N, jnp.dtype(plan.dtype))


def swap_ij(node: Node) -> Node:
    """``node`` with its i- and j-variables exchanged (the transpose of the formula)."""
    return substitute(node, {v: _swap_var(v) for v in variables(node)})


def _swap_var(v: Node) -> Node:
    return v if v.attr[1] == P else Var(v.attr[0], v.dim, {I: J, J: I}[v.attr[1]])


def reduce(formulas, red_name: str, variables, arrays, axis: int, k=None, backend: str = "auto"):
    """Reduce formulas over the i (``axis=0``) or j (``axis=1``) axis.

    Args:
      formulas: ``(F,)`` or ``(F, W)`` with W the weight of LogSumExp / SumSoftMaxWeight.
      red_name: a key of :data:`jax_lazy.reductions.REDUCTIONS`.
      variables: one ``Var`` node per array, indices ``0..n-1``.
      arrays: i-variables ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters ``(*b, D)``.
      axis: 0 reduces over i (result indexed by j), 1 over j (result indexed by i).
      k: K of the KMin family.
      backend: "auto", or a backend name of :mod:`jax_lazy.backends`.

    Returns:
      A tuple of the user-visible outputs, each ``(*batch, M or N, ...)``.
    """
    red = REDUCTIONS[red_name]
    # Errors show the user's formula, not the transposed one; printed only if one is raised.
    text = functools.partial(describe, formulas, red_name, k, axis)
    if axis == 0:
        formulas = tuple(swap_ij(f) for f in formulas)
        variables = tuple(_swap_var(v) for v in variables)
    dtype = jnp.result_type(*arrays) if arrays else jnp.zeros(()).dtype
    arrays = tuple(a if a.dtype == dtype else a.astype(dtype) for a in arrays)  # weak scalars adopt it
    dtype = str(dtype)
    try:
        chosen = backends.resolve(backend, dtype)
    except BackendError as e:
        raise BackendError(str(e), text) from None
    plan = Plan(tuple(formulas), red, k, tuple(variables), dtype, chosen, auto=backend == "auto")
    if red.scalar and formulas[0].dim != 1:
        raise FormulaError(f"{red.name} needs a scalar formula, got dim {formulas[0].dim}", text)
    geom = geometry(plan, arrays, text)
    if red.uses_k and not 1 <= k <= geom.N:
        raise ShapeError(f"K = {k} must be between 1 and the reduced size {geom.N}", text)
    try:
        plan = plan if _empty(geom) else backends.with_kernels(plan, plan.auto)
    except BackendError as e:
        raise BackendError(e.message, text) from None
    outs = _reduction_fn(plan)(*arrays)
    return tuple(outs[p] for p in red.public)


@memo.lru(memo.PLANS)
def _reduction_fn(plan: Plan):
    """The ``custom_vjp`` function ``f(*arrays) -> finalized outputs`` of ``plan``.

    Its primal is a ``custom_vmap``: ``vmap`` turns into a leading batch dimension of the
    same reduction (one call, whatever the backend), not a loop or a batching of the
    backend's internals.
    """
    backend = backends.get(plan.backend)
    if os.environ.get("JAX_LAZY_DUMP"):  # one line per new plan: "show me the formula"
        print(f"[jax_lazy] plan {plan.backend}/{plan.dtype}: {plan.describe()}", file=sys.stderr)

    # jit: eager calls reuse one compiled executable per shape instead of re-tracing.
    impl = jax.jit(lambda *arrays: _run(backend, plan, arrays))

    @jax.custom_batching.custom_vmap
    def run(*arrays):
        return impl(*arrays)

    @run.def_vmap
    def run_batched(axis_size, in_batched, *arrays):
        # Align every array's batch axes to the common batch rank, then put the vmapped
        # axis in front (size 1 where the array is not batched): NumPy broadcasting does
        # the rest, in one reduction.
        own = [a.ndim - b - (1 if v.attr[1] == P else 2) for v, a, b in zip(plan.variables, arrays, in_batched)]
        nb = max(own, default=0)
        lifted = []
        for a, b, k in zip(arrays, in_batched, own):
            lead = (a.shape[0],) if b else (1,)
            lifted.append(a.reshape(lead + (1,) * (nb - k) + a.shape[b:]))
        return run(*lifted), (True,) * plan.red.kernel.outputs

    @jax.custom_vjp
    def f(*arrays):
        return run(*arrays)

    def fwd(*primals):
        arrays = tuple(p.value for p in primals)
        outs = f(*arrays)
        flags = tuple(() if p.perturbed else None for p in primals)  # static, via the pytree
        return outs, (arrays, outs, flags)

    def bwd(res, cts):
        arrays, outs, flags = res
        wanted = [v for v, fl in zip(plan.variables, flags) if fl is not None]
        grads = _backward(plan, arrays, outs, cts, wanted)
        return tuple(grads.get(v) for v in plan.variables)

    f.defvjp(fwd, bwd, symbolic_zeros=True)
    return f


def _run(backend, plan: Plan, arrays):
    """``backend.reduce``, except when an axis is empty: then every backend returns the
    same identities (:func:`backends.common.empty_outputs`) without building a kernel."""
    geom = geometry(plan, arrays)
    if _empty(geom):
        return common.empty_outputs(plan, geom)
    return backend.reduce(plan, arrays, geom)


def _empty(geom: Geometry) -> bool:
    """Whether an axis is empty: nothing to reduce (N = 0) or no output (M = 0, batch)."""
    return geom.M == 0 or geom.N == 0 or 0 in geom.batch


# ---------------------------------------------------------------- backward passes


def _is_zero_ct(ct) -> bool:
    return isinstance(ct, SymbolicZero) or ct is None or jnp.issubdtype(ct.dtype, jax.dtypes.float0)


def _sum_to(x, shape):
    """Sum ``x`` down to ``shape`` (undo NumPy broadcasting)."""
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(a for a, (n, s) in enumerate(zip(shape, x.shape)) if n == 1 and s != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _backward(plan: Plan, arrays, outs, cts, wanted) -> dict:
    """Cotangents (dict Var -> array shaped like its input) of the ``wanted`` variables."""
    red = plan.red
    live = [p for p in range(len(outs)) if not red.is_index(p) and not _is_zero_ct(cts[p])]
    if not wanted or not live:
        return {}
    if any(o.size == 0 for o in outs) or geometry(plan, arrays).N == 0:  # constant outputs
        return {v: jnp.zeros_like(arrays[v.attr[0]]) for v in wanted}

    def ct(p):  # the cotangent of output p, zeros when symbolic
        return outs[p] * 0 if _is_zero_ct(cts[p]) else cts[p]

    if red.grad == "select":
        return _select_backward(plan, arrays, outs, ct(0), wanted)
    n = len(plan.variables)
    F = plan.formulas[0]
    W = plan.formulas[1] if red.weighted else IntCst(1)
    G = Var(n, red_out_dim(plan), I)  # cotangent of the output, an i-variable
    R = Var(n + 1, outs[-1].shape[-1], I)  # saved output: lse / log-sum-exp
    if red.grad == "sum":
        seeds, extra = [(F, G)], ()
    elif red.grad == "lse":  # out^e = log sum_j exp(F_j) W_j^e
        E = Exp(Subtract(F, R))  # exp(F_j - out^e)
        seeds, extra = [(F, Sum(Mult(Mult(G, E), W))), (W, Mult(G, E))], (outs[0],)
    else:  # softmax: out = sum_j p_j W_j, p_j = exp(F_j - lse); d lse / dF_j = p_j
        p = Exp(Subtract(F, R))
        O, G2 = Var(n + 2, red_out_dim(plan), I), Var(n + 3, 1, I)
        seeds = [(F, Mult(p, Add(Sum(Mult(G, Subtract(W, O))), G2))), (W, Mult(G, p))]
        extra = (outs[1], outs[0], ct(1))
    ct_formulas = dict(zip(wanted, vjp(seeds, wanted)))
    g = ct(0)
    ext_vars = plan.variables + (G,) + tuple(Var(n + 1 + q, e.shape[-1], I) for q, e in enumerate(extra))
    ext_arrays = tuple(arrays) + (g,) + tuple(extra)
    grads = {}
    # One j-reduction for the i-variables and parameters, one i-reduction for the j-variables.
    for axis, cats in ((1, (I, P)), (0, (J,))):
        group = [v for v in wanted if v.attr[1] in cats]
        if not group:
            continue
        body = ct_formulas[group[0]]
        for v in group[1:]:
            body = Concat(body, ct_formulas[v])
        (total,) = reduce((body,), "Sum", ext_vars, ext_arrays, axis, backend="auto" if plan.auto else plan.backend)
        start = 0
        for v in group:
            part = total[..., start : start + v.dim]
            start += v.dim
            if v.attr[1] == P:
                part = part.sum(axis=-2)
            grads[v] = _sum_to(part, arrays[v.attr[0]].shape).astype(arrays[v.attr[0]].dtype)
    return grads


def red_out_dim(plan: Plan) -> int:
    """Dim of the main output of a Sum / LogSumExp / SumSoftMaxWeight plan."""
    return plan.formulas[1].dim if plan.red.weighted else plan.formulas[0].dim


def _select_backward(plan: Plan, arrays, outs, g, wanted) -> dict:
    """VJP of Min/Max/KMin values: the gradient flows to the selected (i, j) pairs only.

    With ``idx`` the selected j of each output entry (coordinate d of F), the cotangent
    of entry ``(i, s)`` is ``g[i, s] * e_d``; the symbolic VJP of F is evaluated on the
    M x S selected pairs (S = D, or K*D) and scattered back: O(M*K*D) work.
    """
    F = plan.formulas[0]
    D = F.dim
    geom = geometry(plan, arrays)
    batch, M, N, nb = geom.batch, geom.M, geom.N, len(geom.batch)
    idx = outs[1].reshape(batch + (M, -1))  # (*b, M, S)
    S = idx.shape[-1]
    g = jnp.broadcast_to(g, outs[0].shape).reshape(batch + (M, S))
    coord = jnp.arange(S) % D
    Gv = Var(len(plan.variables), D, I)
    env = {Gv: g[..., None] * jax.nn.one_hot(coord, D, dtype=g.dtype)}  # (*b, M, S, D)
    flat_idx = idx.reshape(batch + (M * S,))
    for v, a in zip(plan.variables, arrays):
        a = a.reshape((1,) * (nb - (a.ndim - (1 if v.attr[1] == P else 2))) + a.shape)
        if v.attr[1] == I:
            env[v] = a[..., :, None, :]
        elif v.attr[1] == J:
            full = jnp.broadcast_to(a, batch + a.shape[-2:])
            picked = jnp.take_along_axis(full, flat_idx[..., None], axis=-2)
            env[v] = picked.reshape(batch + (M, S, v.dim))
        else:
            env[v] = a[..., None, None, :]
    ct_formulas = vjp([(F, Gv)], wanted)
    values = evaluate(ct_formulas, env, geom.dtype)
    grads = {}
    for v, val in zip(wanted, values):
        val = jnp.broadcast_to(val, batch + (M, S, v.dim))
        shape = arrays[v.attr[0]].shape
        if v.attr[1] == I:
            out = val.sum(axis=-2)
        elif v.attr[1] == P:
            out = val.sum(axis=(-3, -2))
        else:
            B = int(np.prod(batch))
            scat = jax.vmap(lambda z, i, x: z.at[i].add(x))
            out = scat(jnp.zeros((B, N, v.dim), val.dtype), flat_idx.reshape(B, M * S), val.reshape(B, M * S, v.dim))
            out = out.reshape(batch + (N, v.dim))
        grads[v] = _sum_to(out, shape).astype(arrays[v.attr[0]].dtype)
    return grads
