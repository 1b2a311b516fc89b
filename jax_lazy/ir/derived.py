"""Operations composed from the primitives of the op table.

Each of these returns a formula built from primitive nodes only, so it needs no printer,
no derivative rule and no kernel code of its own (STYLE rule 3). Names and semantics
follow KeOps (``SqDist``, ``Norm2``, ``WeightedSqNorm``...).
"""

from __future__ import annotations

import math

from ..errors import FormulaError
from .node import Node
from .ops import Clamp, Cst, Extract, IntCst, MatVecMult, Mult, Rsqrt, SinXDivX, Sqrt, Square, Subtract, Sum


def sqnorm2(x: Node) -> Node:
    """``Sum(Square(x))``: the squared Euclidean norm, dim 1."""
    return Sum(Square(x))


def norm2(x: Node) -> Node:
    """``Sqrt(SqNorm2(x))``; its derivative at 0 is 0 (Rsqrt(0) = 0), never NaN."""
    return Sqrt(sqnorm2(x))


def normalize(x: Node) -> Node:
    """``x * Rsqrt(SqNorm2(x))``; 0 maps to 0."""
    return Mult(x, Rsqrt(sqnorm2(x)))


def scalprod(x: Node, y: Node) -> Node:
    """``Sum(x * y)``, the scalar product; dims must be equal."""
    if x.dim != y.dim:
        raise FormulaError(f"scalar product of vectors of dims {x.dim} and {y.dim}")
    return Sum(Mult(x, y))


def sqdist(x: Node, y: Node) -> Node:
    """``SqNorm2(x - y)``; dims must be equal (or one of them 1)."""
    return sqnorm2(Subtract(x, y))


def weightedsqnorm(s: Node, x: Node) -> Node:
    """``x^T S x`` with S isotropic (dim s = 1), diagonal (dim s = D) or a full
    symmetric D x D matrix stored row-major (dim s = D*D)."""
    d = x.dim
    if s.dim == 1:
        return Mult(s, sqnorm2(x))
    if s.dim == d:
        return Sum(Mult(s, Square(x)))
    if s.dim == d * d:
        return Sum(Mult(x, MatVecMult(s, x)))
    raise FormulaError(f"weightedsqnorm: weight dim {s.dim} is none of 1, {d}, {d * d} for vectors of dim {d}")


def weightedsqdist(s: Node, x: Node, y: Node) -> Node:
    """``weightedsqnorm(s, x - y)``."""
    return weightedsqnorm(s, Subtract(x, y))


def elem(x: Node, k: int) -> Node:
    """Coordinate ``k`` of ``x`` (dim 1)."""
    return Extract(x, k, 1)


# Element-wise math (issue 12).


def sinc(x: Node) -> Node:
    """The normalised sinc, ``SinXDivX(pi * x)`` = sin(pi x) / (pi x), 1 at 0 (KeOps'
    ``sinc``, as ``numpy.sinc``)."""
    return SinXDivX(Mult(Cst(math.pi), x))


def clampint(x: Node, lo: int, hi: int) -> Node:
    """KeOps' ``ClampInt(x, lo, hi)``: ``Clamp`` with integer bounds; its derivative is
    jnp.clip's (1 inside, 0 outside, split evenly at a bound)."""
    if isinstance(lo, bool) or isinstance(hi, bool) or lo != int(lo) or hi != int(hi):
        raise FormulaError(f"ClampInt takes integer bounds, got {lo!r} and {hi!r}")
    return Clamp(x, IntCst(int(lo)), IntCst(int(hi)))
