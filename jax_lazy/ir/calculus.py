"""Symbolic calculus on formulas: KeOps' ``Grad``, ``Diff``, ``Laplacian``, ``Divergence``,
``TraceOperator``, ``GradMatrix``, ``AdjointOperator`` and ``SumLinOperator``.

Each returns a formula of the same IR, built from :func:`jax_lazy.autodiff.vjp` (reverse
mode) and :func:`jax_lazy.autodiff.jvp` (forward mode) and a few primitives: no op of its
own, no printer, no derivative rule (STYLE rule 3). So the results print, hash, compile,
reduce and differentiate like any formula.

Notation: ``f`` a formula of dim ``m``, ``v`` one of its variables (a ``Var`` node) of dim
``n``, ``J = df/dv`` the ``m x n`` Jacobian, ``e_k`` the k-th basis vector (the constant
``ExtractT(IntCst(1), k, n)``). A ``v`` that does not occur in ``f`` is allowed (the
derivatives are then ``Zero``); the LazyArray methods reject it as a likely mistake.
"""

from __future__ import annotations

from ..errors import FormulaError
from .node import Node, substitute
from .ops import Add, Concat, ExtractT, IntCst, Mult, Sum, SumT
from .derived import elem


def check_var(v: Node, what: str) -> None:
    """Raise FormulaError unless ``v`` is a ``Var`` node."""
    if not isinstance(v, Node) or v.op != "Var":
        raise FormulaError(f"{what}: differentiates with respect to a variable, got {v!r}")


def _check_dim(x: Node, dim: int, what: str, role: str) -> None:
    if x.dim != dim:
        raise FormulaError(f"{what}: {role} has dim {x.dim}, expected {dim}")


def _basis(k: int, n: int) -> Node:
    """The constant vector ``e_k`` of dim ``n``."""
    return IntCst(1) if n == 1 else ExtractT(IntCst(1), k, n)


def _total(terms) -> Node:
    out = None
    for t in terms:
        out = t if out is None else Add(out, t)
    return out


def grad(f: Node, v: Node, e: Node) -> Node:
    """``Grad(f, v, e) = J^T e``, the vector-Jacobian product: dim ``v.dim``; ``e`` has
    ``f.dim``. Raises FormulaError otherwise, or when ``v`` is not a ``Var``."""
    from ..autodiff import vjp

    check_var(v, "Grad")
    _check_dim(e, f.dim, "Grad", "the cotangent e")
    return vjp([(f, e)], [v])[0]


def diff(f: Node, v: Node, u: Node) -> Node:
    """``Diff(f, v, u) = J u``, the Jacobian-vector product: dim ``f.dim``; ``u`` has
    ``v.dim``."""
    from ..autodiff import jvp

    check_var(v, "Diff")
    _check_dim(u, v.dim, "Diff", "the tangent u")
    return jvp([f], {v: u})[0]


def divergence(f: Node, v: Node) -> Node:
    """``Divergence(f, v) = trace(J) = sum_k (J e_k)_k``, dim 1; ``f.dim == v.dim``.
    One forward sweep per coordinate of ``v``."""
    check_var(v, "Divergence")
    _check_dim(f, v.dim, "Divergence", "the formula")
    n = v.dim
    return _total(elem(diff(f, v, _basis(k, n)), k) for k in range(n))


def laplacian(f: Node, v: Node) -> Node:
    """``Laplacian(f, v) = sum_k d^2 f / dv_k^2`` for a scalar ``f``: the divergence of
    its gradient, dim 1."""
    check_var(v, "Laplacian")
    _check_dim(f, 1, "Laplacian", "the formula")
    return divergence(grad(f, v, IntCst(1)), v)


def trace_operator(f: Node, v: Node, w: Node = None) -> Node:
    """``TraceOperator(f, v[, w]) = sum_k w_k f(v := e_k)_k``, dim 1: for ``f = A v``
    linear in ``v`` with A square (``f.dim == v.dim``), the trace of A weighted by the
    diagonal ``w`` (dim 1 or ``v.dim``; default 1). For a scalar f (A a row), as KeOps,
    ``sum_k w_k A_k`` = ``f(v := w)``. Built by substituting the basis vectors for ``v``
    (no derivative): for an ``f`` that is not linear in ``v`` this is not the divergence
    -- use :func:`divergence`."""
    check_var(v, "TraceOperator")
    if w is not None and w.dim not in (1, v.dim):
        raise FormulaError(f"TraceOperator: the weight has dim {w.dim}, expected 1 or {v.dim}")
    if f.dim == 1 and v.dim > 1:
        return sum_lin_operator(f, v, wr=w)
    _check_dim(f, v.dim, "TraceOperator", "the formula")
    n = v.dim
    terms = (elem(substitute(f, {v: _basis(k, n)}), k) for k in range(n))
    if w is not None:
        terms = (Mult(elem(w, k) if w.dim > 1 else w, t) for k, t in enumerate(terms))
    return _total(terms)


def grad_matrix(f: Node, v: Node) -> Node:
    """``GradMatrix(f, v)``: the Jacobian flattened row-major, dim ``f.dim * v.dim``:
    entry ``k * v.dim + l`` is ``d f_k / d v_l``, i.e. ``jax.jacobian(f)(v).reshape(-1)``
    (KeOps calls it the transposed Jacobian: row k is ``Grad(f, v, e_k) = J^T e_k``)."""
    check_var(v, "GradMatrix")
    rows = [grad(f, v, _basis(k, f.dim)) for k in range(f.dim)]
    out = rows[0]
    for r in rows[1:]:
        out = Concat(out, r)  # Concat is linear: all-Zero rows give Zero(f.dim * v.dim)
    return out


def adjoint_operator(f: Node, v: Node, u: Node) -> Node:
    """``AdjointOperator(f, v, u) = A^T u`` for ``f = A v`` linear in ``v``: dim
    ``v.dim``; ``u`` has ``f.dim``. For a linear f this is ``Grad(f, v, u)``, which it
    returns (for any f, the adjoint of the differential)."""
    check_var(v, "AdjointOperator")
    return grad(f, v, u)


def sum_lin_operator(f: Node, v: Node, wl: Node = None, wr: Node = None) -> Node:
    """``SumLinOperator(f, v[, wl, wr]) = sum_{k,l} wl_k A_kl wr_l`` for ``f = A v`` linear
    in ``v``, dim 1: the sum of the entries of A, weighted on the left by ``wl`` (dim 1 or
    ``f.dim``) and on the right by ``wr`` (dim 1 or ``v.dim``); both default to 1. Built by
    substituting ``wr`` for ``v`` (no derivative)."""
    check_var(v, "SumLinOperator")
    for w, dim, side in ((wl, f.dim, "left"), (wr, v.dim, "right")):
        if w is not None and w.dim not in (1, dim):
            raise FormulaError(f"SumLinOperator: the {side} weight has dim {w.dim}, expected 1 or {dim}")
    right = IntCst(1) if wr is None else wr
    image = substitute(f, {v: right if right.dim == v.dim else SumT(right, v.dim)})
    return Sum(image if wl is None else Mult(wl, image))
