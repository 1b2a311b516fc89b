"""Kernel solves: ``(alpha I + K) a = b`` by conjugate gradient over the lazy matvec.

``KernelSolve(formula, aliases, varinvalias, axis)`` (pykeops' class, SPEC §2.3) and
``LazyArray.solve(b, ...)`` (SPEC §1.9) both end in :func:`solve_operator`: K is a Sum
reduction whose formula is linear in one variable v (``K v = sum_j F(x_i, y_j, v_j)``),
and the solve is a (preconditioned) conjugate gradient (Hestenes and Stiefel, 1952) whose
only access to K is that reduction. The CG runs inside ``jax.lax.custom_linear_solve``, so
derivatives are implicit: the solution a of ``A(theta) a = b`` has
``da = A^-1 (db - dA a)``, one more solve with the same operator (the transpose solve,
A being symmetric) plus the derivative of the matvec, which JAX takes through the
reduction primitive's JVP and transpose rules. So ``grad``, ``jvp``, ``hessian`` work with
respect to b, alpha and every array of the formula, and ``jit`` / ``vmap`` compose.

Several right-hand sides: when the formula is ``s(x_i, y_j) * v_j`` with a scalar s
(every kernel matvec), the D columns of b are independent systems, each with its own CG
scalars and stopping test (:func:`columnwise`); otherwise (a formula that mixes the
components of v) the (M * D) system is one CG. Each batch element is its own system.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .errors import FormulaError, ShapeError
from .ir import I, J, P, Var, Zero, substitute, to_string, variables
from .ir.evaluate import evaluate
from .lazy_reduction import LazyReduction
from .autodiff import vjp
from .options import OptionError


class SolveInfo(NamedTuple):
    """What a solve returns with ``return_info=True`` (a pytree of arrays, also under jit).

    Attributes:
      iterations: int32 scalar, the CG iterations run (each one matvec).
      residual: the residual norm ``|b - (alpha I + K) a|`` per system, ``(*batch, D)``
        when the columns of b are independent systems, ``(*batch, 1)`` otherwise.
      converged: bool, same shape: the stopping test held.
    """

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array


# ---------------------------------------------------------------- the formula's checks


def check_linear(F, v, text) -> None:
    """Raise FormulaError unless the formula ``F`` is linear in the variable ``v``: its
    derivative in v must not contain v (no v * v, exp(v)...) and F(0) must be 0 (no
    constant term); both are symbolic (the op table's smart constructors fold zeros)."""
    if v not in variables(F):
        raise FormulaError(f"the formula does not contain the solve's variable {to_string(v)}", text)
    g = Var(1 << 40, F.dim, I)  # a placeholder cotangent, never bound: only which variables occur matters
    (d,) = vjp([(F, g)], [v])
    if v in variables(d) or substitute(F, {v: Zero(v.dim)}).op != "Zero":
        raise FormulaError(f"the formula is not linear in the solve's variable {to_string(v)}", text)


def columnwise(F, v) -> bool:
    """Whether ``F = s * v`` with s a scalar formula free of v (sums, differences,
    negations and scalings of such terms): then each component of v is its own system."""
    if F is v:
        return True
    free = lambda a: a.dim == 1 and v not in variables(a)  # noqa: E731
    a = F.args
    if F.op == "Mult":
        return (free(a[0]) and columnwise(a[1], v)) or (free(a[1]) and columnwise(a[0], v))
    if F.op in ("Add", "Subtract"):
        return columnwise(a[0], v) and columnwise(a[1], v)
    if F.op == "Minus":
        return columnwise(a[0], v)
    if F.op == "Divide":
        return columnwise(a[0], v) and free(a[1])
    return False


# ---------------------------------------------------------------- conjugate gradient


def conjugate_gradient(matvec, b, *, eps, rtol, atol, maxiter, precond, columns):
    """Preconditioned CG for ``matvec(a) = b`` from a = 0, b ``(*batch, M, D)``.

    One system per (batch element, column) when ``columns``, per batch element otherwise:
    its own step sizes, and it stops changing once its residual r satisfies
    ``|r|^2 <= max(n eps^2, (rtol |b|)^2, atol^2)`` (n its size: pykeops' rule with
    rtol = atol = 0). The loop stops when every system has, or after ``maxiter``
    iterations. Returns ``(a, SolveInfo)``.
    """
    axes = (-2,) if columns else (-2, -1)
    dot = lambda u, w: jnp.sum(u * w, axis=axes, keepdims=True)  # noqa: E731
    n = b.shape[-2] * (1 if columns else b.shape[-1])
    bb = dot(b, b)
    tol2 = jnp.maximum(jnp.maximum(n * eps ** 2, rtol ** 2 * bb), atol ** 2).astype(bb.dtype)
    z = precond(b)
    rz = dot(b, z)

    def cond(state):  # state: (k, x, r, p, rz, |r|^2)
        k, *_, rr = state
        return (k < maxiter) & jnp.any(rr > tol2)

    def body(state):
        k, x, r, p, rz, rr = state
        live = rr > tol2  # converged systems are frozen
        ap = matvec(p)
        pap = dot(p, ap)
        step = jnp.where(live & (pap != 0), rz / jnp.where(pap != 0, pap, 1), 0)
        x, r = x + step * p, r - step * ap
        z = precond(r)
        rz_new = dot(r, z)
        beta = jnp.where(live & (rz != 0), rz_new / jnp.where(rz != 0, rz, 1), 0)
        p = jnp.where(live, z + beta * p, p)
        return k + 1, x, r, p, jnp.where(live, rz_new, rz), dot(r, r)

    k, x, _, _, _, rr = lax.while_loop(cond, body, (jnp.int32(0), jnp.zeros_like(b), b, z, rz, bb))
    squeeze = lambda a: a[..., 0, :]  # noqa: E731  (*batch, 1, D or 1) -> (*batch, D or 1)
    return x, SolveInfo(k, squeeze(jnp.sqrt(rr)), squeeze(rr <= tol2))


# ---------------------------------------------------------------- the operator


class Operator(NamedTuple):
    """``v -> K v``: the Sum :class:`~jax_lazy.lazy_reduction.LazyReduction` ``reduction``
    with v as its array number ``slot`` (its arrays: the symbolic variables' in index
    order, then the bound ones); ``args`` are the others, ``var`` is v's Var; ``text``
    prints the reduction for messages."""

    reduction: object
    slot: int
    args: tuple
    var: object
    text: Callable

    def arrays(self, v) -> tuple:
        """The reduction's arrays with v in its slot."""
        return self.args[:self.slot] + (v,) + self.args[self.slot:]

    def __call__(self, v, **options):
        red, arrays = self.reduction, self.arrays(v)
        n = len(red._symbolic)
        filled = LazyReduction(red._formulas, red._red, red._axis, red._k, red._symbolic, red._variables, arrays[n:],
                               red._options)
        return filled(*arrays[:n], **options)

    def _env(self, like, place):
        """The formula's variables but v, bound to their arrays (batch axes aligned with
        ``like``, ``(*batch, M, D)``) as ``place(category, array)`` lays them out."""
        red = self.reduction
        nb = len(like.shape) - 2
        env = {}
        for w, a in zip(red._symbolic + red._variables, self.arrays(like)):
            if w is not self.var:
                rank = a.ndim - (1 if w.attr[1] == P else 2)
                env[w] = place(w.attr[1], a.reshape((1,) * (nb - rank) + a.shape))
        return env

    def diagonal(self, like):
        """The diagonal of K (the formula at the pairs (i, i)) as an array like ``like``
        ``(*batch, M, D)``: entry d of row i is ``(dF/dv)_{dd}`` at (x_i, y_i). K must be
        square (M = N), which a solve needs anyway."""
        (F,) = self.reduction._formulas
        env = self._env(like, lambda cat, a: a[..., None, :] if cat == P else a)

        def column(e):  # F(x_i, y_i, e) for the unit vector e, every row
            return evaluate([F], {**env, self.var: e}, like.dtype)[0]

        eye = jnp.eye(self.var.dim, dtype=like.dtype)
        cols = jax.vmap(column)(eye)  # (D_in, *batch, M, D_out)
        diag = jnp.diagonal(jnp.moveaxis(cols, 0, -1), axis1=-2, axis2=-1)
        return jnp.broadcast_to(diag, like.shape)

    def columns(self, like, idx):
        """The scalar kernel s of a formula ``s * v`` at every row and the columns ``idx``:
        ``(*batch, M, len(idx))``, dense (for the Nystrom preconditioner)."""
        (F,) = self.reduction._formulas
        reduced = (I, J)[self.reduction._axis]

        def place(cat, a):
            if cat == P:
                return a[..., None, None, :]
            return a[..., idx, :][..., None, :, :] if cat == reduced else a[..., :, None, :]

        ones = jnp.ones((self.var.dim,), like.dtype)
        k = evaluate([F], {**self._env(like, place), self.var: ones}, like.dtype)[0][..., 0]
        return jnp.broadcast_to(k, like.shape[:-1] + (len(idx),))


def _jacobi(op: Operator, b, alpha):
    """The Jacobi (diagonal) preconditioner ``r -> r / (alpha + diag K)``; rows whose
    diagonal is not positive are left as they are."""
    d = lax.stop_gradient(alpha + op.diagonal(b))
    safe = jnp.where(d > 0, d, 1)
    return lambda r: r / safe


def _nystrom(op: Operator, b, alpha, rank):
    """The Nystrom preconditioner ``(alpha I + B B^T)^-1`` with ``B B^T`` the rank-m Nystrom
    approximation of K on m evenly spaced rows (landmarks): ``B = K_nm L^-T``, ``L L^T =
    K_mm`` (jittered), applied by the Woodbury identity
    ``(r - B (alpha I + B^T B)^-1 B^T r) / alpha`` (Williams and Seeger, 2001; as a CG
    preconditioner: Frangella, Tropp and Udell, 2023). Needs a formula ``s * v`` and an
    alpha well above the rounding of K; O(M m) memory."""
    (F,) = op.reduction._formulas
    if not columnwise(F, op.var):
        raise FormulaError("precond='nystrom' needs a formula s * v with a scalar kernel s (columns independent)",
                           op.text)
    n = b.shape[-2]
    m = min(int(rank), n)
    idx = (np.arange(m) * n) // m
    knm = lax.stop_gradient(op.columns(b, idx))  # (*batch, n, m)
    kmm = knm[..., idx, :]
    kmm = (kmm + jnp.swapaxes(kmm, -1, -2)) / 2
    jitter = jnp.finfo(b.dtype).eps * m * jnp.mean(jnp.diagonal(kmm, axis1=-2, axis2=-1), axis=-1)
    chol = jnp.linalg.cholesky(kmm + jitter[..., None, None] * jnp.eye(m, dtype=b.dtype))
    bmat = jnp.swapaxes(jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(knm, -1, -2), lower=True), -1, -2)
    alpha = lax.stop_gradient(jnp.asarray(alpha, b.dtype))
    inner = jnp.linalg.cholesky(alpha * jnp.eye(m, dtype=b.dtype) + jnp.swapaxes(bmat, -1, -2) @ bmat)
    usable = jnp.all(jnp.isfinite(inner))  # a failed factorisation: no preconditioning

    def apply(r):
        t = jax.scipy.linalg.cho_solve((inner, True), jnp.swapaxes(bmat, -1, -2) @ r)
        return jnp.where(usable, (r - bmat @ t) / alpha, r)

    return apply


