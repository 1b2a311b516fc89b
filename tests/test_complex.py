"""Complex LazyArrays (complex_lazy.py, ir/complex.py): values of every complex op through
a sum reduction against NumPy complex128, gradients against dense jax.numpy in float64
(JAX's convention for complex inputs), jit / vmap, non-uniform DFTs, errors.

Fast suite: one formula combining every op on each backend, dtype and axis; each op alone
on the jnp backend. The slow suite runs each op alone everywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_close, backend_params, precision
from jax_lazy import DtypeError, LazyArray, Pm, Vi, Vj
from jax_lazy.complex_lazy import ComplexLazyArray
from jax_lazy.ir.ops import OPS

M, N, D = 5, 4, 2
NO_ATAN2 = pytest.mark.skipif("Atan2" not in OPS, reason="ComplexAngle needs the Atan2 op (issue 12, math item)")


def backends_fast(*fast):
    """The ``backend`` fixture's params, marked slow except those named in ``fast``
    (gradients compile several kernels each: the fast suite checks them on jnp)."""
    return [pytest.param(*p.values, id=p.id, marks=(*p.marks, *(() if p.values[0] in fast else (pytest.mark.slow,))))
            for p in backend_params()]


def make_data(rng, dtype):
    """z: i (batch 2), w: j, both complex dim D; x: i real dim D; y: j real dim 1; p: complex
    parameter of dim 1. |w| >= 1 (it divides), |z| small (it is exponentiated)."""
    cdtype = np.result_type(dtype, np.complex64)

    def c(*shape, r=1.0):
        return (r * (rng.normal(size=shape) + 1j * rng.normal(size=shape))).astype(cdtype)

    w = ((1.0 + rng.uniform(size=(N, D))) * np.exp(2j * np.pi * rng.uniform(size=(N, D)))).astype(cdtype)
    return dict(z=c(2, M, D, r=0.5), w=w, x=rng.normal(size=(M, D)).astype(dtype),
                y=rng.normal(size=(N, 1)).astype(dtype), p=c(1))


def lazy_args(d):
    return Vi(d["z"]), Vj(d["w"]), Vi(d["x"]), Vj(d["y"]), Pm(d["p"])


def dense_args(d, xp=np):
    """The operands broadcast to (batch, M, N, dim) in float64 / complex128."""
    wide = {k: xp.asarray(v.astype(np.result_type(v.dtype, np.float64))) for k, v in d.items()}
    return (wide["z"][:, :, None, :], wide["w"][None, :, :], wide["x"][:, None, :], wide["y"][None, :, :],
            wide["p"])


# (name, lazy formula, the same with xp = numpy or jax.numpy); operands z, w, x, y, p as above.
ROWS = [
    ("add", lambda z, w, x, y, p: z + w, lambda xp, z, w, x, y, p: z + w),
    ("sub", lambda z, w, x, y, p: z - w, lambda xp, z, w, x, y, p: z - w),
    ("mul", lambda z, w, x, y, p: z * w, lambda xp, z, w, x, y, p: z * w),
    ("div", lambda z, w, x, y, p: z / w, lambda xp, z, w, x, y, p: z / w),
    ("neg", lambda z, w, x, y, p: -z * w, lambda xp, z, w, x, y, p: -z * w),
    ("real_operand", lambda z, w, x, y, p: (x - w) * y + z / y - x * z,
     lambda xp, z, w, x, y, p: (x - w) * y + z / y - x * z),
    ("python_scalars", lambda z, w, x, y, p: 2j * z + (1 - 0.5j) - (w + 1) * 2 + 1j / w + 3 - z * 0.5 + x * 1j,
     lambda xp, z, w, x, y, p: 2j * z + (1 - 0.5j) - (w + 1) * 2 + 1j / w + 3 - z * 0.5 + x * 1j),
    ("param", lambda z, w, x, y, p: z * p - p * w, lambda xp, z, w, x, y, p: z * p - p * w),
    ("real2complex", lambda z, w, x, y, p: x.real2complex() * w, lambda xp, z, w, x, y, p: (x + 0j) * w),
    ("imag2complex", lambda z, w, x, y, p: x.imag2complex() + w, lambda xp, z, w, x, y, p: 1j * x + w),
    ("exp1j", lambda z, w, x, y, p: (x * y).exp1j(), lambda xp, z, w, x, y, p: xp.exp(1j * (x * y))),
    ("exp", lambda z, w, x, y, p: (z * w).exp(), lambda xp, z, w, x, y, p: xp.exp(z * w)),
    ("conj", lambda z, w, x, y, p: z.conj() * w, lambda xp, z, w, x, y, p: xp.conj(z) * w),
    ("real_imag", lambda z, w, x, y, p: (z * w).real - w.imag * x, lambda xp, z, w, x, y, p: (z * w).real - w.imag * x),
    ("abs", lambda z, w, x, y, p: abs(z - w), lambda xp, z, w, x, y, p: xp.abs(z - w)),
    ("angle", lambda z, w, x, y, p: (z * w).angle(), lambda xp, z, w, x, y, p: xp.angle(z * w)),
    ("vector_sum", lambda z, w, x, y, p: (z * w).sum(-1) * z,
     lambda xp, z, w, x, y, p: xp.sum(z * w, axis=-1, keepdims=True) * z),
]


def combined(rows):
    """Every row's formula summed in one (complex) formula: one kernel tests them all."""
    def lazy(*a):
        return sum((r[1](*a) for r in rows[1:]), rows[0][1](*a))

    def dense(xp, *a):
        return sum((r[2](xp, *a) for r in rows[1:]), rows[0][2](xp, *a))
    return lazy, dense


