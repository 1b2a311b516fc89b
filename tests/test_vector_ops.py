"""The vector ops of issue 12 against oracles outside the op table's own references.

- SoftDTW_SqDist: values against the textbook float64 NumPy DP (an (dx+1) x (dy+1) table
  with an infinite border), gradients in x and y against Cuturi & Blondel's backward
  recursion (Algorithm 2), written here in NumPy;
- BSpline: values and derivatives in t against ``scipy.interpolate.BSpline``, clamped
  cubic knots (repeated knots) included, float32 and float64 (KeOps 2.3 only compiles
  float32);
- TensorDot / Kron: against ``np.tensordot`` + ``np.transpose`` / ``np.kron`` pair by
  pair, the permutation convention (KeOps': axis t goes to position perm[t]) included;
- Min / Max / ArgMin / ArgMax: ties (gradient split evenly, as ``jax.grad`` of ``jnp.min``;
  the first index) and NaN, against ``jax.numpy``;
- bad arguments raise FormulaError; the size of the unrolled soft-DTW formula.

The op-table rows (``op_table.py``) check every op in the generated suites; these tests
add the independent oracles, a few kernels each.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.interpolate

from conftest import assert_close, precision
from jax_lazy import Pm, Vi, Vj
from jax_lazy.errors import FormulaError
from jax_lazy.ir import Var, derived, ops, substitute, topo_order

BACKENDS = ["jnp", "cpu"]  # the cuda backend runs the op-table rows (test_cuda_host, slow)
slow = pytest.mark.slow


def fast_if(keep: bool):
    """No mark when ``keep`` (the fast suite runs one or two cases of each test), else slow."""
    return () if keep else slow


# ---------------------------------------------------------------- soft-DTW


def _softmin(r, gamma):
    z = -np.asarray(r) / gamma
    m = z.max()
    return -gamma * (m + np.log(np.exp(z - m).sum()))


def softdtw_table(x, y, gamma):
    """Cuturi & Blondel's forward recursion: R (dx + 2) x (dy + 2), R[0, 0] = 0, inf border."""
    n, m = len(x), len(y)
    D = (x[:, None] - y[None, :]) ** 2
    R = np.full((n + 2, m + 2), np.inf)
    R[0, 0] = 0.0
    for a in range(1, n + 1):
        for b in range(1, m + 1):
            R[a, b] = D[a - 1, b - 1] + _softmin([R[a - 1, b - 1], R[a - 1, b], R[a, b - 1]], gamma)
    return D, R


def softdtw_grad(x, y, gamma):
    """(value, d/dx, d/dy) by the backward recursion E (Cuturi & Blondel, Algorithm 2)."""
    n, m = len(x), len(y)
    D, R = softdtw_table(x, y, gamma)
    Dp = np.zeros((n + 2, m + 2))
    Dp[1:n + 1, 1:m + 1] = D
    R[n + 1, :] = R[:, m + 1] = -np.inf
    R[n + 1, m + 1] = R[n, m]
    E = np.zeros((n + 2, m + 2))
    E[n + 1, m + 1] = 1.0
    for b in range(m, 0, -1):
        for a in range(n, 0, -1):
            wa = np.exp((R[a + 1, b] - R[a, b] - Dp[a + 1, b]) / gamma)
            wb = np.exp((R[a, b + 1] - R[a, b] - Dp[a, b + 1]) / gamma)
            wc = np.exp((R[a + 1, b + 1] - R[a, b] - Dp[a + 1, b + 1]) / gamma)
            E[a, b] = E[a + 1, b] * wa + E[a, b + 1] * wb + E[a + 1, b + 1] * wc
    dD = E[1:n + 1, 1:m + 1] * 2 * (x[:, None] - y[None, :])
    return R[n, m], dD.sum(1), -dD.sum(0)


@pytest.mark.parametrize("backend,dtype", [pytest.param(b, d, marks=fast_if(b == "cpu" and d == np.float64))
                                           for b in BACKENDS for d in (np.float32, np.float64)])
