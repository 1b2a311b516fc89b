"""KeOps-style printing of formulas, e.g. ``Exp(Minus(Sum(Square(Var(0,3,0) - Var(1,3,1)))))``.

The printed string is also the canonical text of a formula (it is what a kernel key hashes
for the persistent cache), so it must be deterministic and injective: every attribute of
every node appears in it.
"""

from __future__ import annotations

from .node import Node, topo_order


def _leaf(n: Node) -> str:
    if n.op == "Var":
        return f"Var({n.attr[0]},{n.dim},{n.attr[1]})"
    if n.op == "IntCst":
        return f"IntCst({n.attr[0]})"
    if n.op == "Cst":
        return f"Cst({n.attr[0]!r})"
    return f"Zero({n.dim})"


def to_string(root: Node) -> str:
    """The canonical text of ``root``: infix for + - * /, ``Name(args, attrs)`` otherwise;
    a nested infix operand is parenthesised."""
    from .ops import OPS

    text: dict[int, str] = {}
    for n in topo_order(root):
        if not n.args:
            text[id(n)] = _leaf(n)
            continue
        spec = OPS[n.op]
        parts = [text[id(a)] for a in n.args]
        if spec.infix:
            parts = [f"({p})" if a.args and OPS[a.op].infix else p for a, p in zip(n.args, parts)]
            text[id(n)] = f" {spec.infix} ".join(parts)
        else:
            text[id(n)] = f"{n.op}({','.join(parts + [str(v) for v in n.attr])})"
    return text[id(root)]
