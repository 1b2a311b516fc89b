"""Formula strings (issue 12, item 1): the parser maps a KeOps formula to the node the
LazyArray operators build (the same interned object), every op of the table is callable
by name, errors show a caret under the offending part, aliases in every spelling."""

import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import FormulaError, Pm, Vi, Vj
from jax_lazy.ir import OPS, OpDef, Var, ops
from jax_lazy.ir.parse import alias_table, parse

rng = np.random.default_rng(0)
ARR = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in
       (("x", (5, 3)), ("y", (4, 3)), ("e", (4, 1)), ("b", (4, 1)), ("u", (5, 3)), ("g", (1,)))}
CATS = {"x": Vi, "u": Vi, "y": Vj, "e": Vj, "b": Vj, "g": Pm}


def aliases_of(lazy):
    """The alias strings naming ``lazy``'s variables as it numbered them."""
    names = {id(a): k for k, a in ARR.items()}
    kind = {0: "Vi", 1: "Vj", 2: "Pm"}
    return tuple(f"{names[id(a)]} = {kind[v.attr[1]]}({v.attr[0]}, {v.dim})"
                 for v, a in zip(lazy._vars, lazy.variables))


# (formula string, the LazyArray expression). No float literals but 0.5 and -0.5 as powers:
# a float is a Cst in a formula string, and a LazyArray may bind it as a runtime parameter.
SAME = [
    ("Exp(-SqDist(x, y) * g) * b", lambda x, y, g, b, **_: (-(x.sqdist(y)) * g).exp() * b),
    ("Exp(-g * SqDist(x,y))", lambda x, y, g, **_: (-g * x.sqdist(y)).exp()),
    ("x ** 2 + x ** 3 - x ** 0.5 * x ** -0.5 + x ** -2 + x ** y",
     lambda x, y, **_: x ** 2 + x ** 3 - x ** 0.5 * x ** -0.5 + x ** -2 + x ** y),
    ("(x | y) * 2 - 3", lambda x, y, **_: (x | y) * 2 - 3),
    ("1 / (1 + SqDist(x, y))", lambda x, y, **_: 1 / (1 + x.sqdist(y))),
    ("(x < y) + (x > y) + (x <= y) + (x >= y) + (x == y) + (x != y)",
     lambda x, y, **_: (x < y) + (x > y) + (x <= y) + (x >= y) + (x == y) + (x != y)),
    ("Sqrt(SqNorm2(x - y)) * Norm2(x) + Normalize(u)",
     lambda x, y, u, **_: (x - y).sqnorm2().sqrt() * x.norm2() + u.normalize()),
    ("Extract(x, 1, 2) * Elem(y, 2) + Sum(x)", lambda x, y, **_: x[1:3] * y[2] + x.sum(-1)),
    ("Concat(x, y) + Concat(Clamp(u, -1, 2), y)", lambda x, y, u, **_: x.concat(y) + u.clamp(-1, 2).concat(y)),
    ("Pow(x, 3) + Square(y) + Powf(x, u) + Exp(x) + Log(x) + Sin(x) + Cos(x) + ReLU(x) + Abs(x) + Inv(x)",
     lambda x, y, u, **_: x.power(3) + y.square() + x.powf(u) + x.exp() + x.log() + x.sin() + x.cos() + x.relu()
     + abs(x) + x.inv()),
    ("IfElse(x, y, -x) * Sign(x) * Step(y)", lambda x, y, **_: x.ifelse(y, -x) * x.sign() * y.step()),
    ("MatVecMult(Concat(Concat(x, y), u), y) + TensorProd(g, e)",
     lambda x, y, u, g, e, **_: x.concat(y).concat(u).matvecmult(y) + g.tensorprod(e)),
    ("WeightedSqDist(g, x, y) + WeightedSqNorm(u, y)",
     lambda g, x, y, u, **_: x.weightedsqdist(y, g) + y.weightedsqnorm(u)),
    ("Grad(Exp(-SqDist(x, y)) * b, x, e)", lambda x, y, b, e, **_: ((-(x.sqdist(y))).exp() * b).grad(x, e)),
    ("Diff(Exp(-SqDist(x, y)) * y, x, u)", lambda x, y, u, **_: ((-(x.sqdist(y))).exp() * y).diff(x, u)),
    ("Laplacian(Exp(-SqDist(x, y)), x) + Divergence(x * y, x) + GradMatrix(Sum(x * y), y)",
     lambda x, y, **_: (-(x.sqdist(y))).exp().laplacian(x) + (x * y).divergence(x) + (x * y).sum(-1).grad_matrix(y)),
]


