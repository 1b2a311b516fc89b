"""Formula strings: the KeOps formula language, parsed into the formula IR.

A KeOps formula is a Python expression (SPEC section 2.4), e.g.
``"Exp(-SqDist(x, y) * g) * b"`` with the aliases ``["x = Vi(3)", "y = Vj(3)", "g = Pm(1)",
"b = Vj(1)"]``. It is parsed with :mod:`ast` (never ``eval``) and walked:

- leaves: alias names, ``Var(pos, dim, cat)``, ``IntCst(n)``, ``Cst(x)``, ``Zero(d)``,
  integer literals (``IntCst``), float literals (``Cst``; KeOps rejects them);
- infix ``+ - * /``, ``|`` (scalar product), unary ``-``, ``**`` (an int exponent gives
  ``Pow``/``Square`` (2.0 too), 0.5 ``Sqrt``, -0.5 ``Rsqrt``, another number or a
  formula ``Powf``),
  comparisons ``< > <= >= == !=`` (``LessThan``, ``LessOrEqual`` with swapped operands,
  ``Equal``, ``NotEqual``; KeOps turns ``==`` into a Python bool);
- calls: every op of :data:`jax_lazy.ir.OPS` by name, its formula operands first, then
  its integer attributes (ints or lists of ints) -- the table drives the parser, so a new
  op needs no change here -- the compositions of :mod:`jax_lazy.ir.derived` by their
  KeOps name (``SqDist`` is ``derived.sqdist``), and those of :data:`DERIVED`
  (``Grad``, ``IntInv``...).

The result is the node the LazyArray operators build for the same expression (interned:
the same object), so a formula string and a LazyArray expression share one kernel.
Errors raise :class:`~jax_lazy.errors.FormulaError` showing the formula with a caret
under the offending part.
"""

from __future__ import annotations

import ast
import functools
import inspect
import warnings

from ..errors import FormulaError
from . import calculus, derived, ops
from .node import I, J, P, Node, variables
from .ops import OPS

_CATS = {"Vi": I, "Vj": J, "Pm": P, "Vx": I, "Vy": J}  # Vx / Vy: old spellings of Vi / Vj


def _opposite(v: Node) -> int:
    if v.attr[1] == P:
        raise FormulaError("Grad(f, v) without e needs an i- or j-variable v, not a parameter")
    return J if v.attr[1] == I else I


def _weighted(dim_of):
    """``weightedsqnorm`` restricted to one weight shape (SqNormIso, SqNormDiag, SymSqNorm)."""

    def f(s, x):
        want = dim_of(x.dim)
        if s.dim != want:
            raise FormulaError(f"weight of dim {s.dim}, expected {want} for vectors of dim {x.dim}")
        return derived.weightedsqnorm(s, x)

    return f


# Names that are compositions, not ops of the table: name -> (builder, number(s) of
# formula operands, number of integer attributes). Besides these, a KeOps name whose
# lowercase is a function of jax_lazy.ir.derived (SqDist -> sqdist, ClampInt ->
# clampint...) is that function, its operands and attributes read from its annotations
# (:func:`_from_derived`): a composition added there needs no parser change. Grad
# without e is special-cased in the walker (it needs a new variable).
DERIVED = {
    "SqNormIso": (_weighted(lambda d: 1), 2, 0),
    "SqNormDiag": (_weighted(lambda d: d), 2, 0),
    "SymSqNorm": (_weighted(lambda d: d * d), 2, 0),
    "IntInv": (lambda n: ops.Divide(ops.IntCst(1), ops.IntCst(n)), 0, 1),
    "RatCst": (lambda p, q: ops.Divide(ops.IntCst(p), ops.IntCst(q)), 0, 2),
    "Grad": (calculus.grad, 3, 0),
    "Diff": (calculus.diff, 3, 0),
    "Laplacian": (calculus.laplacian, 2, 0),
    "Divergence": (calculus.divergence, 2, 0),
    "TraceOperator": (calculus.trace_operator, (2, 3), 0),
    "GradMatrix": (calculus.grad_matrix, 2, 0),
    "AdjointOperator": (calculus.adjoint_operator, 3, 0),
    "SumLinOperator": (calculus.sum_lin_operator, (2, 3, 4), 0),
    # Interning already shares every repeated sub-formula (one node, computed once).
    "Factorize": (lambda f, g: f, 2, 0),
    "AutoFactorize": (lambda f: f, 1, 0),
}


