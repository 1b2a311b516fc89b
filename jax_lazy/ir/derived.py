"""Operations composed from the primitives of the op table.

Each of these returns a formula built from primitive nodes only, so it needs no printer,
no derivative rule and no kernel code of its own (STYLE rule 3). Names and semantics
follow KeOps (``SqDist``, ``Norm2``, ``WeightedSqNorm``...).
"""

from __future__ import annotations

import math

from ..errors import FormulaError
from .node import Node
from .ops import (Add, ArgMin, Clamp, Concat, Cst, Divide, Equal, Exp, Extract, ExtractT, IntCst, Inv, LessOrEqual,
                  LessThan, Log, MatVecMult, Min, Minus, Mult, Rsqrt, SinXDivX, Sqrt, Square, Subtract, Sum, SumT,
                  TensorDot, TensorProd)


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


# ---------------------------------------------------------------- Vector ops (issue 12)


# The functions are named by the lowercase KeOps name (Max -> max, ElemT -> elemt...): the
# formula-string parser finds a composition by that name. (So ``max`` here is KeOps' Max:
# this module does not use the builtin.)


def max(x: Node) -> Node:  # noqa: A001
    """KeOps' ``Max(x)``: the largest coordinate, dim 1, as ``-Min(-x)`` (NaN wins; the
    gradient is split evenly among ties, as ``jax.grad`` of ``jnp.max``)."""
    return Minus(Min(Minus(x)))


def argmax(x: Node) -> Node:
    """KeOps' ``ArgMax(x)``: the index of the largest coordinate as a float, dim 1, as
    ``ArgMin(-x)`` (the first index on ties; the first NaN); zero derivative."""
    return ArgMin(Minus(x))


def elemt(x: Node, n: int, m: int) -> Node:
    """KeOps' ``ElemT(x, n, m)``: the scalar ``x`` at slot ``m`` of a zero vector of dim ``n``
    (``ExtractT(x, m, n)``); the adjoint of ``Elem``."""
    if x.dim != 1:
        raise FormulaError(f"ElemT places a scalar, got a vector of dim {x.dim}")
    if not 0 <= m < n:
        raise FormulaError(f"ElemT: slot {m} out of range for a vector of dim {n}")
    return ExtractT(x, m, n)


def kron(a: Node, b: Node, dimsa: tuple, dimsb: tuple) -> Node:
    """KeOps' ``Kron(a, b, dimsa, dimsb)``: the Kronecker product of a and b viewed as
    row-major tensors of shapes ``dimsa`` and ``dimsb`` (same number of axes), laid out as
    ``np.kron``: the outer product (a's axes then b's) with a's axis k moved to 2k and b's
    to 2k + 1. Dim ``a.dim * b.dim``."""
    n = len(dimsa)
    if len(dimsb) != n:
        raise FormulaError(f"Kron needs shapes with as many axes, got {list(dimsa)} and {list(dimsb)}")
    return TensorDot(a, b, dimsa, dimsb, (), (), tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2)))


def _ones(d: int) -> Node:
    return IntCst(1) if d == 1 else SumT(IntCst(1), d)


def differencematrix(x: Node, y: Node) -> Node:
    """KeOps' ``DifferenceMatrix(x, y)``: ``out[a * dy + b] = x[a] - y[b]``, dim dx * dy."""
    return Subtract(TensorProd(x, _ones(y.dim)), TensorProd(_ones(x.dim), y))


def _ratio(num: Node, den: Node) -> Node:
    """``num / den``, and ``num`` where ``den`` is 0 (a repeated knot: the B-spline it
    multiplies vanishes there)."""
    return Divide(num, Add(den, Equal(den, IntCst(0))))