ALL = combined([r for r in ROWS if r[0] != "angle" or "Atan2" in OPS])
PARAMS = [pytest.param(*r, id=r[0], marks=NO_ATAN2 if r[0] == "angle" else ()) for r in ROWS]


def assert_complex_close(actual, expected, dtype, terms):
    """Real and imaginary parts of ``actual`` (complex of ``dtype``'s precision, or real
    for real formulas) against the complex128 ``expected``."""
    expected = np.asarray(expected)
    if np.iscomplexobj(expected):
        assert actual.dtype == np.result_type(dtype, np.complex64), actual.dtype
        actual, expected = np.asarray(actual), expected
        actual = np.stack([actual.real, actual.imag])
        expected, terms = np.stack([expected.real, expected.imag]), np.stack([terms, terms])
    assert_close(actual, expected, dtype, terms=terms)


def check_sum(lazy, dense, rng, backend, dtype, axis):
    with precision(dtype):
        d = make_data(rng, dtype)
        K = lazy(*lazy_args(d))
        out = K.sum(axis=K.nbatchdims + axis, backend=backend)
        F = np.broadcast_to(dense(np, *dense_args(d)), K.shape)
        ax = K.nbatchdims + axis
        assert_complex_close(out, F.sum(axis=ax), dtype, np.abs(F).sum(axis=ax))


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_ops_sum(rng, backend, dtype, axis):
    check_sum(*ALL, rng, backend, dtype, axis)


@pytest.mark.parametrize("name,lazy,dense", PARAMS)
def test_op_sum_jnp(rng, name, lazy, dense):
    check_sum(lazy, dense, rng, "jnp", np.float64, 1)


@pytest.mark.slow
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,lazy,dense", PARAMS)
def test_op_sum(rng, backend, dtype, axis, name, lazy, dense):
    check_sum(lazy, dense, rng, backend, dtype, axis)


# ---------------------------------------------------------------- gradients, jit, vmap


def real_loss(xp, out):
    return xp.sum(xp.abs(out) ** 2 + 0.3 * xp.real(out))


def lazy_sum(formula, backend):
    """``(z, w, x, y, p) -> formula(...).sum over j`` on jax arrays (complex or real)."""
    def f(z, w, x, y, p):
        return formula(Vi(z), Vj(w), Vi(x), Vj(y), Pm(p)).sum(axis=2, backend=backend)
    return f


def dense_sum(formula):
    def f(z, w, x, y, p):
        return jnp.sum(formula(jnp, z[:, :, None, :], w[None], x[:, None], y[None], p), axis=2)
    return f


