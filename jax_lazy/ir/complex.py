"""Complex formulas, composed from the real primitives of the op table.

A complex vector ``z`` of (complex) dim D is a real formula of dim 2D in block layout
``[re_0 .. re_{D-1}, im_0 .. im_{D-1}]``. Block (not KeOps' interleaved) layout makes the
real and imaginary parts two contiguous ``Extract`` slices, so a complex op is the
``Concat`` of two real formulas built from existing primitives: no new op, printer or
derivative rule (STYLE rule 3), and the real op table's broadcasting of dim-1 operands
applies to complex dim-1 operands as is.

Each function here takes and returns formula nodes; names follow KeOps
(``ComplexMult`` -> :func:`cmul`, ``ComplexExp1j`` -> :func:`exp1j`...). The formulas are
those of the complex field: ``(a + ib)(c + id) = (ac - bd) + i(ad + bc)``,
``e^{a + ib} = e^a (cos b + i sin b)``, ``|a + ib| = sqrt(a^2 + b^2)``,
``angle(a + ib) = atan2(b, a)``.
"""

from __future__ import annotations

from ..errors import FormulaError
from .node import Node
from .ops import (Add, Concat, Cos, Exp, Extract, Minus, Mult, Divide, Sin, Sqrt, Square, Subtract, Sum, Zero, build)


def split(z: Node) -> tuple:
    """``(re, im)`` of a complex formula; a ``Concat`` of two halves is taken apart
    directly, so that chains of complex ops do not pile up Extract(Concat(...))."""
    if z.dim % 2:
        raise FormulaError(f"a complex formula has an even real dim, got {z.dim}")
    d = z.dim // 2
    if z.op == "Concat" and z.args[0].dim == d:
        return z.args
    return Extract(z, 0, d), Extract(z, d, d)


def join(re: Node, im: Node) -> Node:
    """The complex formula ``re + i im`` (a dim-1 part is repeated to the other's dim)."""
    d = max(re.dim, im.dim)
    re, im = (x if x.dim == d else build("SumT", x, attr=(d,)) for x in (re, im))
    return Concat(re, im)


# ---------------------------------------------------------------- real -> complex


def real2complex(x: Node) -> Node:
    """``Real2Complex``: ``x + 0i``."""
    return join(x, Zero(x.dim))


def imag2complex(x: Node) -> Node:
    """``Imag2Complex``: ``0 + ix``."""
    return join(Zero(x.dim), x)


def exp1j(x: Node) -> Node:
    """``ComplexExp1j``: ``e^{ix} = cos x + i sin x``."""
    return join(Cos(x), Sin(x))


# ---------------------------------------------------------------- complex -> real


def real(z: Node) -> Node:
    """``ComplexReal``."""
    return split(z)[0]


def imag(z: Node) -> Node:
    """``ComplexImag``."""
    return split(z)[1]


def csquareabs(z: Node) -> Node:
    """``ComplexSquareAbs``: ``re^2 + im^2``."""
    re, im = split(z)
    return Add(Square(re), Square(im))


def cabs(z: Node) -> Node:
    """``ComplexAbs``: ``sqrt(re^2 + im^2)`` (derivative 0 at 0, as Sqrt's)."""
    return Sqrt(csquareabs(z))


def cangle(z: Node) -> Node:
    """``ComplexAngle``: ``atan2(im, re)``, in [-pi, pi]."""
    re, im = split(z)
    return build("Atan2", im, re)


# ---------------------------------------------------------------- complex -> complex


def conj(z: Node) -> Node:
    """``Conj``: ``re - i im``."""
    re, im = split(z)
    return join(re, Minus(im))


def cneg(z: Node) -> Node:
    """``-z``."""
    re, im = split(z)
    return join(Minus(re), Minus(im))


def cexp(z: Node) -> Node:
    """``ComplexExp``: ``e^re (cos im + i sin im)``."""
    re, im = split(z)
    m = Exp(re)
    return join(Mult(m, Cos(im)), Mult(m, Sin(im)))


def csum(z: Node) -> Node:
    """``ComplexSum``: the sum of the D coordinates, complex dim 1."""
    re, im = split(z)
    return join(Sum(re), Sum(im))


def cadd(a: Node, b: Node) -> Node:
    """``ComplexAdd``."""
    (ar, ai), (br, bi) = split(a), split(b)
    return join(Add(ar, br), Add(ai, bi))


def csub(a: Node, b: Node) -> Node:
    """``ComplexSubtract``."""
    (ar, ai), (br, bi) = split(a), split(b)
    return join(Subtract(ar, br), Subtract(ai, bi))


def cmul(a: Node, b: Node) -> Node:
    """``ComplexMult`` (and ``ComplexRealScal`` when a part is Zero: the op table's
    simplifications drop the zero products)."""
    (ar, ai), (br, bi) = split(a), split(b)
    return join(Subtract(Mult(ar, br), Mult(ai, bi)), Add(Mult(ar, bi), Mult(ai, br)))


def cdiv(a: Node, b: Node) -> Node:
    """``ComplexDivide``: ``a conj(b) / |b|^2``."""
    (ar, ai), (br, bi) = split(a), split(b)
    d = csquareabs(b)
    return join(Divide(Add(Mult(ar, br), Mult(ai, bi)), d), Divide(Subtract(Mult(ai, br), Mult(ar, bi)), d))