def bspline(knots: Node, t: Node, order: int) -> Node:
    """KeOps' ``BSpline(knots, t, order)``: the ``D - order - 1`` B-spline basis functions of
    degree ``order`` on the non-decreasing ``knots`` (dim D), at the scalar t, by the
    Cox-de Boor recursion (de Boor, *A Practical Guide to Splines*, 1978):

        B_i,0(t) = 1 if knots[i] <= t < knots[i+1], else 0
        B_i,r(t) = (t - knots[i]) / (knots[i+r] - knots[i]) B_i,r-1(t)
                   + (knots[i+r+1] - t) / (knots[i+r+1] - knots[i+1]) B_i+1,r-1(t)

    with 0 for a term over a repeated knot; the intervals are closed on the left, so every
    basis function is 0 at t = knots[-1] (as KeOps and ``scipy.interpolate.BSpline`` with
    ``extrapolate=False``). Differentiable in t and in the knots (the recursion is): the
    derivative in t is that of the spline basis, 0 at degree 0. Code size: O(order * D)
    statements (one vector of each level).

    Raises:
      FormulaError: t not a scalar, order < 0, or fewer than order + 2 knots.
    """
    d = knots.dim
    if t.dim != 1:
        raise FormulaError(f"BSpline is evaluated at a scalar, got a vector of dim {t.dim}")
    if order < 0 or d < order + 2:
        raise FormulaError(f"a BSpline of order {order} needs order >= 0 and at least {order + 2} knots, got {d}")
    basis = Mult(LessOrEqual(Extract(knots, 0, d - 1), t), LessThan(t, Extract(knots, 1, d - 1)))
    for r in range(1, order + 1):
        n = d - 1 - r
        lo, lo1, hi, hi1 = (Extract(knots, s, n) for s in (0, 1, r, r + 1))
        rise = _ratio(Subtract(t, lo), Subtract(hi, lo))
        fall = _ratio(Subtract(hi1, t), Subtract(hi1, lo1))
        basis = Add(Mult(rise, Extract(basis, 0, n)), Mult(fall, Extract(basis, 1, n)))
    return basis


def _softmin(r: list, gamma: Node, inv_gamma: Node) -> Node:
    """``-gamma log sum_k exp(-r_k / gamma)``, shifted by m = min_k r_k so that no exp
    overflows: ``m - gamma log sum_k exp((m - r_k) / gamma)``."""
    v = Concat(Concat(r[0], r[1]), r[2])
    m = Min(v)
    return Subtract(m, Mult(gamma, Log(Sum(Exp(Mult(Subtract(m, v), inv_gamma))))))


def softdtw_sqdist(x: Node, y: Node, gamma: Node) -> Node:
    """KeOps' ``SoftDTW_SqDist(x, y, gamma)``: the soft-DTW discrepancy between the
    sequences x (length dx, the coordinates of x) and y (length dy) for the cost
    (x_a - y_b)^2 (Cuturi & Blondel, "Soft-DTW: a differentiable loss function for
    time-series", ICML 2017), dim 1:

        R[a, b] = (x_a - y_b)^2 + softmin_gamma(R[a-1, b-1], R[a-1, b], R[a, b-1])

    with R[0, 0] = (x_0 - y_0)^2 and, on the first row and column, the one neighbour in
    place of the softmin (the standard border R[-1, -1] = 0, R[-1, b] = R[a, -1] = inf);
    the result is R[dx-1, dy-1]. ``gamma`` > 0 is a scalar formula. The recursion is
    unrolled into the formula: about 13 nodes and 20 C++ statements per cell, 57 for a
    gradient (dx = dy = 16: 5,100 statements, 14,700 for a gradient; docs/api.md has the
    compile times), so it is meant for short sequences (up to a few tens of steps).
    Differentiable in x, y and gamma, to any order, by the symbolic derivative of the
    unrolled recursion (its reverse sweep is Cuturi & Blondel's backward recursion).

    Raises:
      FormulaError: gamma not a scalar.
    """
    if gamma.dim != 1:
        raise FormulaError(f"SoftDTW_SqDist: gamma must be a scalar, got dim {gamma.dim}")
    xs = [Extract(x, a, 1) for a in range(x.dim)]
    ys = [Extract(y, b, 1) for b in range(y.dim)]
    R: dict = {}
    inv_gamma = Inv(gamma)  # once per kernel call (a parameter), not a division per cell
    for a in range(x.dim):
        for b in range(y.dim):
            cost = Square(Subtract(xs[a], ys[b]))
            prev = [R[p] for p in ((a - 1, b - 1), (a - 1, b), (a, b - 1)) if p in R]
            R[a, b] = cost if not prev else Add(cost, prev[0] if len(prev) == 1 else _softmin(prev, gamma, inv_gamma))
    return R[x.dim - 1, y.dim - 1]


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