@pytest.mark.parametrize("backend", backends_fast("jnp"), indirect=True)
def test_grad_and_vjp(rng, backend, x64):
    """jax.grad of a real loss with respect to complex and real inputs (JAX's convention:
    the conjugate of dL/dz* times 2, whatever it is, is the same on both sides), and
    jax.vjp with a complex cotangent, against the formula written in dense jax.numpy."""
    args = tuple(map(jnp.asarray, make_data(rng, np.float64).values()))
    lazy, dense = lazy_sum(ALL[0], backend), dense_sum(ALL[1])
    argnums = tuple(range(len(args)))
    grads = jax.grad(lambda *a: real_loss(jnp, lazy(*a)), argnums)(*args)
    expected = jax.jit(jax.grad(lambda *a: real_loss(jnp, dense(*a)), argnums))(*args)  # jit: one XLA compile
    for g, e in zip(grads, expected):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(e))))
    out, vjp = jax.vjp(lazy, *args)
    ref, vjp_ref = jax.vjp(jax.jit(dense), *args)
    ct = jnp.asarray(rng.normal(size=out.shape) + 1j * rng.normal(size=out.shape))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(ref))))
    for g, e in zip(vjp(ct), vjp_ref(ct)):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(e))))
    tangents = tuple(jnp.asarray(rng.normal(size=a.shape) * (1 + 1j if jnp.iscomplexobj(a) else 1)).astype(a.dtype)
                     for a in args)
    t, t_ref = jax.jvp(lazy, args, tangents)[1], jax.jvp(jax.jit(dense), args, tangents)[1]
    np.testing.assert_allclose(t, t_ref, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(t_ref))))


def test_jit_vmap_pytree(rng, backend, x64):
    d = {k: jnp.asarray(v) for k, v in make_data(rng, np.float64).items()}
    z, w = d["z"][0], d["w"]
    ref = dense_sum(ROWS[2][2])  # mul
    f = lazy_sum(ROWS[2][1], backend)

    def zw(z, w):
        return f(z[None], w, d["x"], d["y"], d["p"])[0]

    expected = ref(z[None], w, d["x"], d["y"], d["p"])[0]
    np.testing.assert_allclose(jax.jit(zw)(z, w), expected, rtol=1e-12)
    ws = jnp.stack([w, 2j * w, w.conj()])
    np.testing.assert_allclose(jax.vmap(zw, (None, 0))(z, ws), jnp.stack([ref(z[None], v, d["x"], d["y"], d["p"])[0]
                                                                       for v in ws]), rtol=1e-12)
    K = Vi(z) * Vj(w)  # a ComplexLazyArray is a pytree: it crosses jit as an argument
    np.testing.assert_allclose(jax.jit(lambda K: K.sum(axis=1, backend=backend))(K), expected, rtol=1e-12)


def test_matvec_mixed(rng, backend, x64):
    """``K @ b`` and ``K.T @ b`` with K real and b complex, K complex and b real."""
    x, y = rng.normal(size=(M, 2)), rng.normal(size=(N, 2))
    b_c = jnp.asarray(rng.normal(size=(N, 3)) + 1j * rng.normal(size=(N, 3)))
    b_r = jnp.asarray(rng.normal(size=(M,)))
    K = (-Vi(x).sqdist(Vj(y))).exp()
    dense = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1))
    np.testing.assert_allclose(K @ b_c, dense @ b_c, rtol=1e-12)
    np.testing.assert_allclose((K * 1j).rmatvec(b_r, backend=backend), 1j * dense.T @ b_r, rtol=1e-12)


# ---------------------------------------------------------------- non-uniform DFT