def _preconditioner(precond, op, b, alpha, rank):
    if precond is None:
        return lambda r: r
    if precond == "jacobi":
        return _jacobi(op, b, alpha)
    if precond == "nystrom":
        return _nystrom(op, b, alpha, rank)
    if isinstance(precond, str) or not callable(precond):
        raise OptionError(f"precond must be None, 'jacobi', 'nystrom' or a callable, got {precond!r}", op.text)
    return precond


# ---------------------------------------------------------------- reporting


def _warn(what, text, iterations, residual, converged):
    """The RuntimeWarning of a solve whose systems did not all converge (a host callback)."""
    converged = np.asarray(converged)
    if converged.all():
        return
    bad = np.asarray(residual)[~converged]
    warnings.warn(f"{what} did not converge: {int(np.max(iterations))} iterations, residual norm up to "
                  f"{float(np.max(bad)):.3g} in {bad.size} of {converged.size} systems (raise maxiter, loosen "
                  f"eps / rtol / atol, add alpha or a preconditioner)\n  formula: {text}", RuntimeWarning)


# ---------------------------------------------------------------- the solve


@contextlib.contextmanager
def _fitting(b, text):
    """Re-raise a ShapeError of the matvec's reduction as one about b."""
    try:
        yield
    except ShapeError as e:
        raise ShapeError(f"b of shape {b.shape} does not fit the formula's arrays: {e.message}", text) from None


