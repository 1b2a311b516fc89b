"""pykeops as a second oracle (slow suite; needs ``pip install pykeops`` and a C++ compiler).

Each case is a formula string in the shape of real pykeops client code (kernel sums with
Gaussian, Laplacian, Matérn, Cauchy, polynomial, varifold and weighted kernels, ``Grad``
and ``Diff`` formulas, the twelve reductions, ``SumSoftMaxWeight`` with ``formula2``,
K-nearest neighbours, the element-wise and vector ops of the formula language), run
through ``pykeops.numpy.Genred`` and through :class:`jax_lazy.Genred` on the same float64
arrays. Values must agree to float64 rounding; indices exactly.

pykeops compiles each formula once (10-30 s each on two cores), so this file is slow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.slow
pykeops_numpy = pytest.importorskip("pykeops.numpy", reason="pykeops is not installed (pip install pykeops)")

import jax_lazy  # noqa: E402

M, N, B = 23, 31, 2


@dataclass(frozen=True)
class Case:
    name: str
    formula: str
    aliases: tuple
    reduction_op: str = "Sum"
    axis: int = 1
    opt_arg: int | None = None
    formula2: str | None = None
    batch: bool = False  # arrays with one leading batch dim of size B
    rtol: float = 1e-10

    def __repr__(self):
        return self.name


XYB = ("x = Vi(3)", "y = Vj(3)", "b = Vj(2)", "g = Pm(1)")
CASES = [
    # ---- kernel sums (Sum over j and over i)
    Case("gaussian", "Exp(-SqDist(x,y)*g)*b", XYB),
    Case("gaussian_axis0", "Exp(-SqDist(x,y)*g)*a", ("x = Vi(3)", "y = Vj(3)", "a = Vi(2)", "g = Pm(1)"), axis=0),
    Case("gaussian_batch", "Exp(-SqDist(x,y)*g)*b", XYB, batch=True),
    Case("laplacian", "Exp(-Sqrt(SqDist(x,y)*g))*b", XYB),
    Case("matern32", "(IntCst(1)+Sqrt(IntCst(3)*SqDist(x,y)))*Exp(-Sqrt(IntCst(3)*SqDist(x,y)))*b", XYB),
    # pykeops evaluates IntInv(3) and Powf less exactly than float64 (relative error ~3e-8
    # against float64 NumPy, where ours is within 1e-15): hence rtol 1e-7 for these two.
    Case("matern52", "(IntCst(1)+Sqrt(IntCst(5)*SqDist(x,y))+IntCst(5)*SqDist(x,y)*IntInv(3))"
                     "*Exp(-Sqrt(IntCst(5)*SqDist(x,y)))*b", XYB, rtol=1e-7),
    Case("cauchy", "Inv(IntCst(1)+SqDist(x,y)*g)*b", XYB),
    Case("inverse_multiquadric", "Rsqrt(IntCst(1)+SqDist(x,y))*b", XYB),
    Case("polynomial", "Pow((x|y)+IntCst(1),3)*b", XYB),
    Case("varifold", "Exp(-SqDist(x,y)*g)*Square((Normalize(u)|Normalize(v)))*b",
         XYB + ("u = Vi(3)", "v = Vj(3)")),
    Case("weighted_diag", "Exp(-WeightedSqDist(s,x,y))*b", XYB + ("s = Pm(3)",)),
    Case("weighted_full", "Exp(-WeightedSqDist(s,x,y))*b", XYB + ("s = Pm(9)",)),
    Case("powf", "Powf(SqDist(x,y)+IntCst(1),g)*b", XYB, rtol=1e-7),
    Case("truncated", "Step(g-SqDist(x,y))*Exp(-SqDist(x,y))*b", XYB),
    # ---- derivatives written in the formula
    Case("grad_x", "Grad(Exp(-SqDist(x,y)*g)*c, x, e)", ("x = Vi(3)", "y = Vj(3)", "c = Vj(1)", "g = Pm(1)", "e = Vi(1)")),
    Case("grad_y_axis0", "Grad(Exp(-SqDist(x,y))*(a|b), y, e)",
         ("x = Vi(3)", "y = Vj(3)", "a = Vi(2)", "b = Vj(2)", "e = Vi(1)"), axis=0),
    Case("diff_x", "Diff(Exp(-SqDist(x,y)), x, u)", ("x = Vi(3)", "y = Vj(3)", "u = Vi(3)")),
    Case("laplacian_op", "Laplacian(Exp(-SqDist(x,y)), x)", ("x = Vi(3)", "y = Vj(3)")),
    Case("grad_matrix", "GradMatrix(Exp(-SqDist(x,y))*y, x)", ("x = Vi(3)", "y = Vj(3)")),
    Case("divergence", "Divergence(Exp(-SqDist(x,y))*y, x)", ("x = Vi(3)", "y = Vj(3)")),
    Case("trace_operator", "TraceOperator(y*x+w*x, x, u)", ("x = Vi(3)", "y = Vj(3)", "w = Vj(3)", "u = Vi(3)")),
    Case("sum_lin_operator", "SumLinOperator(y*x, x, w, u)", ("x = Vi(3)", "y = Vj(3)", "w = Vj(3)", "u = Vi(3)")),
    Case("adjoint_operator", "AdjointOperator(Sum(y*x), x, Elem(w,0))", ("x = Vi(3)", "y = Vj(3)", "w = Vj(3)")),
    # ---- the other reductions
    Case("logsumexp", "-SqDist(x,y)*g", ("x = Vi(3)", "y = Vj(3)", "g = Pm(1)"), "LogSumExp"),
    Case("logsumexp_axis0", "-SqDist(x,y)*g", ("x = Vi(3)", "y = Vj(3)", "g = Pm(1)"), "LogSumExp", axis=0),
    Case("softmax", "-SqDist(x,y)*g", XYB, "SumSoftMaxWeight", formula2="b"),
    Case("min", "SqDist(x,y)", ("x = Vi(3)", "y = Vj(3)"), "Min"),
    Case("max_axis0", "(x|y)-SqDist(x,y)", ("x = Vi(3)", "y = Vj(3)"), "Max", axis=0),
    Case("min_vector", "Abs(x-y)", ("x = Vi(3)", "y = Vj(3)"), "Min"),
    Case("argmin", "SqDist(x,y)", ("x = Vi(3)", "y = Vj(3)"), "ArgMin"),
    Case("argmax", "(x|y)", ("x = Vi(3)", "y = Vj(3)"), "ArgMax"),
    Case("min_argmin", "SqDist(x,y)", ("x = Vi(3)", "y = Vj(3)"), "Min_ArgMin"),
    Case("max_argmax_axis0", "(x|y)", ("x = Vi(3)", "y = Vj(3)"), "Max_ArgMax", axis=0),
    Case("kmin", "SqDist(x,y)", ("x = Vi(3)", "y = Vj(3)"), "KMin", opt_arg=5),
    Case("argkmin_knn", "SqDist(x,y)", ("x = Vi(3)", "y = Vj(3)"), "ArgKMin", opt_arg=5),
    Case("kmin_argkmin_vector", "Abs(x-y)", ("x = Vi(3)", "y = Vj(3)"), "KMin_ArgKMin", opt_arg=3),
    # ---- element-wise ops of the formula language
    Case("trig", "Sum(Sin(x-y)*Cos(x+y))*b", XYB),
    # pykeops is 1.9e-9 (relative) off float64 NumPy here, ours 5e-16: the tolerance is pykeops'.
    Case("asin_acos_atan", "Sum(Asin((x-y)*IntInv(2))+Acos((x-y)*IntInv(3))+Atan(x*y))*b", XYB, rtol=1e-8),
    Case("atan2", "Atan2(Elem(x,0)-Elem(y,0), Elem(x,1)-Elem(y,1))*b", XYB),
    Case("sinxdivx_xlogx", "(SinXDivX(SqDist(x,y))+Sum(XLogX(x*y)))*b", XYB),
    Case("clamps", "Clamp((x|y),g,g+IntCst(1))*Sum(ClampInt(x-y,0,1))*b", XYB),
    Case("ifelse_relu_sign", "IfElse((x|y)-g, Sum(ReLU(x-y)), Sum(Sign(x-y)*Abs(x-y)))*b", XYB),
    Case("mod_round", "Sum(Mod(x*IntCst(3),g,IntCst(0))+Round(x*y,2))*b", XYB, rtol=1e-9),
    # ---- vector ops and tensor algebra
    Case("vector_min_max", "(Min(x-y)+Max(x*y))*b", XYB),
    Case("vector_argmin", "(ArgMin(x-y)+ArgMax(x*y))*b", XYB),
    Case("matvec", "MatVecMult(A,x-y)*Exp(-SqDist(x,y))", ("x = Vi(3)", "y = Vj(3)", "A = Pm(6)")),
    Case("tensorprod_extract", "Concat(Extract(TensorProd(x,y),1,4),ElemT(SqDist(x,y),3,1))", ("x = Vi(3)", "y = Vj(3)")),
    Case("tensordot", "TensorDot(p,q,[2,2],[2,2],[1],[0])", ("p = Vi(4)", "q = Vj(4)")),
    Case("kron", "Kron(p,q,[2],[3])", ("p = Vi(2)", "q = Vj(3)")),
    # pykeops 2.3's SoftDTW_SqDist is not the soft-DTW recursion of Cuturi & Blondel (2017):
    # for x = (0.5, 1), y = (0, 0.7), gamma = 1 it gives -0.772, the recursion (by hand, and a
    # float64 NumPy DP) -0.505. Ours follows the recursion (tests/test_vector_ops.py checks
    # it against that DP); the comparison is kept, expected to fail, to notice a fix.
    pytest.param(Case("softdtw", "SoftDTW_SqDist(p,q,g)", ("p = Vi(5)", "q = Vj(4)", "g = Pm(1)")),
                 marks=pytest.mark.xfail(strict=True, reason="pykeops 2.3's SoftDTW_SqDist differs from the recursion")),
]


def _dims(aliases):
    """(name, category, dim) of each alias, in order."""
    out = []
    for a in aliases:
        m = re.fullmatch(r"\s*(\w+)\s*=\s*(Vi|Vj|Pm)\(\s*(\d+)\s*\)\s*", a)
        out.append((m.group(1), m.group(2), int(m.group(3))))
    return out


def _arrays(case: Case, seed: int):
    rng = np.random.default_rng(seed)
    lead = (B,) if case.batch else ()
    arrays = []
    for name, cat, d in _dims(case.aliases):
        shape = lead + ((M, d) if cat == "Vi" else (N, d) if cat == "Vj" else (d,))
        # Positive and moderate: inside the domain of every op used above (Log, Sqrt, Powf,
        # Asin of (x - y) / 2...), and the bandwidth g in [0.5, 1.5].
        arrays.append(rng.uniform(0.5, 1.5, shape))
    return arrays


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_formula_against_pykeops(case):
    args = _arrays(case, seed=len(case.name))
    kw = dict(reduction_op=case.reduction_op, axis=case.axis)
    if case.opt_arg is not None:
        kw["opt_arg"] = case.opt_arg
    if case.formula2 is not None:
        kw["formula2"] = case.formula2
    theirs = pykeops_numpy.Genred(case.formula, list(case.aliases), **kw)(*args, backend="CPU")
    with jax.enable_x64(True):
        ours = jax_lazy.Genred(case.formula, list(case.aliases), **kw)(*args)
        ours = jax.tree_util.tree_map(np.asarray, ours)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    ours = ours if isinstance(ours, tuple) else (ours,)
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs):
        assert o.shape == t.shape, (o.shape, t.shape)
        if np.issubdtype(t.dtype, np.integer):
            np.testing.assert_array_equal(o, t)
        else:
            np.testing.assert_allclose(o, t, rtol=case.rtol, atol=case.rtol * np.max(np.abs(t)))


def test_at_least_thirty_formulas():
    assert len(CASES) >= 30