def test_softdtw_matches_the_numpy_dp(backend, dtype, rng):
    """Sum over j of SoftDTW(x_i, y_j) and its gradients in x and y, gamma a parameter."""
    x, y, gamma = rng.normal(size=(3, 5)), rng.normal(size=(4, 4)), np.array([0.3])
    want = np.zeros(3)
    gx, gy = np.zeros_like(x), np.zeros_like(y)
    for i in range(3):
        for j in range(4):
            v, dx, dy = softdtw_grad(x[i], y[j], gamma[0])
            want[i] += v
            gx[i] += dx
            gy[j] += dy

    def loss(x, y):
        return Vi(x).softdtw_sqdist(Vj(y), Pm(gamma.astype(dtype))).sum(axis=1, backend=backend)[:, 0]

    with precision(dtype):
        xs, ys = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
        got = loss(xs, ys)
        grads = jax.grad(lambda x, y: loss(x, y).sum(), argnums=(0, 1))(xs, ys)
    assert_close(got, want, dtype)
    for g, w in zip(grads, (gx, gy)):
        assert_close(g, w, dtype, rtol=1e-3 if dtype == np.float32 else 1e-9)


def test_softdtw_is_close_to_dtw_for_small_gamma():
    """gamma -> 0 gives the DTW distance (the min over alignments), checked on a case
    whose optimal alignment is known: y is x with its first point repeated."""
    x = np.array([[0.0, 1.0, 3.0, 2.0]])
    y = np.array([[0.0, 0.0, 1.0, 3.0, 2.0]])
    with precision(np.float64):
        got = np.asarray(Vi(x).softdtw_sqdist(Vj(y), 1e-3).sum(axis=1, backend="jnp"))
    np.testing.assert_allclose(got, 0.0, atol=1e-2)
    assert got[0, 0] <= 0  # softmin <= min: soft-DTW is below DTW


def test_softdtw_formula_size_is_linear_in_the_table():
    """About 13 nodes per cell of the dx x dy table (the documented O(dx dy) code size)."""
    for d in (4, 8, 16):
        F = derived.softdtw_sqdist(Var(0, d, 0), Var(1, d, 1), Var(2, 1, 2))
        assert len(topo_order(F)) <= 14 * d * d


# ---------------------------------------------------------------- B-splines


def scipy_basis(knots, t, k, nu=0):
    """B_i,k(t) (or its nu-th derivative in t) for every basis function i, from
    ``scipy.interpolate.BSpline``: the knots padded with k more at each end, so that the
    spline's base interval is [knots[0], knots[-1]]; basis i is basis i + k there."""
    ext = np.concatenate([knots[0] - np.arange(k, 0, -1), knots, knots[-1] + np.arange(1, k + 1)])
    nb = len(knots) - k - 1
    coefs = np.zeros((len(ext) - k - 1, nb))
    coefs[np.arange(nb) + k, np.arange(nb)] = 1.0
    return scipy.interpolate.BSpline(ext, coefs, k, extrapolate=False)(t, nu)


KNOTS = {
    "uniform": np.linspace(-1.0, 2.0, 8),
    "clamped_cubic": np.array([0.0, 0.0, 0.0, 0.0, 0.7, 1.1, 2.0, 2.0, 2.0, 2.0]),
}


FAST_BSPLINE = {("clamped_cubic", np.float64, "cpu"), ("uniform", np.float32, "cpu")}


@pytest.mark.parametrize("name,k,dtype,backend", [
    pytest.param(n, k, d, b, marks=fast_if((n, d, b) in FAST_BSPLINE))
    for n, k in (("uniform", 0), ("uniform", 2), ("clamped_cubic", 3))
    for d in (np.float32, np.float64) for b in BACKENDS])
def test_bspline_matches_scipy(name, k, dtype, backend, rng):
    """Values and d/dt of the basis at points t_i (knots a parameter, weights w_j)."""
    knots = KNOTS[name]
    t = rng.uniform(knots[0] + 1e-3, knots[-1] - 1e-3, size=(6, 1))
    nb = len(knots) - k - 1
    w = rng.normal(size=(2, nb))

    def f(t):  # (6, 2): sum_b w_jb B_b(t_i)
        B = Pm(jnp.asarray(knots, t.dtype)).bspline(Vi(t), k)
        return ((B * Vj(jnp.asarray(w, t.dtype))).sum(-1)).sum(axis=1, backend=backend)

    with precision(dtype):
        ts = jnp.asarray(t, dtype)
        got = f(ts)
        dt = jax.grad(lambda t: f(t).sum())(ts)
    assert_close(got, (scipy_basis(knots, t[:, 0], k) @ w.T).sum(-1, keepdims=True), dtype)
    want_dt = (scipy_basis(knots, t[:, 0], k, nu=1) @ w.T).sum(-1, keepdims=True) if k else np.zeros_like(t)
    assert_close(dt, want_dt, dtype, terms=np.maximum(np.abs(want_dt), 1.0), rtol=1e-3 if dtype == np.float32 else None)


