"""The op table of the tests: one row per op / derived op / operator spelling.

A row says how to build a formula from LazyArray operands (``build``), the same
formula written independently against an array namespace (``ref(xp, *operands)``,
operands broadcast to a common ``(..., M, N)`` prefix, vector axis last; see
``oracle.py``), the operands' vector dims, their categories (i, j or parameter), the
domain each operand is sampled from, and whether the formula is differentiable at
those samples (piecewise-constant ops are checked for a zero gradient instead).

``test_ops.py`` evaluates every row forward; ``test_grad.py`` checks the gradients of
the differentiable ones; ``test_ops.test_table_covers_every_op`` fails when an op of
``jax_lazy.ir.OPS`` is reached by no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import oracle as o
from jax_lazy import LazyArray
from jax_lazy.ir import derived


@dataclass(frozen=True)
class Row:
    name: str
    build: Callable  # (*LazyArray) -> LazyArray
    ref: Callable  # (xp, *arrays) -> array
    dims: tuple  # vector dim of each operand
    domains: tuple  # sampling domain of each operand (see DOMAINS)
    cats: str  # category of each operand: "i", "j" or "p"
    diff: bool  # differentiable at the sampled points

    def __repr__(self):
        return self.name


ROWS: list[Row] = []


def row(name, build, ref, dims=(3, 3), dom="any", cats=None, diff=True):
    n = len(dims)
    domains = (dom,) * n if isinstance(dom, str) else tuple(dom)
    cats = cats or "ijp"[:n]
    assert len(domains) == n and len(cats) == n, name
    assert name not in {r.name for r in ROWS}, name
    ROWS.append(Row(name, build, ref, tuple(dims), domains, cats, diff))


# ---------------------------------------------------------------- sampling domains


def _clampx(rng, shape):
    """Away from the clamp bounds used below (+-0.5, [-1, -0.6], [0.6, 1])."""
    parts = np.stack([rng.uniform(-2.0, -1.2, shape), rng.uniform(-0.3, 0.3, shape), rng.uniform(1.2, 2.0, shape)])
    return np.take_along_axis(parts, rng.integers(0, 3, (1,) + shape), 0)[0]


def _sym(rng, shape):
    """Symmetric matrices (last axis d*d, row-major)."""
    d = int(round(np.sqrt(shape[-1])))
    assert d * d == shape[-1]
    a = rng.normal(size=shape[:-1] + (d, d))
    return ((a + np.swapaxes(a, -1, -2)) / 2).reshape(shape)


DOMAINS = {
    "any": lambda rng, s: rng.normal(0.0, 0.8, s),
    "pos": lambda rng, s: rng.uniform(0.5, 2.0, s),
    "away0": lambda rng, s: rng.choice([-1.0, 1.0], s) * rng.uniform(0.4, 1.5, s),
    "int": lambda rng, s: rng.integers(-1, 2, s).astype(np.float64),  # exact ties for comparisons
    "zeros": lambda rng, s: rng.uniform(0.5, 2.0, s) * (rng.random(s) < 0.6),  # exact zeros
    "signed_zeros": lambda rng, s: rng.integers(-1, 2, s) * rng.uniform(0.5, 2.0, s),
    "clampx": _clampx,
    "lo": lambda rng, s: rng.uniform(-1.0, -0.6, s),
    "hi": lambda rng, s: rng.uniform(0.6, 1.0, s),
    "idx": lambda rng, s: rng.integers(-1, 5, s) + rng.uniform(-0.3, 0.3, s),  # away from x.5
    "sym": _sym,
    "sorted": lambda rng, s: np.sort(rng.uniform(-1.5, 1.5, s), axis=-1),  # B-spline knots
    "unit": lambda rng, s: rng.uniform(-0.9, 0.9, s),  # inside asin's and acos's domain, away from +-1
}


def sample(rng, domain, shape):
    return np.asarray(DOMAINS[domain](rng, tuple(shape)), dtype=np.float64)


# ---------------------------------------------------------------- the rows
# Operands: a (first), b, c. By default a is an i-variable, b a j-variable, c a parameter.
# Unary ops act on a * b so that the formula depends on both i and j.

# Arithmetic operators, with dim-1 broadcasting and Python scalars.
row("add", lambda a, b: a + b, lambda xp, a, b: a + b)
row("add_dim1_right", lambda a, b: a + b, lambda xp, a, b: a + b, dims=(3, 1))
row("add_dim1_left", lambda a, b: a + b, lambda xp, a, b: a + b, dims=(1, 3))
row("sub", lambda a, b: a - b, lambda xp, a, b: a - b)
row("sub_dim1", lambda a, b: a - b, lambda xp, a, b: a - b, dims=(1, 3))
row("mul", lambda a, b: a * b, lambda xp, a, b: a * b)
row("mul_dim1", lambda a, b: a * b, lambda xp, a, b: a * b, dims=(3, 1))
row("mul_param", lambda a, b, c: a * b * c, lambda xp, a, b, c: a * b * c, dims=(3, 3, 1))
row("div", lambda a, b: a / b, lambda xp, a, b: a / b, dom=("any", "away0"))
row("div_dim1", lambda a, b: a / b, lambda xp, a, b: a / b, dims=(1, 3), dom=("any", "away0"))
row("div_param", lambda a, b, c: (a - b) / c, lambda xp, a, b, c: (a - b) / c, dims=(3, 3, 3),
    dom=("any", "any", "away0"))
row("neg", lambda a, b: -(a * b), lambda xp, a, b: -(a * b))
row("radd_float", lambda a, b: 1.5 + a * b, lambda xp, a, b: 1.5 + a * b)
row("add_int", lambda a, b: a * b + 1, lambda xp, a, b: a * b + 1)
row("rsub_int", lambda a, b: 2 - a * b, lambda xp, a, b: 2 - a * b)
row("sub_float", lambda a, b: a * b - 0.5, lambda xp, a, b: a * b - 0.5)
row("rmul_int", lambda a, b: 3 * (a * b), lambda xp, a, b: 3 * (a * b))
row("mul_float", lambda a, b: (a - b) * 0.25, lambda xp, a, b: (a - b) * 0.25)
row("rtruediv_float", lambda a, b: 2.5 / (a * b), lambda xp, a, b: 2.5 / (a * b), dom="away0")
row("truediv_int", lambda a, b: (a - b) / 4, lambda xp, a, b: (a - b) / 4)
row("mul_zero", lambda a, b: a * 0 + b, lambda xp, a, b: a * 0 + b)

# Element-wise unary ops.
row("abs", lambda a, b: abs(a * b), lambda xp, a, b: xp.abs(a * b), dom="away0")
row("abs_method", lambda a, b: (a * b).abs(), lambda xp, a, b: xp.abs(a * b), dims=(3, 1), dom="away0")
row("exp", lambda a, b: (a * b).exp(), lambda xp, a, b: xp.exp(a * b))
row("exp_dim1", lambda a, b: (a - b).exp(), lambda xp, a, b: xp.exp(a - b), dims=(1, 3))
row("log", lambda a, b: (a * b).log(), lambda xp, a, b: xp.log(a * b), dom="pos")
row("sin", lambda a, b: (a * b).sin(), lambda xp, a, b: xp.sin(a * b))
row("cos", lambda a, b: (a * b).cos(), lambda xp, a, b: xp.cos(a * b))
row("sqrt", lambda a, b: (a * b).sqrt(), lambda xp, a, b: xp.sqrt(a * b), dom="pos")
row("sqrt_zero", lambda a, b: (a * b).sqrt(), lambda xp, a, b: xp.sqrt(a * b), dom=("zeros", "pos"), diff=False)
row("rsqrt", lambda a, b: (a * b).rsqrt(), lambda xp, a, b: 1 / xp.sqrt(a * b), dom="pos")
row("rsqrt_zero", lambda a, b: (a * b).rsqrt(), lambda xp, a, b: o.rsqrt(xp, a * b), dom=("zeros", "pos"),
    diff=False)
row("square", lambda a, b: (a * b).square(), lambda xp, a, b: (a * b) ** 2)
row("inv", lambda a, b: (a * b).inv(), lambda xp, a, b: 1 / (a * b), dom="away0")
row("sign", lambda a, b: (a * b).sign(), lambda xp, a, b: o.sign(xp, a * b), dom="away0", diff=False)
row("sign_zero", lambda a, b: (a * b).sign(), lambda xp, a, b: o.sign(xp, a * b), dom=("signed_zeros", "pos"),
    diff=False)
row("step", lambda a, b: (a * b).step(), lambda xp, a, b: o.step(xp, a * b), dom="away0", diff=False)
row("step_zero", lambda a, b: (a * b).step(), lambda xp, a, b: o.step(xp, a * b), dom=("signed_zeros", "pos"),
    diff=False)
row("relu", lambda a, b: (a * b).relu(), lambda xp, a, b: o.relu(xp, a * b), dom="away0")

# Powers.
row("pow_int3", lambda a, b: (a * b) ** 3, lambda xp, a, b: (a * b) ** 3)
row("power_method", lambda a, b: (a - b).power(4), lambda xp, a, b: (a - b) ** 4)
row("pow_int_neg", lambda a, b: (a * b) ** -2, lambda xp, a, b: 1 / (a * b) ** 2, dom="away0")
row("pow_int2", lambda a, b: (a * b) ** 2, lambda xp, a, b: (a * b) ** 2)
row("pow_int1", lambda a, b: (a * b) ** 1, lambda xp, a, b: a * b)
row("pow_int0", lambda a, b: a ** 0 * b, lambda xp, a, b: 0 * a + b)
row("pow_half", lambda a, b: (a * b) ** 0.5, lambda xp, a, b: xp.sqrt(a * b), dom="pos")
row("pow_minus_half", lambda a, b: (a * b) ** -0.5, lambda xp, a, b: 1 / xp.sqrt(a * b), dom="pos")
row("pow_float", lambda a, b: (a * b) ** 1.7, lambda xp, a, b: (a * b) ** 1.7, dom="pos")
row("powf_float", lambda a, b: (a * b).powf(-0.3), lambda xp, a, b: (a * b) ** -0.3, dom="pos")
row("powf_lazy", lambda a, b: a.powf(b), lambda xp, a, b: a ** b, dims=(3, 1), dom=("pos", "any"))
row("pow_lazy_operator", lambda a, b: a ** b, lambda xp, a, b: a ** b, dom=("pos", "any"))
row("powf_lazy_dim1", lambda a, b, c: a.powf(b * c), lambda xp, a, b, c: a ** (b * c), dims=(1, 3, 3),
    dom=("pos", "any", "any"))

# Clamp, IfElse.
row("clamp_numbers", lambda a, b: a.clamp(-0.5, 0.5) * b, lambda xp, a, b: o.clamp(xp, a, -0.5, 0.5) * b,
    dom=("clampx", "any"))
row("clamp_lazy", lambda a, b, c: a.clamp(b, c), lambda xp, a, b, c: o.clamp(xp, a, b, c), dims=(3, 1, 3),
    dom=("clampx", "lo", "hi"))
row("clamp_mixed", lambda a, b: a.clamp(b, 0.5), lambda xp, a, b: o.clamp(xp, a, b, 0.5),
    dom=("clampx", "lo"))
row("ifelse", lambda a, b, c: a.ifelse(b, c), lambda xp, a, b, c: o.ifelse(xp, a, b, c), dims=(3, 3, 1),
    dom=("away0", "any", "any"))
row("ifelse_dim1_cond", lambda a, b, c: a.ifelse(b, c), lambda xp, a, b, c: o.ifelse(xp, a, b, c),
    dims=(1, 3, 3), dom=("away0", "any", "any"))
row("ifelse_numbers", lambda a, b: (a * b).ifelse(1.0, -2), lambda xp, a, b: o.ifelse(xp, a * b, 1.0, -2.0),
    dom="away0")

# Comparisons (0./1. floats), with exact ties.
row("lt", lambda a, b: a < b, lambda xp, a, b: o.as01(xp, a < b), dom="int", diff=False)
row("le", lambda a, b: a <= b, lambda xp, a, b: o.as01(xp, a <= b), dom="int", diff=False)
row("gt", lambda a, b: a > b, lambda xp, a, b: o.as01(xp, a > b), dom="int", diff=False)
row("ge", lambda a, b: a >= b, lambda xp, a, b: o.as01(xp, a >= b), dom="int", diff=False)
row("eq", lambda a, b: a == b, lambda xp, a, b: o.as01(xp, a == b), dom="int", diff=False)
row("ne", lambda a, b: a != b, lambda xp, a, b: o.as01(xp, a != b), dom="int", diff=False)
row("lt_dim1", lambda a, b: a < b, lambda xp, a, b: o.as01(xp, a < b), dims=(3, 1), dom="int", diff=False)
row("ge_scalar", lambda a, b: (a - b) >= 0, lambda xp, a, b: o.as01(xp, a - b >= 0), dom="int", diff=False)
row("gt_scalar", lambda a, b: (a * b) > 0.25, lambda xp, a, b: o.as01(xp, a * b > 0.25), diff=False)
row("eq_scalar", lambda a, b: (a - b) == 1, lambda xp, a, b: o.as01(xp, a - b == 1), dom="int", diff=False)

# Vector ops.
row("vector_sum", lambda a, b: (a * b).sum(-1), lambda xp, a, b: o.vsum(xp, a * b))
row("sqnorm2", lambda a, b: (a - b).sqnorm2(), lambda xp, a, b: o.sqnorm2(xp, a - b))
row("norm2", lambda a, b: (a - b).norm2(), lambda xp, a, b: o.norm2(xp, a - b))
row("norm", lambda a, b: (a - b).norm(dim=-1), lambda xp, a, b: o.norm2(xp, a - b))
row("normalize", lambda a, b: (a - b).normalize(), lambda xp, a, b: o.normalize(xp, a - b))
row("scalprod", lambda a, b: a | b, lambda xp, a, b: o.dot(xp, a, b))
row("scalprod_param", lambda a, b, c: (a - b) | c, lambda xp, a, b, c: o.dot(xp, a - b, c), dims=(4, 4, 4))
row("sqdist", lambda a, b: a.sqdist(b), lambda xp, a, b: o.sqnorm2(xp, a - b))
row("sqdist_dim1", lambda a, b: a.sqdist(b), lambda xp, a, b: o.sqnorm2(xp, a - b), dims=(3, 1))
row("wsqnorm_iso", lambda a, b, c: (a - b).weightedsqnorm(c), lambda xp, a, b, c: o.weightedsqnorm(xp, a - b, c),
    dims=(3, 3, 1))
row("wsqnorm_diag", lambda a, b, c: (a - b).weightedsqnorm(c), lambda xp, a, b, c: o.weightedsqnorm(xp, a - b, c),
    dims=(3, 3, 3))
row("wsqnorm_full", lambda a, b, c: (a - b).weightedsqnorm(c), lambda xp, a, b, c: o.weightedsqnorm(xp, a - b, c),
    dims=(3, 3, 9), dom=("any", "any", "sym"))
row("wsqnorm_full_j", lambda a, b: a.weightedsqnorm(b), lambda xp, a, b: o.weightedsqnorm(xp, a, b),
    dims=(2, 4), dom=("any", "sym"))
row("wsqdist_iso", lambda a, b, c: a.weightedsqdist(b, c), lambda xp, a, b, c: o.weightedsqnorm(xp, a - b, c),
    dims=(3, 3, 1), dom=("any", "any", "pos"))
row("wsqdist_diag", lambda a, b, c: a.weightedsqdist(b, c), lambda xp, a, b, c: o.weightedsqnorm(xp, a - b, c),
    dims=(3, 3, 3), dom=("any", "any", "pos"))
row("wsqdist_full", lambda a, b, c: a.weightedsqdist(b, c), lambda xp, a, b, c: o.weightedsqnorm(xp, a - b, c),
    dims=(2, 2, 4), dom=("any", "any", "sym"))
row("elem", lambda a, b: (a * b).elem(1), lambda xp, a, b: (a * b)[..., 1:2])
row("elem_negative", lambda a, b: (a * b).elem(-1), lambda xp, a, b: (a * b)[..., 2:3])
row("getitem_int", lambda a, b: (a * b)[2], lambda xp, a, b: (a * b)[..., 2:3])
row("getitem_negative", lambda a, b: (a * b)[-3], lambda xp, a, b: (a * b)[..., 0:1])
row("getitem_ellipsis", lambda a, b: (a * b)[..., 1], lambda xp, a, b: (a * b)[..., 1:2])
row("getitem_slice", lambda a, b: (a * b)[0:2], lambda xp, a, b: (a * b)[..., 0:2])
row("getitem_open_slice", lambda a, b: (a - b)[1:], lambda xp, a, b: (a - b)[..., 1:], dims=(4, 4))
row("extract", lambda a, b: (a * b).extract(1, 2), lambda xp, a, b: (a * b)[..., 1:3], dims=(4, 4))
row("concat", lambda a, b: a.concat(b), lambda xp, a, b: o.concat(xp, a, b), dims=(2, 3))
row("concat_dim1", lambda a, b: (a * b).concat(a), lambda xp, a, b: o.concat(xp, a * b, a), dims=(1, 3))
row("concatenate", lambda a, b, c: LazyArray.concatenate((a, b, c)), lambda xp, a, b, c: o.concat(xp, a, b, c),
    dims=(2, 1, 3))
row("one_hot", lambda a, b: a.one_hot(4) * b, lambda xp, a, b: o.one_hot(xp, a, 4) * b, dims=(1, 4),
    dom=("idx", "any"))
row("one_hot_scalar_weight", lambda a, b: a.one_hot(3) * b, lambda xp, a, b: o.one_hot(xp, a, 3) * b,
    dims=(1, 1), dom=("idx", "any"))
row("matvecmult", lambda a, b: a.matvecmult(b), lambda xp, a, b: o.matvec(xp, a, b), dims=(6, 3))
row("matvecmult_n1", lambda a, b: a.matvecmult(b), lambda xp, a, b: o.matvec(xp, a, b), dims=(3, 1))
row("matvecmult_param", lambda a, b, c: c.matvecmult(a - b), lambda xp, a, b, c: o.matvec(xp, c, a - b),
    dims=(3, 3, 6))
row("vecmatmult", lambda a, b: a.vecmatmult(b), lambda xp, a, b: o.vecmat(xp, a, b), dims=(3, 6))
row("vecmatmult_n1", lambda a, b: a.vecmatmult(b), lambda xp, a, b: o.vecmat(xp, a, b), dims=(1, 4))
row("tensorprod", lambda a, b: a.tensorprod(b), lambda xp, a, b: o.tensorprod(xp, a, b), dims=(2, 3))
row("tensorprod_dim1", lambda a, b: a.tensorprod(b), lambda xp, a, b: o.tensorprod(xp, a, b), dims=(1, 3))

# Vector ops (issue 12): Min / Max / ArgMin / ArgMax over the vector axis (the default
# axis of these methods), ElemT, TensorDot, Kron, BSpline, SoftDTW_SqDist, DifferenceMatrix.
row("vector_min", lambda a, b: (a * b).min(-1), lambda xp, a, b: o.vmin(xp, a * b), dims=(4, 4))
row("vector_max", lambda a, b: (a - b).max(), lambda xp, a, b: o.vmax(xp, a - b), dims=(4, 4))
row("vector_argmin", lambda a, b: (a * b).argmin(-1), lambda xp, a, b: o.argmin(xp, a * b), dims=(5, 5), dom="int",
    diff=False)  # with ties: the first index
row("vector_argmax", lambda a, b: (a - b).argmax(), lambda xp, a, b: o.argmax(xp, a - b), dims=(5, 5), dom="int",
    diff=False)
row("elemT", lambda a, b: (a | b)._apply(lambda s: derived.elemt(s, 4, 2)),
    lambda xp, a, b: o.concat(xp, *([0.0 * o.dot(xp, a, b)] * 2), o.dot(xp, a, b), 0.0 * o.dot(xp, a, b)))
row("tensordot", lambda a, b: a.keops_tensordot(b, (2, 3), (3, 4), (1,), (0,)),
    lambda xp, a, b: o.tensordot(xp, "...ab,...bc->...ac", a, b, (2, 3), (3, 4)), dims=(6, 12))
# tensordot_perm: the result's axes (a, c, d) go to positions (2, 0, 1): (c, d, a).
row("tensordot_perm", lambda a, b: a.keops_tensordot(b, (2, 2, 3), (2, 2), (1,), (0,), (2, 0, 1)),
    lambda xp, a, b: o.tensordot(xp, "...abc,...bd->...cda", a, b, (2, 2, 3), (2, 2)), dims=(12, 4))
row("tensordot_full", lambda a, b: a.keops_tensordot(b, (3, 4), (4, 3), (0, 1), (1, 0)),  # trace(A B)
    lambda xp, a, b: o.tensordot(xp, "...ab,...ba->...", a, b, (3, 4), (4, 3)), dims=(12, 12))
row("kron", lambda a, b: a.keops_kron(b, (2, 1, 2), (1, 2, 1)), lambda xp, a, b: o.kron(xp, a, b, (2, 1, 2), (1, 2, 1)),
    dims=(4, 2))
row("bspline", lambda a, b: a.bspline(b, 2), lambda xp, a, b: o.bspline(xp, a, b, 2), dims=(7, 1),
    dom=("sorted", "any"))
row("softdtw_sqdist", lambda a, b, c: a.softdtw_sqdist(b, c), lambda xp, a, b, c: o.softdtw(xp, a, b, c),
    dims=(3, 4, 1), dom=("any", "any", "pos"))
row("difference_matrix", lambda a, b: a.difference_matrix(b), lambda xp, a, b: o.difference_matrix(xp, a, b),
    dims=(3, 2))
# Element-wise math (issue 12): small dims (each row is one more kernel to compile in the fast
# suite); floor, round and mod sampled away from their jumps. SinXDivX is reached by sinc and
# math_mixed; math_mixed holds every differentiable op for the fast gradient checks.
row("xlogx", lambda a, b: (a * b).xlogx(), lambda xp, a, b: a * b * xp.log(a * b), dims=(2, 1), dom="pos")
row("asin", lambda a, b: (a * b).asin(), lambda xp, a, b: xp.arcsin(a * b), dims=(2, 1), dom="unit")
row("acos", lambda a, b: (a * b).acos(), lambda xp, a, b: xp.arccos(a * b), dims=(1, 2), dom="unit")
row("atan", lambda a, b: (3 * (a * b)).atan(), lambda xp, a, b: xp.arctan(3 * (a * b)), dims=(2, 1))
row("atan2", lambda a, b: a.atan2(b), lambda xp, a, b: xp.arctan2(a, b), dims=(2, 1), dom=("any", "away0"))
row("sinc", lambda a, b: (a - b).sinc(), lambda xp, a, b: xp.sinc(a - b), dims=(1, 2))
row("floor", lambda a, b: (a + b + 0.5).floor(), lambda xp, a, b: xp.floor(a + b + 0.5), dims=(2, 1),
    dom=("idx", "int"), diff=False)
row("round", lambda a, b: (a + b).round(), lambda xp, a, b: xp.round(a + b), dims=(2, 1), dom=("idx", "int"),
    diff=False)
row("round_decimals", lambda a, b: ((a + b) * 0.1).round(1), lambda xp, a, b: xp.round((a + b) * 0.1, 1),
    dims=(1, 2), dom=("idx", "int"), diff=False)
row("mod", lambda a, b, c: (a * b).mod(c, 0.25), lambda xp, a, b, c: o.mod(xp, a * b, c, 0.25), dims=(2, 1, 1),
    dom=("any", "any", "pos"))
row("tanh", lambda a, b: (a * b).tanh(), lambda xp, a, b: xp.tanh(a * b), dims=(2, 1))
row("sigmoid", lambda a, b: (3 * (a * b)).sigmoid(), lambda xp, a, b: 1 / (1 + xp.exp(-3 * (a * b))), dims=(1, 2))
row("erf", lambda a, b: (1.5 * (a - b)).erf(), lambda xp, a, b: o.erf(xp, 1.5 * (a - b)), dims=(2, 1))
row("clamp_int", lambda a, b: a.clamp(-1, 1) * b, lambda xp, a, b: o.clamp(xp, a, -1.0, 1.0) * b, dims=(2, 1),
    dom=("clampx", "any"))
row("math_mixed", lambda a, b, c: ((a * b).asin() * (a - b).sigmoid() + (a * b).acos().xlogx()
                                  + (3 * (a + b)).atan().tanh() + b.atan2(a + c + 1) + (a * c).erf() * (a - b).sinxdivx()
                                  + (a * b).mod(c, 0.1)),
    lambda xp, a, b, c: (xp.arcsin(a * b) / (1 + xp.exp(b - a)) + xp.arccos(a * b) * xp.log(xp.arccos(a * b))
                         + xp.tanh(xp.arctan(3 * (a + b))) + xp.arctan2(b, a + c + 1)
                         + o.erf(xp, a * c) * xp.sin(a - b) / (a - b) + o.mod(xp, a * b, c, 0.1)),
    dims=(1, 1, 1), dom=("unit", "unit", "pos"))

# Symbolic calculus methods (issue 12): formulas built by ir/calculus.py, checked against
# their derivatives written by hand (the VJP rows then check second derivatives).
row("calc_grad", lambda a, b, c: (-a.sqdist(b)).exp().grad(a, c),
    lambda xp, a, b, c: -2 * (a - b) * xp.exp(-o.sqnorm2(xp, a - b)) * c, dims=(3, 3, 1))
row("calc_diff", lambda a, b: (a * b).sin().diff(a, b), lambda xp, a, b: xp.cos(a * b) * b * b)
row("calc_laplacian", lambda a, b: (-a.sqdist(b)).exp().laplacian(a),
    lambda xp, a, b: (4 * o.sqnorm2(xp, a - b) - 2 * a.shape[-1]) * xp.exp(-o.sqnorm2(xp, a - b)))
row("calc_divergence", lambda a, b: (a * b).sin().divergence(a), lambda xp, a, b: o.vsum(xp, xp.cos(a * b) * b))
row("calc_grad_matrix", lambda a, b: (a * b).sin().grad_matrix(a),  # entry k*d + l: d f_k / d a_l (diagonal)
    lambda xp, a, b: o.diag_flat(xp, xp.cos(a * b) * b), dims=(2, 2))
row("calc_trace_operator", lambda a, b: (a * b).trace_operator(a), lambda xp, a, b: o.vsum(xp, b) + 0 * o.vsum(xp, a))

# Composite kernels.
row("gaussian", lambda a, b, c: (-(a.sqdist(b)) * c).exp(), lambda xp, a, b, c: xp.exp(-o.sqnorm2(xp, a - b) * c),
    dims=(3, 3, 1), dom=("any", "any", "pos"))
row("cauchy", lambda a, b: 1 / (1 + a.sqdist(b)), lambda xp, a, b: 1 / (1 + o.sqnorm2(xp, a - b)))
row("laplace", lambda a, b: (-(a - b).norm2()).exp(), lambda xp, a, b: xp.exp(-o.norm2(xp, a - b)))
row("mixed", lambda a, b, c: ((a | b) * c).sin() + a.sqnorm2().log() * b,
    lambda xp, a, b, c: xp.sin(o.dot(xp, a, b) * c) + xp.log(o.sqnorm2(xp, a)) * b,
    dims=(2, 2, 1), dom=("away0", "any", "any"))

ROW_BY_NAME = {r.name: r for r in ROWS}

# Differentiable rows whose gradient checks run in the fast suite: one or two per op or
# derived op. The other differentiable rows (spellings with Python scalars, dim-1
# variants, indexing variants...) are checked in the slow suite.
FAST_GRAD_ROWS = {
    "add", "add_dim1_right", "mul_param", "div", "abs", "exp", "log", "sin", "cos", "sqrt", "rsqrt", "inv",
    "relu", "pow_int3", "pow_int_neg", "powf_lazy", "clamp_lazy", "ifelse", "vector_sum", "normalize", "sqdist",
    "wsqnorm_full", "wsqnorm_full_j", "elem", "concat", "matvecmult", "vecmatmult", "tensorprod", "gaussian",
    "mixed", "math_mixed", "vector_min", "tensordot",
}
assert FAST_GRAD_ROWS <= set(ROW_BY_NAME), FAST_GRAD_ROWS - set(ROW_BY_NAME)
# Rows whose reductions run in the slow suite only: each of their ops is computed in the fast
# suite by another row (math_mixed), and a row is a kernel compile (the fast suite's budget).
SLOW_ONLY_ROWS = {"xlogx", "asin", "acos", "atan", "atan2", "sinc", "mod", "tanh", "sigmoid", "erf",
                  "calc_diff", "calc_divergence", "calc_grad_matrix", "calc_trace_operator"}
assert SLOW_ONLY_ROWS <= set(ROW_BY_NAME) - FAST_GRAD_ROWS, SLOW_ONLY_ROWS - set(ROW_BY_NAME)
DIFF_ROWS = [r for r in ROWS if r.diff]
NONDIFF_ROWS = [r for r in ROWS if not r.diff]

# Ops of jax_lazy.ir.OPS that no formula contains directly: reached through the symbolic
# derivative of the named rows (test_ops checks that their gradient formulas contain them).
REACHED_BY_GRADIENT = {"SumT": "vector_sum", "ExtractT": "elem"}
LEAVES = {"Var", "IntCst", "Cst", "Zero"}


# ---------------------------------------------------------------- data for a row

BATCH_PATTERNS = {
    # category -> batch shape of the operands of that category
    "plain": {"i": (), "j": (), "p": ()},
    "bcast": {"i": (2, 1), "j": (1, 3), "p": (3,)},
    "bcast_p": {"i": (), "j": (2, 1), "p": (1, 3)},
    "bcast_ij": {"i": (2, 1), "j": (1, 3), "p": ()},
}


def operand_shape(cat, batch, d, M, N):
    return batch + ((M, d) if cat == "i" else (N, d) if cat == "j" else (d,))


def sample_operands(r: Row, rng, batch_pattern="plain", M=5, N=7):
    """float64 NumPy operands of row ``r``: i-variables (*b, M, d), j-variables (*b, N, d),
    parameters (*b, d)."""
    pat = BATCH_PATTERNS[batch_pattern]
    return [sample(rng, dom, operand_shape(cat, pat[cat], d, M, N)) for cat, d, dom in zip(r.cats, r.dims, r.domains)]


def lazy_operands(r: Row, arrays):
    from jax_lazy import Pm, Vi, Vj

    return [{"i": Vi, "j": Vj, "p": Pm}[cat](a) for cat, a in zip(r.cats, arrays)]


def batch_rank(r: Row, arrays):
    return max(a.ndim - (1 if cat == "p" else 2) for cat, a in zip(r.cats, arrays))


def dense_reference(r: Row, xp, arrays):
    """The dense (..., M, N, E) value of row ``r`` on ``arrays``, computed with ``xp``."""
    nb = batch_rank(r, arrays)
    dense = [o.dense_operand(a, cat, nb) for cat, a in zip(r.cats, arrays)]
    out = r.ref(xp, *o.broadcast_leading(xp, dense))
    lead = np.broadcast_shapes(*(a.shape[:-1] for a in dense))
    return xp.broadcast_to(out, lead + out.shape[-1:])
