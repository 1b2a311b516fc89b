"""Numerics options of a reduction: the accumulator dtype and the summation scheme.

``dtype_acc`` and ``sum_scheme`` (pykeops' names) say how the sums of the sum-type
reductions (Sum, LogSumExp and SumSoftMaxWeight, with their weights) are accumulated:

- ``dtype_acc``: "auto" (the compute type: float32 for float16, bfloat16 and float32
  data, float64 for float64) or "float32" / "float64", never narrower than the compute
  type. float64 accumulation of float32 data: each term is computed in float32, then
  added in float64 (the LSE rescale factors are computed in float32).
- ``sum_scheme``: "auto" (``block_sum`` for the sum-type reductions, ``direct_sum`` for
  the others), ``block_sum`` (partial sums of blocks of columns, then added together:
  what every backend did before these options; see docs/api.md, "Numerics options", for
  what a block is on each backend), ``direct_sum`` (one running sum per output where a
  backend has such a form: the cuda kernels; on cpu and jnp the same code as block_sum)
  or ``kahan_scheme`` (Neumaier's compensated running sum: the rounding error of every
  addition is kept in a second accumulator and added at the end; for LogSumExp and
  SumSoftMaxWeight both are rescaled together when the running max grows).

The options are fields of the :class:`~jax_lazy.plan.Plan` (resolved here, "auto"
replaced by its meaning), so they are part of every kernel and cache key, and the
derivative reductions of a plan, which are Sums, inherit them.

This module also holds the compensated arithmetic of the jnp backend and of the merge of
a split j axis (:func:`two_sum`, :func:`compensated_sum`).

Source: Neumaier, "Rundungsfehleranalyse einiger Verfahren zur Summation endlicher
Summen", ZAMM 54 (1974); Higham, *Accuracy and Stability of Numerical Algorithms*, §4.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp

from .options import OptionError
from .reductions import LSE, SOFTMAX, SUM
from .reductions import _exp_shift as exp_shift  # exp(F - m), special values as the families'

DTYPE_ACC = ("auto", "float32", "float64")
SUM_SCHEMES = ("auto", "block_sum", "kahan_scheme", "direct_sum")
SUM_FAMILIES = (SUM, LSE, SOFTMAX)  # the reductions whose state is a sum: the options apply
_WIDTH = {"float32": 32, "float64": 64}


def compute_dtype(dtype: str) -> str:
    """The dtype a kernel computes in: float32 for float16 and bfloat16 data (stored in
    their own dtype), else the data's."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def resolve(red, dtype: str, dtype_acc: str = "auto", sum_scheme: str = "auto") -> tuple[str, str]:
    """``(dtype_acc, sum_scheme)`` of reduction ``red`` (a :class:`Reduction`) on ``dtype``
    data with "auto" replaced by its meaning.

    Raises:
      OptionError (a ValueError): an unknown value; a ``dtype_acc`` narrower than the
        compute type; a ``dtype_acc`` other than the compute type, or ``block_sum`` /
        ``kahan_scheme``, for a reduction that is not a sum (Min, ArgKMin...).
    """
    if dtype_acc not in DTYPE_ACC:
        raise OptionError(f"dtype_acc={dtype_acc!r}: expected one of {', '.join(map(repr, DTYPE_ACC))}")
    if sum_scheme not in SUM_SCHEMES:
        raise OptionError(f"sum_scheme={sum_scheme!r}: expected one of {', '.join(map(repr, SUM_SCHEMES))}")
    compute = compute_dtype(dtype)
    sums = red.family in SUM_FAMILIES
    acc = compute if dtype_acc == "auto" else dtype_acc
    if compute in _WIDTH and _WIDTH[acc] < _WIDTH[compute]:
        raise OptionError(f"dtype_acc={dtype_acc!r} is narrower than the {dtype} data of {red.name}: "
                          f"the accumulator is at least the compute type ({compute})")
    if not sums and acc != compute:
        raise OptionError(f"dtype_acc={dtype_acc!r} applies to sum-type reductions (Sum, LogSumExp, "
                          f"SumSoftMaxWeight), not to {red.name}")
    if not sums and sum_scheme in ("block_sum", "kahan_scheme"):
        raise OptionError(f"sum_scheme={sum_scheme!r} applies to sum-type reductions (Sum, LogSumExp, "
                          f"SumSoftMaxWeight), not to {red.name}; use 'auto' or 'direct_sum'")
    scheme = ("block_sum" if sums else "direct_sum") if sum_scheme == "auto" else sum_scheme
    return acc, scheme


