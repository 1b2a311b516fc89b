"""The op table: every formula op declared once.

Each row gives an op's name (KeOps spelling), its arity, its dim rule, its reference
evaluation in ``jax.numpy`` (acting on the last axis, broadcasting the others), its
symbolic VJP (returning formulas in this same IR, so a gradient is just another
formula), how it prints, and the slot for the C++ printer used by the compiled backends.

Conventions
- Element-wise ops broadcast operands of dim 1 against operands of dim D ("sameor1").
- A VJP rule ``vjp(n, g)`` gets the node ``n`` and the cotangent formula ``g`` (of dim
  ``n.dim``) and returns one cotangent per argument, each of that argument's dim, or
  ``None`` for a zero cotangent. ``vjp=None`` declares a zero derivative (comparisons,
  sign, step, one_hot): such ops are piecewise constant.
- Leaves (``Var``, ``IntCst``, ``Cst``, ``Zero``) have no jnp row: the evaluator binds them.

Derived operations (sqdist, norms, scalar product, weighted norms, elem...) are composed
from these primitives in :mod:`jax_lazy.ir.derived`; they add no row here.
"""

# ruff: noqa: F821  (the op builders Minus, Mult, ... are generated at the end of this module)
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import FormulaError
from .node import Node, make, I, J, P


@dataclass(frozen=True)
class OpDef:
    name: str
    arity: int
    dim: Callable  # (arg_dims: tuple[int], attr: tuple) -> int; raises FormulaError
    jnp: Optional[Callable] = None  # (attr, *arg_values) -> value
    vjp: Optional[Callable] = None  # (node, g) -> tuple[Node | None]; None: zero derivative
    infix: Optional[str] = None  # printed as "a <infix> b" instead of "Name(a, b)"
    zero_if: tuple = ()  # argument positions where a Zero operand makes the result Zero
    linear: bool = False  # all-Zero arguments give Zero
    cpp: Optional[str] = field(default=None, compare=False)  # C++ printer slot (issue 3)


OPS: dict[str, OpDef] = {}


def defop(name, arity, dim, jnp=None, vjp=None, **kw) -> None:
    OPS[name] = OpDef(name, arity, dim, jnp, vjp, **kw)


# ---------------------------------------------------------------- dim rules


def _same(dims, attr):
    return dims[0]


def _scalar_in(dims, attr):
    if dims[0] != 1:
        raise FormulaError(f"expects a scalar (dim 1) operand, got dim {dims[0]}")
    return 1


def _bcast(dims, attr):
    """Element-wise broadcasting: every dim is 1 or the max."""
    out = max(dims)
    if any(d not in (1, out) for d in dims):
        raise FormulaError(f"operand dims {dims} do not broadcast (each must be 1 or {out})")
    return out


def _to(k):
    return lambda dims, attr: k


def _attr(pos):
    return lambda dims, attr: attr[pos]


def _extract_dim(dims, attr):
    start, d = attr[0], attr[1]
    if start < 0 or d < 1 or start + d > dims[0]:
        raise FormulaError(f"Extract({start}, {d}) out of range for a vector of dim {dims[0]}")
    return d


def _extractT_dim(dims, attr):
    start, total = attr
    if start < 0 or start + dims[0] > total:
        raise FormulaError(f"ExtractT({start}, {total}) cannot hold a vector of dim {dims[0]}")
    return total


def _matvec_dim(dims, attr):
    da, dv = dims
    if da % dv:
        raise FormulaError(f"MatVecMult: matrix dim {da} is not a multiple of vector dim {dv}")
    return da // dv


def _vecmat_dim(dims, attr):
    dv, da = dims
    if da % dv:
        raise FormulaError(f"VecMatMult: matrix dim {da} is not a multiple of vector dim {dv}")
    return da // dv


def _sumT_dim(dims, attr):
    _scalar_in(dims, attr)
    return attr[0]


# ---------------------------------------------------------------- jnp helpers


def _as(ref, x):
    return x.astype(ref.dtype)


def _rsqrt(x):
    # KeOps convention: Rsqrt(0) = 0, which makes norm2 and normalize safe at 0.
    safe = jnp.where(x == 0, jnp.ones_like(x), x)
    return jnp.where(x == 0, jnp.zeros_like(x), lax.rsqrt(safe))