def solve_operator(op: Operator, b, *, alpha=1e-10, eps=1e-6, rtol=0.0, atol=0.0, maxiter=None,
                   precond=None, rank=256, return_info=False, warn=True, ranges=None, options=None):
    """Solve ``(alpha I + K) a = b``, K the operator ``op``; see :class:`KernelSolve` for
    the arguments. Returns a, or ``(a, SolveInfo)``."""
    options = dict(options or {})
    if ranges is not None:  # block-sparse matvecs (a LazyArray's .ranges attribute is used without it)
        options["ranges"] = ranges
    text = op.text()
    b = jnp.asarray(b)
    if b.ndim < 2:
        raise ShapeError(f"b must have shape (*batch, M, D), got {b.shape}", text)
    if b.shape[-1] != op.var.dim:
        raise ShapeError(f"b has {b.shape[-1]} columns, the formula's variable {to_string(op.var)} has dim "
                         f"{op.var.dim}", text)
    with _fitting(b, text):
        out = jax.eval_shape(lambda v: op(v, **options), b)
    if out.shape[-2:] != b.shape[-2:]:
        raise ShapeError(f"the solve needs a square system: K maps {b.shape[-2]} rows of dim {b.shape[-1]} to "
                         f"{out.shape[-2]} rows of dim {out.shape[-1]}, and b has {b.shape[-2]} rows", text)
    b = jnp.broadcast_to(b, out.shape).astype(out.dtype)  # batch axes of the formula's arrays
    (F,) = op.reduction._formulas
    columns = columnwise(F, op.var)
    size = b.shape[-2] * (1 if columns else b.shape[-1])
    maxiter = 10 * size if maxiter is None else int(maxiter)
    pre = _preconditioner(precond, op, b, alpha, rank)

    def matvec(v):
        return op(v, **options) + alpha * v

    cg = functools.partial(conjugate_gradient, eps=eps, rtol=rtol, atol=atol, maxiter=maxiter, precond=pre,
                           columns=columns)

    def reported(what):
        """The CG, warning when it runs if it did not converge: a host callback inside the
        solve, so that every run of it reports (the forward solve, the tangent solve of
        jvp, which JAX runs from the same jaxpr, and the backward solve of grad)."""

        def solve(mv, rhs):
            x, info = cg(mv, rhs)
            if warn:
                jax.debug.callback(functools.partial(_warn, what, text), *info)
            return x, info

        return solve

    # K symmetric: the transpose solve (the backward pass) is the same CG
    x, info = lax.custom_linear_solve(matvec, b, reported("the conjugate gradient solve"),
                                      reported("the backward (adjoint) solve"), symmetric=True, has_aux=True)
    return (x, info) if return_info else x