def nudft_data(rng, dim):
    """N points x in [-pi, pi)^dim, the integer modes k of a 6^dim (1-D: 16) grid, complex
    coefficients c (on the points) and f (on the modes)."""
    n = 16 if dim == 1 else 6
    grid = np.stack(np.meshgrid(*[np.arange(-n // 2, n // 2)] * dim, indexing="ij"), -1).reshape(-1, dim)
    x = rng.uniform(-np.pi, np.pi, size=(40, dim))
    c = rng.normal(size=40) + 1j * rng.normal(size=40)
    f = rng.normal(size=len(grid)) + 1j * rng.normal(size=len(grid))
    return tuple(map(jnp.asarray, (x, grid.astype(np.float64), c, f)))


def nudft1(x, k, c, backend):
    """Type 1, points to modes: ``f_k = sum_j c_j exp(-i k.x_j)``."""
    return (-(Vi(k) | Vj(x))).exp1j().matvec(c, backend=backend)


def nudft2(x, k, f, backend):
    """Type 2, modes to points: ``c_j = sum_k f_k exp(+i k.x_j)``."""
    return (Vi(x) | Vj(k)).exp1j().matvec(f, backend=backend)


@pytest.mark.parametrize("dim", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_nudft(rng, backend, x64, dim):
    x, k, c, f = nudft_data(rng, dim)
    np.testing.assert_allclose(nudft1(x, k, c, backend), jnp.exp(-1j * k @ x.T) @ c, rtol=1e-10, atol=1e-10 * 40)
    np.testing.assert_allclose(nudft2(x, k, f, backend), jnp.exp(1j * x @ k.T) @ f, rtol=1e-10, atol=1e-10 * len(k))


@pytest.mark.parametrize("backend", backends_fast("jnp"), indirect=True)
def test_nudft_grad(rng, backend, x64):
    """A real loss of the type-1 spectrum, differentiated with respect to the points and
    the (complex) coefficients."""
    x, k, c, _ = nudft_data(rng, 2)
    loss = lambda fn: lambda x, c: jnp.sum(jnp.abs(fn(x, c)) ** 2)  # noqa: E731
    g = jax.grad(loss(lambda x, c: nudft1(x, k, c, backend)), (0, 1))(x, c)
    e = jax.jit(jax.grad(loss(lambda x, c: jnp.exp(-1j * k @ x.T) @ c), (0, 1)))(x, c)
    for a, b in zip(g, e):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * float(jnp.max(jnp.abs(b))))


# ---------------------------------------------------------------- front end


def test_properties_dense_transpose(rng):
    d = make_data(rng, np.float32)
    z, w, x = Vi(d["z"]), Vj(d["w"]), Vi(d["x"])
    K = z * w
    assert isinstance(K, ComplexLazyArray) and K.is_complex and not x.is_complex
    assert (K.shape, K.dim, K.dtype) == ((2, M, N, D), D, np.complex64)
    assert [a.shape for a in K.variables] == [(2, M, 2 * D), (N, 2 * D)]  # bound as [re, im]
    assert "complex64" in repr(K) and "Concat" in repr(K)
    assert LazyArray(d["z"][:, :, None, :]).shape == z.shape and Pm(d["p"]).dtype == np.complex64
    assert x.real2complex().dtype == np.complex64 and abs(K).dtype == np.float32 and not abs(K).is_complex
    dz, dw, *_ = dense_args(d)
    np.testing.assert_allclose(K.dense(), dz * dw, rtol=1e-5)
    np.testing.assert_allclose(K.t().dense(), np.swapaxes(dz * dw, 1, 2), rtol=1e-5)
    assert K.T.shape == (2, N, M, D)


@pytest.mark.parametrize("bad", [
    lambda z, w, x: z.min(axis=1),
    lambda z, w, x: z.argKmin(2, axis=1),
    lambda z, w, x: (z * w).sum(-1).logsumexp(axis=1),
    lambda z, w, x: z.real2complex(),
    lambda z, w, x: z.exp1j(),
    lambda z, w, x: z.sqnorm2(),
    lambda z, w, x: z < w,
    lambda z, w, x: z ** 2,
    lambda z, w, x: z.log(),
    lambda z, w, x: (x | x).sumsoftmaxweight(w, axis=1),
    lambda z, w, x: z * Vj(np.ones((N, D), np.float64)),  # complex64 with float64
    lambda z, w, x: z + Vj(np.ones((N, D), np.complex128)),
    lambda z, w, x: Vi(np.ones((M, D), np.int32)),
    lambda z, w, x: ComplexLazyArray(np.ones((M, D), np.float32), axis=0),
], ids=["min", "argKmin", "logsumexp", "real2complex", "exp1j", "sqnorm2", "lt", "pow", "log",
        "complex_weight", "complex64_with_float64", "complex64_with_complex128", "int", "real_into_ComplexLazyArray"])
def test_errors(rng, bad, x64):
    d = make_data(rng, np.float32)
    z, w, x = Vi(d["z"]), Vj(d["w"]), Vi(d["x"])
    with pytest.raises(DtypeError):
        bad(z, w, x)


def test_symbolic_and_call_false(rng):
    """A complex formula with a (real) symbolic variable, or reduced with call=False, is a
    function of arrays that returns the complex output; symbolic variables refuse complex
    arrays (their dim counts reals)."""
    d = make_data(rng, np.float32)
    fn = (Vi(d["z"]) * Vj(1, 1) - Pm(0, 1)).sum(axis=2)
    y, q = d["y"], np.float32([0.5])
    np.testing.assert_allclose(fn(q, y), (d["z"][:, :, None] * y[None] - q).sum(2), rtol=1e-5)
    assert "Complex" in repr(fn)
    later = (Vi(d["z"]) * Vj(d["w"])).sum(axis=2, call=False)
    np.testing.assert_allclose(later(), (d["z"][:, :, None] * d["w"][None]).sum(2), rtol=1e-5)
    with pytest.raises(DtypeError):
        fn(q, d["w"][:, :1])
