"""KeOps-style printing of formulas, e.g. ``Exp(Minus(Sum(Square(Var(0,3,0) - Var(1,3,1)))))``.

Formulas are DAGs: a sub-formula used twice is one node. Printed as a tree, a formula
whose every step uses the previous one twice (an iterated map ``f <- f + sin(f * y)``, a
Runge-Kutta step) would double in length at each step. So a non-leaf node used more than
once is printed once, as a binding, and referred to by its name::

    a = Var(0,1,0) + (Cst(0.02) * Sin(Var(0,1,0) * Var(1,1,1))); a + (Cst(0.02) * Sin(a * Var(1,1,1)))

The text is linear in the number of distinct nodes; a formula without shared sub-formulas
prints as a plain tree. Names are ``a`` ... ``z``, ``aa``, ``ab`` ... in binding order
(children before parents), which follows the nodes' argument order, so the text is
deterministic, and injective: every attribute of every node appears in it.
"""

from __future__ import annotations

from typing import Callable, Optional

from .node import Node, topo_order


def _leaf(n: Node) -> str:
    if n.op == "Var":
        return f"Var({n.attr[0]},{n.dim},{n.attr[1]})"
    if n.op == "IntCst":
        return f"IntCst({n.attr[0]})"
    if n.op == "Cst":
        return f"Cst({n.attr[0]!r})"
    return f"Zero({n.dim})"


def _attr_text(v) -> str:
    """An attribute as KeOps writes it: a list of ints (TensorDot's dims) as ``[2,3]``."""
    return f"[{','.join(map(str, v))}]" if isinstance(v, tuple) else str(v)


def _name(k: int) -> str:
    """``a`` ... ``z``, ``aa`` ... ``zz``, ``aaa`` ...: the k-th binding name."""
    out = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def render(roots) -> tuple[list[str], list[str]]:
    """``(bindings, texts)``: the ``"name = expr"`` bindings of the shared non-leaf nodes of
    ``roots`` (children first), and the text of each root, which may use those names.

    A node is shared when it is the argument of more than one node (or of one node twice,
    or a root and an argument). Cost: linear in the number of distinct nodes and edges.
    """
    from .ops import OPS

    order = topo_order(*roots)
    uses: dict[int, int] = {}
    for n in order:
        for a in n.args:
            uses[id(a)] = uses.get(id(a), 0) + 1
    for r in roots:
        uses[id(r)] = uses.get(id(r), 0) + 1
    ref: dict[int, str] = {}  # how a parent refers to the node: its name or its inline text
    inline: dict[int, bool] = {}  # whether ref is an inline expression (maybe needing parentheses)
    bindings: list[str] = []
    for n in order:
        if not n.args:
            ref[id(n)], inline[id(n)] = _leaf(n), False
            continue
        spec = OPS[n.op]
        parts = [ref[id(a)] for a in n.args]
        if spec.infix:
            parts = [f"({p})" if inline[id(a)] and OPS[a.op].infix else p for a, p in zip(n.args, parts)]
            text = f" {spec.infix} ".join(parts)
        else:
            text = f"{n.op}({','.join(parts + [_attr_text(v) for v in n.attr])})"
        if uses[id(n)] > 1:
            name = _name(len(bindings))
            bindings.append(f"{name} = {text}")
            ref[id(n)], inline[id(n)] = name, False
        else:
            ref[id(n)], inline[id(n)] = text, True
    return bindings, [ref[id(r)] for r in roots]


def to_string(*roots: Node, wrap: Optional[Callable[[list[str]], str]] = None) -> str:
    """The canonical text of ``roots``: infix for + - * /, ``Name(args, attrs)`` otherwise,
    a nested infix operand parenthesised; shared sub-formulas as bindings ``name = ...; ``
    in front (see the module docstring). ``wrap`` builds the final expression from the
    roots' texts (default: joined by ", "), e.g. ``Sum_Reduction(F, W)``."""
    bindings, texts = render(roots)
    body = wrap(texts) if wrap is not None else ", ".join(texts)
    return "; ".join(bindings + [body])
