"""``Genred`` and the ``generic_*`` constructors: pykeops' formula-string API.

``Genred(formula, aliases, reduction_op, axis)`` parses the formula once
(:func:`jax_lazy.ir.parse.parse`, cached) and returns a callable of the arrays, one per
alias position, that calls :func:`jax_lazy.api.reduce`: the same primitive as the
LazyArray reductions, so it composes with ``jit``, ``vmap``, ``grad``, ``jvp``... and a
formula string shares its kernel with the equivalent LazyArray expression. Source: the
pykeops ``Genred`` interface (SPEC sections 2.1, 2.2); the differences are listed in
``docs/api.md`` ("Formula strings and Genred").
"""

from __future__ import annotations

import numbers
import warnings

from .errors import AxisError, FormulaError, ShapeError
from .ir import I, J, P, variables
from .ir.ops import IntCst
from .ir.parse import alias_table, check_positions, parse
from .lazy import _as_float_array
from .lazy_reduction import LazyReduction

# pykeops name -> (our reduction, formula2: "no" | "optional" | "required")
REDUCTION_OPS = {
    "Sum": ("Sum", "no"),
    "LogSumExp": ("LogSumExp", "optional"),  # with formula2: log sum exp(F) W
    "LogSumExpWeight": ("LogSumExp", "required"),  # finalised (KeOps returns the raw (max, sum) pair)
    "SumSoftMaxWeight": ("SumSoftMaxWeight", "required"),
    "SoftMax": ("SumSoftMaxWeight", "required"),
    "Min": ("Min", "no"),
    "Max": ("Max", "no"),
    "ArgMin": ("ArgMin", "no"),
    "ArgMax": ("ArgMax", "no"),
    "Min_ArgMin": ("Min_ArgMin", "no"),
    "Max_ArgMax": ("Max_ArgMax", "no"),
    "KMin": ("KMin", "no"),
    "ArgKMin": ("ArgKMin", "no"),
    "KMin_ArgKMin": ("KMin_ArgKMin", "no"),
}

# pykeops keyword arguments with no meaning here: accepted, ignored, with a warning.
IGNORED = ("dtype", "cuda_type", "enable_chunks", "rec_multVar_highdim", "use_fast_math")

# pykeops backend names -> ours (host/device and 1D/2D are the backend's own business).
BACKENDS = {"auto": "auto", "CPU": "cpu",
            **{g: "cuda" for g in ("GPU", "GPU_1D", "GPU_2D", "GPU_1D_device", "GPU_1D_host", "GPU_2D_device",
                                   "GPU_2D_host")}}

_SHAPES = {I: "(..., M, {d})", J: "(..., N, {d})", P: "(..., {d})"}


def _numerics(dtype_acc, sum_scheme, use_double_acc) -> dict:
    """The accumulation options to pass to ``api.reduce`` (only those not "auto")."""
    if use_double_acc and dtype_acc == "auto":
        dtype_acc = "float64"
    return {k: v for k, v in (("dtype_acc", dtype_acc), ("sum_scheme", sum_scheme)) if v != "auto"}


