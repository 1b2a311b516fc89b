"""The symbolic array type: :class:`LazyArray` (alias ``LazyTensor``), ``Vi``, ``Vj``, ``Pm``.

A LazyArray stands for an array of shape ``(*batch, M, N, D)`` whose entries are given by
a formula ``F(x_i, y_j, p)``; it is never materialised. It holds a formula node (the IR)
and the arrays bound to the formula's variables. Operators build new formulas; a
reduction over the i or j axis (``sum``, ``logsumexp``, ``argKmin``...) returns a plain
``jax.Array``, computed by a generated map-reduce through :func:`jax_lazy.api.reduce`.

Shape conventions (as in pykeops): ``Vi(x)`` for ``x`` of shape ``(*b, M, D)`` is indexed
by i (axis -3), ``Vj(y)`` for ``(*b, N, D)`` by j (axis -2), ``Pm(p)`` for ``(*b, D)`` or a
scalar is a parameter; batch axes broadcast NumPy-style. Python ints in formulas are exact
integer constants (``IntCst``); Python and NumPy floats are runtime parameters (weakly
typed scalars bound as ``Pm``), so a new value reuses the compiled kernel, as in pykeops.
"""

from __future__ import annotations

import numbers
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import memo
from . import plan as plan_mod
from . import ranges as ranges_mod
from .errors import AxisError, DtypeError, FormulaError, ShapeError
from .ir import I, J, P, IntCst, Var, derived, ops, substitute, to_string
from .ir import complex as cx
from .ir.evaluate import evaluate

_FLOATS = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
_COMPLEX = (jnp.complex64, jnp.complex128)  # bound as real arrays [re, im]: complex_lazy.py


def _as_float_array(x, what: str):
    x = jnp.asarray(x)
    if x.dtype not in [jnp.dtype(t) for t in _FLOATS + _COMPLEX]:
        raise DtypeError(f"{what}: expected a floating array (float16/bfloat16/float32/float64) or a complex one "
                         f"(complex64/complex128), got {x.dtype}")
    return x


def _weak(a) -> bool:
    """Whether ``a`` is weakly typed (a Python scalar made an array): it adopts the dtype
    of the other operands instead of clashing with it."""
    return bool(getattr(getattr(a, "aval", a), "weak_type", False))


def _one_dtype(arrays, text) -> None:
    """Raise DtypeError (showing ``text()``) unless the strongly typed arrays share one dtype."""
    dtypes = {jnp.dtype(a.dtype) for a in arrays if not _weak(a)}
    if len(dtypes) > 1:
        raise DtypeError(f"mixed dtypes {sorted(map(str, dtypes))}; cast the arrays to one dtype", text)


def _reduction_only(red: str, method: str):
    """The pykeops alias ``<method>_reduction``: :meth:`LazyArray.<method>` over i or j only."""

    def reduction(self, axis=None, dim=None, backend="auto", **kw):
        return self._reduce(red, self._axis(axis, dim, f"{method}_reduction"), backend=backend, **kw)

    reduction.__name__ = reduction.__qualname__ = f"{method}_reduction"
    reduction.__doc__ = f":meth:`{method}` over i or j (no default axis: never the vector op)."
    return reduction


