"""The symbolic array type: :class:`LazyArray` (alias ``LazyTensor``), ``Vi``, ``Vj``, ``Pm``.

A LazyArray stands for an array of shape ``(*batch, M, N, D)`` whose entries are given by
a formula ``F(x_i, y_j, p)``; it is never materialised. It holds a formula node (the IR)
and the arrays bound to the formula's variables. Operators build new formulas; a
reduction over the i or j axis (``sum``, ``logsumexp``, ``argKmin``...) returns a plain
``jax.Array``, computed by a generated map-reduce through :func:`jax_lazy.api.reduce`.

Shape conventions (as in pykeops): ``Vi(x)`` for ``x`` of shape ``(*b, M, D)`` is indexed
by i (axis -3), ``Vj(y)`` for ``(*b, N, D)`` by j (axis -2), ``Pm(p)`` for ``(*b, D)`` or a
scalar is a parameter; batch axes broadcast NumPy-style. Python ints in formulas are exact
integer constants, Python floats are float constants fixed at trace time.
"""

from __future__ import annotations

import numbers
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import api
from . import plan as plan_mod
from .errors import AxisError, DtypeError, FormulaError, ShapeError
from .ir import I, J, P, Cst, IntCst, Var, derived, ops, substitute, to_string
from .ir.evaluate import evaluate

_FLOATS = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)


def _as_float_array(x, what: str):
    x = jnp.asarray(x)
    if x.dtype not in [jnp.dtype(t) for t in _FLOATS]:
        raise DtypeError(f"{what}: expected a floating array (float16/bfloat16/float32/float64), got {x.dtype}")
    return x


def _weak(a) -> bool:
    """Whether ``a`` is weakly typed (a Python scalar made an array): it adopts the dtype
    of the other operands instead of clashing with it."""
    return bool(getattr(getattr(a, "aval", a), "weak_type", False))


