"""Every user error raises a jax_lazy exception (also the builtin one a user expects)
whose message names the problem and prints the offending formula."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jax_lazy import (
    AxisError,
    BackendError,
    DtypeError,
    FormulaError,
    JaxLazyError,
    LazyArray,
    Pm,
    ShapeError,
    Vi,
    Vj,
)

rng = np.random.default_rng(0)
x = rng.normal(size=(5, 3)).astype(np.float32)  # M = 5, D = 3
x4 = rng.normal(size=(4, 3)).astype(np.float32)  # M = 4
y = rng.normal(size=(6, 3)).astype(np.float32)  # N = 6, D = 3
y7 = rng.normal(size=(7, 3)).astype(np.float32)  # N = 7
y2 = rng.normal(size=(6, 2)).astype(np.float32)  # D = 2
xb2 = rng.normal(size=(2, 5, 3)).astype(np.float32)  # batch (2,)
yb3 = rng.normal(size=(3, 6, 3)).astype(np.float32)  # batch (3,)


def G():
    return Vi(x) - Vj(y)  # "Var(0,3,0) - Var(1,3,1)"


def S():
    return G().sqnorm2()  # scalar


XI, YJ, Y2J = "Var(0,3,0)", "Var(1,3,1)", "Var(1,2,1)"

# name -> (thunk, exception, substrings of the message)
CASES = {
    "M_mismatch": (lambda: Vi(x) + Vi(x4), ShapeError, ["5", "4", XI]),
    "N_mismatch": (lambda: Vj(y) * Vj(y7), ShapeError, ["6", "7", "Var(0,3,1)"]),
    "N_mismatch_in_weight": (lambda: S().logsumexp(axis=1, weight=Vj(y7)), ShapeError, ["6", "7", XI]),
    "batch_mismatch": (lambda: Vi(xb2) - Vj(yb3), ShapeError, ["batch", XI, YJ]),
    "batch_mismatch_param": (lambda: Vi(xb2) * Pm(np.ones((3, 3), np.float32)), ShapeError, ["batch", XI]),
    "int_input_vi": (lambda: Vi(x.astype(np.int32)), DtypeError, ["int32"]),
    "int_input_pm": (lambda: Pm(np.arange(3)), DtypeError, ["int"]),
    "int_array_lifted": (lambda: Vi(x) + np.ones((1, 6, 3), np.int32), DtypeError, ["int32", XI]),
    "axis_2_unbatched": (lambda: G().min(axis=2), AxisError, ["2", "Var(0,3,0) - Var(1,3,1)"]),
    "axis_5": (lambda: G().sum(axis=5), AxisError, ["5", XI]),
    "axis_minus_4": (lambda: G().sum(axis=-4), AxisError, ["-4", XI]),
    "axis_batch_axis": (lambda: (Vi(xb2) - Vj(y)).sum(axis=0), AxisError, ["0", XI]),
    "axis_missing": (lambda: S().logsumexp(), AxisError, ["axis", XI]),
    "unknown_backend": (lambda: G().sum(axis=1, backend="nope"), BackendError, ["nope", "jnp", XI]),
    "K_too_large": (lambda: S().Kmin(7, axis=1), ShapeError, ["7", "6", XI]),
    "K_zero": (lambda: S().argKmin(0, axis=1), ShapeError, ["0", XI]),
    "K_too_large_over_i": (lambda: S().Kmin_argKmin(6, axis=0), ShapeError, ["6", "5", "Var(0,3,0) - Var(1,3,1)"]),
    "logsumexp_vector_over_i": (lambda: G().logsumexp(axis=0), FormulaError, ["Var(0,3,0) - Var(1,3,1)"]),
    "logsumexp_vector": (lambda: G().logsumexp(axis=1), FormulaError, ["LogSumExp", "3", XI]),
    "sumsoftmaxweight_vector": (lambda: G().sumsoftmaxweight(Vj(y), axis=1), FormulaError, ["SumSoftMaxWeight", XI]),
    "sumsoftmaxweight_vector_over_i": (lambda: G().sumsoftmaxweight(Vi(x), axis=0), FormulaError,
                                       ["SumSoftMaxWeight", "Var(0,3,0) - Var(1,3,1)"]),
    "binary_dims": (lambda: Vi(x) + Vj(y2), FormulaError, ["3", "2", XI, Y2J]),
    "ternary_dims": (lambda: Vi(x).clamp(Vj(y2), 1.0), FormulaError, [XI, Y2J]),
    "scalprod_dims": (lambda: Vi(x) | Vj(y2), FormulaError, ["3", "2", XI, Y2J]),
    "sqdist_dims": (lambda: Vi(x).sqdist(Vj(y2)), FormulaError, [XI, Y2J]),
    # the weight is combined first: it becomes Var(0,...) and x becomes Var(1,3,0)
    "weightedsqnorm_dim": (lambda: Vi(x).weightedsqnorm(Vj(y2)), FormulaError, ["2", "Var(0,2,1)", "Var(1,3,0)"]),
    "weightedsqdist_dim": (lambda: Vi(x).weightedsqdist(Vj(y), Pm(np.ones(4, np.float32))), FormulaError,
                           ["Var(0,4,2)", "Var(1,3,0)", "Var(2,3,1)"]),
    "extract_past_end": (lambda: Vi(x)[3], FormulaError, ["Extract", XI]),
    "negative_index_past_start": (lambda: Vi(x)[-4], FormulaError, ["-4", XI]),
    "elem_negative_past_start": (lambda: Vi(x).elem(-4), FormulaError, ["-4", XI]),
    "extract_too_long": (lambda: Vi(x).extract(2, 2), FormulaError, ["Extract", XI]),
    "extract_negative_start": (lambda: Vi(x).extract(-1, 1), FormulaError, ["Extract", XI]),
    "empty_slice": (lambda: Vi(x)[2:2], FormulaError, ["Extract", XI]),
    "index_two_axes": (lambda: Vi(x)[0, 1], AxisError, [XI]),
    "slice_with_step": (lambda: Vi(x)[::2], AxisError, [XI]),
    "one_hot_of_vector": (lambda: Vi(x).one_hot(4), FormulaError, ["OneHot", XI]),
    "matvec_dims": (lambda: Vi(x).matvecmult(Vj(y2)), FormulaError, ["MatVecMult", XI, Y2J]),
    "vecmat_dims": (lambda: Vj(y2).vecmatmult(Vi(x)), FormulaError, ["VecMatMult", "Var(0,2,1)"]),
    "norm_wrong_axis": (lambda: G().norm(dim=0), AxisError, [XI]),
    "concatenate_wrong_axis": (lambda: LazyArray.concatenate((Vi(x), Vj(y)), axis=0), AxisError, ["0"]),
    "matmul_vector_formula": (lambda: G() @ np.ones(6, np.float32), ShapeError, ["3", "Var(0,3,0) - Var(1,3,1)"]),
    "matmul_int_b": (lambda: S() @ np.ones(6, np.int32), DtypeError, ["int32"]),
    "raw_2d_array": (lambda: Vi(x) + np.ones((6, 3), np.float32), ShapeError, ["(6, 3)", XI]),
    "raw_2d_array_right": (lambda: np.ones((6, 3), np.float32) * Vi(x), ShapeError, ["(6, 3)", XI]),
    "combine_with_string": (lambda: Vi(x) + "a", FormulaError, ["str", XI]),
    "vi_of_1d": (lambda: Vi(np.ones(3, np.float32)), ShapeError, ["(3,)"]),
    "lazyarray_ambiguous_shape": (lambda: LazyArray(x), ShapeError, ["(5, 3)"]),
}

CASES.update({  # element-wise math (issue 12)
    "round_float_decimals": (lambda: Vi(x).round(1.5), FormulaError, ["int", "1.5", XI]),
    "atan2_dims": (lambda: Vi(x).atan2(Vj(y2)), FormulaError, ["Atan2", XI, Y2J]),
    "mod_dims": (lambda: Vi(x).mod(Vj(y2)), FormulaError, ["Mod", XI, Y2J]),
})


@pytest.mark.parametrize("name", list(CASES))
def test_error(name):
    thunk, exc, needles = CASES[name]
    with pytest.raises(exc) as info:
        thunk()
    assert isinstance(info.value, JaxLazyError)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_mixed_float32_float64(x64):
    x64_ = x.astype(np.float64)
    with pytest.raises(DtypeError) as info:
        Vi(x) + Vj(y.astype(np.float64))
    msg = str(info.value)
    for needle in ("float32", "float64", XI, YJ):
        assert needle in msg
    with pytest.raises(DtypeError):
        S().sumsoftmaxweight(Vj(y.astype(np.float64)), axis=1)
    # weakly typed Python scalars adopt the arrays' dtype instead of clashing
    assert (Vi(x64_) * Pm(2.0)).dtype == np.float64
    assert (Vi(x) * Pm(2.0) + 1.5).dtype == np.float32


def test_truth_value_is_an_error():
    with pytest.raises(TypeError):
        if Vi(x) < Vj(y):
            pass
    with pytest.raises(TypeError):
        bool(Vi(x) == Vj(y))
    with pytest.raises(TypeError):
        Vi(x) < Vj(y) and True  # noqa: B015
    with pytest.raises(TypeError):
        hash(Vi(x))


@pytest.mark.parametrize("exc,builtin", [(ShapeError, ValueError), (AxisError, ValueError),
                                         (FormulaError, ValueError), (DtypeError, TypeError),
                                         (BackendError, RuntimeError)])
def test_exceptions_are_also_builtin_exceptions(exc, builtin):
    assert issubclass(exc, JaxLazyError) and issubclass(exc, builtin)


def test_errors_inside_jit_are_raised_at_trace_time():
    with pytest.raises(ShapeError):
        jax.jit(lambda a: (Vi(a) + Vi(x4)).sum(axis=1))(x)
    with pytest.raises(AxisError):
        jax.jit(lambda a: (Vi(a) - Vj(y)).min(axis=3))(x)


def test_non_integer_K_raises():
    with pytest.raises(ShapeError, match="integer") as info:
        S().Kmin(2.7, axis=1)
    assert "Var(0,3,0)" in str(info.value)


def test_formula_error_prints_the_formula_once():
    with pytest.raises(FormulaError) as info:
        Vi(x) + Vj(y2)
    assert str(info.value).count("formula:") == 1
