"""Formula IR -> C++ statements, shared by the CPU (and later CUDA) kernel templates.

Every node value is *scalarised*: a node of dim d becomes d C++ scalars, so the compiler
keeps them in registers and vectorises the loop over j lanes. Nodes are placed by what
they depend on, so invariants are hoisted:

  level "p"   parameters and constants only: computed once per kernel call;
  level "i"   i-variables (and p): once per i row;
  level "j"   j-variables (and p): once per j lane, shared by the R rows of an i-block;
  level "ij"  both: once per (row, lane).

The printer differs from the jnp evaluator only by the table :data:`CPP` (op -> C++
template of one output component), plus a few structural vector ops written as
component functions in :data:`VECTOR`. An import-time check makes sure every op of the
op table has a printer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import OPS, Node, topo_order
from ..ir.node import I, J, P

# Element-wise ops: a template over the components {0}, {1}, {2} of the (broadcast) operands.
# fmt: off
CPP = {
    "Minus": "(-{0})",                 "Inv": "(T(1) / {0})",
    "Square": "({0} * {0})",           "Sqrt": "jl_sqrt({0})",
    "Rsqrt": "jl_rsqrt({0})",          "Exp": "jl_exp({0})",
    "Log": "jl_log({0})",              "Sin": "jl_sin({0})",
    "Cos": "jl_cos({0})",              "Abs": "jl_abs({0})",
    "Sign": "(T({0} > T(0)) - T({0} < T(0)))",
    "Step": "({0} >= T(0) ? T(1) : T(0))",
    "ReLU": "({0} > T(0) ? {0} : T(0))",
    "Add": "({0} + {1})",              "Subtract": "({0} - {1})",
    "Mult": "({0} * {1})",             "Divide": "({0} / {1})",
    "Powf": "jl_exp({1} * jl_log({0}))",
    "LessThan": "({0} < {1} ? T(1) : T(0))",
    "LessOrEqual": "({0} <= {1} ? T(1) : T(0))",
    "Equal": "({0} == {1} ? T(1) : T(0))",
    "NotEqual": "({0} != {1} ? T(1) : T(0))",
    "Clamp": "jl_clamp({0}, {1}, {2})",
    "IfElse": "({0} >= T(0) ? {1} : {2})",
}
# fmt: on


def _tree_sum(terms: list[str]) -> str:
    """Pairwise sum: shorter dependency chains than a left fold."""
    while len(terms) > 1:
        terms = [f"({terms[k]} + {terms[k + 1]})" if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def _pow(x: str, n: int) -> str:
    if n < 0:
        return f"(T(1) / {_pow(x, -n)})"
    factors, base = [], x
    while n:  # binary exponentiation, as a product of repeated squares
        if n & 1:
            factors.append(base)
        n >>= 1
        if n:
            base = f"({base} * {base})"
    return "(" + " * ".join(factors) + ")" if factors else "T(1)"


def _matvec(n, a, v):
    k = len(v)
    return [_tree_sum([f"({a[r * k + c]} * {v[c]})" for c in range(k)]) for r in range(len(a) // k)]


def _vecmat(n, v, a):
    m = len(a) // len(v)
    return [_tree_sum([f"({v[r]} * {a[r * m + c]})" for r in range(len(v))]) for c in range(m)]


# Vector ops: functions (node, *operand component lists) -> output component list.
VECTOR = {
    "Sum": lambda n, a: [_tree_sum(a)],
    "SumT": lambda n, a: a * n.attr[0],
    "Extract": lambda n, a: a[n.attr[0] : n.attr[0] + n.attr[1]],
    "ExtractT": lambda n, a: ["T(0)"] * n.attr[0] + a + ["T(0)"] * (n.attr[1] - n.attr[0] - len(a)),
    "Concat": lambda n, a, b: a + b,
    "OneHot": lambda n, a: [f"(jl_round({a[0]}) == T({k}) ? T(1) : T(0))" for k in range(n.attr[0])],
    "MatVecMult": _matvec,
    "VecMatMult": _vecmat,
    "TensorProd": lambda n, a, b: [f"({x} * {y})" for x in a for y in b],
    "Pow": lambda n, a: [_pow(c, n.attr[0]) for c in a],
}

_LEAVES = {"Var", "IntCst", "Cst", "Zero"}
_missing = set(OPS) - set(CPP) - set(VECTOR) - _LEAVES
assert not _missing, f"ops without a C++ printer: {sorted(_missing)}"


def literal(x) -> str:
    """An exact C++ literal of the kernel's type T (hex floats are exact)."""
    x = float(x)
    if x != x:
        return "T(__builtin_nan(\"\"))"
    if x in (float("inf"), float("-inf")):
        return "T(__builtin_inf())" if x > 0 else "T(-__builtin_inf())"
    return f"T({int(x)})" if x.is_integer() and abs(x) < 2**31 else f"T({x.hex()})"


def level(node: Node, memo: dict) -> str:
    """'p', 'i', 'j' or 'ij': which indices the value of ``node`` depends on."""
    if node in memo:
        return memo[node]
    if node.op == "Var":
        out = {I: "i", J: "j", P: "p"}[node.attr[1]]
    else:
        deps = {c for a in node.args for c in level(a, memo) if c != "p"}
        out = "".join(sorted(deps)) or "p"
    memo[node] = out
    return out


@dataclass
class Emitter:
    """Scalarised C++ for the nodes of some formulas.

    ``var_name(node, comp, row)`` names the scalar holding component ``comp`` of a
    variable (for row ``row`` when it is an i-variable); ``name(node, row)`` gives the
    component expressions of any node once it has been emitted.
    """

    roots: tuple
    var_name: callable

    def __post_init__(self):
        self.order = topo_order(*self.roots)
        self.ids = {n: k for k, n in enumerate(self.order)}
        self.levels: dict = {}
        for n in self.order:
            level(n, self.levels)

    def comps(self, node: Node, row) -> list[str]:
        if node.op == "Var":
            return [self.var_name(node, c, row) for c in range(node.dim)]
        if node.op in ("IntCst", "Cst"):
            return [literal(node.attr[0])]
        if node.op == "Zero":
            return ["T(0)"] * node.dim
        row_part = f"_r{row}" if "i" in self.levels[node] else ""
        return [f"v{self.ids[node]}{row_part}_{c}" for c in range(node.dim)]

    def statements(self, lvl: str, row=None) -> list[str]:
        """Declarations of every node of level ``lvl`` (for ``row`` if it depends on i)."""
        lines = []
        for n in self.order:
            if n.op in _LEAVES or self.levels[n] != lvl:
                continue
            args = [self.comps(a, row) for a in n.args]
            if n.op in VECTOR:
                exprs = VECTOR[n.op](n, *args)
            else:
                fmt = CPP[n.op]
                exprs = [fmt.format(*(a[c if len(a) > 1 else 0] for a in args)) for c in range(n.dim)]
            for name, expr in zip(self.comps(n, row), exprs):
                lines.append(f"const T {name} = {expr};")
        return lines