@jax.tree_util.register_pytree_node_class
class LazyArray:
    """A symbolic array ``(*batch, M, N, D)`` defined by a formula over bound arrays.

    Construct with :func:`Vi`, :func:`Vj`, :func:`Pm`, or ``LazyArray(x)`` where ``x`` has
    shape ``(..., M, 1, D)`` (i-variable), ``(..., 1, N, D)`` (j-variable) or
    ``(..., 1, 1, D)`` (parameter); a 2-D ``x`` needs ``axis=0`` (i) or ``axis=1`` (j).
    ``LazyArray((index, dim, cat))`` (three ints) is a symbolic variable, as ``Vi(index, dim)``.

    Raises:
      DtypeError: non-floating input, or arrays of different dtypes combined.
      ShapeError: an input of the wrong rank; sizes M or N or batch shapes that disagree.
    """

    __array_ufunc__ = None  # numpy_array + lazy dispatches to LazyArray.__radd__
    __array_priority__ = 1000

    def __init__(self, x, axis: Optional[int] = None):
        if isinstance(x, tuple) and len(x) == 3 and axis is None and all(isinstance(v, numbers.Integral) for v in x):
            self._init_symbolic(*x[:2], cat=x[2])
            return
        x = _as_float_array(x, "LazyArray")
        if x.ndim == 2 and axis in (0, 1):
            cat, arr = (I, J)[axis], x
        elif x.ndim >= 3 and axis is None and x.shape[-3:-1] == (1, 1):
            cat, arr = P, x.reshape(x.shape[:-3] + x.shape[-1:])
        elif x.ndim >= 3 and axis is None and x.shape[-2] == 1:
            cat, arr = I, x.reshape(x.shape[:-2] + x.shape[-1:])
        elif x.ndim >= 3 and axis is None and x.shape[-3] == 1:
            cat, arr = J, jnp.squeeze(x, -3)
        else:
            raise ShapeError(
                f"LazyArray needs a 2-D array with axis=0 or 1, or an array of shape (..., M, 1, D), "
                f"(..., 1, N, D) or (..., 1, 1, D); got shape {x.shape} with axis={axis}"
            )
        self._init_leaf(arr, cat)

    def _init_leaf(self, arr, cat):
        if jnp.iscomplexobj(arr):  # every constructor lands here: one place turns it complex
            arr, self.__class__ = complex_lazy.to_block(arr), complex_lazy.ComplexLazyArray
        self.formula = Var(0, arr.shape[-1], cat)
        self._vars = (self.formula,)
        self._arrays = (arr,)
        self.ni = arr.shape[-2] if cat == I else None
        self.nj = arr.shape[-2] if cat == J else None
        self.batch_shape = arr.shape[:-1] if cat == P else arr.shape[:-2]
        self._symbolic = ()

    def _init_symbolic(self, index, dim, cat):
        """A symbolic variable ``Var(index, dim, cat)``: no data, filled in at call time."""
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (index, dim, cat)) \
                or index < 0 or dim < 1 or cat not in (I, J, P):
            raise FormulaError(f"a symbolic variable needs integers index >= 0, dim >= 1 and category 0 (i), 1 (j) "
                               f"or 2 (parameter); got ({index!r}, {dim!r}, {cat!r})")
        self.formula = Var(int(index), int(dim), int(cat))
        self._vars, self._arrays, self._symbolic = (), (), (self.formula,)
        self.ni = self.nj = None
        self.batch_shape = ()

    @classmethod
    def _build(cls, formula, vars_, arrays, ni, nj, batch, symbolic=(), ranges=None):
        """``symbolic``: the ``Var`` nodes of the symbolic variables (their indices are the
        user's, below those of the bound arrays ``vars_``); ``ranges``: the 6-tuple of
        :attr:`ranges`."""
        self = object.__new__(cls)
        self.formula, self._vars, self._arrays = formula, tuple(vars_), tuple(arrays)
        self.ni, self.nj, self.batch_shape = ni, nj, tuple(batch)
        self._symbolic = tuple(symbolic)
        self._ranges = ranges
        return self

    # -------------------------------------------------------------- pytree
    # leaves: the bound arrays, then the six ranges arrays when set
    def tree_flatten(self):
        aux = (self.formula, self._vars, self.ni, self.nj, self.batch_shape, self._symbolic, self._ranges is not None)
        return self._arrays + (self._ranges or ()), aux

    @classmethod
    def tree_unflatten(cls, aux, leaves):
        formula, vars_, ni, nj, batch, symbolic, has_ranges = aux
        leaves = tuple(leaves)
        arrays, ranges = (leaves[:-6], leaves[-6:]) if has_ranges else (leaves, None)
        return cls._build(formula, vars_, arrays, ni, nj, batch, symbolic, ranges)

    # -------------------------------------------------------------- block-sparse ranges (issue 13)
    _ranges = None

    @property
    def ranges(self):
        """KeOps' block-sparse 6-tuple ``(ranges_i, slices_i, redranges_j, ranges_j,
        slices_j, redranges_i)`` used by every reduction of this LazyArray (a reduction's
        ``ranges=`` wins), or None (dense). Settable (``K.ranges = R``; checked when a
        reduction runs, ShapeError here if not 6 entries); kept by the operations that
        build new LazyArrays (operands with different ranges raise RangesError, as in
        pykeops), swapped by :meth:`t`.
        See docs/api.md, "Block-sparse reductions"."""
        return self._ranges

    @ranges.setter
    def ranges(self, value):
        self._ranges = ranges_mod.as_tuple(value, to_string(self.formula))

    # -------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """The vector dimension D (pykeops' ``ndim``)."""
        return self.formula.dim

    @property
    def shape(self) -> tuple:
        """``(*batch, M, N, D)``; M (N) is 1 when no i- (j-) variable is bound."""
        return self.batch_shape + (self.ni or 1, self.nj or 1, self.dim)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbatchdims(self) -> int:
        return len(self.batch_shape)

    @property
    def dtype(self):
        return jnp.result_type(*self._arrays) if self._arrays else None

    @property
    def variables(self) -> tuple:
        """The bound arrays, in the order of the formula's variable indices."""
        return self._arrays

    def __repr__(self) -> str:
        symbolic = f", symbolic=({', '.join(map(_signature, self._symbolic))})" if self._symbolic else ""
        return f"LazyArray(formula={to_string(self.formula)}, shape={self.shape}, dtype={self.dtype}{symbolic})"

    __str__ = __repr__

    def __bool__(self):
        raise TypeError("the truth value of a LazyArray is symbolic; reduce it first")

    __hash__ = None  # == builds a formula

    # -------------------------------------------------------------- combining
    def _lift(self, other) -> "LazyArray":
        if isinstance(other, LazyArray):
            return other
        if isinstance(other, numbers.Integral):
            return LazyArray._build(IntCst(int(other)), (), (), None, None, ())
        if isinstance(other, numbers.Real):  # a runtime parameter: a new value is no new kernel
            return Pm(other)
        if isinstance(other, numbers.Complex):
            return complex_lazy.constant(self, other)
        if isinstance(other, (jax.Array, np.ndarray)):
            if other.ndim == 2:
                raise ShapeError(f"a 2-D array of shape {other.shape} is ambiguous in a formula: wrap it with "
                                 "Vi, Vj or Pm", to_string(self.formula))
            try:
                return LazyArray(other) if other.ndim >= 3 else Pm(other)
            except (DtypeError, ShapeError) as e:
                raise type(e)(str(e), to_string(self.formula)) from None
        raise FormulaError(f"cannot combine a LazyArray with {type(other).__name__}", to_string(self.formula))

    def _join(self, *others) -> tuple:
        """Merge the variables of ``self`` and ``others``: their formulas renumbered into
        one variable list. Symbolic variables keep their indices, the lowest (as in
        pykeops); the bound arrays are numbered after them (an array bound twice in one
        category is shared)."""
        operands = [self, *map(self._lift, others)]
        symbolic = _merge_symbolic(operands)
        base = symbolic[-1].attr[0] + 1 if symbolic else 0
        nodes, vars_, arrays = [], [], []
        ni, nj, batches = None, None, []
        for o in operands:
            mapping = {}
            for v, a in zip(o._vars, o._arrays):
                k = next((k for k, (w, b) in enumerate(zip(vars_, arrays))
                          if b is a and w.attr[1] == v.attr[1] and w.dim == v.dim), None)
                if k is None:
                    k = len(vars_)
                    vars_.append(Var(base + k, v.dim, v.attr[1]))
                    arrays.append(a)
                mapping[v] = vars_[k]
            # An identity renumbering (the usual case when one formula extends another)
            # skips the rewrite: building an n-op formula step by step stays O(n), not O(n^2).
            renumbered = any(k is not v for k, v in mapping.items())
            nodes.append(substitute(o.formula, mapping) if renumbered else o.formula)
            for mine, theirs, name in ((ni, o.ni, "M (the i axis)"), (nj, o.nj, "N (the j axis)")):
                if mine is not None and theirs is not None and mine != theirs:
                    raise ShapeError(f"sizes {mine} and {theirs} of {name} disagree",
                                     f"{to_string(self.formula)}  and  {to_string(o.formula)}")
            ni, nj = ni or o.ni, nj or o.nj
            batches.append(o.batch_shape)
        try:
            batch = np.broadcast_shapes(*batches)
        except ValueError:
            raise ShapeError(f"incompatible batch dimensions {batches}",
                             "  and  ".join(to_string(n) for n in nodes)) from None
        _one_dtype(arrays, lambda: "  and  ".join(to_string(n) for n in nodes))
        ranges = ranges_mod.join([o.ranges for o in operands], lambda: "  and  ".join(to_string(n) for n in nodes))
        return nodes, (vars_, arrays, ni, nj, batch, symbolic, ranges)

    def _apply(self, fn, *others):
        others = tuple(map(self._lift, others))
        if any(o.is_complex for o in others):  # a complex operand: the complex op (complex_lazy.py)
            return complex_lazy.promote(self)._apply(fn, *others)
        nodes, ctx = self._join(*others)
        try:
            formula = fn(*nodes)
        except FormulaError as e:
            raise FormulaError(e.message, "  and  ".join(to_string(n) for n in nodes)) from None
        return LazyArray._build(formula, *ctx)

    def _rapply(self, fn, o):
        """``fn(o, self)`` for a number or array ``o`` (the reflected operators): self's
        variables keep their indices, so that building ``c * F`` step by step stays
        linear (no renumbering of F) when ``c`` is a float parameter."""
        o = self._lift(o)
        if o.is_complex or self.is_complex:  # complex_lazy.py maps fn itself, not a lambda around it
            return o._apply(fn, self)
        return self._apply(lambda s, t: fn(t, s), o)

    # -------------------------------------------------------------- arithmetic
    def __add__(self, o): return self._apply(ops.Add, o)
    def __radd__(self, o): return self._rapply(ops.Add, o)
    def __sub__(self, o): return self._apply(ops.Subtract, o)
    def __rsub__(self, o): return self._rapply(ops.Subtract, o)
    def __mul__(self, o): return self._apply(ops.Mult, o)
    def __rmul__(self, o): return self._rapply(ops.Mult, o)
    def __truediv__(self, o): return self._apply(ops.Divide, o)
    def __rtruediv__(self, o): return self._rapply(ops.Divide, o)
    def __neg__(self): return self._apply(ops.Minus)
    def __abs__(self): return self._apply(ops.Abs)
    def __or__(self, o): return self._apply(derived.scalprod, o)  # scalar product, dim 1
    def __ror__(self, o): return self._rapply(derived.scalprod, o)
    def __lt__(self, o): return self._apply(ops.LessThan, o)
    def __le__(self, o): return self._apply(ops.LessOrEqual, o)
    def __gt__(self, o): return self._lift(o)._apply(ops.LessThan, self)
    def __ge__(self, o): return self._lift(o)._apply(ops.LessOrEqual, self)
    def __eq__(self, o): return self._apply(ops.Equal, o)  # noqa: E704
    def __ne__(self, o): return self._apply(ops.NotEqual, o)

    def __pow__(self, p):
        """``x ** n`` for an int or an integral float n (Pow, Square: exact, any sign of
        x), ``x ** 0.5`` (Sqrt), ``x ** -0.5`` (Rsqrt); any other float p or a LazyArray
        gives Powf (x > 0), p a runtime parameter. So only these exponents are part of
        the kernel: a loop over non-integral exponents compiles one kernel."""
        if isinstance(p, numbers.Real) and float(p).is_integer() and abs(p) < 2**31:
            return self._apply(lambda x: ops.Pow(x, int(p)))
        if isinstance(p, numbers.Real) and p == 0.5:
            return self.sqrt()
        if isinstance(p, numbers.Real) and p == -0.5:
            return self.rsqrt()
        return self._apply(ops.Powf, p)

    def exp(self): return self._apply(ops.Exp)
    def log(self): return self._apply(ops.Log)
    def sin(self): return self._apply(ops.Sin)
    def cos(self): return self._apply(ops.Cos)
    def sqrt(self): return self._apply(ops.Sqrt)
    def rsqrt(self): return self._apply(ops.Rsqrt)
    def square(self): return self._apply(ops.Square)
    def abs(self): return self._apply(ops.Abs)
    def sign(self): return self._apply(ops.Sign)
    def step(self): return self._apply(ops.Step)
    def relu(self): return self._apply(ops.ReLU)
    def inv(self): return self._apply(ops.Inv)
    def power(self, n: int): return self._apply(lambda x: ops.Pow(x, int(n)))
    def powf(self, p): return self._apply(ops.Powf, p)

    def clamp(self, lo, hi):
        """Clamp to ``[lo, hi]`` element-wise (lo, hi: numbers or LazyArrays; two Python
        ints give KeOps' ClampInt)."""
        if all(isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in (lo, hi)):
            return self._apply(lambda x: derived.clampint(x, int(lo), int(hi)))
        return self._apply(ops.Clamp, lo, hi)

    def ifelse(self, a, b):
        """``a`` where ``self >= 0``, else ``b``."""
        return self._apply(ops.IfElse, a, b)

    # -------------------------------------------------------------- element-wise math (issue 12)
    # KeOps' XLogX, Asin, ..., Erf (docs/api.md, "Element-wise math"); same shape as self.
    def xlogx(self): return self._apply(ops.XLogX)  # x log x, 0 at 0
    def asin(self): return self._apply(ops.Asin)
    def acos(self): return self._apply(ops.Acos)
    def atan(self): return self._apply(ops.Atan)
    def atan2(self, x): return self._apply(ops.Atan2, x)  # y.atan2(x): the angle of (x, y)
    def sinxdivx(self): return self._apply(ops.SinXDivX)  # sin(x) / x, 1 at 0
    def sinc(self): return self._apply(derived.sinc)  # sin(pi x) / (pi x), as numpy.sinc
    def floor(self): return self._apply(ops.Floor)

    def round(self, d: int = 0):
        """Round to ``d`` decimals (an int), half to even, as ``jnp.round(x, d)``."""
        if not isinstance(d, numbers.Integral) or isinstance(d, bool):
            raise FormulaError(f"round: the number of decimals must be an int, got {d!r}", to_string(self.formula))
        return self._apply(lambda x: ops.Round(x, int(d)))

    def tanh(self): return self._apply(ops.Tanh)
    def sigmoid(self): return self._apply(ops.Sigmoid)
    def erf(self): return self._apply(ops.Erf)

    def mod(self, m, offset=0):
        """``self - m * floor((self - offset) / m)``: KeOps' Mod, values in
        ``[offset, offset + m)`` (m, offset: numbers or LazyArrays)."""
        return self._apply(ops.Mod, m, offset)

    # -------------------------------------------------------------- vector ops
    def sqnorm2(self): return self._apply(derived.sqnorm2)
    def norm2(self): return self._apply(derived.norm2)
    def normalize(self): return self._apply(derived.normalize)
    def sqdist(self, y): return self._apply(derived.sqdist, y)
    def weightedsqnorm(self, s): return self._lift(s)._apply(derived.weightedsqnorm, self)

    def weightedsqdist(self, y, s):
        return self._lift(s)._apply(lambda s_, x_, y_: derived.weightedsqdist(s_, x_, y_), self, y)

    def norm(self, dim=-1):
        if dim not in (-1, self.ndim - 1):
            raise AxisError(f"norm is taken over the vector axis (-1), not {dim}", to_string(self.formula))
        return self.norm2()

    def elem(self, k: int):
        """Coordinate ``k`` (negative counts from the end), a LazyArray of dim 1."""
        if not -self.dim <= k < self.dim:
            raise FormulaError(f"Extract: index {k} out of range for a vector of dim {self.dim}", to_string(self.formula))
        return self._apply(lambda x: derived.elem(x, int(k) % x.dim))

    def extract(self, start: int, d: int):
        return self._apply(lambda x: ops.Extract(x, int(start), int(d)))

    def __getitem__(self, key):
        """``x[k]`` / ``x[a:b]`` on the vector axis (also ``x[..., k]``, ``x[:, :, k]``)."""
        if isinstance(key, tuple):
            rest = [k for k in key if k is not Ellipsis]
            if any(k != slice(None) for k in rest[:-1]) or not rest:
                raise AxisError(f"only the vector axis (last) can be indexed, got {key}", to_string(self.formula))
            key = rest[-1]
        if isinstance(key, numbers.Integral):
            return self.elem(key)
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.dim)
            return self.extract(start, stop - start)
        raise AxisError(f"unsupported index {key!r} (use an int or a slice with step 1)", to_string(self.formula))

    def concat(self, other): return self._apply(ops.Concat, other)

    @staticmethod
    def concatenate(items, axis: int = -1):
        """Concatenate LazyArrays along the vector axis."""
        if axis != -1:
            raise AxisError(f"concatenate works on the vector axis (-1), not {axis}")
        out = items[0]
        for x in items[1:]:
            out = out.concat(x)
        return out

    @staticmethod
    def cat(items, dim: int = -1):
        """pykeops' spelling of :meth:`concatenate` (``LazyTensor.cat(tuple, dim)``)."""
        return LazyArray.concatenate(items, dim)

    def one_hot(self, D: int): return self._apply(lambda x: ops.OneHot(x, int(D)))
    def matvecmult(self, v): return self._apply(ops.MatVecMult, v)
    def vecmatmult(self, A): return self._apply(ops.VecMatMult, A)
    def tensorprod(self, y): return self._apply(ops.TensorProd, y)

    # Vector ops (issue 12), with pykeops' names and signatures.
    def keops_tensordot(self, b, dimfa, dimfb, contfa, contfb, *perm):
        """KeOps' ``TensorDot``: ``numpy.tensordot`` of ``self`` and ``b`` viewed as row-major
        tensors of shapes ``dimfa`` and ``dimfb`` (tuples of ints whose products are the
        dims), contracting axes ``contfa[k]`` of self with ``contfb[k]`` of b; ``perm`` (one
        tuple, optional) sends axis t of the result to position ``perm[t]`` (the inverse of
        ``np.transpose``'s argument, as KeOps). Dim: the product of the kept dims.

        Raises:
          FormulaError: inconsistent dims, axes or permutation.
        """
        if len(perm) > 1:
            raise FormulaError(f"keops_tensordot takes one permutation, got {len(perm)}", to_string(self.formula))
        return self._apply(lambda x, y: ops.TensorDot(x, y, dimfa, dimfb, contfa, contfb, *perm), b)

    def keops_kron(self, b, dimfa, dimfb):
        """KeOps' ``Kron``: the Kronecker product of ``self`` and ``b`` viewed as row-major
        tensors of shapes ``dimfa`` and ``dimfb`` (as many axes), laid out as ``np.kron``;
        dim ``self.dim * b.dim``."""
        return self._apply(lambda x, y: derived.kron(x, y, ops._int_tuple(dimfa), ops._int_tuple(dimfb)), b)

    def bspline(self, t, k: int = 0):
        """KeOps' ``BSpline(knots, t, k)`` on ``self`` = the knots (non-decreasing, dim D):
        the D - k - 1 B-spline basis functions of degree k at the scalar ``t`` (a LazyArray
        of dim 1 or a number), dim D - k - 1; differentiable (unlike KeOps'), see
        :func:`jax_lazy.ir.derived.bspline`."""
        return self._apply(lambda kn, t_: derived.bspline(kn, t_, int(k)), t)

    def softdtw_sqdist(self, y, gamma):
        """KeOps' ``SoftDTW_SqDist``: the soft-DTW discrepancy between the sequences
        ``self`` (length D) and ``y`` (length E) for the squared difference, smoothing
        ``gamma`` > 0 (a number or a LazyArray of dim 1); dim 1. Differentiable in all three
        (KeOps: not in gamma). See :func:`jax_lazy.ir.derived.softdtw_sqdist` (code size
        O(D * E))."""
        return self._apply(derived.softdtw_sqdist, y, gamma)

    def difference_matrix(self, y):
        """KeOps' ``DifferenceMatrix``: ``out[a * E + b] = self[a] - y[b]``, dim D * E
        (pykeops 2.3 has the method but no engine op)."""
        return self._apply(derived.differencematrix, y)

    def t(self) -> "LazyArray":
        """The transpose: i and j exchanged, shape ``(*batch, N, M, D)``."""
        swapped = tuple(plan_mod.swap_var(v) for v in self._vars)
        return LazyArray._build(plan_mod.swap_ij(self.formula), swapped, self._arrays, self.nj, self.ni, self.batch_shape,
                                tuple(plan_mod.swap_var(v) for v in self._symbolic), ranges_mod.swap(self.ranges))

    T = property(t)

    # -------------------------------------------------------------- Symbolic calculus (issue 12)
    # Formulas, not reductions (jax_lazy.ir.calculus). ``v`` is one of the formula's
    # variables: the very LazyArray Vi(x) / Vj(y) / Pm(p) (or another wrapping the same
    # array in the same category) that built it, matched as _join matches arrays.

    def _calculus(self, name, v, *others):
        """``calculus.<name>(f, v, *others)`` on this formula and ``v``'s variable."""
        from .ir import calculus, variables

        fn = getattr(calculus, name)
        if not (isinstance(v, LazyArray) and v.formula.op == "Var"):
            raise FormulaError(f"{name}: v must be a variable of the formula (the Vi, Vj or Pm LazyArray it "
                               f"was built from), got {type(v).__name__}", to_string(self.formula))

        def checked(f, var, *rest):
            if var not in variables(f):
                raise FormulaError(f"{name}: v is not a variable of the formula (no array bound to it is v's)")
            return fn(f, var, *rest)

        return self._apply(checked, v, *others)

    def grad(self, v, e):
        """``Grad(f, v, e)``: the vector-Jacobian product ``(df/dv)^T e``, dim ``v.dim``;
        ``e`` (LazyArray or number) has this formula's dim. Raises FormulaError."""
        return self._calculus("grad", v, e)

    def diff(self, v, u):
        """``Diff(f, v, u)``: the Jacobian-vector product ``(df/dv) u``, this formula's
        dim; ``u`` (LazyArray or number) has ``v.dim``."""
        return self._calculus("diff", v, u)

    def laplacian(self, v):
        """``Laplacian(f, v)``, dim 1, for a scalar formula."""
        return self._calculus("laplacian", v)

    def divergence(self, v):
        """``Divergence(f, v)``, dim 1; this formula's dim must be ``v.dim``."""
        return self._calculus("divergence", v)

    def trace_operator(self, v, w=None):
        """``TraceOperator(f, v[, w])``: the trace of this formula, linear in ``v``, as a
        matrix (optionally weighted by the diagonal ``w``); dim 1."""
        return self._calculus("trace_operator", v, *(() if w is None else (w,)))

    def grad_matrix(self, v):
        """``GradMatrix(f, v)``: the Jacobian ``df/dv`` flattened row-major, dim
        ``self.dim * v.dim`` (entry ``k * v.dim + l`` is ``df_k / dv_l``)."""
        return self._calculus("grad_matrix", v)

    # -------------------------------------------------------------- dense escape hatch
    def dense(self) -> jax.Array:
        """Materialise the ``(*batch, M, N, D)`` array (for small sizes and tests).

        Raises:
          FormulaError: the formula has symbolic variables (no data to evaluate).
        """
        if self._symbolic:
            raise FormulaError(f"dense() needs data, but the symbolic variables {', '.join(map(_signature, self._symbolic))} "
                               "have none: reduce the formula and call the result with arrays", to_string(self.formula))
        nb = self.nbatchdims
        env = {}
        for v, a in zip(self._vars, self._arrays):
            lead = (1,) * (nb - plan_mod.batch_rank(v, a.ndim))
            a = a.reshape(lead + a.shape)
            cat = v.attr[1]
            env[v] = a[..., :, None, :] if cat == I else a[..., None, :, :] if cat == J else a[..., None, None, :]
        (val,) = evaluate([self.formula], env, self.dtype or jnp.zeros(()).dtype)
        return jnp.broadcast_to(val, self.shape)

    # -------------------------------------------------------------- reductions
    def _axis(self, axis, dim, name, allow_vector=False):
        axis = dim if dim is not None else axis
        nb = self.nbatchdims
        if axis is None and not allow_vector:
            raise AxisError(f"{name} needs axis={nb} (over i) or axis={nb + 1} (over j)", to_string(self.formula))
        a = axis + self.ndim if isinstance(axis, numbers.Integral) and axis < 0 else axis
        if a == nb:
            return 0
        if a == nb + 1:
            return 1
        if allow_vector and a == nb + 2:
            return -1
        raise AxisError(f"{name}: axis {axis} is neither the i axis ({nb} or -3) nor the j axis ({nb + 1} or -2)",
                        to_string(self.formula))

    def _reduce(self, red, axis, weight=None, k=None, call=True, **options):
        """The one place where every reduction method ends, and the one that receives the
        per-call keywords: ``call`` and the ``options`` of :func:`jax_lazy.api.reduce`
        (``backend``...). Returns the outputs, or a :class:`LazyReduction` (a function of
        the symbolic variables' arrays) with ``call=False`` or symbolic variables."""
        if k is not None and (isinstance(k, bool) or not float(k).is_integer()):
            raise ShapeError(f"K must be an integer, got {k!r}", to_string(self.formula))
        if weight is not None and self._lift(weight).is_complex:
            raise DtypeError(f"the {red} reduction takes a real weight, got a complex one", to_string(self.formula))
        nodes, (vars_, arrays, _, _, _, symbolic, ranges) = self._join(*(() if weight is None else (weight,)))
        if ranges is not None:  # the attribute; a per-call ranges= (even None) wins
            options.setdefault("ranges", ranges)
        fn = LazyReduction(tuple(nodes), red, axis, None if k is None else int(k), symbolic, vars_, arrays, options,
                           squeeze=k is not None and self.dim == 1)
        return fn if symbolic or not call else fn()

    # Every reduction takes `call=True`: with call=False, or when the formula has symbolic
    # variables, it returns a LazyReduction, a function of arrays (SPEC §1.10). The
    # per-call keywords (**kw) all go to `_reduce`.
    def sum(self, axis=-1, dim=None, backend="auto", **kw):
        """Sum over i (``axis=nbatch``), j (``axis=nbatch+1``) or the vector axis (``-1``).

        Returns a ``jax.Array`` of shape ``(*batch, M, D)`` (over j) or ``(*batch, N, D)``
        (over i); over the vector axis, a LazyArray of dim 1. Every reduction method takes
        ``dtype_acc=`` and ``sum_scheme=`` (docs/api.md, "Numerics options") and
        ``ranges=`` (block-sparse; docs/api.md, "Block-sparse reductions").
        """
        ax = self._axis(axis, dim, "sum", allow_vector=True)
        if ax == -1:
            return self._apply(ops.Sum)
        return self._reduce("Sum", ax, backend=backend, **kw)

    def logsumexp(self, axis=None, dim=None, weight=None, backend="auto", **kw):
        """``log sum exp(F)`` over an axis, computed stably (running max shift); with a
        ``weight`` W, ``log sum exp(F) W``. F must be scalar. Output dim: 1, or dim W."""
        return self._reduce("LogSumExp", self._axis(axis, dim, "logsumexp"), weight=1 if weight is None else weight,
                            backend=backend, **kw)

    def sumsoftmaxweight(self, weight, axis=None, dim=None, backend="auto", **kw):
        """``sum_j softmax_j(F) W_j``: the softmax-weighted sum (attention). F scalar."""
        return self._reduce("SumSoftMaxWeight", self._axis(axis, dim, "sumsoftmaxweight"), weight=weight,
                            backend=backend, **kw)

    def min(self, axis=-1, dim=None, backend="auto", **kw):
        """Per-coordinate minimum over i or j: ``(*batch, M or N, D)``; differentiable
        (the gradient flows to the selected pair; ties: the smallest index). Over the
        vector axis (``-1``, the default, as pykeops): the LazyArray ``Min(x)`` of dim 1
        (its gradient is split evenly among tied coordinates, as ``jnp.min``'s)."""
        return self._vector_or_reduce(ops.Min, "Min", axis, dim, backend, **kw)

    def max(self, axis=-1, dim=None, backend="auto", **kw):
        """Per-coordinate maximum over i or j: ``(*batch, M or N, D)``; differentiable.
        Over the vector axis (``-1``, the default): the LazyArray ``Max(x)``, dim 1."""
        return self._vector_or_reduce(derived.max, "Max", axis, dim, backend, **kw)

    def argmin(self, axis=-1, dim=None, backend="auto", **kw):
        """Index of the minimum, ``(*batch, M or N, D)``, int32 (int64 with x64); ties go
        to the smallest index; NaN wins. Over the vector axis (``-1``, the default): the
        LazyArray ``ArgMin(x)``, the index as a float, dim 1, zero derivative."""
        return self._vector_or_reduce(ops.ArgMin, "ArgMin", axis, dim, backend, **kw)

    def argmax(self, axis=-1, dim=None, backend="auto", **kw):
        """Index of the maximum, ``(*batch, M or N, D)``, int32 (int64 with x64). Over the
        vector axis (``-1``, the default): the LazyArray ``ArgMax(x)`` (a float), dim 1."""
        return self._vector_or_reduce(derived.argmax, "ArgMax", axis, dim, backend, **kw)

    def _vector_or_reduce(self, vector_op, red, axis, dim, backend, **kw):
        # As pykeops: exactly -1 is the vector op (sum also takes the last axis' number).
        if (dim if dim is not None else axis) == -1:
            return self._apply(vector_op)
        return self._reduce(red, self._axis(axis, dim, red.lower()), backend=backend, **kw)

    def min_argmin(self, axis=None, dim=None, backend="auto", **kw):
        """``(min, argmin)``, each ``(*batch, M or N, D)``."""
        return self._reduce("Min_ArgMin", self._axis(axis, dim, "min_argmin"), backend=backend, **kw)

    def max_argmax(self, axis=None, dim=None, backend="auto", **kw):
        """``(max, argmax)``, each ``(*batch, M or N, D)``."""
        return self._reduce("Max_ArgMax", self._axis(axis, dim, "max_argmax"), backend=backend, **kw)

    def Kmin(self, K, axis=None, dim=None, backend="auto", **kw):
        """The K smallest values, sorted: ``(*batch, M or N, K, D)``, or ``(..., K)`` when
        D = 1. Raises ShapeError unless 1 <= K <= the reduced size (K an integer)."""
        return self._reduce("KMin", self._axis(axis, dim, "Kmin"), k=K, backend=backend, **kw)

    def argKmin(self, K, axis=None, dim=None, backend="auto", **kw):
        """Indices of the K smallest values (K-nearest neighbours of ``sqdist``), shapes
        as :meth:`Kmin`, int32 (int64 with x64); ties go to the smallest index."""
        return self._reduce("ArgKMin", self._axis(axis, dim, "argKmin"), k=K, backend=backend, **kw)

    def Kmin_argKmin(self, K, axis=None, dim=None, backend="auto", **kw):
        """``(Kmin, argKmin)``."""
        return self._reduce("KMin_ArgKMin", self._axis(axis, dim, "Kmin_argKmin"), k=K, backend=backend, **kw)

    def __matmul__(self, b):
        return self.matvec(b)

    def matvec(self, b, backend="auto"):
        """``K @ b``: ``sum_j K_ij b_j``. ``b`` of shape ``(N,)`` gives ``(M,)``;
        ``(*batch, N, E)`` gives ``(*batch, M, E)``. K must have dim 1."""
        if self.dim != 1:
            raise ShapeError(f"K @ b needs a scalar LazyArray (dim 1), got dim {self.dim}", to_string(self.formula))
        if self._symbolic:
            raise FormulaError("K @ b needs data, but K has symbolic variables: write (K * Vj(b)).sum(axis), "
                               "a function of their arrays", to_string(self.formula))
        b = _as_float_array(b, "K @ b")
        if b.ndim == 1:
            return (self * Vj(b[:, None])).sum(axis=self.nbatchdims + 1, backend=backend)[..., 0]
        return (self * Vj(b)).sum(axis=max(self.nbatchdims, b.ndim - 2) + 1, backend=backend)

    # pykeops-style aliases: the `*_reduction` methods always reduce over i or j (those of
    # sum, min, max, argmin, argmax have no default axis: never the vector op)
    sum_reduction = _reduction_only("Sum", "sum")
    min_reduction, max_reduction = _reduction_only("Min", "min"), _reduction_only("Max", "max")
    argmin_reduction, argmax_reduction = _reduction_only("ArgMin", "argmin"), _reduction_only("ArgMax", "argmax")
    logsumexp_reduction = logsumexp
    sumsoftmaxweight_reduction = sumsoftmaxweight
    min_argmin_reduction, max_argmax_reduction = min_argmin, max_argmax
    Kmin_reduction, argKmin_reduction, Kmin_argKmin_reduction = Kmin, argKmin, Kmin_argKmin

    def rmatvec(self, b, backend="auto"):
        """``K.T @ b``."""
        return self.t().matvec(b, backend=backend)

    # -------------------------------------------------------------- kernel solves (issue 13: jax_lazy/solve.py)
    def solve(self, b, var=None, alpha=1e-10, eps=1e-6, call=True, **kw):
        """Solve ``(alpha I + K) a = b`` by conjugate gradient (pykeops' ``K.solve``, SPEC
        §1.9), K this LazyArray, symmetric positive definite (not checked).

        ``b``: ``(M,)`` or ``(*batch, M, D)``, the i-indexed right-hand side; the solve
        reduces over j. With ``var=None`` K must be scalar (dim 1) and a solves
        ``alpha a_i + sum_j K_ij a_j = b_i`` for each of the D columns; else ``var`` is the
        symbolic j-variable (``Vj(0, D)``) this formula is linear in, its only one, and
        ``(K v)_i = sum_j K(x_i, y_j, v_j)``. Returns a, b's shape (batch axes broadcast),
        or ``(a, SolveInfo)`` with ``return_info=True``; ``call=False`` returns the solve as
        a function ``f(b_new=b)``. Differentiable (implicitly) in b, alpha and the bound arrays;
        composes with jit and vmap. Other keywords (eps, rtol, atol, maxiter, precond, rank,
        return_info, warn, backend, dtype_acc, sum_scheme, ranges): :class:`jax_lazy.KernelSolve`.

        Raises:
          FormulaError: K not linear in var, or var not K's only symbolic variable.
          ShapeError: K not scalar (var=None), b's rows not M = N, b's dim not var's.
        """
        from .solve import lazy_solve

        return lazy_solve(self, b, var, call=call, alpha=alpha, eps=eps, **kw)

    # -------------------------------------------------------------- complex (complex_lazy.py)
    is_complex = False  # True on complex_lazy.ComplexLazyArray

    def real2complex(self):
        """``Real2Complex``: ``x + 0i``, a complex LazyArray of the same dim."""
        return complex_lazy.from_real(self, cx.real2complex)

    def imag2complex(self):
        """``Imag2Complex``: ``0 + ix``."""
        return complex_lazy.from_real(self, cx.imag2complex)

    def exp1j(self):
        """``ComplexExp1j``: ``exp(ix) = cos x + i sin x``."""
        return complex_lazy.from_real(self, cx.exp1j)