@pytest.mark.parametrize("text,build", SAME, ids=[s for s, _ in SAME])
def test_same_node_as_lazyarray(text, build):
    lazy = build(**{k: CATS[k](a) for k, a in ARR.items()})
    assert parse(text, aliases_of(lazy)) is lazy.formula


def test_literals_and_spellings():
    al = ("x = Vi(3)", "y = Vj(3)")
    x = Var(0, 3, 0)
    assert parse("-1 * x + 2.5", al) is ops.Add(ops.Mult(ops.IntCst(-1), x), ops.Cst(2.5))
    # ** on the number written: integral -> Pow (exact for x < 0), 0.5 / -0.5 -> Sqrt / Rsqrt
    assert parse("x ** 1.5 + x ** 2.0 + x ** -0.5 + x ** -3.0", al) is ops.Add(ops.Add(
        ops.Add(ops.Powf(x, ops.Cst(1.5)), ops.Square(x)), ops.Rsqrt(x)), ops.Pow(x, -3))
    assert parse("IntCst(4) * Cst(0.25) * Zero(3)", al) is ops.Zero(3)
    assert parse("IntInv(3) + RatCst(2, 7)", al) is ops.Add(ops.Divide(ops.IntCst(1), ops.IntCst(3)),
                                                           ops.Divide(ops.IntCst(2), ops.IntCst(7)))
    assert parse("  Var(0,3,0) - Var(1,3,1)  ") is ops.Subtract(x, Var(1, 3, 1))
    assert parse("Factorize(Exp(x) * x, x) + AutoFactorize(x)", al) is ops.Add(ops.Mult(ops.Exp(x), x), x)
    assert parse("SqNormIso(Var(2,1,2), x) + SqNormDiag(Var(3,3,2), x) + SymSqNorm(Var(4,9,2), x)", al).dim == 1


def test_grad_without_e_adds_a_variable():
    """As KeOps: e is a new variable of f's dim, opposite category, next free position."""
    al = ("x = Vi(3)", "y = Vj(3)")
    f = "Exp(-SqDist(x, y)) * y"
    g = parse(f"Grad({f}, x)", al)
    e = Var(2, 3, 1)
    assert g is parse(f"Grad({f}, x, Var(2,3,1))", al)
    assert e in __import__("jax_lazy").ir.variables(g)
    assert Var(6, 3, 0) in __import__("jax_lazy").ir.variables(parse(f"Grad({f}, y) + Var(5,3,0)", al))


@pytest.mark.parametrize("name", sorted(n for n in OPS if OPS[n].arity))
def test_every_table_op_by_name(name):
    """Table-driven: an op of the table is known to the parser by its name."""
    text = f"{name}({', '.join(['x'] * OPS[name].arity)})"
    try:
        node = parse(text, ("x = Vi(1)",))
    except FormulaError as e:  # an op that needs integer attributes, or other dims, says so
        assert "unknown op" not in str(e), str(e)
    else:
        assert node.dim >= 1


def test_derived_by_name(monkeypatch):
    """A composition of jax_lazy.ir.derived is a formula-string op by its KeOps name."""
    from jax_lazy.ir import Node, derived

    def clampint(x: Node, lo: int, hi: int) -> Node:
        return ops.Clamp(x, ops.IntCst(lo), ops.IntCst(hi))

    monkeypatch.setattr(derived, "clampint", clampint, raising=False)
    x = Var(0, 2, 0)
    assert parse("ClampInt(x, -1, 3)", ("x = Vi(2)",)) is ops.Clamp(x, ops.IntCst(-1), ops.IntCst(3))
    monkeypatch.delattr(derived, "clampint")
    with pytest.raises(FormulaError, match="unknown op 'ClampInt'"):
        parse("ClampInt(x, 0, 1)", ("x = Vi(2)",))


def test_new_table_op_needs_no_parser_change(monkeypatch):
    monkeypatch.setitem(OPS, "TwiceForTest", OpDef("TwiceForTest", 1, lambda d, a: d[0], lambda a, x: 2 * x))
    node = parse("TwiceForTest(x) + 1", ("x = Vi(2)",))
    assert node.args[0].op == "TwiceForTest" and node.args[0].args == (Var(0, 2, 0),)


