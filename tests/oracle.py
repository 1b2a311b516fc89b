"""Independent reference implementations used by the tests.

Nothing here imports ``jax_lazy``: the element-wise and vector ops are written once
against an array namespace ``xp`` (``numpy`` for the float64 value oracle, ``jax.numpy``
for the dense autodiff references of ``test_grad.py``), on operands already broadcast
to a common leading shape ``(..., M, N)`` with the vector axis last. The reductions
are NumPy float64 only.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------- element-wise / vector ops
# Every function takes ``xp`` first, then arrays of shape (..., d_k).


def as01(xp, cond):
    """A boolean array as 0./1. floats."""
    return xp.where(cond, 1.0, 0.0)


def rsqrt(xp, x):
    """1 / sqrt(x), and 0 at x == 0 (KeOps convention)."""
    zero = x == 0
    return xp.where(zero, 0.0, 1.0 / xp.sqrt(xp.where(zero, 1.0, x)))


def sign(xp, x):
    return as01(xp, x > 0) - as01(xp, x < 0)


def step(xp, x):
    return as01(xp, x >= 0)


def relu(xp, x):
    return xp.where(x > 0, x, 0.0 * x)


def clamp(xp, x, lo, hi):
    return xp.where(x < lo, lo + 0.0 * x, xp.where(x > hi, hi + 0.0 * x, x))


def ifelse(xp, c, a, b):
    return xp.where(c >= 0, a, b)


def vsum(xp, x):
    return xp.sum(x, axis=-1, keepdims=True)


def sqnorm2(xp, x):
    return vsum(xp, x * x)


def norm2(xp, x):
    return xp.sqrt(sqnorm2(xp, x))


def normalize(xp, x):
    return x * rsqrt(xp, sqnorm2(xp, x))


def dot(xp, x, y):
    return vsum(xp, x * y)


def matrix(x, rows, cols):
    """The row-major (rows x cols) matrix stored in the last axis of ``x``."""
    return x.reshape(x.shape[:-1] + (rows, cols))


def matvec(xp, a, v):
    """A (m*n, row-major) times v (n) -> m."""
    n = v.shape[-1]
    A = matrix(a, a.shape[-1] // n, n)
    return xp.einsum("...kn,...n->...k", A, v)


def vecmat(xp, v, a):
    """v (n) times A (n*m, row-major) -> m: out[k] = sum_i v[i] A[i*m + k]."""
    n = v.shape[-1]
    A = matrix(a, n, a.shape[-1] // n)
    return xp.einsum("...n,...nk->...k", v, A)


def tensorprod(xp, a, b):
    """out[i * db + j] = a[i] * b[j]."""
    out = xp.einsum("...i,...j->...ij", a, b)
    return out.reshape(out.shape[:-2] + (a.shape[-1] * b.shape[-1],))


def weightedsqnorm(xp, x, s):
    """x^T S x with S isotropic (dim 1), diagonal (dim D) or full (dim D*D, row-major)."""
    d = x.shape[-1]
    if s.shape[-1] == 1:
        return s * sqnorm2(xp, x)
    if s.shape[-1] == d:
        return vsum(xp, s * x * x)
    assert s.shape[-1] == d * d
    S = matrix(s, d, d)
    return xp.einsum("...k,...kl,...l->...", x, S, x)[..., None]


def one_hot(xp, x, D):
    """x scalar, rounded to the nearest integer, as a one-hot vector of length D."""
    k = xp.round(x)
    return as01(xp, k == xp.arange(D))


def concat(xp, *xs):
    return xp.concatenate(xs, axis=-1)


# Element-wise math (issue 12).
def erf(xp, x):
    if xp is np:  # NumPy has no erf: the math module's, element by element, in float64
        return np.vectorize(math.erf, otypes=[np.float64])(x)
    import jax.scipy.special

    return jax.scipy.special.erf(x)


def mod(xp, x, m, off):
    return x - m * xp.floor((x - off) / m)


# ---------------------------------------------------------------- broadcasting helpers


def dense_operand(a, cat: str, nbatch: int):
    """The array bound to a variable (NumPy or JAX), laid out as (batch..., M|1, N|1, d)."""
    own = a.ndim - (1 if cat == "p" else 2)
    a = a.reshape((1,) * (nbatch - own) + a.shape)
    if cat == "i":
        return a[..., :, None, :]
    if cat == "j":
        return a[..., None, :, :]
    return a[..., None, None, :]


def broadcast_leading(xp, arrays):
    """Broadcast the leading axes of ``arrays`` (each keeps its own last axis)."""
    lead = np.broadcast_shapes(*(a.shape[:-1] for a in arrays))
    return [xp.broadcast_to(a, lead + a.shape[-1:]) for a in arrays]


# ---------------------------------------------------------------- reductions (NumPy float64)
# ``F`` is a dense (..., M, N, D) float64 array; ``axis`` is -3 (over i) or -2 (over j).


def red_sum(F, axis):
    return F.sum(axis=axis)


def red_logsumexp(F, axis, W=None):
    """log sum exp(F) W, stably; F scalar (last axis 1), W (..., Dw) positive."""
    m = F.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(F - m)
    s = (e if W is None else e * W).sum(axis=axis)
    return np.log(s) + np.squeeze(m, axis)


def red_softmax(F, axis, W):
    m = F.max(axis=axis, keepdims=True)
    e = np.exp(F - m)
    return (e * W).sum(axis=axis) / e.sum(axis=axis)


def red_argmin(F, axis):
    """Smallest index among ties (NumPy's argmin is first-occurrence)."""
    return np.argmin(F, axis=axis)


def red_min(F, axis):
    return F.min(axis=axis)


def red_argmax(F, axis):
    return np.argmax(F, axis=axis)


def red_max(F, axis):
    return F.max(axis=axis)


def red_argkmin(F, axis, K):
    """Indices of the K smallest values along ``axis`` (ties: smallest index first),
    laid out as (..., M or N, K, D)."""
    order = np.argsort(F, axis=axis, kind="stable")
    order = np.moveaxis(order, axis, -2)  # (..., other, reduced, D)
    return order[..., :K, :]


def red_kmin(F, axis, K):
    return np.moveaxis(np.sort(F, axis=axis), axis, -2)[..., :K, :]


# ---------------------------------------------------------------- vector ops of issue 12
# Written from the definitions (``xp`` first, operands broadcast, vector axis last).


def vmin(xp, x):
    return xp.min(x, axis=-1, keepdims=True)


def vmax(xp, x):
    return xp.max(x, axis=-1, keepdims=True)


def argmin(xp, x):
    """The first index of the minimum, as a float."""
    return xp.argmin(x, axis=-1)[..., None].astype(x.dtype)


def argmax(xp, x):
    return xp.argmax(x, axis=-1)[..., None].astype(x.dtype)


def tensordot(xp, spec, a, b, dims_a, dims_b):
    """``einsum(spec)`` of a and b reshaped row-major to ``dims_a`` and ``dims_b``, flattened."""
    out = xp.einsum(spec, a.reshape(a.shape[:-1] + dims_a), b.reshape(b.shape[:-1] + dims_b))
    return out.reshape(a.shape[:-1] + (-1,))


def kron(xp, a, b, dims_a, dims_b):
    """``np.kron`` of the reshaped operands, per (..., i, j): out[(i0 q0 + j0), (i1 q1 + j1),
    ...] = a[i0, i1, ...] b[j0, j1, ...], i.e. the outer product with its axes interleaved."""
    n = len(dims_a)
    ia, ib = "abcdefgh"[:n], "ijklmnop"[:n]
    spec = f"...{ia},...{ib}->...{''.join(p + q for p, q in zip(ia, ib))}"
    return tensordot(xp, spec, a, b, dims_a, dims_b)


def difference_matrix(xp, x, y):
    out = x[..., :, None] - y[..., None, :]
    return out.reshape(out.shape[:-2] + (-1,))


def bspline(xp, knots, t, k):
    """Cox-de Boor, one basis function at a time; a term over a repeated knot is 0."""
    kn = [knots[..., i:i + 1] for i in range(knots.shape[-1])]

    def w(num, den):
        return xp.where(den != 0, num / xp.where(den != 0, den, 1.0), 0.0)

    B = [as01(xp, (kn[i] <= t) & (t < kn[i + 1])) for i in range(len(kn) - 1)]
    for r in range(1, k + 1):
        B = [w(t - kn[i], kn[i + r] - kn[i]) * B[i] + w(kn[i + r + 1] - t, kn[i + r + 1] - kn[i + 1]) * B[i + 1]
             for i in range(len(B) - 1)]
    return xp.concatenate(B, axis=-1)


def softdtw(xp, x, y, gamma):
    """Soft-DTW (Cuturi & Blondel 2017) for the cost (x_a - y_b)^2: the DP over the
    (dx + 1) x (dy + 1) table with R[0, 0] = 0 and a border of BIG (a stand-in for +inf
    that keeps jax.grad finite: exp(-BIG / gamma) is 0 and 0 * finite stays 0)."""
    big = 1e10
    dx, dy = x.shape[-1], y.shape[-1]
    zero = 0.0 * (x[..., :1] + y[..., :1] + gamma)
    R = {(0, 0): zero}
    for a in range(1, dx + 1):
        R[a, 0] = zero + big
    for b in range(1, dy + 1):
        R[0, b] = zero + big
    for a in range(1, dx + 1):
        for b in range(1, dy + 1):
            z = xp.stack([R[a - 1, b - 1], R[a - 1, b], R[a, b - 1]]) / -gamma
            m = xp.max(z, axis=0)
            soft = -gamma * (m + xp.log(xp.sum(xp.exp(z - m), axis=0)))
            R[a, b] = (x[..., a - 1:a] - y[..., b - 1:b]) ** 2 + soft
    return R[dx, dy]


def diag_flat(xp, g):
    """The d x d diagonal matrices of the vectors g (..., d), flattened row-major (..., d*d)."""
    d = g.shape[-1]
    return (g[..., :, None] * xp.eye(d, dtype=g.dtype)).reshape(g.shape[:-1] + (d * d,))