def is_default(plan) -> bool:
    """Whether ``plan`` accumulates as the kernels always did: in the compute type, in
    blocks (sum-type reductions; "direct_sum" on cpu and jnp is the same code)."""
    return plan.dtype_acc == compute_dtype(plan.dtype) and plan.sum_scheme != "kahan_scheme"


def splits(plan) -> bool:
    """Whether a compiled backend may split ``plan``'s j axis into parts whose finalized
    outputs are merged (:func:`jax_lazy.backends.common.merge`) without losing what its
    options buy: yes for default plans and for Sums (their parts are added compensated,
    :func:`merge_sum`); not for a LogSumExp or SumSoftMaxWeight with options, whose merge
    weighs the parts by exp(lse_part - lse), rounded in the data type (relative error
    ~eps |lse|, e.g. 1e-6 at lse = 13 in float32): those run unsplit (fewer threads when
    there are few output rows)."""
    return is_default(plan) or plan.red.family is SUM


# ---------------------------------------------------------------- compensated arithmetic (jnp)


def two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth's TwoSum,
    no branch; finite values). XLA does not reassociate floating-point sums."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def total(s, c):
    """The value of a compensated sum ``s + c``; ``s`` where it is not finite (an inf or
    NaN term makes the error terms NaN)."""
    return jnp.where(jnp.isfinite(s), s + c, s)


def compensated_sum(x, axis: int):
    """``(s, e)``: the sum of ``x`` along ``axis`` as a value and its rounding error,
    ``s + e`` within a few ulps of the exact sum (pairwise TwoSum: each level adds the
    two halves and keeps the exact errors, which are summed, being ~eps smaller)."""
    x = jnp.moveaxis(x, axis, 0)
    err = jnp.zeros_like(x)
    while x.shape[0] > 1:
        if x.shape[0] % 2:  # one zero more: halves of equal length
            x, err = (jnp.concatenate([a, jnp.zeros_like(a[:1])]) for a in (x, err))
        half = x.shape[0] // 2
        x, e = two_sum(x[:half], x[half:])
        err = err[:half] + err[half:] + e
    return x[0], err[0]


# ---------------------------------------------------------------- compensated state machines
# The kahan_scheme twins of the sum families' (init, update, finalize), on the conventions
# of jax_lazy.reductions (tiles L + (Tj, D)); the jnp backend runs them. Sum: (s, c);
# LogSumExp / SumSoftMaxWeight: (m, s, c), s and its error c rescaled together.
@dataclass(frozen=True)
class Compensated:
    init: Callable  # (L, D, Dw, K, dtype) -> state
    update: Callable  # (state, F, W, j0, K) -> state
    finalize: Callable  # state -> the family's finalized outputs


def _csum_init(L, D, Dw, K, dtype):
    return (jnp.zeros(L + (D,), dtype),) * 2


def _csum_update(state, F, W, j0, K):
    s, c = state
    t, e = compensated_sum(F, -2)  # the tile's sum and its error
    s, e2 = two_sum(s, t)
    return (s, c + (e + e2))


def _clse_init(L, D, Dw, K, dtype):
    return (jnp.full(L + (1,), -jnp.inf, dtype), jnp.zeros(L + (Dw,), dtype), jnp.zeros(L + (Dw,), dtype))


def _clse_update(state, F, W, j0, K):
    m, s, c = state
    m_tile = F.max(-2)
    t, e = compensated_sum(exp_shift(F, m_tile[..., None, :]) * W, -2)
    new = jnp.maximum(m, m_tile)  # the new running max (NaN propagates)
    a, b = exp_shift(m, new), exp_shift(m_tile, new)  # rescale both sums (and their errors) to it
    s, e2 = two_sum(s * a, t * b)
    return (new, s, c * a + e * b + e2)


def _clse_finalize(family):
    return lambda state: family.finalize((state[0], total(state[1], state[2])))


COMPENSATED = {
    SUM: Compensated(_csum_init, _csum_update, lambda state: (total(*state),)),
    LSE: Compensated(_clse_init, _clse_update, _clse_finalize(LSE)),
    SOFTMAX: Compensated(_clse_init, _clse_update, _clse_finalize(SOFTMAX)),
}
assert set(COMPENSATED) == set(SUM_FAMILIES)


def merge_sum(outs, offsets, K):
    """The merge of a split j axis for a Sum with non-default numerics: the parts' sums
    added with their rounding errors (:func:`compensated_sum`), so that the split costs
    no more than a few roundings of the parts' outputs."""
    s, e = compensated_sum(outs[0], 0)
    return (total(s, e),)