@jax.tree_util.register_pytree_node_class
class LazyArray:
    """A symbolic array ``(*batch, M, N, D)`` defined by a formula over bound arrays.

    Construct with :func:`Vi`, :func:`Vj`, :func:`Pm`, or ``LazyArray(x)`` where ``x`` has
    shape ``(..., M, 1, D)`` (i-variable), ``(..., 1, N, D)`` (j-variable) or
    ``(..., 1, 1, D)`` (parameter); a 2-D ``x`` needs ``axis=0`` (i) or ``axis=1`` (j).

    Raises:
      DtypeError: non-floating input, or arrays of different dtypes combined.
      ShapeError: an input of the wrong rank; sizes M or N or batch shapes that disagree.
    """

    __array_ufunc__ = None  # numpy_array + lazy dispatches to LazyArray.__radd__
    __array_priority__ = 1000

    def __init__(self, x, axis: Optional[int] = None):
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
        self.formula = Var(0, arr.shape[-1], cat)
        self._vars = (self.formula,)
        self._arrays = (arr,)
        self.ni = arr.shape[-2] if cat == I else None
        self.nj = arr.shape[-2] if cat == J else None
        self.batch_shape = arr.shape[:-1] if cat == P else arr.shape[:-2]

    @classmethod
    def _build(cls, formula, vars_, arrays, ni, nj, batch):
        self = object.__new__(cls)
        self.formula, self._vars, self._arrays = formula, tuple(vars_), tuple(arrays)
        self.ni, self.nj, self.batch_shape = ni, nj, tuple(batch)
        return self

    # -------------------------------------------------------------- pytree
    def tree_flatten(self):
        return self._arrays, (self.formula, self._vars, self.ni, self.nj, self.batch_shape)

    @classmethod
    def tree_unflatten(cls, aux, arrays):
        formula, vars_, ni, nj, batch = aux
        return cls._build(formula, vars_, arrays, ni, nj, batch)

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
        return f"LazyArray(formula={to_string(self.formula)}, shape={self.shape}, dtype={self.dtype})"

    __str__ = __repr__

    def __bool__(self):
        raise TypeError("the truth value of a LazyArray is symbolic; reduce it first")

    __hash__ = None  # == builds a formula

    # -------------------------------------------------------------- combining
    def _lift(self, other) -> "LazyArray":
        if isinstance(other, LazyArray):
            return other
        if isinstance(other, numbers.Integral) and not isinstance(other, bool):
            return LazyArray._build(IntCst(int(other)), (), (), None, None, ())
        if isinstance(other, numbers.Real):
            return LazyArray._build(Cst(float(other)), (), (), None, None, ())
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
        """Merge the bound arrays of ``self`` and ``others``: their formulas renumbered
        into one variable list (an array bound twice in one category is shared)."""
        nodes, vars_, arrays = [self.formula], list(self._vars), list(self._arrays)
        ni, nj, batches = self.ni, self.nj, [self.batch_shape]
        for o in map(self._lift, others):
            mapping = {}
            for v, a in zip(o._vars, o._arrays):
                k = next((k for k, (w, b) in enumerate(zip(vars_, arrays))
                          if b is a and w.attr[1] == v.attr[1] and w.dim == v.dim), None)
                if k is None:
                    k = len(vars_)
                    vars_.append(Var(k, v.dim, v.attr[1]))
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
        dtypes = {jnp.dtype(a.dtype) for a in arrays if not _weak(a)}
        if len(dtypes) > 1:
            raise DtypeError(f"mixed dtypes {sorted(map(str, dtypes))}; cast the arrays to one dtype",
                             "  and  ".join(to_string(n) for n in nodes))
        return nodes, (vars_, arrays, ni, nj, batch)

    def _apply(self, fn, *others):
        nodes, ctx = self._join(*others)
        try:
            formula = fn(*nodes)
        except FormulaError as e:
            raise FormulaError(e.message, "  and  ".join(to_string(n) for n in nodes)) from None
        return LazyArray._build(formula, *ctx)

    # -------------------------------------------------------------- arithmetic
    def __add__(self, o): return self._apply(ops.Add, o)
    def __radd__(self, o): return self._lift(o)._apply(ops.Add, self)
    def __sub__(self, o): return self._apply(ops.Subtract, o)
    def __rsub__(self, o): return self._lift(o)._apply(ops.Subtract, self)
    def __mul__(self, o): return self._apply(ops.Mult, o)
    def __rmul__(self, o): return self._lift(o)._apply(ops.Mult, self)
    def __truediv__(self, o): return self._apply(ops.Divide, o)
    def __rtruediv__(self, o): return self._lift(o)._apply(ops.Divide, self)
    def __neg__(self): return self._apply(ops.Minus)
    def __abs__(self): return self._apply(ops.Abs)
    def __or__(self, o): return self._apply(derived.scalprod, o)  # scalar product, dim 1
    def __ror__(self, o): return self._lift(o)._apply(derived.scalprod, self)
    def __lt__(self, o): return self._apply(ops.LessThan, o)
    def __le__(self, o): return self._apply(ops.LessOrEqual, o)
    def __gt__(self, o): return self._lift(o)._apply(ops.LessThan, self)
    def __ge__(self, o): return self._lift(o)._apply(ops.LessOrEqual, self)
    def __eq__(self, o): return self._apply(ops.Equal, o)  # noqa: E704
    def __ne__(self, o): return self._apply(ops.NotEqual, o)

    def __pow__(self, p):
        """``x ** n`` (int: Pow/Square), ``x ** 0.5`` (Sqrt), ``x ** -0.5`` (Rsqrt),
        ``x ** float`` or ``x ** LazyArray`` (Powf, for x > 0)."""
        if isinstance(p, numbers.Integral):
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

    def one_hot(self, D: int): return self._apply(lambda x: ops.OneHot(x, int(D)))
    def matvecmult(self, v): return self._apply(ops.MatVecMult, v)
    def vecmatmult(self, A): return self._apply(ops.VecMatMult, A)
    def tensorprod(self, y): return self._apply(ops.TensorProd, y)

    def t(self) -> "LazyArray":
        """The transpose: i and j exchanged, shape ``(*batch, N, M, D)``."""
        swapped = tuple(plan_mod.swap_var(v) for v in self._vars)
        return LazyArray._build(plan_mod.swap_ij(self.formula), swapped, self._arrays, self.nj, self.ni, self.batch_shape)

    T = property(t)

    # -------------------------------------------------------------- dense escape hatch
    def dense(self) -> jax.Array:
        """Materialise the ``(*batch, M, N, D)`` array (for small sizes and tests)."""
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

    def _reduce(self, red, axis, weight=None, k=None, backend="auto"):
        if k is not None and (isinstance(k, bool) or not float(k).is_integer()):
            raise ShapeError(f"K must be an integer, got {k!r}", to_string(self.formula))
        nodes, (vars_, arrays, ni, nj, batch) = self._join(*(() if weight is None else (weight,)))
        outs = api.reduce(tuple(nodes), red, vars_, arrays, axis, k=None if k is None else int(k), backend=backend)
        if k is not None and self.dim == 1:  # (..., K, 1) -> (..., K), as pykeops
            outs = tuple(o[..., 0] for o in outs)
        return outs if len(outs) > 1 else outs[0]

    def sum(self, axis=-1, dim=None, backend="auto"):
        """Sum over i (``axis=nbatch``), j (``axis=nbatch+1``) or the vector axis (``-1``).

        Returns a ``jax.Array`` of shape ``(*batch, M, D)`` (over j) or ``(*batch, N, D)``
        (over i); over the vector axis, a LazyArray of dim 1.
        """
        ax = self._axis(axis, dim, "sum", allow_vector=True)
        if ax == -1:
            return self._apply(ops.Sum)
        return self._reduce("Sum", ax, backend=backend)

    def logsumexp(self, axis=None, dim=None, weight=None, backend="auto"):
        """``log sum exp(F)`` over an axis, computed stably (running max shift); with a
        ``weight`` W, ``log sum exp(F) W``. F must be scalar. Output dim: 1, or dim W."""
        return self._reduce("LogSumExp", self._axis(axis, dim, "logsumexp"), weight=1 if weight is None else weight,
                            backend=backend)

    def sumsoftmaxweight(self, weight, axis=None, dim=None, backend="auto"):
        """``sum_j softmax_j(F) W_j``: the softmax-weighted sum (attention). F scalar."""
        return self._reduce("SumSoftMaxWeight", self._axis(axis, dim, "sumsoftmaxweight"), weight=weight,
                            backend=backend)

    def min(self, axis=None, dim=None, backend="auto"):
        """Per-coordinate minimum over i or j: ``(*batch, M or N, D)``; differentiable
        (the gradient flows to the selected pair; ties: the smallest index)."""
        return self._reduce("Min", self._axis(axis, dim, "min"), backend=backend)

    def max(self, axis=None, dim=None, backend="auto"):
        """Per-coordinate maximum over i or j: ``(*batch, M or N, D)``; differentiable."""
        return self._reduce("Max", self._axis(axis, dim, "max"), backend=backend)

    def argmin(self, axis=None, dim=None, backend="auto"):
        """Index of the minimum, ``(*batch, M or N, D)``, int32 (int64 with x64); ties go
        to the smallest index; NaN wins."""
        return self._reduce("ArgMin", self._axis(axis, dim, "argmin"), backend=backend)

    def argmax(self, axis=None, dim=None, backend="auto"):
        """Index of the maximum, ``(*batch, M or N, D)``, int32 (int64 with x64)."""
        return self._reduce("ArgMax", self._axis(axis, dim, "argmax"), backend=backend)

    def min_argmin(self, axis=None, dim=None, backend="auto"):
        """``(min, argmin)``, each ``(*batch, M or N, D)``."""
        return self._reduce("Min_ArgMin", self._axis(axis, dim, "min_argmin"), backend=backend)

    def max_argmax(self, axis=None, dim=None, backend="auto"):
        """``(max, argmax)``, each ``(*batch, M or N, D)``."""
        return self._reduce("Max_ArgMax", self._axis(axis, dim, "max_argmax"), backend=backend)

    def Kmin(self, K, axis=None, dim=None, backend="auto"):
        """The K smallest values, sorted: ``(*batch, M or N, K, D)``, or ``(..., K)`` when
        D = 1. Raises ShapeError unless 1 <= K <= the reduced size (K an integer)."""
        return self._reduce("KMin", self._axis(axis, dim, "Kmin"), k=K, backend=backend)

    def argKmin(self, K, axis=None, dim=None, backend="auto"):
        """Indices of the K smallest values (K-nearest neighbours of ``sqdist``), shapes
        as :meth:`Kmin`, int32 (int64 with x64); ties go to the smallest index."""
        return self._reduce("ArgKMin", self._axis(axis, dim, "argKmin"), k=K, backend=backend)

    def Kmin_argKmin(self, K, axis=None, dim=None, backend="auto"):
        """``(Kmin, argKmin)``."""
        return self._reduce("KMin_ArgKMin", self._axis(axis, dim, "Kmin_argKmin"), k=K, backend=backend)

    def __matmul__(self, b):
        return self.matvec(b)

    def matvec(self, b, backend="auto"):
        """``K @ b``: ``sum_j K_ij b_j``. ``b`` of shape ``(N,)`` gives ``(M,)``;
        ``(*batch, N, E)`` gives ``(*batch, M, E)``. K must have dim 1."""
        if self.dim != 1:
            raise ShapeError(f"K @ b needs a scalar LazyArray (dim 1), got dim {self.dim}", to_string(self.formula))
        b = _as_float_array(b, "K @ b")
        if b.ndim == 1:
            return (self * Vj(b[:, None])).sum(axis=self.nbatchdims + 1, backend=backend)[..., 0]
        return (self * Vj(b)).sum(axis=max(self.nbatchdims, b.ndim - 2) + 1, backend=backend)

    # pykeops-style aliases
    sum_reduction = sum
    logsumexp_reduction = logsumexp
    sumsoftmaxweight_reduction = sumsoftmaxweight
    min_reduction, max_reduction = min, max
    argmin_reduction, argmax_reduction = argmin, argmax
    Kmin_reduction, argKmin_reduction, Kmin_argKmin_reduction = Kmin, argKmin, Kmin_argKmin

    def rmatvec(self, b, backend="auto"):
        """``K.T @ b``."""
        return self.t().matvec(b, backend=backend)


