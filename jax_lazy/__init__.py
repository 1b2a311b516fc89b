"""jax_lazy: reductions of huge symbolic matrices in JAX.

Build a formula ``F(x_i, y_j, p)`` on symbolic arrays (:func:`Vi`, :func:`Vj`, :func:`Pm`),
reduce it over i or j (``sum``, ``logsumexp``, ``argKmin``...) and get a ``jax.Array``;
the M x N matrix is never stored. Reductions compose with every JAX transformation
(``jit``, ``vmap``, ``grad``, ``jvp``, ``linear_transpose``...): each is a JAX primitive
whose derivatives are reductions of the formula's symbolic derivatives.
"""

from .errors import AxisError, BackendError, DtypeError, FormulaError, JaxLazyError, ShapeError
from .doctor import doctor
from .store import clear_cache
from .lazy import LazyArray, LazyReduction, LazyTensor, Pm, Vi, Vj
from .backends import register_targets as _register_targets

_register_targets()  # so that modules made by jax.export in another process find their kernels

__version__ = "0.1.0"

__all__ = ["LazyArray", "LazyTensor", "LazyReduction", "Vi", "Vj", "Pm", "clear_cache", "JaxLazyError", "ShapeError", "DtypeError",
           "AxisError", "FormulaError", "BackendError", "doctor", "__version__"]

# Formula strings (pykeops' generic API): jax_lazy/genred.py, jax_lazy/ir/parse.py
from .genred import Genred, generic_argkmin, generic_argmin, generic_logsumexp, generic_sum  # noqa: E402

__all__ += ["Genred", "generic_sum", "generic_logsumexp", "generic_argmin", "generic_argkmin"]

from .errors import RangesError  # noqa: E402  (issue 13: block-sparse ranges)

__all__ += ["RangesError"]

# Kernel solves (issue 13): jax_lazy/solve.py
from .solve import KernelSolve, SolveInfo  # noqa: E402

__all__ += ["KernelSolve", "SolveInfo"]