# ---------------------------------------------------------------- KernelSolve


_SOLVE_DOC = """alpha: the ridge alpha (a number or a traced scalar; differentiable).
      eps: pykeops' stopping rule ``|r|^2 < n eps^2`` per system of size n (default 1e-6).
      rtol, atol: also stop when ``|r| <= rtol |b|`` or ``|r| <= atol`` (default 0).
      maxiter: the iteration limit (default 10 n).
      precond: None, ``"jacobi"`` (divide by ``alpha + diag K``, the formula at i = j),
        ``"nystrom"`` (a rank-``rank`` Nystrom approximation of K on evenly spaced
        landmark rows, inverted by Woodbury: for a formula ``s * v`` with a scalar kernel
        s and an alpha well above K's rounding; O(M rank) memory), or a callable
        ``r -> z`` approximating ``(alpha I + K)^-1 r`` on ``(*batch, M, D)`` arrays.
        Preconditioners get no derivatives (the solution does not depend on them).
      rank: the Nystrom rank (default 256).
      return_info: also return a :class:`SolveInfo` (iterations, residual, converged).
      warn: a RuntimeWarning naming the residual, the iterations and the formula when a
        system did not converge, emitted when the solve runs (a ``jax.debug.callback``:
        at once outside ``jit``, during the computation under it; also for the tangent
        solve of ``jvp`` and the backward solve of ``grad``). ``False`` drops the
        callbacks (e.g. for ``jax.export``): read ``return_info``.
      backend, dtype_acc, sum_scheme: options of the matvec reductions.
      ranges: KeOps' block-sparse 6-tuple of the matvec (docs/api.md, "Block-sparse
        reductions"), in the formula's orientation: K is the block-sparse kernel matrix
        (its block mask must be symmetric). A LazyArray's ``.ranges`` is used by
        ``K.solve`` without it. The preconditioners ignore the ranges."""