def _from_derived(name: str):
    """``(builder, operands, attributes)`` of ``jax_lazy.ir.derived.<name.lower()>`` when
    each of its parameters is annotated ``Node`` (a formula) or ``int`` / ``tuple`` (an
    attribute: an integer, or a list of integers), the formulas first; else None."""
    fn = getattr(derived, name.lower(), None)
    if not callable(fn) or name.startswith("_"):
        return None
    kinds = [{"Node": "f", "int": "i", "tuple": "i"}.get(getattr(p.annotation, "__name__", p.annotation))
             for p in inspect.signature(fn).parameters.values()]
    n = kinds.count("f")
    if None in kinds or kinds != ["f"] * n + ["i"] * (len(kinds) - n):
        return None
    return fn, n, len(kinds) - n

# Leaves: name -> (builder, number of numeric arguments).
LEAVES = {"Var": (ops.Var, 3), "IntCst": (ops.IntCst, 1), "Cst": (ops.Cst, 1), "Zero": (ops.Zero, 1)}


class _Located(Exception):
    """An error at an AST node (converted to a FormulaError with a caret at the top)."""

    def __init__(self, message: str, where):
        super().__init__(message)
        self.message, self.where = message, where


def _line(text: str, lineno: int) -> str:
    lines = text.splitlines() or [""]
    return lines[min(lineno, len(lines)) - 1]


def caret(text: str, lineno: int, start: int, stop: int) -> str:
    """``text``'s line ``lineno`` (1-based) with ``^`` under its characters
    ``start..stop`` (0-based, ``stop`` excluded; clipped to the line and one past it)."""
    line = _line(text, lineno)
    start = min(start, len(line))
    stop = min(max(stop, start + 1), len(line) + 1)
    return f"    {line}\n    {' ' * start}{'^' * (stop - start)}"


def _span(text: str, where) -> tuple:
    """``(lineno, start, stop)`` in characters of an AST node or a SyntaxError."""
    if isinstance(where, SyntaxError):  # 1-based character offsets; None or 0: the end of the text
        start = (where.offset or 1 << 30) - 1
        one_line = where.end_lineno == where.lineno and where.end_offset
        return where.lineno or 1, start, where.end_offset - 1 if one_line else start + 1
    raw = _line(text, where.lineno).encode()  # AST columns are UTF-8 byte offsets

    def chars(b):
        return len(raw[:b].decode(errors="ignore"))

    stop = chars(where.end_col_offset) if where.end_lineno == where.lineno else len(raw)
    return where.lineno, chars(where.col_offset), stop


def _error(message: str, text: str, where) -> FormulaError:
    """A FormulaError showing ``text`` with a caret under ``where`` (an AST node or a
    SyntaxError)."""
    return FormulaError(f"{message}\n{caret(text, *_span(text, where))}")


def _parse_tree(text: str, mode: str):
    try:
        return ast.parse(text, mode=mode)
    except SyntaxError as e:
        raise _error(f"syntax error: {e.msg}", text, e) from None


# ---------------------------------------------------------------- aliases


