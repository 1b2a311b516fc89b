"""The LazyArray front end: shapes, KeOps-notation printing, interning, variable
sharing, NumPy inputs, Python scalars, constructors."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lazy
from jax_lazy import LazyArray, LazyTensor, Pm, Vi, Vj
from jax_lazy.ir import P, Var, topo_order

rng = np.random.default_rng(1)
x = rng.normal(size=(5, 3)).astype(np.float32)
y = rng.normal(size=(6, 3)).astype(np.float32)
p = rng.uniform(0.5, 1.5, size=(3,)).astype(np.float32)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("build,shape", [
    (lambda: Vi(x), (5, 1, 3)),
    (lambda: Vj(y), (1, 6, 3)),
    (lambda: Pm(p), (1, 1, 3)),
    (lambda: Pm(2.0), (1, 1, 1)),
    (lambda: Vi(x) - Vj(y), (5, 6, 3)),
    (lambda: (Vi(x) - Vj(y)).sqnorm2(), (5, 6, 1)),
    (lambda: Vi(x).tensorprod(Vj(y)), (5, 6, 9)),
    (lambda: Vi(x).concat(Pm(p)), (5, 1, 6)),
    (lambda: Vi(np.zeros((2, 1, 5, 3), np.float32)) * Vj(np.zeros((4, 6, 3), np.float32)), (2, 4, 5, 6, 3)),
    (lambda: Vi(x) * Pm(np.zeros((7, 3), np.float32)), (7, 5, 1, 3)),
    (lambda: (Vi(x) - Vj(y)).t(), (6, 5, 3)),
])
def test_shape(build, shape):
    K = build()
    assert K.shape == shape
    assert K.ndim == len(shape)
    assert K.dim == shape[-1]
    assert K.nbatchdims == len(shape) - 3


def test_dense_shape_and_values():
    K = Vi(x[None]) * Vj(y)  # batch (1,)
    d = K.dense()
    assert d.shape == (1, 5, 6, 3)
    np.testing.assert_allclose(d[0], x[:, None] * y[None], rtol=1e-6)


def test_dtype_and_variables():
    K = (Vi(x) - Vj(y)) * Pm(p)
    assert K.dtype == np.float32
    assert [a.shape for a in K.variables] == [(5, 3), (6, 3), (3,)]
    np.testing.assert_array_equal(K.variables[0], x)


# ---------------------------------------------------------------- printing


def test_gaussian_kernel_prints_in_keops_notation():
    assert str((-Vi(x).sqdist(Vj(y))).exp().formula) == "Exp(Minus(Sum(Square(Var(0,3,0) - Var(1,3,1)))))"


@pytest.mark.parametrize("build,text", [
    (lambda: (Vi(x) - Vj(y)) * Pm(p), "(Var(0,3,0) - Var(1,3,1)) * Var(2,3,2)"),
    (lambda: Vi(x) - Vj(y) * Pm(p), "Var(0,3,0) - (Var(1,3,1) * Var(2,3,2))"),
    (lambda: Vi(x) + 1, "Var(0,3,0) + IntCst(1)"),
    (lambda: 2 * Vi(x), "IntCst(2) * Var(0,3,0)"),
    (lambda: Vi(x) * 2.5, "Var(0,3,0) * Var(1,1,2)"),  # floats are runtime parameters
    (lambda: Vi(x) / 4.0, "Var(0,3,0) / Var(1,1,2)"),  # integral ones too (only ints are IntCst)
    (lambda: Vi(x)[1], "Extract(Var(0,3,0),1,1)"),
    (lambda: Vi(x)[0:2], "Extract(Var(0,3,0),0,2)"),
    (lambda: Vi(x) ** 3, "Pow(Var(0,3,0),3)"),
    (lambda: Vi(x) ** 2, "Square(Var(0,3,0))"),
    (lambda: Vi(x) ** 0.5, "Sqrt(Var(0,3,0))"),
    (lambda: Vi(x) ** -0.5, "Rsqrt(Var(0,3,0))"),
    (lambda: Vi(x) ** 1.5, "Powf(Var(0,3,0),Var(1,1,2))"),
    (lambda: Vi(x) ** 2.0, "Square(Var(0,3,0))"),  # integral float exponents: exact Pow
    (lambda: Vi(x) ** -1.0, "Pow(Var(0,3,0),-1)"),
    (lambda: Vi(x) | Vj(y), "Sum(Var(0,3,0) * Var(1,3,1))"),
    (lambda: Vi(x[:, :1]).one_hot(4), "OneHot(Var(0,1,0),4)"),
    (lambda: Vi(x).clamp(0, 1), "Clamp(Var(0,3,0),IntCst(0),IntCst(1))"),
    (lambda: Vi(x) < Vj(y), "LessThan(Var(0,3,0),Var(1,3,1))"),
    # x > y is y < x: the right operand is combined first, so it gets the index 0
    (lambda: Vi(x) > Vj(y), "LessThan(Var(0,3,1),Var(1,3,0))"),
    (lambda: Vi(x).concat(Vj(y)), "Concat(Var(0,3,0),Var(1,3,1))"),
])
def test_printing(build, text):
    K = build()
    assert str(K.formula) == repr(K.formula) == text


def test_lazyarray_repr():
    text = repr(Vi(x) - Vj(y))
    assert "Var(0,3,0) - Var(1,3,1)" in text and "(5, 6, 3)" in text and "float32" in text
    assert str(Vi(x) - Vj(y)) == text


# ---------------------------------------------------------------- interning, sharing


def test_formulas_are_interned():
    x2, y2 = x + 1, y * 3  # other arrays, same shapes
    a = (-Vi(x).sqdist(Vj(y))).exp().formula
    b = (-Vi(x2).sqdist(Vj(y2))).exp().formula
    assert a is b
    assert hash(a) == hash(b)
    c = (-Vi(x[:, :2]).sqdist(Vj(y[:, :2]))).exp().formula  # other dims: another formula
    assert c is not a
    assert pickle.loads(pickle.dumps(a)) is a


def test_formulas_are_dags():
    """A sub-formula used twice is one node."""
    d = Vi(x) - Vj(y)
    K = d * d.exp()
    sub = [n for n in topo_order(K.formula) if n.op == "Subtract"]
    assert len(sub) == 1


def test_same_lazyarray_twice_is_one_variable():
    a = Vi(x)
    K = a * a
    assert len(K.variables) == 1
    assert str(K.formula) == "Var(0,3,0) * Var(0,3,0)"
    np.testing.assert_allclose(K.sum(axis=1), x * x, rtol=1e-6)


def test_same_array_as_i_and_j_variable():
    """Vi(x) - Vj(x): x indexed by i and by j (N = M); the zero diagonal is fine."""
    K = Vi(x) - Vj(x)
    assert K.shape == (5, 5, 3)
    np.testing.assert_allclose(K.sum(axis=1), (x[:, None] - x[None]).sum(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(K.sqnorm2().argmin(axis=1))[:, 0], np.arange(5))


# ---------------------------------------------------------------- inputs


def test_numpy_and_jax_inputs_agree():
    from_np = (Vi(x) * Vj(y)).sum(axis=1)
    from_jax = (Vi(jnp.asarray(x)) * Vj(jnp.asarray(y))).sum(axis=1)
    assert isinstance(from_np, jax.Array)
    np.testing.assert_array_equal(from_np, from_jax)


@pytest.mark.parametrize("other,cat", [
    (np.ones((1, 6, 3), np.float32), 1),  # (1, N, D): a j-variable
    (np.ones((5, 1, 3), np.float32), 0),  # (M, 1, D): an i-variable
    (np.ones((3,), np.float32), 2),  # (D,): a parameter
    (np.ones((1, 1, 3), np.float32), 2),  # (1, 1, D): a parameter
])
def test_raw_arrays_are_lifted(other, cat):
    K = Vi(x) + other
    v = K.formula.args[1]
    assert v.op == "Var" and v.attr[1] == cat
    K2 = other + Vi(x)  # NumPy on the left dispatches to LazyArray.__radd__
    assert isinstance(K2, LazyArray)
    dense = x[:, None, :] + (other if other.ndim == 3 else other.reshape(1, 1, 3))  # (5, 1 or 6, 3)
    np.testing.assert_allclose(K.sum(axis=1), dense.sum(1), rtol=1e-6)
    np.testing.assert_allclose(K2.sum(axis=1), K.sum(axis=1), rtol=1e-6)


@pytest.mark.parametrize("arr,cat", [
    (x[:, None, :], 0),
    (y[None, :, :], 1),
    (p[None, None, :], 2),
    (np.zeros((2, 5, 1, 3), np.float32), 0),
])
def test_lazyarray_constructor(arr, cat):
    K = LazyArray(arr)
    assert K.formula.op == "Var" and K.formula.attr[1] == cat
    assert LazyTensor is LazyArray


@pytest.mark.parametrize("axis,cat", [(0, 0), (1, 1)])
def test_lazyarray_constructor_2d_with_axis(axis, cat):
    K = LazyArray(x, axis=axis)
    assert K.formula.attr[1] == cat
    assert K.shape == ((5, 1, 3) if axis == 0 else (1, 5, 3))


# ---------------------------------------------------------------- Python scalars


@pytest.mark.parametrize("build,ref", [
    (lambda a: a + 2, lambda a: a + 2),
    (lambda a: 2 - a, lambda a: 2 - a),
    (lambda a: a * 0.5, lambda a: a * 0.5),
    (lambda a: 3 / a, lambda a: 3 / a),
    (lambda a: a / 3, lambda a: a / 3),
    (lambda a: -a + 0.25, lambda a: -a + 0.25),
    (lambda a: a * 0, lambda a: 0 * a),
    (lambda a: 0 * a, lambda a: 0 * a),
    (lambda a: a * 1, lambda a: a),
    (lambda a: a * Pm(2.0), lambda a: a * 2),
    (lambda a: (a >= 0.1) * a, lambda a: (a >= 0.1) * a),
])
def test_python_scalars(build, ref):
    K = build(Vi(x)) * Vj(y)
    assert K.dtype == np.float32
    np.testing.assert_allclose(K.sum(axis=1), (ref(x.astype(np.float64)[:, None]) * y[None]).sum(1),
                               rtol=1e-5, atol=1e-5)


def test_int_is_intcst_and_float_is_parameter():
    assert (Vi(x) + 1).formula.args[1].op == "IntCst"
    K = Vi(x) + 0.1
    assert K.formula.args[1] == Var(1, 1, P) and K.variables[1].shape == (1,)
    np.testing.assert_allclose(K.variables[1], 0.1)


def test_times_zero_has_zero_value_and_gradient():
    def f(x):
        return (Vi(x) * 0 * Vj(y)).sum(axis=1).sum()

    assert float(f(jnp.asarray(x))) == 0.0
    np.testing.assert_array_equal(jax.grad(f)(jnp.asarray(x)), 0.0)


def test_scalar_parameter_is_weakly_typed(x64):
    x64_ = x.astype(np.float64)
    assert (Vi(x64_) * Pm(3.0)).sum(axis=1).dtype == np.float64
    assert (Vi(x) * Pm(3.0)).sum(axis=1).dtype == np.float32


def test_version():
    assert isinstance(jax_lazy.__version__, str)


def test_pow_with_lazyarray_exponent():
    """Regression: __pow__ compared a LazyArray exponent with 0.5 (a symbolic truth value)."""
    b = Vj(np.abs(y[:, :1]))
    K = Vi(np.abs(x) + 0.5) ** b
    np.testing.assert_allclose(K.dense(), (np.abs(x) + 0.5)[:, None] ** np.abs(y[None, :, :1]), rtol=1e-5)


def test_dense_with_unbatched_parameter():
    """Regression: dense() indexed a 1-D parameter as if it were an i-variable."""
    K = Vi(x) * Pm(p) * Pm(2.0)
    np.testing.assert_allclose(K.dense(), np.broadcast_to(2 * x[:, None] * p, (5, 1, 3)), rtol=1e-6)


def test_pm_of_python_int():
    """Regression: Pm(2) made an int32 array (DtypeError) while Pm(2.0) worked."""
    np.testing.assert_allclose((Vi(x) * Pm(2)).sum(axis=1), 2 * x, rtol=1e-6)


def test_cat_is_pykeops_concatenate():
    a, b = Vi(x), Vj(x[:4] + 1)
    both = LazyArray.cat((a, b), -1)
    np.testing.assert_allclose(both.dense(), np.concatenate(np.broadcast_arrays(x[:, None], x[None, :4] + 1), -1))
    with pytest.raises(jax_lazy.AxisError):
        LazyArray.cat((a, b), 0)