class Genred:
    """A reduction of a formula string, as ``pykeops.numpy.Genred`` / ``pykeops.torch.Genred``.

    Args:
      formula: a formula string (``docs/api.md``, "Formula strings and Genred"), e.g.
        ``"Exp(-SqDist(x, y)) * b"``.
      aliases: a list of alias strings ``"x = Vi(3)"``, ``"y = Vj(1, 3)"``, ``"p = Pm(1)"``,
        or bare ``"Var(pos, dim, cat)"``; an alias without a position takes its index in
        the list. ``Var``s written in the formula are arguments too.
      reduction_op: ``Sum``, ``LogSumExp``, ``LogSumExpWeight``, ``SumSoftMaxWeight`` (or
        ``SoftMax``), ``Min``, ``Max``, ``ArgMin``, ``ArgMax``, ``Min_ArgMin``,
        ``Max_ArgMax``, ``KMin``, ``ArgKMin``, ``KMin_ArgKMin``.
      axis: 0 reduces over i (output indexed by j), 1 over j (output indexed by i).
      opt_arg: K of the KMin family.
      formula2: the weight formula of ``LogSumExpWeight`` and ``SumSoftMaxWeight``
        (optional for ``LogSumExp``).
      dtype_acc, sum_scheme: accumulation options, passed to ``api.reduce`` when not
        ``"auto"``. ``use_double_acc=True`` means ``dtype_acc="float64"``.
      **kwargs: pykeops options without meaning here (``dtype``, ``cuda_type``,
        ``enable_chunks``, ``rec_multVar_highdim``, ``use_fast_math``): ignored, with a
        DeprecationWarning.

    The returned object is called as ``g(*args, backend="auto", ranges=None)`` with one array per
    position 0..n-1: i-variables ``(*b, M, D)``, j-variables ``(*b, N, D)``, parameters
    ``(*b, D)`` (batch axes broadcast; M = 1 when no i-variable, N alike). It returns
    ``(*batch, M or N, Dout)`` (tuples for ``Min_ArgMin``...; ``(..., K, D)`` for the KMin
    family, ``(..., K)`` when D = 1); indices are int32 (int64 with x64). Genred objects
    pickle.

    Raises:
      FormulaError: a bad formula or alias (with a caret), an unknown reduction, a
        missing or unexpected formula2, a position with no variable.
      AxisError: an axis other than 0 or 1. ShapeError: a bad K; at call time, a wrong
        number of arrays or shapes that do not match the aliases.
      OptionError (a ValueError): at call time, a bad ``dtype_acc`` / ``sum_scheme``
        (``docs/api.md``, "Numerics options").
    """

    def __init__(self, formula, aliases, reduction_op="Sum", axis=0, opt_arg=None, formula2=None,
                 dtype_acc="auto", sum_scheme="auto", use_double_acc=False, **kwargs):
        for k in kwargs:
            if k not in IGNORED:
                raise TypeError(f"Genred() got an unexpected keyword argument {k!r}")
            warnings.warn(f"Genred: {k} is ignored (pykeops option without meaning in jax_lazy)",
                          DeprecationWarning, stacklevel=2)
        aliases = tuple(aliases)
        self._args = dict(formula=formula, aliases=aliases, reduction_op=reduction_op, axis=axis, opt_arg=opt_arg,
                          formula2=formula2, dtype_acc=dtype_acc, sum_scheme=sum_scheme, use_double_acc=use_double_acc)
        if reduction_op not in REDUCTION_OPS:
            raise FormulaError(f"unknown reduction_op {reduction_op!r}; one of {', '.join(REDUCTION_OPS)}")
        if axis not in (0, 1):
            raise AxisError(f"Genred: axis must be 0 (reduce over i) or 1 (over j), got {axis!r}")
        self.red, weight = REDUCTION_OPS[reduction_op]
        self.axis = axis
        F = parse(formula, aliases)
        if formula2 is not None and weight == "no":
            raise FormulaError(f"{reduction_op} takes no formula2", formula2)
        if formula2 is None and weight == "required":
            raise FormulaError(f"{reduction_op} needs formula2 (the weight formula)", formula)
        self.formulas = (F,) if weight == "no" else (F, IntCst(1) if formula2 is None else parse(formula2, aliases))
        self.k = self._k(opt_arg)
        self.numerics = _numerics(dtype_acc, sum_scheme, use_double_acc)
        self.variables = self._variables(aliases)
        # Every argument is a symbolic variable: the call is that of a LazyReduction (one
        # home for filling the variables, the dtype check, api.reduce and pykeops' K squeeze).
        self._reduction = LazyReduction(self.formulas, self.red, axis, self.k, self.variables, (), (), self.numerics,
                                        squeeze=self.k is not None and F.dim == 1)

    def _k(self, opt_arg):
        if not self.red.startswith(("KMin", "ArgKMin")):
            return None
        if isinstance(opt_arg, bool) or not isinstance(opt_arg, numbers.Integral) or opt_arg < 1:
            raise ShapeError(f"{self.red} needs opt_arg = K, an integer >= 1, got {opt_arg!r}", self._args["formula"])
        return int(opt_arg)

    def _variables(self, aliases) -> tuple:
        """One Var per argument position 0..n-1: the aliases' and the formulas'."""
        found = [v for _, v in alias_table(aliases)] + variables(*self.formulas)
        check_positions(found, f"{self._args['formula']!r} with aliases {list(aliases)}")
        by_pos = {v.attr[0]: v for v in found}
        missing = [p for p in range(len(by_pos)) if p not in by_pos]
        if missing:
            raise FormulaError(f"no variable at argument position(s) {missing}; positions are "
                               f"{sorted(by_pos)}", self._args["formula"])
        return tuple(by_pos[p] for p in range(len(by_pos)))

    def __reduce__(self):  # pickle the arguments; the formula is parsed again (cached)
        return (_rebuild, (self._args,))

    def __repr__(self) -> str:
        return f"Genred({self._args['formula']!r}, {list(self._args['aliases'])!r}, {self._args['reduction_op']!r}, " \
               f"axis={self.axis})"

    def _check(self, args) -> tuple:
        if len(args) != len(self.variables):
            raise ShapeError(f"Genred expects {len(self.variables)} arrays ({self._signature()}), got {len(args)}",
                             self._args["formula"])
        out = []
        for k, (v, a) in enumerate(zip(self.variables, args)):
            a = _as_float_array(a, f"Genred argument {k}")
            cat = v.attr[1]
            if cat == P and a.ndim == 0:
                a = a.reshape(1)
            if a.ndim < (1 if cat == P else 2) or a.shape[-1] != v.dim:
                raise ShapeError(f"argument {k} must have shape {_SHAPES[cat].format(d=v.dim)} for {v!r}, "
                                 f"got {a.shape}", self._args["formula"])
            out.append(a)
        return tuple(out)

    def _signature(self) -> str:
        return ", ".join(_SHAPES[v.attr[1]].format(d=v.dim) for v in self.variables)

    def __call__(self, *args, backend="auto", ranges=None):
        """Reduce: one array per argument position (see the class docstring); ``ranges``:
        KeOps' block-sparse 6-tuple (docs/api.md, "Block-sparse reductions"), in the
        orientation of the formula (the first triplet's rows are i), whatever ``axis``."""
        return self._reduction(*self._check(args), backend=BACKENDS.get(backend, backend), ranges=ranges)