# ---------------------------------------------------------------- tensor algebra


TENSORDOT_CASES = {  # (dims a, dims b, contracted a, contracted b, perm or None)
    "matmul": ((2, 3), (3, 4), (1,), (0,), None),
    "perm": ((2, 3, 4), (3, 5), (1,), (0,), (1, 2, 0)),
    "two_axes_perm": ((2, 3, 4), (4, 5, 3), (2, 1), (0, 2), (1, 0)),
    "outer": ((2, 3), (4,), (), (), (2, 0, 1)),
    "full": ((3, 2), (2, 3), (0, 1), (1, 0), None),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=fast_if(c == "two_axes_perm"))
                                  for c in sorted(TENSORDOT_CASES)])
def test_tensordot_matches_numpy(case, rng):
    """Dense values and the VJP (through jax.grad) vs np.tensordot, then the output axes
    transposed by argsort(perm) (axis t of the tensordot goes to position perm[t])."""
    da, db, ca, cb, perm = TENSORDOT_CASES[case]
    a, b = rng.normal(size=(3, int(np.prod(da)))), rng.normal(size=(2, int(np.prod(db))))

    def ref(a, b):
        T = jnp.tensordot(a.reshape(da), b.reshape(db), (list(ca), list(cb)))
        return (T if perm is None else jnp.transpose(T, np.argsort(perm))).reshape(-1)

    extra = () if perm is None else (perm,)
    with precision(np.float64):
        dense = Vi(a).keops_tensordot(Vj(b), da, db, ca, cb, *extra).dense()
        want = np.stack([np.stack([ref(a[i], b[j]) for j in range(2)]) for i in range(3)])
        np.testing.assert_allclose(dense, want, rtol=1e-12)
        w = rng.normal(size=want.shape)

        def loss(a, b):
            return jnp.vdot(Vi(a).keops_tensordot(Vj(b), da, db, ca, cb, *extra).dense(), w)

        def loss_ref(a, b):
            return sum(jnp.vdot(ref(a[i], b[j]), w[i, j]) for i in range(3) for j in range(2))

        got = jax.grad(loss, argnums=(0, 1))(a, b)
        expected = jax.grad(loss_ref, argnums=(0, 1))(a, b)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_kron_matches_numpy(rng):
    da, db = (2, 1, 3), (2, 2, 1)
    a, b = rng.normal(size=(2, 6)), rng.normal(size=(3, 4))
    with precision(np.float64):
        dense = Vi(a).keops_kron(Vj(b), da, db).dense()
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(dense[i, j], np.kron(a[i].reshape(da), b[j].reshape(db)).reshape(-1))


def test_tensordot_prints_its_lists_as_keops():
    F = ops.TensorDot(Var(0, 6, 0), Var(1, 12, 1), [2, 3], (3, 4), 1, [0])
    assert str(F) == "TensorDot(Var(0,6,0),Var(1,12,1),[2,3],[3,4],[1],[0],[0,1])"


# ---------------------------------------------------------------- Min, Max, ArgMin, ArgMax


