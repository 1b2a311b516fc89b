"""Exceptions raised by jax_lazy.

Every user error derives from :class:`JaxLazyError` and also from the builtin
exception a Python user would expect (``ValueError`` for bad shapes, ``TypeError``
for bad dtypes), so ``except ValueError`` keeps working. Messages name the problem
and, where there is one, print the offending formula.
"""

from __future__ import annotations


class JaxLazyError(Exception):
    """Base class of every jax_lazy error."""

    def __init__(self, message: str, formula=None):
        """``formula``: its text, or a function returning it, called only here, when the
        error is raised (printing a large formula costs time: no caller pays it up front)."""
        self.message = message  # without the formula
        if callable(formula):
            formula = formula()
        if formula is not None:
            message = f"{message}\n  formula: {formula}"
        super().__init__(message)
        self.formula = formula


class ShapeError(JaxLazyError, ValueError):
    """Incompatible shapes: batch dimensions, symbolic sizes M/N or vector dims."""


class DtypeError(JaxLazyError, TypeError):
    """Unsupported or mixed dtypes among the arrays bound to a formula."""


class AxisError(JaxLazyError, ValueError):
    """A reduction axis that is neither the i nor the j axis."""


class FormulaError(JaxLazyError, ValueError):
    """A formula that the requested operation cannot accept (e.g. a vector formula
    given to logsumexp, or an unknown op)."""


class BackendError(JaxLazyError, RuntimeError):
    """A backend that is unavailable (the message says why) or failed to build."""


class CompileError(BackendError):
    """A generated kernel failed to compile. The message holds the full compiler command,
    the full compiler output and the path of the generated source; they are also
    available as ``command`` (list of str), ``log`` (str) and ``source_path``."""

    def __init__(self, message: str, command=None, log=None, source_path=None):
        super().__init__(message)
        self.command = command
        self.log = log
        self.source_path = source_path


class RangesError(JaxLazyError, ValueError):
    """Block-sparse ranges whose values are invalid: an interval outside its axis or
    ending before it starts, row blocks unsorted or overlapping, slices that decrease or
    point past the reduction intervals (:mod:`jax_lazy.ranges`)."""