class KernelSolve:
    """Solve ``(alpha I + K) a = b`` where ``K v`` is a Sum reduction of a formula string
    linear in one variable (``pykeops.torch.KernelSolve`` / ``pykeops.numpy.KernelSolve``,
    SPEC §2.3), by conjugate gradient, differentiable implicitly.

    Args:
      formula, aliases: as :class:`jax_lazy.Genred`, e.g. ``"Exp(-g * SqDist(x, y)) * a"``
        with ``["x = Vi(3)", "y = Vj(3)", "a = Vj(2)", "g = Pm(1)"]``.
      varinvalias: the name of the variable the formula is linear in (or a literal
        ``"Var(pos, dim, cat)"``): a j-variable for ``axis=1`` (a sum over j), an
        i-variable for ``axis=0``. At call time its slot takes the right-hand side b.
      axis: the reduced axis, 0 (over i) or 1 (over j).
      dtype_acc, sum_scheme, use_double_acc: accumulation options of the matvec, as Genred.
      **kwargs: pykeops options without meaning here, ignored as by Genred.

    The result is called as ``Kinv(*args, alpha=1e-10, eps=1e-6, rtol=0, atol=0,
    maxiter=None, precond=None, rank=256, return_info=False, warn=True, backend="auto",
    ranges=None)``: one array per alias position, as Genred, b ``(*batch, M, D)`` in the
    slot of ``varinvalias`` (M the rows of the output: the system is square, so the
    variables indexed by the reduced axis have M rows too). It returns a of b's shape
    (batch axes broadcast with the formula's arrays), or ``(a, SolveInfo)``. K must be
    symmetric positive definite (not checked): typically the same points passed as x and y.

      """ + _SOLVE_DOC + """

    Raises:
      FormulaError: the formula is not linear in ``varinvalias`` (or lacks it), or
        ``varinvalias`` is not of the reduced axis' category; as Genred otherwise.
      ShapeError: b's dim is not the variable's, or its rows are not the output's.
    """

    def __init__(self, formula, aliases, varinvalias, axis=0, dtype_acc="auto", sum_scheme="auto",
                 use_double_acc=False, **kwargs):
        from .genred import Genred
        from .ir.parse import parse

        self._args = dict(formula=formula, aliases=tuple(aliases), varinvalias=varinvalias, axis=axis,
                          dtype_acc=dtype_acc, sum_scheme=sum_scheme, use_double_acc=use_double_acc, **kwargs)
        self._genred = Genred(formula, aliases, "Sum", axis=axis, dtype_acc=dtype_acc, sum_scheme=sum_scheme,
                              use_double_acc=use_double_acc, **kwargs)
        red = self._genred._reduction
        v = parse(varinvalias, aliases)
        if v.op != "Var" or v not in red._symbolic:
            raise FormulaError(f"varinvalias {varinvalias!r} must name one of the formula's variables", formula)
        want = (I, J)[axis]
        if v.attr[1] != want:
            raise FormulaError(f"varinvalias {varinvalias!r} must be {'a j' if axis else 'an i'}-variable: the solve's "
                               f"unknown is indexed by the reduced axis ({'j' if axis else 'i'} for axis={axis})",
                               formula)
        check_linear(red._formulas[0], v, red._text)
        self.var, self.slot = v, red._symbolic.index(v)

    def __reduce__(self):  # pickle the arguments, as Genred
        return (_rebuild, (self._args,))

    def __repr__(self) -> str:
        a = self._args
        return f"KernelSolve({a['formula']!r}, {list(a['aliases'])!r}, {a['varinvalias']!r}, axis={a['axis']})"

    def operator(self, *args, backend="auto") -> tuple:
        """``(op, b, options)``: the linear map ``v -> K v`` of these arguments (the one in
        the varinvalias slot, b, is left out of it) and the reductions' options."""
        from .genred import BACKENDS

        checked = self._genred._check(args)
        red = self._genred._reduction
        op = Operator(red, self.slot, checked[:self.slot] + checked[self.slot + 1:], self.var, red._text)  # no bound
        return op, checked[self.slot], {"backend": BACKENDS.get(backend, backend)}

    def __call__(self, *args, backend="auto", alpha=1e-10, eps=1e-6, rtol=0.0, atol=0.0, maxiter=None, precond=None,
                 rank=256, return_info=False, warn=True, ranges=None):
        op, b, options = self.operator(*args, backend=backend)
        return solve_operator(op, b, alpha=alpha, eps=eps, rtol=rtol, atol=atol, maxiter=maxiter, precond=precond,
                              rank=rank, return_info=return_info, warn=warn, ranges=ranges, options=options)