def _matvec(attr, a, v):
    n = v.shape[-1]
    return jnp.sum(a.reshape(a.shape[:-1] + (a.shape[-1] // n, n)) * v[..., None, :], axis=-1)


def _vecmat(attr, v, a):
    n = v.shape[-1]
    return jnp.sum(a.reshape(a.shape[:-1] + (n, a.shape[-1] // n)) * v[..., :, None], axis=-2)


def _tensorprod(attr, a, b):
    out = a[..., :, None] * b[..., None, :]
    return out.reshape(out.shape[:-2] + (a.shape[-1] * b.shape[-1],))


def _extractT(attr, x):
    start, total = attr
    pad = [(0, 0)] * (x.ndim - 1) + [(start, total - start - x.shape[-1])]
    return jnp.pad(x, pad)


def _onehot(attr, x):
    return _as(x, jnp.round(x) == jnp.arange(attr[0], dtype=x.dtype))


def _xlogx(x):
    # x log x, 0 at 0 (its limit), as KeOps' XLogX; NaN below 0.
    return jnp.where(x == 0, jnp.zeros_like(x), x * jnp.log(jnp.where(x == 0, jnp.ones_like(x), x)))


def _sinxdivx(x):
    # sin(x) / x, 1 at 0 (its limit), as KeOps' SinXDivX.
    return jnp.where(x == 0, jnp.ones_like(x), jnp.sin(x) / jnp.where(x == 0, jnp.ones_like(x), x))


# ---------------------------------------------------------------- the table
# Leaves: evaluated by the evaluator, no derivative rule needed (the autodiff reads Vars).
defop("Var", 0, _to(None))  # attr (index, cat): a bound input of dim `dim`
defop("IntCst", 0, _to(1))  # attr (n,): an exact integer constant
defop("Cst", 0, _to(1))  # attr (x,): a float constant, fixed at trace time
defop("Zero", 0, _to(None))  # the zero vector of dim `dim`

# Element-wise unary ops.
# fmt: off
defop("Minus",  1, _same, lambda a, x: -x,                 lambda n, g: (Minus(g),), zero_if=(0,), linear=True)
defop("Inv",    1, _same, lambda a, x: 1 / x,              lambda n, g: (Minus(Mult(g, Square(n))),))
defop("Square", 1, _same, lambda a, x: x * x,              lambda n, g: (Mult(IntCst(2), Mult(n.args[0], g)),), zero_if=(0,))
defop("Sqrt",   1, _same, lambda a, x: jnp.sqrt(x),        lambda n, g: (Mult(Cst(0.5), Mult(g, Rsqrt(n.args[0]))),), zero_if=(0,))
defop("Rsqrt",  1, _same, lambda a, x: _rsqrt(x),          lambda n, g: (Mult(Cst(-0.5), Mult(g, Pow(n, 3))),))
defop("Pow",    1, _same, lambda a, x: lax.integer_pow(x, a[0]),
      lambda n, g: (Mult(IntCst(n.attr[0]), Mult(g, Pow(n.args[0], n.attr[0] - 1))),))  # attr (n,)
defop("Exp",    1, _same, lambda a, x: jnp.exp(x),         lambda n, g: (Mult(g, n),))
defop("Log",    1, _same, lambda a, x: jnp.log(x),         lambda n, g: (Divide(g, n.args[0]),))
defop("Sin",    1, _same, lambda a, x: jnp.sin(x),         lambda n, g: (Mult(g, Cos(n.args[0])),), zero_if=(0,))
defop("Cos",    1, _same, lambda a, x: jnp.cos(x),         lambda n, g: (Minus(Mult(g, Sin(n.args[0]))),))
defop("Abs",    1, _same, lambda a, x: jnp.abs(x),         lambda n, g: (IfElse(n.args[0], g, Minus(g)),), zero_if=(0,))
defop("Sign",   1, _same, lambda a, x: jnp.sign(x),        None, zero_if=(0,))
defop("Step",   1, _same, lambda a, x: _as(x, x >= 0),     None)  # 1 where x >= 0
defop("ReLU",   1, _same, lambda a, x: jnp.maximum(x, 0),  lambda n, g: (_select(LessThan(IntCst(0), n.args[0]), g),), zero_if=(0,))

# Element-wise binary and ternary ops (dim-1 operands broadcast).
defop("Add",      2, _bcast, lambda a, x, y: x + y, lambda n, g: (g, g), infix="+", linear=True)
defop("Subtract", 2, _bcast, lambda a, x, y: x - y, lambda n, g: (g, Minus(g)), infix="-", linear=True)
defop("Mult",     2, _bcast, lambda a, x, y: x * y,
      lambda n, g: (Mult(g, n.args[1]), Mult(g, n.args[0])), infix="*", zero_if=(0, 1))
defop("Divide",   2, _bcast, lambda a, x, y: x / y,
      lambda n, g: (Divide(g, n.args[1]), Minus(Divide(Mult(g, n), n.args[1]))), infix="/", zero_if=(0,))
defop("Powf",     2, _bcast, lambda a, x, y: jnp.power(x, y),  # x ** y = exp(y log x), x > 0
      lambda n, g: (Mult(g, Mult(n.args[1], Powf(n.args[0], Subtract(n.args[1], IntCst(1))))),
                    Mult(g, Mult(n, Log(_replace_zero(n.args[0]))))))  # d/dy = 0 at x = 0
defop("LessThan",    2, _bcast, lambda a, x, y: _as(x, x < y),  None)
defop("LessOrEqual", 2, _bcast, lambda a, x, y: _as(x, x <= y), None)
defop("Equal",       2, _bcast, lambda a, x, y: _as(x, x == y), None)
defop("NotEqual",    2, _bcast, lambda a, x, y: _as(x, x != y), None)
defop("Clamp",  3, _bcast, lambda a, x, lo, hi: jnp.minimum(jnp.maximum(x, lo), hi), lambda n, g: _clamp_vjp(n, g))
defop("IfElse", 3, _bcast, lambda a, x, p, q: jnp.where(x >= 0, p, q),  # p where x >= 0, else q
      lambda n, g: (None, IfElse(n.args[0], g, Zero(g.dim)), IfElse(n.args[0], Zero(g.dim), g)))

# Element-wise math (issue 12). Derivatives as jax.grad of the jnp column: 1/sqrt(1 - x^2) is
# inf at +-1 (Divide by Sqrt, not Rsqrt, whose 0 at 0 would hide it); at 0, SinXDivX' = 0.
defop("XLogX",    1, _same, lambda a, x: _xlogx(x),      lambda n, g: (Mult(g, Add(Log(n.args[0]), IntCst(1))),))
defop("Asin",     1, _same, lambda a, x: jnp.arcsin(x),  lambda n, g: (Divide(g, _sqrt_1m2(n.args[0])),), zero_if=(0,))
defop("Acos",     1, _same, lambda a, x: jnp.arccos(x),  lambda n, g: (Minus(Divide(g, _sqrt_1m2(n.args[0]))),))
defop("Atan",     1, _same, lambda a, x: jnp.arctan(x),
      lambda n, g: (Divide(g, Add(IntCst(1), Square(n.args[0]))),), zero_if=(0,))
defop("SinXDivX", 1, _same, lambda a, x: _sinxdivx(x),   # sin(x) / x, 1 at 0
      lambda n, g: (Mult(g, Divide(Subtract(Cos(n.args[0]), n), _replace_zero(n.args[0]))),))
defop("Tanh",     1, _same, lambda a, x: jnp.tanh(x),    lambda n, g: (Mult(g, Subtract(IntCst(1), Square(n))),), zero_if=(0,))
defop("Sigmoid",  1, _same, lambda a, x: jax.nn.sigmoid(x),  # 1 / (1 + exp(-x))
      lambda n, g: (Mult(g, Mult(n, Subtract(IntCst(1), n))),))
defop("Erf",      1, _same, lambda a, x: lax.erf(x),
      lambda n, g: (Mult(g, Mult(Cst(2 / math.sqrt(math.pi)), Exp(Minus(Square(n.args[0]))))),), zero_if=(0,))
defop("Floor",    1, _same, lambda a, x: jnp.floor(x),   None)
defop("Round",    1, _same, lambda a, x: jnp.round(x, a[0]), None)  # attr (d,): to d decimals, half to even
defop("Atan2",    2, _bcast, lambda a, y, x: jnp.arctan2(y, x),  # the angle of (x, y)
      lambda n, g: (Divide(Mult(g, n.args[1]), _sqnorm_yx(n)), Minus(Divide(Mult(g, n.args[0]), _sqnorm_yx(n)))))
defop("Mod",      3, _bcast, lambda a, x, m, off: x - m * jnp.floor((x - off) / m),  # x - m floor((x - off) / m)
      lambda n, g: (g, Minus(Mult(g, Floor(Divide(Subtract(n.args[0], n.args[2]), n.args[1])))), None))

# Vector ops (act on the whole last axis).
defop("Sum",      1, _to(1),        lambda a, x: jnp.sum(x, -1, keepdims=True),
      lambda n, g: (SumT(g, n.args[0].dim),), zero_if=(0,), linear=True)
defop("SumT",     1, _sumT_dim,     lambda a, x: jnp.broadcast_to(x, x.shape[:-1] + (a[0],)),
      lambda n, g: (Sum(g),), zero_if=(0,), linear=True)  # attr (d,): a scalar repeated d times
defop("Extract",  1, _extract_dim,  lambda a, x: x[..., a[0]:a[0] + a[1]],
      lambda n, g: (ExtractT(g, n.attr[0], n.args[0].dim),), zero_if=(0,), linear=True)  # attr (start, d)
defop("ExtractT", 1, _extractT_dim, _extractT,
      lambda n, g: (Extract(g, n.attr[0], n.args[0].dim),), zero_if=(0,), linear=True)  # attr (start, D)
defop("Concat",   2, lambda d, a: d[0] + d[1], lambda a, x, y: jnp.concatenate(_cat_args(x, y), -1),
      lambda n, g: (Extract(g, 0, n.args[0].dim), Extract(g, n.args[0].dim, n.args[1].dim)), linear=True)
defop("OneHot",   1, lambda d, a: (_scalar_in(d, a), a[0])[1], _onehot, None)  # attr (D,)
defop("MatVecMult", 2, _matvec_dim, _matvec,  # A (m*n, row-major) times v (n)
      lambda n, g: (TensorProd(g, n.args[1]), VecMatMult(g, n.args[0])), zero_if=(0, 1))
defop("VecMatMult", 2, _vecmat_dim, _vecmat,  # v (n) times A (n*m, row-major)
      lambda n, g: (MatVecMult(n.args[1], g), TensorProd(n.args[0], g)), zero_if=(0, 1))
defop("TensorProd", 2, lambda d, a: d[0] * d[1], _tensorprod,  # out[i*db + j] = a[i] b[j]
      lambda n, g: (MatVecMult(g, n.args[1]), VecMatMult(n.args[0], g)), zero_if=(0, 1))
# fmt: on


# ---------------------------------------------------------------- Vector ops (issue 12)
# Min and ArgMin over the last axis, and TensorDot. Max, ArgMax, ElemT, Kron, BSpline,
# SoftDTW_SqDist and DifferenceMatrix are compositions of these (ir/derived.py).


def _min_vjp(n: Node, g: Node) -> tuple:
    """As ``jax.grad`` of ``jnp.min``: the cotangent goes to the minimal coordinates,
    split evenly among ties (NaN input: NaN, as in JAX)."""
    hit = Equal(n.args[0], n)
    return (Divide(Mult(g, hit), Sum(hit)),)


def _tensordot_axes(attr) -> tuple:
    """``(keep_a, keep_b, out_dims)``: the axes of a and of b that are not contracted, and
    the output shape (the kept dims of a then of b, axis t moved to position perm[t])."""
    dimsf, dimsg, contf, contg, perm = attr
    keep_a = tuple(k for k in range(len(dimsf)) if k not in contf)
    keep_b = tuple(k for k in range(len(dimsg)) if k not in contg)
    kept = [dimsf[k] for k in keep_a] + [dimsg[k] for k in keep_b]
    out_dims = [0] * len(kept)
    for t, q in enumerate(perm):
        out_dims[q] = kept[t]
    return keep_a, keep_b, tuple(out_dims)


def _tensordot_dim(dims, attr):
    dimsf, dimsg, contf, contg, perm = attr
    for name, shape, d in (("a", dimsf, dims[0]), ("b", dimsg, dims[1])):
        if any(k < 1 for k in shape) or math.prod(shape) != d:
            raise FormulaError(f"the dims {list(shape)} of {name} do not multiply to its dim {d}")
    if len(contf) != len(contg):
        raise FormulaError(f"{len(contf)} contracted axes of a ({list(contf)}) but {len(contg)} of b ({list(contg)})")
    for name, shape, cont in (("a", dimsf, contf), ("b", dimsg, contg)):
        if len(set(cont)) != len(cont) or any(not 0 <= k < len(shape) for k in cont):
            raise FormulaError(f"contracted axes {list(cont)} of {name} are not distinct axes of {list(shape)}")
    if [dimsf[k] for k in contf] != [dimsg[k] for k in contg]:
        raise FormulaError(f"contracted axes {list(contf)} of {list(dimsf)} and {list(contg)} of {list(dimsg)} "
                           "have different sizes")
    if sorted(perm) != list(range(len(dimsf) + len(dimsg) - 2 * len(contf))):
        raise FormulaError(f"{list(perm)} is not a permutation of the {len(dimsf) + len(dimsg) - 2 * len(contf)} "
                           "output axes")
    return math.prod(_tensordot_axes(attr)[2])


@functools.lru_cache(maxsize=None)
def tensordot_index(attr) -> tuple:
    """``(IA, IB)``, integer arrays of shape ``(out dim, C)`` (C: the product of the
    contracted dims): ``TensorDot(a, b)[o] = sum_c a[IA[o, c]] * b[IB[o, c]]``. The jnp
    evaluation and the C++ printer both read it: one home for the layout."""
    dimsf, dimsg, contf, contg, perm = attr
    keep_a, keep_b, out_dims = _tensordot_axes(attr)
    ka, kb, cont = len(keep_a), len(keep_b), tuple(dimsf[k] for k in contf)
    ia = np.arange(math.prod(dimsf)).reshape(dimsf).transpose(keep_a + tuple(contf))
    ib = np.arange(math.prod(dimsg)).reshape(dimsg).transpose(keep_b + tuple(contg))
    # Axes of the product: kept axes of a, kept axes of b, contracted axes.
    ia = ia.reshape(ia.shape[:ka] + (1,) * kb + cont)
    ib = ib.reshape((1,) * ka + ib.shape[:kb] + cont)
    ia, ib = np.broadcast_arrays(ia, ib)
    order = tuple(int(t) for t in np.argsort(perm)) + tuple(range(ka + kb, ka + kb + len(cont)))
    shape = (math.prod(out_dims), math.prod(cont))
    return ia.transpose(order).reshape(shape), ib.transpose(order).reshape(shape)


def _tensordot(attr, a, b):
    ia, ib = tensordot_index(attr)
    return jnp.sum(a[..., ia] * b[..., ib], -1)


def _tensordot_vjp(n: Node, g: Node) -> tuple:
    """Both cotangents are TensorDots of g: g's axes that come from b contracted with b's
    kept axes give a's kept and contracted axes, put back in a's order by the permutation
    (and symmetrically for b)."""
    (a, b), (dimsf, dimsg, contf, contg, perm) = n.args, n.attr
    keep_a, keep_b, out_dims = _tensordot_axes(n.attr)
    ka, kb, pairs = len(keep_a), len(keep_b), range(len(contf))
    a_axes = [keep_a[t] for t in sorted(range(ka), key=lambda t: perm[t])]
    a_axes += [contf[i] for i in sorted(pairs, key=lambda i: contg[i])]
    b_axes = [contg[i] for i in sorted(pairs, key=lambda i: contf[i])]
    b_axes += [keep_b[s] for s in sorted(range(kb), key=lambda s: perm[ka + s])]
    return (TensorDot(g, b, out_dims, dimsg, perm[ka:], keep_b, a_axes),
            TensorDot(a, g, dimsf, out_dims, keep_a, perm[:ka], b_axes))


# fmt: off
defop("Min",    1, _to(1), lambda a, x: jnp.min(x, -1, keepdims=True), _min_vjp)  # NaN wins
defop("ArgMin", 1, _to(1), lambda a, x: _as(x, jnp.argmin(x, -1, keepdims=True)), None)  # first index of the min
defop("TensorDot", 2, _tensordot_dim, _tensordot, _tensordot_vjp,
      zero_if=(0, 1))  # attr (dimsf, dimsg, contf, contg, perm): see TensorDot() below
# fmt: on


# ---------------------------------------------------------------- VJP helpers
# At kinks and ties the derivatives are those of `jax.grad` on the same jax.numpy
# expression (users compare with it): relu'(0) = 0 (jax.nn.relu), abs'(±0) = 1,
# jnp.clip at a bound splits the cotangent evenly between x and the bound (lax.max/min
# give each of two equal operands half), jnp.power's d/dy is 0 at x = 0. Selects are
# IfElse, not products with 0/1 masks, so that an infinite cotangent on the dead side
# gives 0, not NaN, as lax.select does.


def _select(cond01: Node, g: Node) -> Node:
    """``g`` where the 0/1 formula ``cond01`` is 1, else 0."""
    return IfElse(Subtract(cond01, IntCst(1)), g, Zero(g.dim))


def _replace_zero(x: Node) -> Node:
    """``x``, with 1 where ``x == 0`` (exactly: x + 0 elsewhere)."""
    return Add(x, Equal(x, IntCst(0)))


def _even_split(a: Node, z: Node, b: Node) -> Node:
    """d max(a, b) / da where z = max(a, b) (or min): 1 if a alone equals z, 1/2 if both do."""
    return Divide(Equal(a, z), Add(IntCst(1), Equal(b, z)))


def _clamp_vjp(n: Node, g: Node) -> tuple:
    """Clamp(x, lo, hi) = min(max(x, lo), hi), as jnp.clip: m = max(x, lo) (itself a
    Clamp to [lo, inf], the same value on every backend), then min(m, hi)."""
    x, lo, hi = n.args
    m = Clamp(x, lo, Cst(float("inf")))
    through_m = Mult(g, _even_split(m, n, hi))
    return (Mult(through_m, _even_split(x, m, lo)), Mult(through_m, _even_split(lo, m, x)),
            Mult(g, _even_split(hi, n, m)))


def _sqrt_1m2(x: Node) -> Node:
    """sqrt(1 - x^2), the derivative's denominator of asin and acos."""
    return Sqrt(Subtract(IntCst(1), Square(x)))


def _sqnorm_yx(n: Node) -> Node:
    """x^2 + y^2 for the node Atan2(y, x)."""
    return Add(Square(n.args[0]), Square(n.args[1]))


def _cat_args(x, y):
    shape = jnp.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    return (jnp.broadcast_to(x, shape + x.shape[-1:]), jnp.broadcast_to(y, shape + y.shape[-1:]))


# ---------------------------------------------------------------- smart constructors


def _is_zero(n: Node) -> bool:
    return n.op == "Zero"


def _is_one(n: Node) -> bool:
    return n.op == "IntCst" and n.attr[0] == 1


def _widen(x: Node, dim: int) -> Node:
    """``x`` as a vector of ``dim`` (a dim-1 ``x`` is repeated)."""
    return x if x.dim == dim else build("SumT", x, attr=(dim,))


def build(op: str, *args: Node, attr: tuple = ()) -> Node:
    """The simplified node ``op(*args)``; raises FormulaError on arity or dim mismatch."""
    spec = OPS.get(op)
    if spec is None:
        raise FormulaError(f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
    if len(args) != spec.arity:
        raise FormulaError(f"{op} takes {spec.arity} operands, got {len(args)}")
    for a in args:
        if not isinstance(a, Node):
            raise FormulaError(f"{op}: operand {a!r} is not a formula node")
    try:
        dim = spec.dim(tuple(a.dim for a in args), attr)
    except FormulaError as e:
        raise FormulaError(f"{op}: {e}", _show(op, args, attr)) from None
    # Local algebra that keeps symbolic derivatives small.
    if any(_is_zero(args[k]) for k in spec.zero_if) or (spec.linear and all(map(_is_zero, args))):
        return Zero(dim)
    if op == "Add" and any(map(_is_zero, args)):
        return _widen(args[1] if _is_zero(args[0]) else args[0], dim)
    if op == "Subtract" and _is_zero(args[1]):
        return _widen(args[0], dim)
    if op == "Subtract" and _is_zero(args[0]):
        return _widen(Minus(args[1]), dim)
    if op == "Mult" and any(map(_is_one, args)):
        return _widen(args[1] if _is_one(args[0]) else args[0], dim)
    if op == "Minus" and args[0].op == "Minus":
        return args[0].args[0]
    if op == "Pow" and attr[0] in (0, 1):
        return _widen(IntCst(1), dim) if attr[0] == 0 else args[0]
    if op == "Pow" and attr[0] == 2:
        return Square(args[0])
    return make(op, args, dim, attr)


def _show(op, args, attr):
    parts = [repr(a) for a in args] + [str(v) for v in attr]
    return f"{op}({', '.join(parts)})"


def rebuild(node: Node, args: tuple) -> Node:
    """``node`` with new arguments (same op and attributes)."""
    return build(node.op, *args, attr=node.attr)


# Leaf constructors.
def Var(index: int, dim: int, cat: int) -> Node:
    if cat not in (I, J, P) or dim < 1 or index < 0:
        raise FormulaError(f"bad variable Var({index},{dim},{cat})")
    return make("Var", (), dim, (int(index), int(cat)))


def IntCst(n: int) -> Node:
    return make("IntCst", (), 1, (int(n),))


def Cst(x: float) -> Node:
    x = float(x)
    return IntCst(int(x)) if x.is_integer() and abs(x) < 2**31 else make("Cst", (), 1, (x,))


def Zero(dim: int) -> Node:
    return make("Zero", (), dim, ())


def _builder(name):
    spec = OPS[name]
    n_attr = {"Pow": 1, "SumT": 1, "Extract": 2, "ExtractT": 2, "OneHot": 1, "Round": 1}.get(name, 0)

    def f(*args):
        nodes, attr = args[: spec.arity], tuple(int(a) for a in args[spec.arity :])
        if len(attr) != n_attr:
            raise FormulaError(f"{name} takes {spec.arity} operands and {n_attr} integer attributes")
        return build(name, *nodes, attr=attr)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"Build the formula node {name}."
    return f


# One builder function per non-leaf op: Minus(x), Pow(x, n), Extract(x, start, d), ...
for _name in OPS:
    if OPS[_name].arity:
        globals()[_name] = _builder(_name)
del _name


def _int_tuple(v) -> tuple:
    """A list attribute as a tuple of ints (hashable, for interned nodes); an int is a
    list of one, as pykeops takes it."""
    return (int(v),) if isinstance(v, numbers.Integral) else tuple(int(k) for k in v)


def TensorDot(a: Node, b: Node, dimsf, dimsg, contf, contg, perm=None) -> Node:
    """``numpy.tensordot`` of a and b viewed as row-major tensors of shapes ``dimsf`` and
    ``dimsg``, contracting axis ``contf[k]`` of a with ``contg[k]`` of b; the result has the
    kept axes of a then of b, and axis t of it moves to position ``perm[t]`` of the output
    (KeOps' convention: ``np.transpose`` takes the inverse permutation, ``argsort(perm)``).
    Output dim: the product of the kept dims (1 when everything is contracted).

    Raises:
      FormulaError: dims that do not multiply to the operands' dims, contracted axes out
        of range, repeated or of different sizes, ``perm`` not a permutation.
    """
    lists = tuple(map(_int_tuple, (dimsf, dimsg, contf, contg)))
    n_out = len(lists[0]) + len(lists[1]) - 2 * len(lists[2])
    perm = tuple(range(max(n_out, 0))) if perm is None else _int_tuple(perm)
    return build("TensorDot", a, b, attr=lists + (perm,))