def _literal(node):
    """The Python number a literal (possibly negated) stands for, else None."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign, node = (-sign if isinstance(node.op, ast.USub) else sign), node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return sign * node.value
    return None


def _int(node, what: str) -> int:
    """An integer literal (possibly negative)."""
    value = _literal(node)
    if type(value) is not int:
        raise _Located(f"{what} must be an integer literal", node)
    return value


def _alias(text: str, position: int):
    """``(name, Var)`` of one alias: ``"x = Vi(3)"``, ``"x = Vi(0, 3)"``, ``"p = Pm(2)"``,
    ``"x = Var(0, 3, 0)"`` or a bare ``"Var(0, 3, 0)"`` (name None)."""
    tree = _parse_tree(text.strip(), "exec")
    stmt = tree.body[0] if len(tree.body) == 1 else None
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        name, call = stmt.targets[0].id, stmt.value
    elif isinstance(stmt, ast.Expr):
        name, call = None, stmt.value
    else:
        raise FormulaError(f"an alias is 'name = Vi(dim)', 'name = Vj(pos, dim)', 'name = Pm(dim)' or "
                           f"'Var(pos, dim, cat)'\n    {text}")
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords):
        raise _error("an alias is Vi(...), Vj(...), Pm(...) or Var(pos, dim, cat)", text.strip(), call)
    kind, args = call.func.id, call.args
    try:
        nums = [_int(a, f"{kind}'s arguments") for a in args]
        if kind == "Var" and len(nums) == 3:
            pos, dim, cat = nums
        elif kind in _CATS and len(nums) in (1, 2):
            pos, dim = nums if len(nums) == 2 else (position, nums[0])
            cat = _CATS[kind]
            if kind in ("Vx", "Vy"):
                warnings.warn(f"alias {text!r}: {kind} is an old spelling of {'Vi' if kind == 'Vx' else 'Vj'}",
                              DeprecationWarning, stacklevel=5)
        else:
            raise _Located(f"{kind}: expected Vi(dim), Vi(pos, dim) (Vj, Pm alike) or Var(pos, dim, cat)", call)
        if name is None and kind != "Var":
            raise _Located("an alias without a name must be Var(pos, dim, cat)", call)
        return name, ops.Var(pos, dim, cat)
    except _Located as e:
        raise _error(e.message, text.strip(), e.where) from None
    except FormulaError as e:
        raise _error(e.message, text.strip(), call) from None


@functools.lru_cache(maxsize=512)
def alias_table(aliases: tuple) -> tuple:
    """The ``(name, Var)`` pairs of ``aliases`` (strings; a bare ``Var`` has name None);
    the position of an alias without an explicit one is its index in the list.

    Raises:
      FormulaError: a malformed alias, a name given twice, one position given two
        different variables.
    """
    for a in aliases:
        if not isinstance(a, str):
            raise FormulaError(f"an alias is a string such as 'x = Vi(3)', got {a!r}")
    pairs = [_alias(a, k) for k, a in enumerate(aliases)]
    names = [n for n, _ in pairs if n is not None]
    for n in names:
        if names.count(n) > 1:
            raise FormulaError(f"alias {n!r} is defined twice: {list(aliases)}")
    check_positions([v for _, v in pairs], f"aliases {list(aliases)}")
    return tuple(pairs)


def check_positions(variables, where: str) -> None:
    """Raise FormulaError when one position holds two different variables."""
    seen = {}
    for v in variables:
        w = seen.setdefault(v.attr[0], v)
        if w is not v:
            raise FormulaError(f"position {v.attr[0]} is both {w!r} and {v!r} in {where}")


# ---------------------------------------------------------------- formulas


class _Walker:
    """Walk a formula's AST, building nodes; errors are raised as :class:`_Located`."""

    def __init__(self, names: dict, next_index: int):
        self.names = names
        self.next_index = next_index  # the index of the next variable Grad(f, v) creates

    def formula(self, node) -> Node:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise _Located(f"{type(node).__name__} is not part of the formula language", node)
        try:
            out = method(node)
        except FormulaError as e:  # raised while building this node: point at it
            raise _Located(e.message, node) from None
        if isinstance(out, Node):
            return out
        raise _Located("expected a formula", node)

    def visit_Constant(self, node):
        """A literal, possibly negated (-2 is IntCst(-2), not Minus(IntCst(2)), as the
        LazyArray operators receive it): an int is IntCst, a float Cst."""
        value = _literal(node)
        if value is None:
            raise _Located(f"a {type(node.value).__name__} constant is not a formula", node)
        return ops.IntCst(value) if type(value) is int else ops.Cst(value)

    def visit_Name(self, node):
        if node.id in self.names:
            return self.names[node.id]
        known = ", ".join(sorted(self.names)) or "none"
        raise _Located(f"unknown variable {node.id!r} (aliases: {known})", node)

    def visit_UnaryOp(self, node):
        if _literal(node) is not None:
            return self.visit_Constant(node)
        x = self.formula(node.operand)
        if isinstance(node.op, ast.USub):
            return ops.Minus(x)
        if isinstance(node.op, ast.UAdd):
            return x
        raise _Located(f"unary {type(node.op).__name__} is not part of the formula language", node)

    _BINOPS = {ast.Add: ops.Add, ast.Sub: ops.Subtract, ast.Mult: ops.Mult, ast.Div: ops.Divide,
               ast.BitOr: derived.scalprod}

    def visit_BinOp(self, node):
        if isinstance(node.op, ast.Pow):
            return self._power(node)
        build = self._BINOPS.get(type(node.op))
        if build is None:
            raise _Located(f"operator {type(node.op).__name__} is not part of the formula language", node)
        return build(self.formula(node.left), self.formula(node.right))

    def _power(self, node):
        """On the number written: an integral one (2, 2.0, -3) -> Pow (Square; exact for
        any sign of x), 0.5 -> Sqrt, -0.5 -> Rsqrt, anything else or a formula -> Powf."""
        x, p = self.formula(node.left), _literal(node.right)
        if p is not None and float(p).is_integer() and abs(p) < 2**31:
            return ops.Pow(x, int(p))
        if p in (0.5, -0.5):
            return ops.Sqrt(x) if p == 0.5 else ops.Rsqrt(x)
        return ops.Powf(x, self.formula(node.right))

    _COMPARE = {ast.Lt: (ops.LessThan, False), ast.Gt: (ops.LessThan, True), ast.LtE: (ops.LessOrEqual, False),
                ast.GtE: (ops.LessOrEqual, True), ast.Eq: (ops.Equal, False), ast.NotEq: (ops.NotEqual, False)}

    def visit_Compare(self, node):
        if len(node.ops) != 1:
            raise _Located("chained comparisons are not part of the formula language", node)
        build, swap = self._COMPARE.get(type(node.ops[0]), (None, False))
        if build is None:
            raise _Located(f"comparison {type(node.ops[0]).__name__} is not part of the formula language", node)
        a, b = self.formula(node.left), self.formula(node.comparators[0])
        return build(b, a) if swap else build(a, b)

    def visit_Call(self, node):
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise _Located("a call is Name(arguments...), without keywords", node)
        name = node.func.id
        if name in LEAVES:
            build, n = LEAVES[name]
            if len(node.args) != n:
                raise _Located(f"{name} takes {n} number{'s' if n > 1 else ''}", node)
            return build(*(self._number(a) if name == "Cst" else _int(a, f"{name}'s arguments") for a in node.args))
        if name == "Grad" and len(node.args) == 2:
            return self._grad_new_variable(node)
        build, arity, n_int = DERIVED.get(name) or (name not in OPS and _from_derived(name)) or (None, 0, 0)
        if build is not None:
            arities = arity if isinstance(arity, tuple) else (arity,)
            if len(node.args) - n_int not in arities:
                raise _Located(f"{name} takes {' or '.join(map(str, arities))} formulas"
                               + (f" and {n_int} integers" if n_int else ""), node)
            k = len(node.args) - n_int
            return build(*self._operands(node.args[:k]), *(self._attribute(a, name) for a in node.args[k:]))
        spec = OPS.get(name)
        if spec is None or not spec.arity:
            raise _Located(f"unknown op {name!r}", node.func)
        operands = self._operands(node.args[: spec.arity])
        attrs = [self._attribute(a, name) for a in node.args[spec.arity:]]
        builder = getattr(ops, name, None)
        try:
            if callable(builder):  # checks the number of attributes
                return builder(*operands, *attrs)
            return ops.build(name, *operands, attr=tuple(attrs))
        except (TypeError, IndexError) as e:  # a dim rule or builder given too few attributes
            raise _Located(f"{name}: wrong operands or attributes ({e})", node) from None

    def _operands(self, args):
        return [self.formula(a) for a in args]

    def _attribute(self, node, op):
        if isinstance(node, (ast.List, ast.Tuple)):
            return tuple(_int(e, f"{op}'s list attribute") for e in node.elts)
        return _int(node, f"{op}'s attribute (after its formula operands)")

    def _number(self, node) -> float:
        x = self.formula(node)
        if x.op not in ("IntCst", "Cst"):
            raise _Located("Cst takes a number", node)
        return x.attr[0]

    def _grad_new_variable(self, node):
        """``Grad(f, v)``, as KeOps: e is a new variable of f's dim in the category
        opposite to v's, at the next free position."""
        f, v = self._operands(node.args)
        calculus.check_var(v, "Grad")
        e = ops.Var(self.next_index, f.dim, _opposite(v))
        self.next_index += 1
        return calculus.grad(f, v, e)


