"""Complex symbolic arrays: :class:`ComplexLazyArray`.

A ``complex64`` / ``complex128`` array given to ``Vi``, ``Vj``, ``Pm`` or ``LazyArray`` is
bound as a real array of doubled last axis, ``[real parts, imaginary parts]``
(:func:`to_block`), and its formula is a real formula of dim 2D in that block layout
(:mod:`jax_lazy.ir.complex`). The conversion and its inverse on reduction outputs
(:func:`from_block`) are ``jax.numpy`` operations, so JAX's own autodiff of
``jnp.real``, ``jnp.imag`` and ``lax.complex`` gives gradients with respect to complex
inputs in JAX's convention, and the reduction primitive only ever sees real arrays.

A :class:`ComplexLazyArray` is a :class:`~jax_lazy.lazy.LazyArray` whose ``dim`` and
``shape`` count complex coordinates (D), whose ``dtype`` is complex, and whose ``_apply``
maps each real op builder that has a complex meaning (``Add``, ``Mult``, ``Exp``,
``Abs``, ``Sum``...) to its complex formula, so the operators and methods inherited from
``LazyArray`` work unchanged; the others raise :class:`~jax_lazy.errors.DtypeError`.
Real operands (LazyArrays, arrays, Python numbers) are promoted with ``Real2Complex``;
the real and imaginary parts of a Python complex are lifted as Python real numbers are
(an int exact, a float a runtime parameter: a new value, no new kernel).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
from jax import lax

from .errors import DtypeError, FormulaError
from .ir import Zero, ops, to_string
from .ir import complex as cx
from .lazy import LazyArray
from .lazy_reduction import LazyReduction


def to_block(z: jax.Array) -> jax.Array:
    """A complex ``(..., D)`` array as the real ``(..., 2D)`` array ``[re, im]``."""
    return jnp.concatenate([jnp.real(z), jnp.imag(z)], axis=-1)


def from_block(x: jax.Array) -> jax.Array:
    """The inverse of :func:`to_block`: a real ``(..., 2D)`` array as complex ``(..., D)``."""
    d = x.shape[-1] // 2
    return lax.complex(x[..., :d], x[..., d:])


def _real_twin(z: LazyArray) -> LazyArray:
    """The same formula and arrays, seen as a real LazyArray of dim 2D."""
    return _as(LazyArray, z)


def _as(cls, x: LazyArray, formula=None) -> LazyArray:
    """``x`` (or ``formula`` over x's variables) as an instance of ``cls``."""
    return cls._build(x.formula if formula is None else formula, x._vars, x._arrays, x.ni, x.nj, x.batch_shape,
                      x._symbolic, x.ranges)


def constant(like: LazyArray, c: numbers.Number) -> "ComplexLazyArray":
    """A Python number as a complex LazyArray: its real and imaginary parts lifted as real
    Python numbers are (``LazyArray._lift``: ints exact, floats as real floats are), a part
    0 left out (Zero, so products with it simplify away). ``like`` only names the formula in
    errors."""
    parts = (c, 0) if isinstance(c, numbers.Real) else (complex(c).real, complex(c).imag)
    re, im = (LazyArray._build(Zero(1), (), (), None, None, ()) if v == 0 else LazyArray._lift(like, v)
              for v in parts)
    nodes, ctx = re._join(im)
    return ComplexLazyArray._build(cx.join(*nodes), *ctx)


def promote(x: LazyArray) -> "ComplexLazyArray":
    """``Real2Complex(x)`` (a complex LazyArray is returned as is)."""
    return x if x.is_complex else _as(ComplexLazyArray, x, cx.real2complex(x.formula))


def from_real(x: LazyArray, node_fn) -> "ComplexLazyArray":
    """The complex LazyArray ``node_fn(x.formula)`` of a real LazyArray ``x``
    (``Real2Complex``, ``Imag2Complex``, ``ComplexExp1j``)."""
    if x.is_complex:
        raise DtypeError(f"{node_fn.__name__} takes a real LazyArray, got a complex one", to_string(x.formula))
    return _as(ComplexLazyArray, x, node_fn(x.formula))


# Real op builders with a complex meaning -> (complex formula, whether the result is complex).
# LazyArray's operators and methods call `_apply(ops.X, ...)`; this table is their
# complex dispatch. KeOps names: ComplexAdd, ComplexSubtract, ComplexMult, ComplexDivide,
# ComplexExp, ComplexAbs, ComplexSum.
_COMPLEX_OF = {
    ops.Add: (cx.cadd, True),
    ops.Subtract: (cx.csub, True),
    ops.Mult: (cx.cmul, True),
    ops.Divide: (cx.cdiv, True),
    ops.Minus: (cx.cneg, True),
    ops.Exp: (cx.cexp, True),
    ops.Sum: (cx.csum, True),
    ops.Abs: (cx.cabs, False),
}


@jax.tree_util.register_pytree_node_class
class ComplexLazyArray(LazyArray):
    """A complex symbolic array ``(*batch, M, N, D)``, complex64 or complex128.

    Built by ``Vi``/``Vj``/``Pm``/``LazyArray`` from a complex array, by
    ``x.real2complex()``, ``x.imag2complex()``, ``x.exp1j()`` on a real LazyArray, or by
    combining a LazyArray with a complex operand. Supports ``+ - * /`` and unary ``-``
    (operands complex or real, LazyArrays, arrays or Python numbers), ``exp``, ``conj``,
    ``sum(-1)``, ``real``, ``imag``, ``abs``, ``angle``, the reduction ``sum`` over i or
    j and ``K @ b``, which return complex arrays. Other ops and reductions raise
    DtypeError.
    """

    is_complex = True

    def __init__(self, x, axis=None):
        if not jnp.iscomplexobj(x):  # LazyArray(x) turns complex by itself; a real x here would lose half its dim
            raise DtypeError(f"ComplexLazyArray needs a complex array, got {jnp.asarray(x).dtype}; use LazyArray(x) "
                             "or x.real2complex()")
        super().__init__(x, axis)

    # -------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """The complex dimension D (the formula has real dim 2D)."""
        return self.formula.dim // 2

    @property
    def dtype(self):
        """complex64 (float32 blocks) or complex128 (float64 blocks); None without data."""
        real = super().dtype
        return None if real is None else jnp.result_type(real, jnp.complex64)

    def __repr__(self) -> str:
        return "Complex" + super().__repr__()

    __str__ = __repr__

    # -------------------------------------------------------------- combining
    def _lift(self, other) -> "ComplexLazyArray":
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            return constant(self, other)
        return promote(LazyArray._lift(self, other))

    def _apply(self, fn, *others):
        entry = _COMPLEX_OF.get(fn)
        if entry is None:
            name = getattr(fn, "__name__", "<lambda>").replace("<lambda>", "this op")
            raise DtypeError(f"{name} is not defined for complex LazyArrays (complex ops: + - * /, exp, conj, "
                             "abs, angle, real, imag, sum)", to_string(self.formula))
        return self._capply(*entry, *others)

    def _capply(self, node_fn, out_complex: bool, *others):
        nodes, ctx = self._join(*others)
        try:
            formula = node_fn(*nodes)
        except FormulaError as e:
            raise FormulaError(e.message, "  and  ".join(to_string(n) for n in nodes)) from None
        return (ComplexLazyArray if out_complex else LazyArray)._build(formula, *ctx)

    # -------------------------------------------------------------- complex-only methods
    @property
    def real(self) -> LazyArray:
        """``ComplexReal``: the real part, a real LazyArray of dim D."""
        return self._capply(cx.real, False)

    @property
    def imag(self) -> LazyArray:
        """``ComplexImag``: the imaginary part, a real LazyArray of dim D."""
        return self._capply(cx.imag, False)

    def conj(self) -> "ComplexLazyArray":
        """``Conj``: the complex conjugate."""
        return self._capply(cx.conj, True)

    def angle(self) -> LazyArray:
        """``ComplexAngle``: ``atan2(imag, real)`` in [-pi, pi], a real LazyArray."""
        return self._capply(cx.cangle, False)

    def real2complex(self):
        """Raises DtypeError: ``real2complex``, ``imag2complex`` and ``exp1j`` take real LazyArrays."""
        raise DtypeError("real2complex takes a real LazyArray, got a complex one", to_string(self.formula))

    imag2complex = exp1j = real2complex

    # -------------------------------------------------------------- views of the real formula
    def t(self) -> "ComplexLazyArray":
        """The transpose: i and j exchanged, shape ``(*batch, N, M, D)``."""
        return _as(ComplexLazyArray, _real_twin(self).t())

    T = property(t)

    def dense(self) -> jax.Array:
        """Materialise the complex ``(*batch, M, N, D)`` array (small sizes, tests)."""
        return from_block(_real_twin(self).dense())

    def _reduce(self, red, axis, weight=None, k=None, call=True, **options):
        # Only sums are linear, hence computed on the real and imaginary parts apart; min,
        # argmin, logsumexp, softmax... need an order or a real exponential.
        if red != "Sum" or weight is not None:
            raise DtypeError(f"the {red} reduction is not defined for complex LazyArrays (only sum and K @ b)",
                             to_string(self.formula))
        out = _real_twin(self)._reduce(red, axis, call=call, **options)
        return ComplexReduction(out) if isinstance(out, LazyReduction) else from_block(out)


class ComplexReduction:
    """A :class:`~jax_lazy.lazy.LazyReduction` of a complex formula (``call=False``, or
    symbolic real variables): calling it returns the complex output."""

    def __init__(self, real: LazyReduction):
        self._real = real

    def __call__(self, *args, **options):
        return from_block(self._real(*args, **options))

    def __repr__(self) -> str:
        return f"Complex{self._real!r}"