ERRORS = [  # (formula, message, the caret line)
    ("Exp(-SqDist(x, z))", "unknown variable 'z'", "                   ^"),
    ("Exp(x) + Foo(x)", "unknown op 'Foo'", "             ^^^"),
    ("Exp(x) +* y", "syntax error", "            ^"),
    ("SqDist(x, y) +", "syntax error", "                  ^"),
    ("Exp(x, y)", "must be an integer literal", "           ^"),
    ("Exp(x) + Extract(x, 1)", "Extract takes 1 operands and 2 integer attributes", "             ^^^^^^^^^^^^^"),
    ("Sum(x) * Extract(x, 0, 5)", "out of range", "             ^^^^^^^^^^^^^^^^"),
    ("x + Var(0, 2, 0)", "do not broadcast", "    ^^^^^^^^^^^^^^^^"),
    ("x + Concat(y, y)", "do not broadcast", "    ^^^^^^^^^^^^^^^^"),
    ("SqDist(x, y) < 1 < 2", "chained comparisons", "    ^^^^^^^^^^^^^^^^^^^^"),
    ("Grad(Sum(x), x, y)", "cotangent e has dim 3, expected 1", "    ^^^^^^^^^^^^^^^^^^"),
    ("Grad(x, p)", "not a parameter", "    ^^^^^^^^^^"),
    ("Laplacian(x, x)", "Laplacian: the formula has dim 3", "    ^^^^^^^^^^^^^^^"),
    ("SqDist(x, y, x)", "SqDist takes 2 formulas", "    ^^^^^^^^^^^^^^^"),
    ("x.T", "Attribute is not part of the formula language", "    ^^^"),
    ("__import__('os').system('true')", "a call is Name", "    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"),
    ("'x'", "str constant is not a formula", "    ^^^"),
    ("Exp(Var(0,3,1))", "position 0 is both", None),
]


@pytest.mark.parametrize("text,message,caret", ERRORS, ids=[t for t, *_ in ERRORS])
def test_errors_show_a_caret(text, message, caret):
    with pytest.raises(FormulaError, match=message) as info:
        parse(text, ("x = Vi(3)", "y = Vj(3)", "p = Pm(1)"))
    if caret is not None:
        lines = str(info.value).splitlines()
        assert lines[-2] == "    " + text and lines[-1] == caret, str(info.value)


def test_aliases():
    table = dict(alias_table(("x = Vi(3)", "y=Vj(1, 2)", "p = Pm(1)", "q = Var(5, 4, 2)", "Var(3, 1, 0)")))
    assert table == {"x": Var(0, 3, 0), "y": Var(1, 2, 1), "p": Var(2, 1, 2), "q": Var(5, 4, 2), None: Var(3, 1, 0)}
    with pytest.warns(DeprecationWarning, match="old spelling"):
        assert dict(alias_table(("a = Vx(2)", "b = Vy(2)"))) == {"a": Var(0, 2, 0), "b": Var(1, 2, 1)}
    for bad, message in (("x = Vi(3", "syntax error"), ("x = Vk(3)", "Vk: expected"), ("x = Vi(a)", "integer literal"),
                         ("x, y = Vi(3)", "an alias is"), ("Vi(3)", "without a name"), ("x = Vi(0)", "bad variable"),
                         ("x = Vi(3); y = Vj(3)", "an alias is")):
        with pytest.raises(FormulaError, match=message):
            alias_table((bad,))
    with pytest.raises(FormulaError, match="an alias is a string"):
        alias_table((3,))
    with pytest.raises(FormulaError, match="defined twice"):
        alias_table(("x = Vi(3)", "x = Vj(3)"))
    with pytest.raises(FormulaError, match="position 0 is both"):
        alias_table(("x = Vi(0, 3)", "y = Vj(0, 3)"))


def test_parse_is_cached():
    from jax_lazy.ir.parse import _parse

    _parse.cache_clear()
    al = ["x = Vi(3)", "y = Vj(3)"]  # a list is fine: the cache key is the tuple
    a = parse("Exp(-SqDist(x, y))", al)
    assert parse("Exp(-SqDist(x, y))", al) is a and _parse.cache_info().hits == 1
