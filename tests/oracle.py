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


# ---------------------------------------------------------------- block-sparse ranges (issue 13)
# The KeOps 6-tuple (ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i):
# row block k = ranges_i[k] reduces over the column intervals
# redranges_j[slices_i[k-1]:slices_i[k]] (slices_i[-1] = 0); the second triplet is the
# same for the transposed matrix. Written here from that definition, in NumPy.


def ranges_mask(ranges_i, slices_i, redranges_j, M, N):
    """How many times each pair (i, j) is reduced, ``(*batch, M, N)`` int: the dense form
    of one triplet (batch axes: leading axes of the three arrays, alike)."""
    ranges_i, slices_i, redranges_j = (np.asarray(a) for a in (ranges_i, slices_i, redranges_j))
    batch = slices_i.shape[:-1]
    out = np.zeros(batch + (M, N), np.int64)
    for b in np.ndindex(*batch):
        start = 0
        for (r0, r1), end in zip(ranges_i[b], slices_i[b]):
            for c0, c1 in redranges_j[b][start:end]:
                out[b][r0:r1, c0:c1] += 1
            start = end
    return out


def _cuts(rng, n, blocks):
    """``blocks`` random half-open intervals partitioning [0, n) (some may be empty)."""
    inner = np.sort(rng.integers(0, n + 1, blocks - 1))
    edges = np.concatenate([[0], inner, [n]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _triplet(rows, cols, keep):
    """(ranges, slices, redranges) of the row blocks ``rows`` that keep any column block."""
    ranges, slices, red = [], [], []
    for r, k in zip(rows, keep):
        if not k.any():
            continue  # rows of a block that keeps nothing are in no range
        ranges.append(r)
        red.extend(cols[k])
        slices.append(len(red))
    return (np.asarray(ranges, np.int64).reshape(-1, 2), np.asarray(slices, np.int64),
            np.asarray(red, np.int64).reshape(-1, 2))


def random_ranges(rng, M, N, batch=(), blocks=(3, 4), density=0.5):
    """A random block-sparse 6-tuple for an M x N matrix: rows cut into ``blocks[0]``
    blocks and columns into ``blocks[1]``, each (row block, column block) kept with
    probability ``density`` (row or column blocks that keep nothing are left out of every
    range: their rows get the reduction's empty values). With ``batch``, one draw per batch
    element, each array with those leading axes, padded to a common length with empty
    ranges at the end (ranges ``[M, M)``, slices repeated, redranges ``[N, N)``).

    Returns ``(six_tuple, mask)``, mask the ``(*batch, M, N)`` bool matrix of kept pairs."""
    tuples, masks = [], []
    for _ in np.ndindex(*batch):
        rows, cols = _cuts(rng, M, blocks[0]), _cuts(rng, N, blocks[1])
        keep = rng.random((blocks[0], blocks[1])) < density
        t = _triplet(rows, cols, keep) + _triplet(cols, rows, keep.T)
        tuples.append(t)
        masks.append(ranges_mask(*t[:3], M, N) > 0)
    fills = ((M, M), None, (N, N), (N, N), None, (M, M))
    out = []
    for q, fill in enumerate(fills):
        parts = [t[q] for t in tuples]
        n = max(len(p) for p in parts)
        padded = []
        for p in parts:
            extra = n - len(p)
            if fill is None:  # slices: repeat the last end
                last = p[-1] if len(p) else 0
                padded.append(np.concatenate([p, np.full(extra, last, np.int64)]))
            else:
                padded.append(np.concatenate([p, np.tile(np.asarray(fill, np.int64), (extra, 1))]))
        out.append(np.stack(padded).reshape(batch + padded[0].shape))
    return tuple(out), np.stack(masks).reshape(batch + (M, N))


def masked_reduce(name, F, mask, K=None, W=None):
    """The public outputs of reduction ``name`` over j (axis -2) of the dense float64
    ``F`` (..., M, N, D) restricted to the pairs where ``mask`` (..., M, N) is true; a row
    with no kept pair gets the empty values (0; -inf for LogSumExp; +inf / -inf for
    Min / Max, -1 for their indices; KMin rows of fewer than K kept pairs end in
    (+inf, -1)). ``W``: the weight (..., M|1, N, Dw) of LogSumExp / SumSoftMaxWeight."""
    m = np.broadcast_to(mask[..., None], F.shape)
    anyrow = mask.any(-1)[..., None]  # (..., M, 1)
    if name == "Sum":
        return (np.where(m, F, 0.0).sum(-2),)
    if name in ("LogSumExp", "SumSoftMaxWeight"):
        G = np.where(m, F, -np.inf)
        top = np.where(anyrow, G.max(-2), 0.0)
        e = np.where(m, np.exp(G - top[..., None, :]), 0.0)
        Wb = np.ones_like(e) if W is None else np.broadcast_to(W, F.shape[:-1] + W.shape[-1:])
        if name == "LogSumExp":
            with np.errstate(divide="ignore"):
                return (np.where(anyrow, np.log((e * Wb).sum(-2)) + top, -np.inf),)
        with np.errstate(invalid="ignore"):
            return (np.where(anyrow, (e * Wb).sum(-2) / e.sum(-2), 0.0),)
    sign = -1.0 if name.startswith("Max") or name == "ArgMax" else 1.0
    G = np.where(m, sign * F, np.inf)
    if name.startswith("K") or name == "ArgKMin":
        order = np.argsort(G, axis=-2, kind="stable")[..., :K, :]
        vals = np.take_along_axis(G, order, axis=-2)
        order = np.where(np.isinf(vals) & ~np.take_along_axis(m, order, axis=-2), -1, order)
        outs = {"KMin": (vals,), "ArgKMin": (order,), "KMin_ArgKMin": (vals, order)}
        return outs[name]
    idx = np.where(anyrow, np.argmin(G, axis=-2), -1)
    val = sign * np.where(anyrow, G.min(-2), np.inf)
    base = name.replace("Max", "Min")
    return {"Min": (val,), "ArgMin": (idx,), "Min_ArgMin": (val, idx)}[base]