LazyTensor = LazyArray


def Vi(x, dim: Optional[int] = None) -> LazyArray:
    """An i-variable: ``x`` of shape ``(*batch, M, D)`` (float) indexed by i; ``Vi(index,
    dim)`` is a symbolic one (no data: see :class:`LazyReduction`)."""
    return _variable(x, dim, I, "Vi")


def Vj(x, dim: Optional[int] = None) -> LazyArray:
    """A j-variable: ``x`` of shape ``(*batch, N, D)`` (float) indexed by j; ``Vj(index,
    dim)`` is a symbolic one."""
    return _variable(x, dim, J, "Vj")


def Pm(x, dim: Optional[int] = None) -> LazyArray:
    """A parameter: a scalar (a Python or NumPy float is weakly typed: it adopts the dtype
    of the other operands), or ``x`` of shape ``(*batch, D)`` (float); ``Pm(index, dim)``
    is a symbolic one."""
    return _variable(x, dim, P, "Pm")


def _variable(x, dim, cat, what) -> LazyArray:
    out = object.__new__(LazyArray)
    if dim is None:
        out._init_leaf(_variable_array(x, cat, what), cat)
    else:
        out._init_symbolic(x, dim, cat)
    return out


def _variable_array(x, cat, what):
    """``x`` as the array of a variable of category ``cat``: ``(*b, M or N, D)`` for i and
    j, ``(*b, D)`` for a parameter (a scalar becomes ``(1,)``; a Python or NumPy float,
    weakly typed)."""
    if cat == P and isinstance(x, numbers.Real) and not isinstance(x, jax.Array):
        return _scalar(float(x).hex(), str(jax.dtypes.canonicalize_dtype(float)))
    x = _as_float_array(x, what)
    if cat == P:
        return x.reshape(1) if x.ndim == 0 else x
    if x.ndim < 2:
        raise ShapeError(f"{what} needs an array of shape (*batch, {'M' if cat == I else 'N'}, D), got shape {x.shape}")
    return x