LazyTensor = LazyArray


def Vi(x) -> LazyArray:
    """An i-variable: ``x`` of shape ``(*batch, M, D)`` (float) indexed by i."""
    x = _as_float_array(x, "Vi")
    if x.ndim < 2:
        raise ShapeError(f"Vi needs an array of shape (*batch, M, D), got shape {x.shape}")
    out = object.__new__(LazyArray)
    out._init_leaf(x, I)
    return out


def Vj(x) -> LazyArray:
    """A j-variable: ``x`` of shape ``(*batch, N, D)`` (float) indexed by j."""
    x = _as_float_array(x, "Vj")
    if x.ndim < 2:
        raise ShapeError(f"Vj needs an array of shape (*batch, N, D), got shape {x.shape}")
    out = object.__new__(LazyArray)
    out._init_leaf(x, J)
    return out


def Pm(x) -> LazyArray:
    """A parameter: a scalar, or ``x`` of shape ``(*batch, D)`` (float)."""
    if isinstance(x, numbers.Real) and not isinstance(x, jax.Array):
        x = jnp.asarray(float(x))  # weakly typed: adopts the dtype of the other operands
    x = _as_float_array(x, "Pm")
    if x.ndim == 0:
        x = x.reshape(1)
    out = object.__new__(LazyArray)
    out._init_leaf(x, P)
    return out