@pytest.mark.parametrize("backend", [pytest.param(b, marks=fast_if(b == "cpu")) for b in BACKENDS])
def test_min_max_ties_and_nan(backend, x64):
    """Ties: the gradient is split evenly (as jax.grad of jnp.min / jnp.max), ArgMin and
    ArgMax give the first index; a NaN coordinate wins (and is the index)."""
    x = np.array([[1.0, 0.0, 0.0, 2.0], [3.0, 3.0, -1.0, 3.0], [1.0, np.nan, 0.0, np.nan]])
    y = np.zeros((1, 4))

    def reduce(F):
        return F.sum(axis=1, backend=backend)[:, 0]

    def lazy(x):
        X = Vi(x) + Vj(jnp.asarray(y))
        return jnp.stack([reduce(X.min()), reduce(X.max()), reduce(X.argmin()), reduce(X.argmax())])

    want = np.stack([np.min(x, -1), np.max(x, -1), np.argmin(x, -1), np.argmax(x, -1)])
    np.testing.assert_array_equal(lazy(jnp.asarray(x)), want)
    finite = jnp.asarray(x[:2])
    for op, jop in ((lambda X: X.min(), jnp.min), (lambda X: X.max(), jnp.max)):
        got = jax.grad(lambda x: reduce(op(Vi(x) + Vj(jnp.asarray(y)))).sum())(finite)
        np.testing.assert_array_equal(got, jax.grad(lambda x: jop(x, -1).sum())(finite))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("build,match", [
    (lambda a, b: a.keops_tensordot(b, (2, 2), (3, 4), (1,), (0,)), "do not multiply"),
    (lambda a, b: a.keops_tensordot(b, (2, 3), (4, 3), (1,), (0,)), "different sizes"),
    (lambda a, b: a.keops_tensordot(b, (2, 3), (3, 4), (1,), (0,), (0, 0)), "not a permutation"),
    (lambda a, b: a.keops_tensordot(b, (2, 3), (3, 4), (1, 1), (0, 1)), "not distinct"),
    (lambda a, b: a.keops_tensordot(b, (2, 3), (3, 4), (1,), ()), "contracted axes"),
    (lambda a, b: a.keops_kron(b, (2, 3), (12,)), "as many axes"),
    (lambda a, b: a.bspline(b), "scalar"),
    (lambda a, b: a.bspline(a.sum(), 5), "at least 7 knots"),
    (lambda a, b: a.softdtw_sqdist(b, b), "gamma must be a scalar"),
])
def test_bad_arguments_raise_formula_errors(build, match):
    a, b = Vi(np.ones((2, 6))), Vj(np.ones((3, 12)))
    with pytest.raises(FormulaError, match=match):
        build(a, b)


def test_elemT_errors():
    with pytest.raises(FormulaError, match="places a scalar"):
        derived.elemt(Var(0, 2, 0), 4, 1)
    with pytest.raises(FormulaError, match="out of range"):
        derived.elemt(Var(0, 1, 0), 4, 4)


# ---------------------------------------------------------------- formula strings


@pytest.mark.parametrize("text,method", [
    ("Min(x)", lambda x, y, g, t: x.min()),
    ("Max(x)", lambda x, y, g, t: x.max()),
    ("ArgMin(x)", lambda x, y, g, t: x.argmin()),
    ("ArgMax(x)", lambda x, y, g, t: x.argmax()),
    ("TensorDot(x, y, [2,3], [3,4], [1], [0], [1,0])",
     lambda x, y, g, t: x.keops_tensordot(y, (2, 3), (3, 4), 1, 0, (1, 0))),
    ("BSpline(x, t, 2)", lambda x, y, g, t: x.bspline(t, 2)),
    ("SoftDTW_SqDist(x, y, g)", lambda x, y, g, t: x.softdtw_sqdist(y, g)),
    ("DifferenceMatrix(x, y)", lambda x, y, g, t: x.difference_matrix(y)),
    ("Kron(x, y, [2,3], [3,4])", lambda x, y, g, t: x.keops_kron(y, (2, 3), (3, 4))),
])
def test_formula_strings_build_the_same_nodes(text, method):
    """The KeOps formula syntax and the LazyArray methods give the very same (interned) node."""
    from jax_lazy.ir.parse import parse

    F = parse(text, ("x = Vi(0, 6)", "y = Vj(1, 12)", "g = Pm(2, 1)", "t = Vj(3, 1)"))
    lazies = (Vi(np.ones((2, 6))), Vj(np.ones((3, 12))), Pm(np.ones(1)), Vj(np.ones((3, 1))))
    out = method(*lazies)
    position = {id(lz.variables[0]): k for k, lz in enumerate(lazies)}  # the alias positions
    renumber = {v: Var(position[id(a)], v.dim, v.attr[1]) for v, a in zip(out._vars, out.variables)}
    assert substitute(out.formula, renumber) is F