@memo.lru(1024)
def _scalar(bits: str, default_dtype: str) -> jax.Array:
    """The weakly typed ``(1,)`` array (it adopts the dtype of the other operands) of the
    float ``float.fromhex(bits)`` (bits: -0.0 is not 0.0), one per value and default float
    dtype: a value used n times in a formula is one parameter, not n (kernels take few
    arguments: 32 on cuda)."""
    with jax.ensure_compile_time_eval():  # a constant even while jit traces: safe to keep
        return jnp.asarray(float.fromhex(bits)).reshape(1)


# ---------------------------------------------------------------- symbolic variables and callable reductions
# (issue 12, item 5.) A symbolic variable Vi(0, 3) is a Var node without data: its index is
# the user's, and the arrays bound while building come after the symbolic indices
# (LazyArray._join). A reduction of such a formula is a LazyReduction, a function of the
# symbolic variables' arrays.


def _signature(v) -> str:
    """``Vi(0,3)`` / ``Vj(1,3)`` / ``Pm(2,1)``: how a user writes the symbolic variable ``v``."""
    return f"{('Vi', 'Vj', 'Pm')[v.attr[1]]}({v.attr[0]},{v.dim})"


def _merge_symbolic(operands) -> tuple:
    """The symbolic variables of ``operands`` (LazyArrays), sorted by index.

    Raises:
      FormulaError: one index used with two dims or categories.
    """
    found = {}
    for o in operands:
        for v in o._symbolic:
            w = found.setdefault(v.attr[0], v)
            if w is not v:
                raise FormulaError(f"symbolic variable {v.attr[0]} is used as {_signature(w)} and as {_signature(v)}",
                                   lambda: "  and  ".join(to_string(o.formula) for o in operands))
    return tuple(found[k] for k in sorted(found))


# LazyReduction lives in lazy_reduction.py; imported here, once the helpers it reads exist.
from .lazy_reduction import LazyReduction  # noqa: E402
from . import complex_lazy  # noqa: E402  (it subclasses LazyArray: imported once LazyArray exists)