def _rebuild(args: dict) -> KernelSolve:
    return KernelSolve(**args)


def lazy_solve(K, b, var=None, *, call=True, **kw):
    """:meth:`jax_lazy.LazyArray.solve` (its docstring)."""
    from .lazy import LazyArray, _signature

    text = lambda: to_string(K.formula)  # noqa: E731
    if not call:  # as a reduction's call=False: a function to call later (of another b, if given one)
        return lambda b_new=b: lazy_solve(K, b_new, var, **kw)
    options = {k: kw.pop(k) for k in ("backend", "dtype_acc", "sum_scheme") if k in kw}
    b = jnp.asarray(b)
    vector = b.ndim == 1
    if vector:
        b = b[:, None]
    if b.ndim < 2:
        raise ShapeError(f"b must have shape (M,) or (*batch, M, D), got {b.shape}", text)
    if var is None:
        return _scalar_solve(K, b, vector, options, kw)
    if not (isinstance(var, LazyArray) and var.formula.op == "Var" and var._symbolic):
        raise FormulaError(f"var must be a symbolic variable such as Vj(0, D), got {var!r}", text)
    if [v for v in K._symbolic] != [var.formula]:
        raise FormulaError(f"K must have one symbolic variable, var ({_signature(var.formula)}); it has "
                           f"{', '.join(map(_signature, K._symbolic)) or 'none'}", text)
    if var.formula.attr[1] != J:
        raise FormulaError(f"var must be a j-variable (Vj(index, D)): the solve reduces over j, got "
                           f"{_signature(var.formula)}", text)
    red = K.sum(axis=K.nbatchdims + 1, call=False)  # b's batch axes broadcast at call time
    check_linear(red._formulas[0], var.formula, red._text)
    return _unvector(solve_operator(Operator(red, 0, red._arrays, var.formula, red._text), b, options=options, **kw),
                     vector)


def _scalar_solve(K, b, vector, options, kw):
    """``K.solve(b)`` for a scalar K: the matvec is ``K @ v``'s reduction (the same plan,
    so the same kernels), with v in the slot of a placeholder bound in b's place."""
    from .lazy import Vj

    text = lambda: to_string(K.formula)  # noqa: E731
    if K.dim != 1:
        raise ShapeError(f"K.solve(b) needs a scalar K (dim 1), got dim {K.dim}; pass var= for a formula "
                         "linear in a variable", text)
    if K._symbolic:
        raise FormulaError("K.solve(b) with symbolic variables in K needs var=, the one K is linear in", text)
    placeholder = jnp.zeros_like(b)  # a new array: never merged with one of K's
    with _fitting(b, text):
        red = (K * Vj(placeholder)).sum(axis=max(K.nbatchdims, b.ndim - 2) + 1, call=False)
    slot = next(k for k, a in enumerate(red._arrays) if a is placeholder)
    args = red._arrays[:slot] + red._arrays[slot + 1:]
    op = Operator(red, slot, args, red._variables[slot], red._text)
    return _unvector(solve_operator(op, b, options=options, **kw), vector)


def _unvector(out, vector):
    """``(M, 1) -> (M,)`` for a 1-D b, also inside ``(a, info)``."""
    if not vector:
        return out
    return (out[0][..., 0], out[1]) if isinstance(out, tuple) else out[..., 0]
