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

from conftest import assert_close, precision
from jax_lazy import DtypeError, LazyArray, Pm, Vi, Vj
from jax_lazy.complex_lazy import ComplexLazyArray
from jax_lazy.ir.ops import OPS

M, N, D = 5, 4, 2
NO_ATAN2 = pytest.mark.skipif("Atan2" not in OPS, reason="ComplexAngle needs the Atan2 op (issue 12, math item)")


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
