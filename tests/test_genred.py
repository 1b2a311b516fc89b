"""Genred and generic_* (issue 12, item 1): formula strings typical of pykeops client code
and every reduction_op against dense float64 NumPy; jit / vmap / grad / jvp; aliases and
positions; batch dims; errors; pickling."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lazy as jl
from jax_lazy import AxisError, FormulaError, Genred, ShapeError

M, N = 6, 5
rng = np.random.default_rng(1)
S = rng.normal(size=(3, 3))
DATA = {
    "x": rng.normal(size=(M, 3)), "y": rng.normal(size=(N, 3)), "b": rng.normal(size=(N, 2)),
    "u": rng.normal(size=(M, 3)), "v": rng.normal(size=(N, 3)), "w": rng.normal(size=(N, 3)),
    "a": rng.normal(size=(M, 2)), "e": rng.normal(size=(M, 1)), "f": rng.normal(size=(N, 1)),
    "g": np.array([0.7]), "s": (S @ S.T + np.eye(3)).reshape(9) / 3, "A": rng.normal(size=(N, 9)),
}
KINDS = {"x": "Vi", "u": "Vi", "a": "Vi", "e": "Vi", "y": "Vj", "b": "Vj", "v": "Vj", "w": "Vj", "f": "Vj",
         "g": "Pm", "s": "Pm", "A": "Vj"}


def aliases(names):
    return [f"{n} = {KINDS[n]}({DATA[n].shape[-1]})" for n in names.split("+")[0]]


def d2(x=None, y=None):
    x = DATA["x"] if x is None else x
    y = DATA["y"] if y is None else y
    return ((x[:, None] - y[None]) ** 2).sum(-1)


def gauss_grad(e_j):
    """sum_j Grad_x exp(-g |x_i - y_j|^2) e_ij = sum_j -2 g (x_i - y_j) K_ij e_ij."""
    g, x, y = DATA["g"][0], DATA["x"], DATA["y"]
    K = np.exp(-g * d2())
    return (-2 * g * (x[:, None] - y[None]) * (K * e_j)[..., None]).sum(1)


def lse(F, axis):
    m = F.max(axis, keepdims=True)
    return m + np.log(np.exp(F - m).sum(axis, keepdims=True))


G = DATA["g"][0]
# (id, formula, names of the arguments in order (after "+": not aliases, the variable e
# that Grad(f, v) creates), reduction_op, axis, Genred kwargs, oracle)
CASES = [
    ("gaussian", "Exp(-SqDist(x, y) * g) * b", "xygb", "Sum", 1, {}, lambda: np.exp(-d2() * G) @ DATA["b"]),
    ("laplace", "Exp(-Sqrt(SqDist(x, y)) * g) * b", "xygb", "Sum", 1, {},
     lambda: np.exp(-np.sqrt(d2()) * G) @ DATA["b"]),
    ("matern32", "(1 + Sqrt(3 * SqDist(x, y)) * g) * Exp(-Sqrt(3 * SqDist(x, y)) * g) * b", "xygb", "Sum", 1, {},
     lambda: ((1 + np.sqrt(3 * d2()) * G) * np.exp(-np.sqrt(3 * d2()) * G)) @ DATA["b"]),
    ("inverse_multiquadric", "Rsqrt(1 + g * SqDist(x, y)) * b", "xygb", "Sum", 1, {},
     lambda: (1 / np.sqrt(1 + G * d2())) @ DATA["b"]),
    ("cauchy_transposed", "Inv(IntCst(1) + SqDist(x, y) / g) * a", "xyga", "Sum", 0, {},
     lambda: (1 / (1 + d2() / G)).T @ DATA["a"]),
    ("polynomial", "Pow((x | y) + 1, 3) * b", "xyb", "Sum", 1, {},
     lambda: (DATA["x"] @ DATA["y"].T + 1) ** 3 @ DATA["b"]),
    ("varifold", "Exp(-SqDist(x, y) * g) * Square((u | v)) * b", "xyguvb", "Sum", 1, {},
     lambda: (np.exp(-d2() * G) * (DATA["u"] @ DATA["v"].T) ** 2) @ DATA["b"]),
    ("weighted_sqdist", "Exp(-WeightedSqDist(s, x, y)) * b", "xysb", "Sum", 1, {},
     lambda: np.exp(-np.einsum("ijk,kl,ijl->ij", DATA["x"][:, None] - DATA["y"][None], DATA["s"].reshape(3, 3),
                               DATA["x"][:, None] - DATA["y"][None])) @ DATA["b"]),
    ("grad_lddmm", "Grad(Exp(-SqDist(x, y) * g) * (u | w), x, e)", "xyguwe", "Sum", 1, {},
     lambda: gauss_grad((DATA["u"] @ DATA["w"].T) * DATA["e"])),
    ("grad_without_e", "Grad(Exp(-SqDist(x, y) * g), x)", "xyg+f", "Sum", 1, {}, lambda: gauss_grad(DATA["f"].T)),
    ("adjoint_operator", "AdjointOperator(MatVecMult(A, x), x, w)", "xAw", "Sum", 1, {},  # sum_j A_j^T w_j
     lambda: np.broadcast_to(np.einsum("jkl,jk->l", DATA["A"].reshape(N, 3, 3), DATA["w"]), (M, 3))),
    ("sum_lin_operator", "SumLinOperator(MatVecMult(A, x), x, w, u)", "xAwu", "Sum", 1, {},  # sum_j w_j^T A_j u_i
     lambda: np.einsum("jkl,jk,il->i", DATA["A"].reshape(N, 3, 3), DATA["w"], DATA["u"])[:, None]),
    ("sum_lin_operator_unweighted", "SumLinOperator(MatVecMult(A, x), x)", "xA", "Sum", 1, {},
     lambda: np.full((M, 1), DATA["A"].sum())),
    ("knn", "SqDist(x, y)", "xy", "ArgKMin", 1, {"opt_arg": 3}, lambda: np.argsort(d2(), 1)[:, :3]),
    ("logsumexp", "-SqDist(x, y) * g", "xyg", "LogSumExp", 0, {}, lambda: lse(-d2() * G, 0).T),
    ("logsumexpweight", "-SqDist(x, y)", "xyb", "LogSumExpWeight", 1, {"formula2": "Exp(b)"},
     lambda: np.log(np.exp(-d2()) @ np.exp(DATA["b"]))),
    ("softmax", "(x | y)", "xyb", "SumSoftMaxWeight", 1, {"formula2": "b"},
     lambda: (np.exp(lse_free := DATA["x"] @ DATA["y"].T) / np.exp(lse_free).sum(1, keepdims=True)) @ DATA["b"]),
    ("softmax_alias", "(x | y)", "xya", "SoftMax", 0, {"formula2": "a"},
     lambda: (np.exp(F := DATA["x"] @ DATA["y"].T) / np.exp(F).sum(0, keepdims=True)).T @ DATA["a"]),
    ("min", "x - y", "xy", "Min", 1, {}, lambda: (DATA["x"][:, None] - DATA["y"][None]).min(1)),
    ("max", "x - y", "xy", "Max", 0, {}, lambda: (DATA["x"][:, None] - DATA["y"][None]).max(0)),
    ("argmin", "SqDist(x, y)", "xy", "ArgMin", 1, {}, lambda: d2().argmin(1)[:, None]),
    ("argmax", "x * y", "xy", "ArgMax", 1, {}, lambda: (DATA["x"][:, None] * DATA["y"][None]).argmax(1)),
    ("min_argmin", "SqDist(x, y)", "xy", "Min_ArgMin", 0, {}, lambda: (d2().min(0)[:, None], d2().argmin(0)[:, None])),
    ("max_argmax", "(x | y)", "xy", "Max_ArgMax", 1, {},
     lambda: ((DATA["x"] @ DATA["y"].T).max(1)[:, None], (DATA["x"] @ DATA["y"].T).argmax(1)[:, None])),
    ("kmin", "Abs(x - y)", "xy", "KMin", 1, {"opt_arg": 2},
     lambda: np.sort(np.abs(DATA["x"][:, None] - DATA["y"][None]), 1)[:, :2]),
    ("kmin_argkmin", "SqDist(x, y)", "xy", "KMin_ArgKMin", 0, {"opt_arg": 2},
     lambda: (np.sort(d2(), 0)[:2].T, np.argsort(d2(), 0)[:2].T)),
]


def check(out, want):
    if isinstance(want, tuple):
        assert isinstance(out, tuple) and len(out) == len(want)
        for o, w in zip(out, want):
            check(o, w)
        return
    assert out.shape == want.shape, (out.shape, want.shape)
    if np.issubdtype(want.dtype, np.integer):
        np.testing.assert_array_equal(out, want)
    else:
        np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["jnp", pytest.param("cpu", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_formula_strings(case, backend, x64):
    _, formula, names, red, axis, kw, oracle = case
    g = Genred(formula, aliases(names), reduction_op=red, axis=axis, **kw)
    check(g(*(DATA[n] for n in names.replace("+", "")), backend=backend), oracle())


def test_cpu_kernel(x64):
    """The compiled backend, and its pykeops name, on one formula (the slow suite runs all)."""
    _, formula, names, red, axis, kw, oracle = CASES[0]
    check(Genred(formula, aliases(names), red, axis)(*(DATA[n] for n in names), backend="CPU"), oracle())


def test_generic_constructors(x64):
    x, y, b = DATA["x"], DATA["y"], DATA["b"]
    g = jl.generic_sum("Exp(-SqDist(x, y)) * b", "o = Vi(2)", "x = Vi(3)", "y = Vj(3)", "b = Vj(2)")
    out = g(x, y, b, backend="jnp")
    check(out, np.exp(-d2()) @ b)
    out = jl.generic_logsumexp("-SqDist(x, y)", "o = Vj(1)", "x = Vi(3)", "y = Vj(3)")(x, y, backend="jnp")
    check(out, lse(-d2(), 0).T)
    check(jl.generic_argmin("SqDist(x, y)", "o = Vi(1)", "x = Vi(3)", "y = Vj(3)")(x, y, backend="jnp"),
          d2().argmin(1)[:, None])
    check(jl.generic_argkmin("SqDist(x, y)", "o = Vj(4)", "x = Vi(3)", "y = Vj(3)")(x, y, backend="jnp"),
          np.argsort(d2(), 0)[:4].T)
    with pytest.raises(FormulaError, match="must be Vi or Vj"):
        jl.generic_sum("x", "o = Pm(3)", "x = Vi(3)")


def test_positions_batches_and_no_i_variable(x64):
    x, y, b = DATA["x"], DATA["y"], DATA["b"]
    # explicit positions out of list order; a Var written in the formula is an argument too
    g = Genred("Exp(-SqDist(x, y)) * b * Var(3, 1, 2)", ["b = Vj(2, 2)", "x = Vi(0, 3)", "y = Vj(1, 3)"], axis=1)
    check(g(x, y, b, np.array([2.0]), backend="jnp"), 2 * np.exp(-d2()) @ b)
    check(Genred("SqDist(Var(0,3,0), Var(1,3,1))", [], "Sum", axis=1)(x, y, backend="jnp"), d2().sum(1)[:, None])
    # batch dims broadcast: x (2, M, 3), y (N, 3), b (2, N, 2), g (2, 1)
    xs, bs, gs = np.stack([x, x + 1]), np.stack([b, 2 * b]), np.array([[0.5], [1.5]])
    out = Genred("Exp(-SqDist(x, y) * g) * b", aliases("xygb"), axis=1)(xs, y, gs, bs, backend="jnp")
    want = np.stack([np.exp(-d2(xs[k]) * gs[k, 0]) @ bs[k] for k in range(2)])
    check(out, want)
    # no i-variable: M = 1, as pykeops
    p = np.array([0.1, 0.2, 0.3])
    out = Genred("Exp(-SqDist(p, y)) * b", ["p = Pm(3)", "y = Vj(3)", "b = Vj(2)"], axis=1)(p, y, b, backend="jnp")
    check(out, np.exp(-d2(p[None])) @ b)


def test_transformations(x64):
    """jit, vmap, grad, jvp: Genred calls api.reduce, the primitive."""
    x, y, b = (jnp.asarray(DATA[k]) for k in "xyb")
    g = Genred("Exp(-SqDist(x, y) * g) * b", aliases("xygb"), axis=1)
    gg = jnp.asarray(DATA["g"])
    red = lambda x, y, b: g(x, y, gg, b, backend="jnp")  # noqa: E731
    dense = lambda x, y, b: jnp.exp(-jnp.sum((x[:, None] - y[None]) ** 2, -1) * gg[0]) @ b  # noqa: E731
    check(jax.jit(red)(x, y, b), np.asarray(dense(x, y, b)))
    xs = jnp.stack([x, 2 * x])
    check(jax.vmap(red, (0, None, None))(xs, y, b), np.asarray(jax.vmap(dense, (0, None, None))(xs, y, b)))
    loss = lambda f: lambda x, y, b: jnp.sum(jnp.sin(f(x, y, b)))  # noqa: E731
    for got, want in zip(jax.grad(loss(red), (0, 1, 2))(x, y, b), jax.grad(loss(dense), (0, 1, 2))(x, y, b)):
        check(got, np.asarray(want))
    t = (jnp.ones_like(x), 0.5 * y, b)
    check(jax.jvp(red, (x, y, b), t)[1], np.asarray(jax.jvp(dense, (x, y, b), t)[1]))


def test_pickle(x64):
    g = Genred("Exp(-SqDist(x, y)) * b", aliases("xyb"), "Sum", axis=1)
    h = pickle.loads(pickle.dumps(g))
    args = [DATA[k] for k in "xyb"]
    check(h(*args, backend="jnp"), np.asarray(g(*args, backend="jnp")))
    assert h.formulas == g.formulas and h.variables == g.variables


def test_errors(x64):
    al = aliases("xyb")
    g = Genred("Exp(-SqDist(x, y)) * b", al, axis=1)
    x, y, b = DATA["x"], DATA["y"], DATA["b"]
    with pytest.raises(ShapeError, match=r"expects 3 arrays \(\(\.\.\., M, 3\), \(\.\.\., N, 3\), "
                                         r"\(\.\.\., N, 2\)\), got 2"):
        g(x, y)
    with pytest.raises(ShapeError, match=r"argument 2 must have shape \(\.\.\., N, 2\)"):
        g(x, y, y)
    with pytest.raises(ShapeError, match="disagree"):
        g(x, y, b[:3])
    with pytest.raises(jl.DtypeError, match="mixed dtypes"):
        g(x, y, b.astype(np.float32))
    with pytest.raises(FormulaError, match=r"unknown variable 'z'(.|\n)*\^"):
        Genred("Exp(-SqDist(x, z))", al)
    with pytest.raises(FormulaError, match="unknown reduction_op"):
        Genred("x", al, "Mean")
    with pytest.raises(FormulaError, match="needs formula2"):
        Genred("x", al, "SumSoftMaxWeight")
    with pytest.raises(FormulaError, match="takes no formula2"):
        Genred("x", al, "Sum", formula2="b")
    with pytest.raises(ShapeError, match="opt_arg = K"):
        Genred("SqDist(x, y)", al, "ArgKMin")
    with pytest.raises(AxisError):
        Genred("x", al, axis=2)
    with pytest.raises(FormulaError, match=r"no variable at argument position\(s\) \[1\]"):
        Genred("Var(0,3,0) + Var(2,3,1)", [])
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        Genred("x", al, bogus=1)
    with pytest.warns(DeprecationWarning, match="dtype is ignored"):
        Genred("x", al, axis=1, dtype="float32")
    with pytest.raises(ValueError, match="kahan_scheme"):
        Genred("x", al, "Min", axis=1, sum_scheme="kahan_scheme")(x, y, b, backend="jnp")
    with pytest.raises(FormulaError, match="LogSumExp needs a scalar formula"):
        Genred("x", al, "LogSumExp", axis=1)(x, y, b, backend="jnp")


def test_numerics_options_are_forwarded(monkeypatch, x64):
    """dtype_acc / sum_scheme go to api.reduce when not "auto" (and only then)."""
    seen = []
    real = jl.api.reduce

    def reduce(formulas, red_name, variables, arrays, axis, k=None, backend="auto", dtype_acc="auto",
               sum_scheme="auto"):
        seen.append((dtype_acc, sum_scheme))
        return real(formulas, red_name, variables, arrays, axis, k=k, backend=backend)

    monkeypatch.setattr(jl.api, "reduce", reduce)
    args = [DATA[k] for k in "xyb"]
    Genred("SqDist(x, y) * b", aliases("xyb"), axis=1)(*args, backend="jnp")
    Genred("SqDist(x, y) * b", aliases("xyb"), axis=1, sum_scheme="kahan_scheme", use_double_acc=True)(
        *args, backend="jnp")
    assert seen == [("auto", "auto"), ("float64", "kahan_scheme")]
