"""Reductions as data: identity, update, combine, finalize, and how to differentiate.

Every reduction runs in canonical form: over the j axis, for each i (a reduction over i
is a j-reduction of the formula with the i and j categories swapped). A *state* holds
the partial result of some j's for each i; any backend folds tiles of j into it with
``update`` and can merge the states of disjoint j-ranges with ``combine`` (threads, GPU
blocks, devices), then ``finalize`` turns the state into the outputs.

Array conventions (``L`` = the leading axes of a block of rows, e.g. ``(*batch, Ti)``):
  F tile  ``L + (Tj, D)``; the weight tile, if any, ``L + (Tj, Dw)``;
  j0      index of the tile's first column; columns past N are already padded with
          ``Family.pad``.

A family of reductions shares one state machine (a :class:`Family`): Min, ArgMin and
Min_ArgMin all track ``(value, index)`` and differ in which outputs the user sees; Max
runs Min on ``-F``. The extra outputs (the index of a Min, the log-sum-exp of a softmax)
are what the VJP needs. A family is one record: its state machine, the formulas a kernel
evaluates per pair (``roots``), how the outputs of disjoint column ranges merge
(``merge``) and which outputs are indices; every backend keys its own per-family table
(``EMIT``, the primitive's ``JVP``) by these records, and checks at import that it covers
:data:`FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax import lax

from .ir.ops import Concat, IntCst, Minus


def index_dtype():
    """int64 under ``jax_enable_x64``, else int32."""
    return jax.dtypes.canonicalize_dtype(jnp.int64)


@dataclass(frozen=True)
class Family:
    """A reduction family: its state machine and what every backend needs to know of it.

    ``roots`` maps the plan's formulas (F, and W if weighted) to the formulas evaluated per
    pair (i, j): F, and the weights the state sums (Dw = the second root's dim, else 1).
    ``merge`` maps finalized outputs of disjoint column ranges, stacked on a new axis 0,
    with their first columns ``offsets`` (int array, one per range) to the outputs of the
    whole range. Neither knows of Max's negation (:class:`Reduction` applies it).
    """

    name: str  # for messages and reprs
    init: Callable  # (L, D, Dw, K, dtype) -> state
    update: Callable  # (state, F, W, j0, K) -> state
    combine: Callable  # (state, state, K) -> state
    finalize: Callable  # (state) -> tuple of outputs, each L + (...)
    pad: float  # value of F on padded columns: contributes nothing
    empty: tuple  # each finalized output over an empty axis (N = 0): the identity, -1 for indices
    tails: Callable  # (formulas, K) -> each finalized output's shape after the (*batch, M) axes
    roots: Callable  # (formulas) -> the per-pair formulas: (F,) or (F, weights)
    merge: Callable  # (outputs, offsets, K) -> outputs
    outputs: int = 1  # number of finalized outputs
    index: tuple = ()  # positions of the finalized outputs that hold indices (index_dtype())

    def __repr__(self) -> str:
        return f"Family({self.name})"


def _first(formulas):
    return formulas[:1]


# ---------------------------------------------------------------- Sum
def _sum_init(L, D, Dw, K, dtype):
    return (jnp.zeros(L + (D,), dtype),)


SUM = Family(
    name="Sum",
    init=_sum_init,
    update=lambda s, F, W, j0, K: (s[0] + F.sum(-2),),
    combine=lambda a, b, K: (a[0] + b[0],),
    finalize=lambda s: s,
    pad=0.0,
    empty=(0.0,),
    tails=lambda fs, K: ((fs[0].dim,),),
    roots=_first,
    merge=lambda outs, offsets, K: (outs[0].sum(0),),
)


# ---------------------------------------------------------------- LogSumExp family
# State (m, s): running max m of F (L + (1,)), and s = sum_j exp(F_j - m) w_j (L + (Dw,)).
# Special values as jax.nn.logsumexp: a NaN makes m or s NaN for good; a +inf column is a
# maximum with term exp(0) = 1, so the result is +inf (the softmax is NaN there, as
# jax.nn.softmax: finalize); all -inf (or no column) leaves m = -inf, s = 0: -inf.
def _lse_init(L, D, Dw, K, dtype):
    return (jnp.full(L + (1,), -jnp.inf, dtype), jnp.zeros(L + (Dw,), dtype))


def _finite_or_zero(m):
    return jnp.where(jnp.isneginf(m), jnp.zeros_like(m), m)


def _exp_shift(F, m):
    """exp(F - m) for F <= m, the running max: 1 where F = m = +inf (inf - inf would be
    NaN), 0 where F = -inf (also when m = -inf), NaN where F or m is NaN."""
    return jnp.where(jnp.isposinf(F), jnp.ones_like(F), jnp.exp(F - _finite_or_zero(m)))


def _lse_combine(a, b, K):
    m = jnp.maximum(a[0], b[0])  # new running max (NaN propagates)
    return (m, a[1] * _exp_shift(a[0], m) + b[1] * _exp_shift(b[0], m))


def _lse_update(s, F, W, j0, K):
    m_tile = F.max(-2)  # max over the tile
    shifted = _exp_shift(F, m_tile[..., None, :])  # in [0, 1], or NaN
    return _lse_combine(s, (m_tile, (shifted * W).sum(-2)), K)


def _softmax_finalize(s):
    """s_W / s_1 (NaN where a column is +inf, as jax.nn.softmax; 0 / 0 = NaN where every
    column is -inf) and the log-sum-exp m + log s_1."""
    avg = jnp.where(jnp.isposinf(s[0]), jnp.nan, s[1][..., 1:] / s[1][..., :1])
    return (avg, s[0] + jnp.log(s[1][..., :1]))


def _lse_merge(outs, offsets, K):
    return (jax.nn.logsumexp(outs[0], axis=0),)  # log sum_parts exp(lse_part)


def _softmax_merge(outs, offsets, K):
    lse = jax.nn.logsumexp(outs[1], axis=0)
    w = jnp.exp(outs[1] - lse)  # weights exp(lse_part - lse); NaN where lse is NaN or +-inf: so is the result
    # a part whose columns are all -inf has weight 0 and average 0 / 0: it adds nothing
    return (jnp.where(w == 0, 0, w * outs[0]).sum(0), lse)


LSE = Family(
    name="LogSumExp",
    init=_lse_init,
    update=_lse_update,
    combine=_lse_combine,
    finalize=lambda s: (s[0] + jnp.log(s[1]),),  # log sum_j exp(F_j) w_j
    pad=-jnp.inf,
    empty=(-jnp.inf,),  # log 0
    tails=lambda fs, K: ((fs[1].dim,),),
    roots=lambda fs: fs[:2],
    merge=_lse_merge,
)

# SumSoftMaxWeight: the same state with weights (1, W) (the normaliser and the weighted
# sums share one max); outputs s_W / s_1 and the lse.
SOFTMAX = Family(
    name="SumSoftMaxWeight",
    init=_lse_init,
    update=_lse_update,
    combine=_lse_combine,
    finalize=_softmax_finalize,
    pad=-jnp.inf,
    empty=(0.0, -jnp.inf),  # an empty weighted sum, not 0 / 0
    tails=lambda fs, K: ((fs[1].dim,), (1,)),
    roots=lambda fs: (fs[0], Concat(IntCst(1), fs[1])),
    merge=_softmax_merge,
    outputs=2,
)


# ---------------------------------------------------------------- Min / ArgMin family
# State (v, k): smallest value and its index, per coordinate. Ties go to the smallest index.
def _min_init(L, D, Dw, K, dtype):
    return (jnp.full(L + (D,), jnp.inf, dtype), jnp.full(L + (D,), jnp.iinfo(index_dtype()).max, index_dtype()))


def _min_combine(a, b, K):
    # NaN propagates (it wins, as in jnp.min); among equal values or NaNs, the smaller index.
    a_nan, b_nan = jnp.isnan(a[0]), jnp.isnan(b[0])
    first = b[1] < a[1]
    take_b = jnp.where(a_nan | b_nan, b_nan & (~a_nan | first), (b[0] < a[0]) | ((b[0] == a[0]) & first))
    return (jnp.where(take_b, b[0], a[0]), jnp.where(take_b, b[1], a[1]))


def _min_update(s, F, W, j0, K):
    k = jnp.argmin(F, axis=-2)  # first occurrence: the smallest index
    v = jnp.take_along_axis(F, k[..., None, :], axis=-2)[..., 0, :]
    return _min_combine(s, (v, (k + j0).astype(index_dtype())), K)


def _shifted(outs, offsets):
    """Values and indices of parts (Min and KMin merges): each part's indices shifted by
    its first column, and where a part left a slot unfilled (index -1: fewer columns than
    K), the maximum index, which sorts last."""
    shift = offsets.reshape((-1,) + (1,) * (outs[1].ndim - 1))
    unfilled = outs[1] < 0
    return outs[0], jnp.where(unfilled, jnp.iinfo(outs[1].dtype).max, outs[1] + shift), unfilled


def _fold(combine, values, idx, K):
    """The parts' states folded with ``combine`` (few parts: a Python loop)."""
    state = (values[0], idx[0])
    for k in range(1, values.shape[0]):
        state = combine(state, (values[k], idx[k]), K)
    return state


def _min_merge(outs, offsets, K):
    values, idx, _ = _shifted(outs, offsets)
    return _fold(_min_combine, values, idx, K)


MIN = Family(name="Min", init=_min_init, update=_min_update, combine=_min_combine, finalize=lambda s: s, pad=jnp.inf,
             empty=(jnp.inf, -1), tails=lambda fs, K: ((fs[0].dim,), (fs[0].dim,)),  # -1: no column
             roots=_first, merge=_min_merge, outputs=2, index=(1,))


# ---------------------------------------------------------------- KMin / ArgKMin family
# State (v, k): the K smallest values of each coordinate with their indices, stored
# L + (D, K), in the order of a stable jnp.argsort: ascending, NaN last, ties (+0 and -0
# included) to the smallest index. Every index is then a real column as soon as K <= N:
# padded columns are NaN with indices past N, and the initial slots (NaN, max index) sort
# after them.
def _kmin_init(L, D, Dw, K, dtype):
    idx = index_dtype()
    return (jnp.full(L + (D, K), jnp.nan, dtype), jnp.full(L + (D, K), jnp.iinfo(idx).max, idx))


def _sort_key(v):
    """v with -0 as +0 and every NaN as the positive NaN: lax.sort's total order would put
    -0 before +0 and a NaN with its sign bit set first."""
    return jnp.where(jnp.isnan(v), jnp.nan, jnp.where(v == 0, jnp.zeros_like(v), v))


def _kmin_combine(a, b, K):
    v = jnp.concatenate([a[0], b[0]], -1)
    k = jnp.concatenate([a[1], b[1]], -1)
    _, k, v = lax.sort((_sort_key(v), k, v), dimension=v.ndim - 1, num_keys=2)
    return (v[..., :K], k[..., :K])


def _ordered_int(v):
    """Integers in the order of :func:`_sort_key`: its bits, negative values' magnitude
    bits flipped (NaN, positive, comes after +inf)."""
    b = lax.bitcast_convert_type(_sort_key(v), jnp.dtype(f"int{8 * v.dtype.itemsize}"))
    return jnp.where(b < 0, b ^ jnp.iinfo(b.dtype).max, b)


def _k_smallest(v, K):
    """Positions of the K smallest of v (last axis) in the order of :func:`_sort_key`, by
    lax.top_k, which puts equal keys' lower index first. Without NaN the key is the value
    itself (XLA's fast float TopK); a NaN needs the integer key (NaN after +inf)."""
    fast = lambda v: lax.top_k(-_sort_key(v), K)[1]  # noqa: E731
    exact = lambda v: lax.top_k(~_ordered_int(v), K)[1]  # noqa: E731  (~ reverses the order)
    return lax.cond(jnp.isnan(v).any(), exact, fast, v)


def _kmin_update(s, F, W, j0, K):
    v = jnp.swapaxes(F, -1, -2)  # L + (D, Tj)
    if v.shape[-1] > K:  # the tile's own K smallest first
        k = _k_smallest(v, K)
        v = jnp.take_along_axis(v, k, -1)
    else:
        k = jnp.broadcast_to(jnp.arange(v.shape[-1]), v.shape)
    return _kmin_combine(s, (v, (k + j0).astype(index_dtype())), K)


def _kmin_merge(outs, offsets, K):
    values, idx, unfilled = _shifted(outs, offsets)
    values = jnp.where(unfilled, jnp.nan, values)  # an unfilled slot is (NaN, max index): the initial state's
    swap = lambda a: jnp.swapaxes(a, -1, -2)  # noqa: E731  (finalized (..., K, D), states (..., D, K))
    values, idx = _fold(_kmin_combine, swap(values), swap(idx), K)
    return (swap(values), swap(idx))


KMIN = Family(
    name="KMin",
    init=_kmin_init,
    update=_kmin_update,
    combine=_kmin_combine,
    finalize=lambda s: (jnp.swapaxes(s[0], -1, -2), jnp.swapaxes(s[1], -1, -2)),  # L + (K, D)
    pad=jnp.nan,
    empty=(jnp.inf, -1),  # K <= N: only seen with no output rows
    tails=lambda fs, K: ((K, fs[0].dim), (K, fs[0].dim)),
    roots=_first,
    merge=_kmin_merge,
    outputs=2,
    index=(1,),
)


FAMILIES = (SUM, LSE, SOFTMAX, MIN, KMIN)  # every family: tables keyed by family cover these


# ---------------------------------------------------------------- the reductions
@dataclass(frozen=True)
class Reduction:
    """A user-facing reduction: a family plus which of its outputs the user sees.

    ``grad`` names the VJP recipe of :mod:`jax_lazy.api`: "sum", "lse", "softmax",
    "select" (through the selected indices: Min/Max/KMin and the value of the _arg
    variants), or None (index outputs only: the gradient is zero).
    """

    name: str
    family: Family
    public: tuple  # positions, in the finalized outputs, of what the user gets
    grad: Optional[str]
    negate: bool = False  # run on -F and negate the values (Max from Min): roots() and signed()
    weighted: bool = False  # takes a weight formula (LogSumExp with weight, SumSoftMaxWeight)
    scalar: bool = False  # F must be scalar (dim 1)
    uses_k: bool = False  # takes K (KMin family)

    def is_index(self, pos: int) -> bool:
        """Whether finalized output ``pos`` holds indices."""
        return pos in self.family.index

    def roots(self, formulas) -> tuple:
        """The formulas every backend evaluates per pair (i, j): the family's roots of
        ``formulas`` (F, and W if weighted), with F negated for Max."""
        F, *rest = formulas
        return self.family.roots((Minus(F) if self.negate else F, *rest))

    def signed(self, outputs) -> tuple:
        """The finalized outputs of the family (run on ``roots``) as this reduction's:
        the values (not the indices) negated for Max."""
        if not self.negate:
            return tuple(outputs)
        return tuple(o if self.is_index(p) else -o for p, o in enumerate(outputs))


# fmt: off
REDUCTIONS = {r.name: r for r in [
    Reduction("Sum",              SUM,     (0,),   "sum"),
    Reduction("LogSumExp",        LSE,     (0,),   "lse",     weighted=True, scalar=True),
    Reduction("SumSoftMaxWeight", SOFTMAX, (0,),   "softmax", weighted=True, scalar=True),
    Reduction("Min",              MIN,     (0,),   "select"),
    Reduction("ArgMin",           MIN,     (1,),   None),
    Reduction("Min_ArgMin",       MIN,     (0, 1), "select"),
    Reduction("Max",              MIN,     (0,),   "select",  negate=True),
    Reduction("ArgMax",           MIN,     (1,),   None,      negate=True),
    Reduction("Max_ArgMax",       MIN,     (0, 1), "select",  negate=True),
    Reduction("KMin",             KMIN,    (0,),   "select",  uses_k=True),
    Reduction("ArgKMin",          KMIN,    (1,),   None,      uses_k=True),
    Reduction("KMin_ArgKMin",     KMIN,    (0, 1), "select",  uses_k=True),
]}
# fmt: on
