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

*Loops at large D* (``Emitter(loop_min_dim=...)``, the cpu backend): D scalars per node
mean D statements, and the C++ compiler's time grows faster than linearly with them
(``(x_i - y_j).min()`` at D = 2000: about a minute; D = 20000: more than ten). So the
element-wise ops of dim >= ``loop_min_dim`` (and ``Pow``) are *looped*: not emitted as
statements, but computed component by component inside a ``for`` loop of the node that
consumes them: a ``Sum`` (one statement, a GNU statement-expression holding the loop) or
a root (the kernel template's sink calls :meth:`Emitter.loop`). Variables of that dim
are read in the loop through ``var_elem(var, index, row)`` (a pointer access), not
loaded as D scalars. A looped node is recomputed by each loop that reads it (at most
once per loop); a node a structural op (``Extract``, ``Concat``, ...) reads stays
scalarised, and so do its operands. The loops that read no lane-level scalar
(:attr:`Emitter.outer`) are not statements at all: the kernel template runs them with
the lanes innermost (``cpu._outer_loop``); the others are statements inside the lane
loop, only from ``inner_loop_min_dim`` on (below, their nodes are scalarised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..ir import OPS, Node, topo_order
from ..ir.node import I, J, P
from ..ir.ops import tensordot_index

# Element-wise ops: a template over the components {0}, {1}, {2} of the (broadcast) operands.
# fmt: off
CPP = {
    "Minus": "(-{0})",                 "Inv": "(T(1) / {0})",
    "Square": "({0} * {0})",           "Sqrt": "jl_sqrt({0})",
    "Rsqrt": "jl_rsqrt({0})",          "Exp": "jl_exp({0})",
    "Log": "jl_log({0})",              "Sin": "jl_sin({0})",
    "Cos": "jl_cos({0})",              "Abs": "jl_abs({0})",
    "Sign": "jl_sign({0})",
    "Step": "({0} >= T(0) ? T(1) : T(0))",
    "ReLU": "jl_relu({0})",
    "Add": "({0} + {1})",              "Subtract": "({0} - {1})",
    "Mult": "({0} * {1})",             "Divide": "({0} / {1})",
    "Powf": "jl_powf({0}, {1})",
    "LessThan": "({0} < {1} ? T(1) : T(0))",
    "LessOrEqual": "({0} <= {1} ? T(1) : T(0))",
    "Equal": "({0} == {1} ? T(1) : T(0))",
    "NotEqual": "({0} != {1} ? T(1) : T(0))",
    "Clamp": "jl_clamp({0}, {1}, {2})",
    "IfElse": "({0} >= T(0) ? {1} : {2})",
}
# Element-wise math (issue 12); the functions are in prelude_cpu.h / prelude_cuda.h.
# SinXDivX spells jl_sin in the kernel text, where the cpu backend's two-pass sin applies.
CPP.update({
    "XLogX": "jl_xlogx({0})",          "Asin": "jl_asin({0})",
    "Acos": "jl_acos({0})",            "Atan": "jl_atan({0})",
    "Atan2": "jl_atan2({0}, {1})",     "SinXDivX": "jl_sinxdivx({0}, jl_sin({0}))",
    "Floor": "jl_floor({0})",          "Mod": "jl_mod({0}, {1}, {2})",
    "Tanh": "jl_tanh({0})",            "Sigmoid": "jl_sigmoid({0})",
    "Erf": "jl_erf({0})",
})
# fmt: on


def _tree_fold(terms: list[str], join: str) -> str:
    """Pairwise fold with the template ``join`` ("{0}" left, "{1}" right; terms keep their
    order): shorter dependency chains than a left fold, and each term appears once."""
    while len(terms) > 1:
        terms = [join.format(terms[k], terms[k + 1]) if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def _tree_sum(terms: list[str]) -> str:
    """Pairwise sum."""
    return _tree_fold(terms, "({0} + {1})")


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


def _round(x: str, d: int) -> str:
    """``x`` rounded to ``d`` decimals, half to even, as jnp.round: round(x 10^d) / 10^d
    (x itself where 10^d overflows T, jl_round_dec)."""
    return f"jl_round({x})" if d == 0 else f"jl_round_dec({x}, {literal(10.0**d if d < 309 else float('inf'))})"


def _matvec(n, a, v):
    k = len(v)
    return [_tree_sum([f"({a[r * k + c]} * {v[c]})" for c in range(k)]) for r in range(len(a) // k)]


def _vecmat(n, v, a):
    m = len(a) // len(v)
    return [_tree_sum([f"({v[r]} * {a[r * m + c]})" for r in range(len(v))]) for c in range(m)]


def _argmin(n, a):
    # (value, index) pairs joined pairwise (jl_argmin_join, in the preludes): the left pair
    # holds the earlier components, so ties keep the first index.
    return [_tree_fold([f"jl_argmin_t{{{c}, T({k})}}" for k, c in enumerate(a)], "jl_argmin_join({0}, {1})") + ".k"]


def _tensordot(n, a, b):
    ia, ib = tensordot_index(n.attr)
    return [_tree_sum([f"({a[p]} * {b[q]})" for p, q in zip(row_a, row_b)]) for row_a, row_b in zip(ia, ib)]


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
    # Vector ops (issue 12)
    "Min": lambda n, a: [_tree_fold(a, "jl_vmin({0}, {1})")],
    "ArgMin": _argmin,
    "TensorDot": _tensordot,
    "Round": lambda n, a: [_round(c, n.attr[0]) for c in a],  # issue 12
}

_LEAVES = {"Var", "IntCst", "Cst", "Zero"}
# The cpu backend loops over the components of nodes of LOOP_MIN_DIM and more when the
# loop can run outside the lane loop (Emitter.outer: one vectorised sweep of the lanes per
# component), which is as fast as unrolled statements from D = 32 on and faster past 64
# (no register spills; docs/design.md). A loop that reads lane-level scalars has to run
# inside the lane loop, where GCC vectorises it over the components instead (~10x slower
# per pair than unrolled statements): that only from INNER_LOOP_MIN_DIM, where unrolled
# statements would take long to compile (5-7 s at D = 200; 55 s to minutes at D = 2000).
LOOP_MIN_DIM = 32
INNER_LOOP_MIN_DIM = 256
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
    variable (for row ``row`` when it is an i-variable); ``comps(node, row)`` gives the
    component expressions of any node once it has been emitted. The values of the
    ``external`` nodes are computed by the kernel template (e.g. the inner-product stage
    of :mod:`cpu`): they are named like the others but never emitted, nor are the nodes
    only they use.
    """

    roots: tuple
    var_name: callable
    chains: int = 8  # interleaved running sums of a long Sum (see _chained_sum)
    external: frozenset = frozenset()
    loop_min_dim: int | None = None  # None: every node scalarised (see the module docstring)
    inner_loop_min_dim: int | None = None  # loops not in ``outer`` only from this dim (see LOOP_MIN_DIM)
    var_elem: callable = None  # (var, index expression, row) -> its component, for loops

    def __post_init__(self):
        full = topo_order(*self.roots)
        self.levels: dict = {}
        for n in full:
            level(n, self.levels)
        kept, stack = set(), list(self.roots)
        while stack:
            n = stack.pop()
            if n not in kept:
                kept.add(n)
                stack.extend(() if n in self.external else n.args)
        self.order = [n for n in full if n in kept]
        self.ids = {n: k for k, n in enumerate(self.order)}
        self.looped, self.loop_sums, self.loop_vars = _loop_sets(self)
        self.outer = self._outer()
        if self.inner_loop_min_dim is not None:  # scalarise the (slow) loops inside lane loops below that dim
            inside, stack = set(), list(self.outer)
            while stack:
                for a in stack.pop().args:
                    if a in self.looped and a not in inside:
                        inside.add(a)
                        stack.append(a)
            slow = {n.args[0] if n in self.loop_sums else n for n in self.looped | self.loop_sums
                    if n not in self.outer and n not in inside}
            drop = {n for n in slow if n.dim < self.inner_loop_min_dim}
            if drop:
                self.looped, self.loop_sums, self.loop_vars = _loop_sets(self, drop)
                self.outer = self._outer()

    def _outer(self) -> frozenset:
        """The (row, lane) loops (Sums and vector roots) that read no (row, lane) or lane
        scalar: the kernel template runs them with the lanes innermost; not statements."""
        return frozenset(n for n in self.loop_sums | (self.looped & set(self.roots))
                         if self.levels[n] == "ij" and all(self.levels[a] in ("p", "i") for a in self.frontier(n)))

    def loop(self, node: Node, row, idx: str = "c") -> tuple[list[str], str]:
        """Component ``idx`` (a C++ index expression) of a looped ``node``: the declarations
        of the looped nodes it reads (each once, dependencies first), and its expression."""
        need, stack = set(), [node]
        while stack:
            for a in stack.pop().args:
                if a in self.looped and a not in need:
                    need.add(a)
                    stack.append(a)
        names, stmts = {}, []
        for n in self.order:
            if n in need:
                names[n] = f"t{self.ids[n]}"
                stmts.append(f"const T {names[n]} = {self._elem(n, row, idx, names)};")
        return stmts, self._elem(node, row, idx, names)

    def element(self, node: Node, row, idx: str = "c") -> tuple[list[str], str]:
        """Like :meth:`loop`, for a looped node or a loop ``Sum`` (then: the term of its
        operand that it adds)."""
        if node in self.loop_sums:
            arg = node.args[0]
            return self.loop(arg, row, idx) if arg in self.looped else ([], self.var_elem(arg, idx, row))
        return self.loop(node, row, idx)

    def _elem(self, n: Node, row, idx: str, names: dict) -> str:
        def arg(a):
            if a in names:
                return names[a]
            if a.dim == 1:
                return self.comps(a, row)[0]
            return "T(0)" if a.op == "Zero" else self.var_elem(a, idx, row)

        args = [arg(a) for a in n.args]
        return _pow(args[0], n.attr[0]) if n.op == "Pow" else CPP[n.op].format(*args)

    def frontier(self, node: Node) -> list:
        """The scalar nodes the loop of ``node`` (looped, or a loop Sum) reads by name."""
        out, seen, stack = [], set(), [node]
        while stack:
            n = stack.pop()
            for a in n.args:
                if a in seen:
                    continue
                seen.add(a)
                if a in self.looped:
                    stack.append(a)
                elif a.dim == 1 and a.op not in _LEAVES - {"Var"}:
                    out.append(a)
        return out

    def reads(self, node: Node) -> list:
        """The nodes whose scalars the code of ``node`` reads."""
        if node in self.looped or node in self.loop_sums:
            return self.frontier(node)
        return list(node.args)

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
        """Declarations of every node of level ``lvl`` (for ``row`` if it depends on i),
        ordered so that few values are live at once (see :func:`_schedule`)."""
        stmts = []
        for n in self.order:
            if n.op in _LEAVES or self.levels[n] != lvl or any(n in s for s in (self.external, self.looped, self.outer)):
                continue
            if n in self.loop_sums:
                body, expr = self.element(n, row)
                (name,) = self.comps(n, row)
                loop = " ".join(body + [f"acc += {expr};"])
                stmts.append((name, f"({{ T acc = T(0); for (int c = 0; c < {n.args[0].dim}; ++c) {{ {loop} }} acc; }})"))
                continue
            args = [self.comps(a, row) for a in n.args]
            (name,) = self.comps(n, row) if n.op == "Sum" else (None,)
            if n.op == "Sum" and len(args[0]) > self.chains:
                stmts += _chained_sum(name, args[0], self.chains)
                continue
            if n.op in VECTOR:
                exprs = VECTOR[n.op](n, *args)
            else:
                fmt = CPP[n.op]
                exprs = [fmt.format(*(a[c if len(a) > 1 else 0] for a in args)) for c in range(n.dim)]
            stmts += list(zip(self.comps(n, row), exprs))
        return [f"const T {name} = {expr};" for name, expr in _schedule(stmts)]


def _loop_sets(em, exclude=frozenset()) -> tuple[frozenset, frozenset, frozenset]:
    """(looped nodes, Sums that loop over their operand, variables read only in loops).

    A node is looped when it is element-wise (or ``Pow``) of dim >= ``em.loop_min_dim``,
    not in ``exclude``, its vector operands are looped, variables or zeros, and every
    node that reads it is looped or a Sum (or it is a root): fixpoint of removing the
    nodes that break this. (A Sum over an excluded variable is no loop.)"""
    if em.loop_min_dim is None:
        return frozenset(), frozenset(), frozenset()
    users: dict = {n: [] for n in em.order}
    for n in em.order:
        if n not in em.external:
            for a in n.args:
                users[a].append(n)
    looped = {n for n in em.order if n.dim >= em.loop_min_dim and n not in em.external and n not in exclude
              and (n.op in CPP or n.op == "Pow")}
    changed = True
    while changed:
        changed = False
        for n in list(looped):
            bad_arg = any(a.dim > 1 and a not in looped and a.op not in ("Var", "Zero") for a in n.args)
            bad_user = any(u not in looped and u.op != "Sum" for u in users[n])
            if bad_arg or bad_user:
                looped.discard(n)
                changed = True
    sums = {n for n in em.order if n.op == "Sum" and n not in em.external
            and (n.args[0] in looped or (n.args[0].op == "Var" and n.args[0].dim >= em.loop_min_dim
                                         and n.args[0] not in exclude))}
    in_loops = looped | sums
    loop_vars = {n for n in em.order if n.op == "Var" and n.dim > 1 and n not in em.roots
                 and users[n] and all(u in in_loops for u in users[n])}
    return frozenset(looped), frozenset(sums), frozenset(loop_vars)


def elem_vars(em) -> set:
    """The variables that loops read through ``var_elem``."""
    return {a for n in em.looped | em.loop_sums for a in n.args if a.op == "Var" and a.dim > 1}


_NAME = re.compile(r"\bv\d+(?:_r\d+)?_(?:s\d+_)?\d+\b")


def _chained_sum(name: str, terms: list[str], chains: int) -> list[tuple[str, str]]:
    """``name = sum(terms)`` as ``chains`` running sums: with :func:`_schedule`, each term
    is computed just before it is added, so a Sum over D = 64 components keeps about
    ``chains`` values live instead of 64 (which would spill registers)."""
    stmts, ends = [], []
    base, comp = name.rsplit("_", 1)
    for m in range(chains):
        prev = None
        for k, term in enumerate(terms[m::chains]):
            link = f"{base}_s{m}_{k}"
            stmts.append((link, term if prev is None else f"({prev} + {term})"))
            prev = link
        ends.append(prev)
    return stmts + [(name, _tree_sum(ends))]


def _schedule(stmts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Reorder ``(name, expr)`` statements depth-first from the values nothing else uses:
    each value is computed right before its first use (a valid order: dependencies first)."""
    exprs = dict(stmts)
    deps = {n: [d for d in _NAME.findall(e) if d in exprs] for n, e in stmts}
    used = {d for ds in deps.values() for d in ds}
    out, done = [], set()
    for root in [n for n, _ in stmts if n not in used] + [n for n, _ in stmts]:
        stack = [(root, False)]
        while stack:
            n, expanded = stack.pop()
            if n in done:
                continue
            if expanded:
                done.add(n)
                out.append((n, exprs[n]))
                continue
            stack.append((n, True))
            stack.extend((d, False) for d in reversed(deps[n]) if d not in done)
    return out
