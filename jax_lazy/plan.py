"""Plans: what one reduction call computes, independent of how (the backends' input).

A :class:`Plan` is hashable (interned formulas, the reduction record, K, the variables'
signature, dtype, backend) and always *canonical*: a reduction over j for each i. A
reduction over i is the j-reduction of the formula with i and j swapped (:func:`swap_ij`).
A :class:`Geometry` gives the sizes of one call. Both the API layer and every backend
import this module; no backend imports the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import numerics
from .errors import ShapeError
from .ir import I, J, P, Node, Var, substitute, to_string, variables
from .reductions import Reduction, index_dtype


@dataclass(frozen=True)
class Plan:
    """A canonical (over j) reduction of ``formulas`` (F, and the weight W if any) whose
    variables, one per bound array, are ``variables`` (``Var`` nodes, indices 0..n-1)."""

    formulas: tuple
    red: Reduction
    k: Optional[int]
    variables: tuple
    dtype: str
    backend: str
    auto: bool = False  # backend chosen by "auto": the derivatives' reductions choose theirs too
    dtype_acc: str = "auto"  # accumulator dtype, resolved ("auto" replaced): jax_lazy.numerics
    sum_scheme: str = "auto"  # "block_sum", "kahan_scheme" or "direct_sum", resolved likewise
    ranges: bool = False  # block-sparse: the call carries ranges (jax_lazy.ranges); other kernels

    def __post_init__(self):
        # resolved here, so that equal options make equal plans (one kernel), and checked
        acc, scheme = numerics.resolve(self.red, self.dtype, self.dtype_acc, self.sum_scheme)
        object.__setattr__(self, "dtype_acc", acc)
        object.__setattr__(self, "sum_scheme", scheme)

    def describe(self) -> str:
        """The reduction in KeOps notation, shared sub-formulas as bindings (linear size)."""
        return describe(self.formulas, self.red.name, self.k)

    def __repr__(self) -> str:  # as jaxprs print the reduction primitive's parameter
        extra = "" if numerics.is_default(self) else f" acc={self.dtype_acc} {self.sum_scheme}"
        extra += " ranges" if self.ranges else ""
        return f"Plan({self.backend}/{self.dtype}{extra}: {self.describe()})"


@dataclass(frozen=True)
class Geometry:
    """Sizes of one call: broadcast batch shape, M rows (i), N columns (j), dtype."""

    batch: tuple
    M: int
    N: int
    dtype: object

    @property
    def empty(self) -> bool:
        """Whether an axis is empty: nothing to reduce (N = 0) or no output (M = 0, batch)."""
        return self.M == 0 or self.N == 0 or 0 in self.batch


def describe(formulas, red_name: str, k, axis: Optional[int] = None) -> str:
    """A reduction as users wrote it, e.g. ``a = ...; Sum_Reduction(Exp(a) * a, axis=1)``."""
    tail = ("" if k is None else f", K={k}") + ("" if axis is None else f", axis={axis}")
    return to_string(*formulas, wrap=lambda texts: f"{red_name}_Reduction({', '.join(texts)}{tail})")


def batch_rank(v: Node, ndim: int) -> int:
    """How many leading batch axes an array of rank ``ndim`` bound to ``v`` has: all but
    the last two for i- and j-variables ``(*b, rows, D)``, all but the last for
    parameters ``(*b, D)``."""
    return ndim - (1 if v.attr[1] == P else 2)


def geometry(plan: Plan, arrays, text=None) -> Geometry:
    """Batch shape and sizes of ``arrays`` (or abstract values) bound to ``plan``'s
    variables; raises ShapeError (whose message shows ``text()``, by default the plan;
    built only on error)."""
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


def out_shapes(plan: Plan, geom: Geometry) -> list:
    """The finalized outputs of ``plan`` (``jax.ShapeDtypeStruct`` each, before the user's
    selection ``red.public``): ``(*batch, M, width)``, or ``(*batch, M, K, D)`` for KMin."""
    lead = geom.batch + (geom.M,)
    tails = plan.red.family.tails(plan.formulas, plan.k)
    return [jax.ShapeDtypeStruct(lead + t, index_dtype() if plan.red.is_index(p) else geom.dtype)
            for p, t in enumerate(tails)]


def swap_ij(node: Node) -> Node:
    """``node`` with its i- and j-variables exchanged (the transpose of the formula)."""
    return substitute(node, {v: swap_var(v) for v in variables(node)})


def swap_var(v: Node) -> Node:
    """The variable ``v`` with category i <-> j (parameters unchanged)."""
    return v if v.attr[1] == P else Var(v.attr[0], v.dim, {I: J, J: I}[v.attr[1]])