def _explicit_positions(tree) -> list:
    """The positions of the ``Var(pos, dim, cat)`` calls written in a formula."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Var" and n.args:
            try:
                out.append(_int(n.args[0], "Var's position"))
            except _Located:
                pass  # reported when the walker reaches it
    return out


def parse(formula: str, aliases=()) -> Node:
    """The formula node of a KeOps formula string.

    Args:
      formula: a formula (module docstring; SPEC section 2.4), e.g. ``"Exp(-SqDist(x, y))"``.
      aliases: a tuple of alias strings (``"x = Vi(3)"``, ``"y = Vj(1, 3)"``,
        ``"p = Pm(1)"``, ``"Var(0, 3, 0)"``): each name stands for ``Var(pos, dim, cat)``.

    Returns:
      The interned formula node; its variables are ``Var(pos, dim, cat)`` leaves. A
      ``Grad(f, v)`` without ``e`` adds a variable of f's dim in the category opposite to
      v, at the next position after every alias and every ``Var`` of the formula.

    Raises:
      FormulaError: a syntax error, an unknown op or variable, a wrong number of
        operands, a dim mismatch; the message shows the formula with a caret (^) under
        the offending part.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"a formula string is expected, got {type(formula).__name__}")
    return _parse(formula, tuple(aliases))


@functools.lru_cache(maxsize=1024)  # parse once, apply many times
def _parse(formula: str, aliases: tuple) -> Node:
    text = formula.strip()
    table = alias_table(tuple(aliases))
    names = {n: v for n, v in table if n is not None}
    tree = _parse_tree(text, "eval")
    positions = [v.attr[0] for _, v in table] + _explicit_positions(tree)
    walker = _Walker(names, 1 + max(positions, default=-1))
    try:
        out = walker.formula(tree.body)
    except _Located as e:
        raise _error(e.message, text, e.where) from None
    check_positions([v for _, v in table] + variables(out), f"{text!r} with aliases {list(aliases)}")
    return out
