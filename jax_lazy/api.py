"""``reduce``: check a reduction call, plan it, pick a backend, bind the primitive.

A reduction call is described by a :class:`~jax_lazy.plan.Plan` (hashable: interned
formulas, the reduction, K, the variables' signature, dtype, backend). Plans are
canonical j-reductions: a reduction over i is the j-reduction of the formula with i and j
swapped. The plan is bound as one ``jax_lazy_reduction`` primitive
(:mod:`jax_lazy.primitive`), whose rules make it compose with every JAX transformation.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from . import backends
from . import ranges as ranges_mod
from .errors import BackendError, FormulaError, ShapeError
from .options import OptionError
from .plan import Plan, describe, geometry, swap_ij, swap_var
from .primitive import bind
from .reductions import REDUCTIONS


def reduce(formulas, red_name: str, variables, arrays, axis: int, k=None, backend: str = "auto",
           dtype_acc: str = "auto", sum_scheme: str = "auto", ranges=None):
    """Reduce formulas over the i (``axis=0``) or j (``axis=1``) axis.

    Args:
      formulas: ``(F,)`` or ``(F, W)`` with W the weight of LogSumExp / SumSoftMaxWeight.
      red_name: a key of :data:`jax_lazy.reductions.REDUCTIONS`.
      variables: one ``Var`` node per array, indices ``0..n-1``.
      arrays: i-variables ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters ``(*b, D)``.
      axis: 0 reduces over i (result indexed by j), 1 over j (result indexed by i).
      k: K of the KMin family.
      backend: "auto", or a backend name of :mod:`jax_lazy.backends`.
      dtype_acc: accumulator dtype of the sum-type reductions, "auto", "float32" or
        "float64" (:mod:`jax_lazy.numerics`; docs/api.md, "Numerics options").
      sum_scheme: "auto", "block_sum", "kahan_scheme" or "direct_sum" (idem).
      ranges: None (dense), or KeOps' block-sparse 6-tuple ``(ranges_i, slices_i,
        redranges_j, ranges_j, slices_j, redranges_i)`` of integer arrays, batch axes
        broadcasting to the call's (:func:`jax_lazy.ranges.check`; docs/api.md,
        "Block-sparse reductions"): only the kept blocks are reduced, rows in none get
        the reduction's empty values.

    Returns:
      A tuple of the user-visible outputs, each ``(*batch, M or N, ...)``.

    Raises:
      ShapeError: arrays that do not match their variables or each other, or a bad K.
      FormulaError: a vector formula for a reduction that needs a scalar one.
      BackendError: a backend that cannot run here (the message says why).
      OptionError: a bad ``dtype_acc`` or ``sum_scheme`` (a ValueError).
      DtypeError, RangesError: bad ranges (:func:`jax_lazy.ranges.check`).
    """
    red = REDUCTIONS[red_name]
    # Errors show the user's formula, not the transposed one; printed only if one is raised.
    text = functools.partial(describe, formulas, red_name, k, axis)
    if axis == 0:
        formulas = tuple(swap_ij(f) for f in formulas)
        variables = tuple(swap_var(v) for v in variables)
    dtype = jnp.result_type(*arrays) if arrays else jnp.zeros(()).dtype
    arrays = tuple(a if a.dtype == dtype else a.astype(dtype) for a in arrays)  # weak scalars adopt it
    dtype = str(dtype)
    try:
        chosen = backends.resolve(backend, dtype)
    except BackendError as e:
        raise BackendError(str(e), text) from None
    ranges = ranges_mod.as_tuple(ranges, text)
    try:
        plan = Plan(tuple(formulas), red, k, tuple(variables), dtype, chosen, auto=backend == "auto",
                    dtype_acc=dtype_acc, sum_scheme=sum_scheme, ranges=ranges is not None)
    except OptionError as e:
        raise OptionError(e.message, text) from None
    if red.scalar and formulas[0].dim != 1:
        raise FormulaError(f"{red.name} needs a scalar formula, got dim {formulas[0].dim}", text)
    geom = geometry(plan, arrays, text)
    if ranges is not None:  # checked in the user's orientation, bound in the plan's
        M, N = (geom.M, geom.N) if axis == 1 else (geom.N, geom.M)
        ranges = ranges_mod.orient(ranges_mod.check(ranges, M, N, geom.batch, text), axis)
    if red.uses_k and not 1 <= k <= geom.N:
        raise ShapeError(f"K = {k} must be between 1 and the reduced size {geom.N}", text)
    try:
        plan = plan if geom.empty else backends.with_kernels(plan, plan.auto)
    except BackendError as e:
        raise BackendError(e.message, text) from None
    outs = bind(plan, arrays, ranges)
    return tuple(outs[p] for p in red.public)