def _rebuild(args: dict) -> Genred:
    return Genred(**args)


def _generic(reduction_op, formula, output, aliases, kw, k_from_output=False) -> Genred:
    """pykeops' ``generic_*``: the output alias's category picks the axis (an i-indexed
    output reduces over j)."""
    ((_, out),) = alias_table((output,))
    if out.attr[1] == P:
        raise FormulaError(f"the output alias {output!r} must be Vi or Vj, not a parameter")
    if k_from_output:
        kw = {**kw, "opt_arg": out.dim}
    return Genred(formula, aliases, reduction_op, axis=1 if out.attr[1] == I else 0, **kw)


def generic_sum(formula, output, *aliases, **kw) -> Genred:
    """``Genred(formula, aliases, "Sum", axis)``, the axis given by ``output`` (``"a = Vi(3)"``:
    one row per i, a sum over j)."""
    return _generic("Sum", formula, output, aliases, kw)


def generic_logsumexp(formula, output, *aliases, **kw) -> Genred:
    """``Genred(formula, aliases, "LogSumExp", axis)``, as :func:`generic_sum`."""
    return _generic("LogSumExp", formula, output, aliases, kw)


def generic_argmin(formula, output, *aliases, **kw) -> Genred:
    """``Genred(formula, aliases, "ArgMin", axis)``, as :func:`generic_sum`."""
    return _generic("ArgMin", formula, output, aliases, kw)


def generic_argkmin(formula, output, *aliases, **kw) -> Genred:
    """``Genred(formula, aliases, "ArgKMin", axis, opt_arg=K)`` where K is the output alias's
    dim (``"a = Vi(5)"``: the 5 nearest j for each i)."""
    return _generic("ArgKMin", formula, output, aliases, kw, k_from_output=True)


__all__ = ["Genred", "generic_sum", "generic_logsumexp", "generic_argmin", "generic_argkmin"]
