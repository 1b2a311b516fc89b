"""Kernel solves (``KernelSolve``, ``LazyArray.solve``; jax_lazy/solve.py) against dense
``jnp.linalg.solve`` of the same (alpha I + K) in float64, and their derivatives against
``jax.grad`` / ``jax.jvp`` / ``jax.hessian`` of the dense solve.

Few formulas (each is a C++ kernel and its derivatives more): the Gaussian kernel as a
LazyArray, the same as a KernelSolve string, and one formula mixing the components of
the unknown (one coupled system instead of one per column).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import FormulaError, KernelSolve, ShapeError, SolveInfo, Vi, Vj

M = 40
GAUSS = ("Exp(-SqDist(x, y) * g) * a", ["x = Vi(3)", "y = Vj(3)", "a = Vj(2)", "g = Pm(1)"])


def data(seed=0, m=M, d=2, batch=(), dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=batch + (m, 3)), dtype)
    b = jnp.asarray(rng.normal(size=batch + (m, d)), dtype)
    return x, b


def dense_k(x, g=0.5):
    return jnp.exp(-((x[..., :, None, :] - x[..., None, :, :]) ** 2).sum(-1) * g)


def dense_solve(x, b, alpha, g=0.5):
    n = x.shape[-2]
    return jnp.linalg.solve(dense_k(x, g) + alpha * jnp.eye(n, dtype=x.dtype), b)


def lazy_k(x, g=0.5):
    return (-Vi(x).sqdist(Vj(x)) * g).exp()


KINV = KernelSolve(*GAUSS, "a", axis=1)


def kinv(x, b, alpha, g=0.5, **kw):
    return KINV(x, x, b, jnp.full((1,), g, x.dtype), alpha=alpha, **kw)


def close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err < tol, err


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("precond", [None, "jacobi", "nystrom"])
def test_lazy_solve_matches_dense(precond, x64):
    x, b = data()
    a, info = lazy_k(x).solve(b, alpha=0.1, precond=precond, rank=10, return_info=True)
    close(a, dense_solve(x, b, 0.1), 1e-5)
    assert isinstance(info, SolveInfo) and info.residual.shape == (2,) and bool(info.converged.all())
    assert 0 < int(info.iterations) <= M


def test_kernelsolve_matches_dense_and_lazy(x64):
    x, b = data(1)
    a = kinv(x, b, 0.1, eps=1e-10)
    close(a, dense_solve(x, b, 0.1), 1e-8)
    close(a, lazy_k(x).solve(b, alpha=0.1, eps=1e-10), 1e-8)


def test_kernelsolve_axis0_and_vector_b(x64):
    """axis=0: the unknown is an i-variable, the sum runs over i; a 1-D b for K.solve."""
    x, b = data(2, d=1)
    k0 = KernelSolve("Exp(-SqDist(x, y) * g) * a", ["x = Vj(3)", "y = Vi(3)", "a = Vi(1)", "g = Pm(1)"], "a", axis=0)
    a = k0(x, x, b, jnp.array([0.5]), alpha=0.2, eps=1e-10)
    close(a, dense_solve(x, b, 0.2), 1e-8)
    a1 = lazy_k(x).solve(b[:, 0], alpha=0.2, eps=1e-10)
    assert a1.shape == (M,)
    later = lazy_k(x).solve(b[:, 0], alpha=0.2, eps=1e-10, call=False)
    close(later(), a1, 1e-12)
    close(later(2 * b[:, 0]), 2 * a1, 1e-8)
    close(a1, dense_solve(x, b, 0.2)[:, 0], 1e-8)


def test_float32():
    x, b = data(3, dtype=np.float32)
    a = lazy_k(x).solve(b, alpha=0.1, eps=1e-4)
    assert a.dtype == jnp.float32
    with jax.enable_x64(True):
        ref = dense_solve(x.astype(jnp.float64), b.astype(jnp.float64), 0.1)
    close(a, ref, 1e-3)


def test_coupled_components(x64):
    """A formula mixing the components of the unknown, (K v)_i = sum_j k_ij (v_j + sum(v_j)):
    K is kron(k, I + 11^T), one system of size M * D (the dense oracle's)."""
    x, b = data(4, d=3)
    ks = KernelSolve("Exp(-SqDist(x, y) * g) * (a + Sum(a))", GAUSS[1][:2] + ["a = Vj(3)", "g = Pm(1)"], "a", axis=1)
    a, info = ks(x, x, b, jnp.array([0.5]), alpha=0.1, eps=1e-10, return_info=True)
    assert info.residual.shape == (1,)
    big = jnp.kron(dense_k(x), jnp.eye(3) + jnp.ones((3, 3))) + 0.1 * jnp.eye(3 * M)
    close(a, jnp.linalg.solve(big, b.reshape(-1)).reshape(M, 3), 1e-8)


def test_batch_jit_vmap(x64):
    x, b = data(5, batch=(2,))
    ref = dense_solve(x, b, 0.1)
    close(lazy_k(x).solve(b, alpha=0.1, eps=1e-10), ref, 1e-8)  # batch axes of K and b
    close(jax.jit(lambda x, b: kinv(x, b, 0.1, eps=1e-10))(x, b), ref, 1e-8)
    close(jax.vmap(lambda x, b: kinv(x, b, 0.1, eps=1e-10))(x, b), ref, 1e-8)
    # one K, many b (vmap over b only), and b broadcast against a batched K
    close(jax.vmap(lambda b: lazy_k(x[0]).solve(b, alpha=0.1, eps=1e-10))(b), dense_solve(x[0], b, 0.1), 1e-8)
    close(lazy_k(x).solve(b[0], alpha=0.1, eps=1e-10), dense_solve(x, b[0], 0.1), 1e-8)


def test_preconditioner_callable(x64):
    """An exact preconditioner (the dense inverse) converges in one or two iterations."""
    x, b = data(6)
    inv = jnp.linalg.inv(dense_k(x) + 0.1 * jnp.eye(M))
    a, info = lazy_k(x).solve(b, alpha=0.1, precond=lambda r: inv @ r, return_info=True, eps=1e-10)
    close(a, dense_solve(x, b, 0.1), 1e-8)
    assert int(info.iterations) <= 2


def test_library_operators(x64):
    """jax.scipy's cg and lineax take the lazy matvec as a linear operator."""
    x, b = data(7, d=1)
    K = lazy_k(x)
    ref = dense_solve(x, b, 0.1)[:, 0]
    a, _ = jax.scipy.sparse.linalg.cg(lambda v: K @ v + 0.1 * v, b[:, 0], tol=1e-12)
    close(a, ref, 1e-8)
    lx = pytest.importorskip("lineax")
    op = lx.FunctionLinearOperator(lambda v: K @ v + 0.1 * v, jax.ShapeDtypeStruct((M,), x.dtype),
                                   tags=(lx.symmetric_tag, lx.positive_semidefinite_tag))
    sol = lx.linear_solve(op, b[:, 0], lx.CG(rtol=1e-12, atol=1e-12))
    close(sol.value, ref, 1e-8)


# ---------------------------------------------------------------- derivatives


def test_grad_points_b_alpha(x64):
    x, b = data(8)

    def loss(solver):
        return lambda x, b, alpha: jnp.sum(jnp.sin(solver(x, b, alpha)))

    lazy = loss(lambda x, b, al: lazy_k(x).solve(b, alpha=al, eps=1e-11))
    ks = loss(lambda x, b, al: kinv(x, b, al, eps=1e-11))
    ref = jax.grad(loss(dense_solve), (0, 1, 2))(x, b, 0.3)
    for got in (jax.grad(lazy, (0, 1, 2))(x, b, 0.3), jax.jit(jax.grad(ks, (0, 1, 2)))(x, b, 0.3)):
        for g, r in zip(got, ref):
            close(g, r, 1e-6)


def test_grad_kernel_parameter_and_jvp(x64):
    """d/dg of the KernelSolve parameter, and forward mode (jvp) along x, b, alpha."""
    x, b = data(9)
    f = lambda g: jnp.sum(kinv(x, b, 0.2, g=g[0], eps=1e-11) ** 2)  # noqa: E731
    fd = lambda g: jnp.sum(dense_solve(x, b, 0.2, g=g[0]) ** 2)  # noqa: E731
    close(jax.grad(f)(jnp.array([0.5])), jax.grad(fd)(jnp.array([0.5])), 1e-6)
    t = tuple(np.random.default_rng(1).normal(size=s) for s in (x.shape, b.shape, ()))
    sol = lambda x, b, al: lazy_k(x).solve(b, alpha=al, eps=1e-11)  # noqa: E731
    _, got = jax.jvp(sol, (x, b, 0.2), t)
    _, ref = jax.jvp(dense_solve, (x, b, 0.2), t)
    close(got, ref, 1e-6)


@pytest.mark.slow  # ~20 s of kernel compiles (derivatives of derivatives) on a cold cache
def test_second_order(x64):
    """The Hessian in alpha and grad-of-grad in the points on a small case."""
    x, b = data(10, m=12)
    f = lambda x, al: jnp.sum(lazy_k(x).solve(b, alpha=al, eps=1e-12) ** 2)  # noqa: E731
    fd = lambda x, al: jnp.sum(dense_solve(x, b, al) ** 2)  # noqa: E731
    close(jax.hessian(f, 1)(x, 0.3), jax.hessian(fd, 1)(x, 0.3), 1e-5)
    gg = lambda f: jax.grad(lambda x: jnp.sum(jax.grad(f, 0)(x, 0.3) ** 2))  # noqa: E731
    close(gg(f)(x), gg(fd)(x), 1e-5)


# ---------------------------------------------------------------- non-convergence


def test_nonconvergence_warns(x64):
    x, b = data(11)
    with pytest.warns(RuntimeWarning, match=r"did not converge: 3 iterations.*\n  formula: .*Exp"):
        lazy_k(x).solve(b, alpha=1e-10, maxiter=3)
    a, info = jax.jit(lambda b: kinv(x, b, 1e-10, maxiter=3, warn=False, return_info=True))(b)
    assert int(info.iterations) == 3 and not bool(info.converged.any())
    with pytest.warns(RuntimeWarning, match="did not converge"):  # under jit: at run time
        jax.block_until_ready(jax.jit(lambda b: kinv(x, b, 1e-10, maxiter=3))(b))
        jax.effects_barrier()
    with pytest.warns(RuntimeWarning) as record:  # the forward solve, then the backward one
        jax.grad(lambda b: jnp.sum(kinv(x, b, 1e-10, maxiter=3) ** 2))(b)
    assert any("the backward (adjoint) solve did not converge" in str(w.message) for w in record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy_k(x).solve(b, alpha=0.1)  # converges: no warning


# ---------------------------------------------------------------- errors


def test_errors():
    x, b = data(12, dtype=np.float32)
    with pytest.raises(ShapeError, match="b of shape .* does not fit"):
        lazy_k(x).solve(b[:-1])
    with pytest.raises(ShapeError, match="square"):  # M = 40 rows of x_i, N = 39 of y_j and b
        KINV(x, x[:-1], b[:-1], jnp.ones(1, x.dtype))
    with pytest.raises(ShapeError, match=r"argument 2 must have shape \(\.\.\., N, 2\)"):
        kinv(x, b[:, :1], 0.1)
    with pytest.raises(ShapeError, match="scalar"):
        (Vi(x) - Vj(x)).solve(b)
    for bad in ("Exp(-SqDist(x, y) * g) * a * a", "Exp(-SqDist(x, y) * g) * a + g", "Exp(a)"):
        with pytest.raises(FormulaError, match="not linear"):
            KernelSolve(bad, GAUSS[1], "a", axis=1)
    with pytest.raises(ValueError, match="precond must be"):  # OptionError, a ValueError
        lazy_k(x).solve(b, precond="ilu")
    coupled = KernelSolve("Exp(-SqDist(x, y) * g) * (a + Sum(a))", GAUSS[1], "a", axis=1)
    with pytest.raises(FormulaError, match="nystrom"):
        coupled(x, x, b, jnp.ones(1, x.dtype), precond="nystrom")
    with pytest.raises(FormulaError, match="must be an i-variable"):
        KernelSolve(*GAUSS, "a", axis=0)


# ---------------------------------------------------------------- block-sparse ranges


def _ranges_backend():
    from jax_lazy import backends

    return any(getattr(backends.get(n), "RANGES", False) for n in ("cpu", "jnp"))


@pytest.mark.skipif(not _ranges_backend(), reason="no backend with block-sparse ranges")
def test_ranges_block_diagonal(x64):
    """Two clusters of 20 rows, only the diagonal blocks kept: K block-diagonal, against the
    masked dense solve; also through the LazyArray's .ranges attribute and its gradient."""
    x, b = data(13)
    blocks = jnp.array([[0, 20], [20, 40]], jnp.int32)
    slices = jnp.array([1, 2], jnp.int32)
    R = (blocks, slices, blocks, blocks, slices, blocks)
    mask = jnp.zeros((M, M)).at[:20, :20].set(1).at[20:, 20:].set(1)

    def dense(x, b):
        return jnp.linalg.solve(dense_k(x) * mask + 0.1 * jnp.eye(M), b)

    close(lazy_k(x).solve(b, alpha=0.1, eps=1e-10, ranges=R), dense(x, b), 1e-8)
    close(KINV(x, x, b, jnp.array([0.5]), alpha=0.1, eps=1e-10, ranges=R), dense(x, b), 1e-8)

    def f(x):
        K = lazy_k(x)
        K.ranges = R
        return jnp.sum(K.solve(b, alpha=0.1, eps=1e-11) ** 2)

    close(jax.grad(f)(x), jax.grad(lambda x: jnp.sum(dense(x, b) ** 2))(x), 1e-6)
