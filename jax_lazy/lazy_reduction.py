"""``LazyReduction``: a reduction waiting for arrays (pykeops' "reduced LazyTensor").

What a LazyArray reduction returns with ``call=False`` or on a formula with symbolic
variables (``Vi(0, 3)``...), and what every reduction call goes through (the one place
per-call keywords arrive); ``Genred`` calls are LazyReduction calls too.
"""

from __future__ import annotations

import jax.numpy as jnp

from . import api
from . import plan as plan_mod
from .errors import DtypeError, FormulaError, ShapeError
from .ir import to_string
from .lazy import _one_dtype, _signature, _variable_array


class LazyReduction:
    """A reduction waiting for arrays: ``red(*args, **options)`` computes it (pykeops'
    "reduced LazyTensor", SPEC §1.10).

    Returned by a LazyArray reduction (``sum``, ``argKmin``...) called with ``call=False``,
    or on a formula with symbolic variables (``Vi(0, 3)``, ``Vj(1, 3)``, ``Pm(2, 1)``). The
    positional ``args`` fill the symbolic variables in index order: an i- (j-) variable of
    dim D takes an array ``(*b, M, D)`` (``(*b, N, D)``), a parameter ``(*b, D)`` or a scalar;
    the arrays bound when the formula was built come after them. M, N, the batch shape
    and the dtype come from all these arrays, so one LazyReduction serves arrays of any
    size (one kernel per dtype). Each call goes through :func:`jax_lazy.api.reduce`: it
    composes with ``jit``, ``vmap``, ``grad`` and ``jvp``. ``options`` (``backend=``)
    override those given to the reduction method.

    Returns what the reduction method returns with data: an array or a tuple of arrays.

    Raises:
      FormulaError: symbolic indices that are not 0, 1, ..., n-1 (when built); a call with
        a number of arrays other than n.
      ShapeError, DtypeError: arrays that do not fit their variables or each other.
    """

    def __init__(self, formulas, red, axis, k, symbolic, variables, arrays, options, squeeze=False):
        self._formulas, self._red, self._axis, self._k, self._squeeze = formulas, red, axis, k, squeeze
        self._symbolic, self._variables, self._arrays = tuple(symbolic), tuple(variables), tuple(arrays)
        self._options = dict(options)
        if [v.attr[0] for v in self._symbolic] != list(range(len(self._symbolic))):
            raise FormulaError(f"the symbolic variables {', '.join(map(_signature, self._symbolic))} must have the "
                               f"indices 0, 1, ..., {len(self._symbolic) - 1}: the call's arrays fill them in order",
                               self._text)

    def _text(self) -> str:
        return plan_mod.describe(self._formulas, self._red, self._k, self._axis)

    def __call__(self, *args, **options):
        if len(args) != len(self._symbolic):
            raise FormulaError(f"this reduction takes {len(self._symbolic)} arrays, one per symbolic variable "
                               f"({', '.join(map(_signature, self._symbolic)) or 'none'}), got {len(args)}", self._text)
        try:
            filled = tuple(_variable_array(a, v.attr[1], _signature(v)) for v, a in zip(self._symbolic, args))
            if any(map(jnp.iscomplexobj, filled)):
                raise DtypeError("symbolic variables take real arrays; bind a complex array when building the "
                                 "formula (Vi(z)...)")
        except (DtypeError, ShapeError) as e:
            raise type(e)(e.message, self._text) from None
        arrays = filled + self._arrays
        _one_dtype(arrays, self._text)
        outs = api.reduce(self._formulas, self._red, self._symbolic + self._variables, arrays, self._axis, k=self._k,
                          **{**self._options, **options})
        if self._squeeze:  # (..., K, 1) -> (..., K), as pykeops
            outs = tuple(o[..., 0] for o in outs)
        return outs if len(outs) > 1 else outs[0]

    def __repr__(self) -> str:
        bound = "; bound: " + ", ".join(f"{to_string(v)} {a.dtype}{list(a.shape)}"
                                        for v, a in zip(self._variables, self._arrays)) if self._arrays else ""
        args = ", ".join(map(_signature, self._symbolic)) or "none"
        return f"LazyReduction({self._text()}; arguments: {args}{bound})"
