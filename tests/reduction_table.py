"""The reductions of the gradient and transformation tests: each as a lazy function of
``(x, y, p, w)`` on a backend and as a dense ``jax.numpy`` reference written here (not
the library's), on data away from ties and kinks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import oracle as o
from jax_lazy import Pm, Vi, Vj

# Data: x (i, D=2), y (j, D=2), p (param, D=2, positive), w (j, 2). Batched: x (2,1,M,2),
# y (1,3,N,2), p (3,2), w (1,3,N,2).
M, N = 4, 5


def _reduction_data(rng, batched: bool):
    bi, bj, bp = ((2, 1), (1, 3), (3,)) if batched else ((), (), ())
    x = rng.normal(size=bi + (M, 2))
    y = rng.normal(size=bj + (N, 2))
    p = rng.uniform(0.5, 1.5, size=bp + (2,))
    w = rng.uniform(0.5, 2.0, size=bj + (N, 2))  # positive: also a LogSumExp weight
    return tuple(jnp.asarray(a) for a in (x, y, p, w))


def _dense(x, y, p, w):
    """Dense (batch, M, N, .) versions of the two formulas below, in jnp."""
    nb = max(x.ndim - 2, y.ndim - 2, p.ndim - 1, w.ndim - 2)
    X = o.dense_operand(x, "i", nb)
    Y = o.dense_operand(y, "j", nb)
    P = o.dense_operand(p, "p", nb)
    W = o.dense_operand(w, "j", nb)
    F = -jnp.sum(P * (X - Y) ** 2, axis=-1, keepdims=True)  # scalar
    G = jnp.sin(X - Y) * P + X * Y  # dim 2, per-coordinate reductions
    X, Y, P, W, F, G = o.broadcast_leading(jnp, [X, Y, P, W, F, G])
    return X, Y, P, W, F, G, nb


def _lazy(x, y, p, w):
    X, Y, P, W = Vi(x), Vj(y), Pm(p), Vj(w)
    F = -(X - Y).weightedsqnorm(P)
    G = (X - Y).sin() * P + X * Y
    nb = F.nbatchdims
    return X, Y, P, W, F, G, nb


def _lse(F, axis, W=None):
    m = jax.lax.stop_gradient(F.max(axis=axis, keepdims=True))
    e = jnp.exp(F - m)
    s = (e if W is None else e * W).sum(axis=axis)
    return jnp.log(s) + jnp.squeeze(m, axis)


def _softmax(F, axis, W):
    e = jnp.exp(F - jax.lax.stop_gradient(F.max(axis=axis, keepdims=True)))
    return (e * W).sum(axis=axis) / e.sum(axis=axis)


def _kmin_ref(G, axis, K):
    # sort along the reduced axis; ties do not occur on this continuous data
    s = jnp.sort(G, axis=axis)
    s = jnp.moveaxis(s, axis, -2)
    return s[..., :K, :]


# name -> (lazy fn(backend, X, Y, P, W, F, G, nb, w_arr), dense fn(X, Y, P, W, F, G, nb, w_arr))
REDUCTIONS = {
    "sum_i": (lambda b, X, Y, P, W, F, G, nb, w: G.sum(axis=nb, backend=b),
              lambda X, Y, P, W, F, G, nb, w: G.sum(-3)),
    "sum_j": (lambda b, X, Y, P, W, F, G, nb, w: G.sum(axis=nb + 1, backend=b),
              lambda X, Y, P, W, F, G, nb, w: G.sum(-2)),
    "logsumexp_i": (lambda b, X, Y, P, W, F, G, nb, w: F.logsumexp(axis=nb, backend=b),
                    lambda X, Y, P, W, F, G, nb, w: _lse(F, -3)),
    "logsumexp_j": (lambda b, X, Y, P, W, F, G, nb, w: F.logsumexp(axis=nb + 1, backend=b),
                    lambda X, Y, P, W, F, G, nb, w: _lse(F, -2)),
    "logsumexp_weight_j": (lambda b, X, Y, P, W, F, G, nb, w: F.logsumexp(axis=nb + 1, weight=W, backend=b),
                           lambda X, Y, P, W, F, G, nb, w: _lse(F, -2, W)),
    "logsumexp_weight_i": (lambda b, X, Y, P, W, F, G, nb, w: (F * 0.5).logsumexp(axis=nb, weight=X.exp(), backend=b),
                           lambda X, Y, P, W, F, G, nb, w: _lse(F * 0.5, -3, jnp.exp(X))),
    "sumsoftmaxweight_j": (lambda b, X, Y, P, W, F, G, nb, w: F.sumsoftmaxweight(W * Y, axis=nb + 1, backend=b),
                           lambda X, Y, P, W, F, G, nb, w: _softmax(F, -2, W * Y)),
    "sumsoftmaxweight_i": (lambda b, X, Y, P, W, F, G, nb, w: F.sumsoftmaxweight(X, axis=nb, backend=b),
                           lambda X, Y, P, W, F, G, nb, w: _softmax(F, -3, X)),
    "min_j": (lambda b, X, Y, P, W, F, G, nb, w: G.min(axis=nb + 1, backend=b),
              lambda X, Y, P, W, F, G, nb, w: G.min(-2)),
    "max_i": (lambda b, X, Y, P, W, F, G, nb, w: G.max(axis=nb, backend=b),
              lambda X, Y, P, W, F, G, nb, w: G.max(-3)),
    "min_argmin_i": (lambda b, X, Y, P, W, F, G, nb, w: G.min_argmin(axis=nb, backend=b)[0],
                     lambda X, Y, P, W, F, G, nb, w: G.min(-3)),
    "max_argmax_j": (lambda b, X, Y, P, W, F, G, nb, w: G.max_argmax(axis=nb + 1, backend=b)[0],
                     lambda X, Y, P, W, F, G, nb, w: G.max(-2)),
    "kmin_j": (lambda b, X, Y, P, W, F, G, nb, w: G.Kmin(3, axis=nb + 1, backend=b),
               lambda X, Y, P, W, F, G, nb, w: _kmin_ref(G, -2, 3)),
    "kmin_scalar_i": (lambda b, X, Y, P, W, F, G, nb, w: F.Kmin(2, axis=nb, backend=b),
                      lambda X, Y, P, W, F, G, nb, w: _kmin_ref(F, -3, 2)[..., 0]),
    "kmin_argkmin_i": (lambda b, X, Y, P, W, F, G, nb, w: G.Kmin_argKmin(2, axis=nb, backend=b)[0],
                       lambda X, Y, P, W, F, G, nb, w: _kmin_ref(G, -3, 2)),
    "matmul": (lambda b, X, Y, P, W, F, G, nb, w: F.exp().matvec(w, backend=b),
               lambda X, Y, P, W, F, G, nb, w: (jnp.exp(F) * W).sum(-2)),
}


def _red_lazy(name, backend):
    fn = REDUCTIONS[name][0]

    def f(x, y, p, w):
        return fn(backend, *_lazy(x, y, p, w), w)

    return f


def _red_dense(name):
    fn = REDUCTIONS[name][1]

    def f(x, y, p, w):
        return fn(*_dense(x, y, p, w), w)

    return f


def assert_tree_close(got, want, rtol):
    """Same pytree structure and shapes; finite values within ``rtol`` (relative to each
    leaf's largest magnitude)."""
    got, want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (k, g.shape, w.shape)
        assert np.all(np.isfinite(g)), k
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * max(1.0, float(np.abs(w).max())), err_msg=f"leaf {k}")
