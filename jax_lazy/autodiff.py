"""Symbolic reverse-mode differentiation of formulas.

``vjp(seeds, wrt)`` returns, for each variable ``v`` in ``wrt``, the formula

    Grad(F, v, G) = sum over seeds (F_k, G_k) of (dF_k/dv)^T G_k,

built by sweeping the formula DAG from the roots to the leaves and applying each op's VJP
row of the op table. The results are formulas in the same IR (they may contain new
variables, e.g. the cotangent G), so a gradient reduction is just another reduction that
goes through the same planning, code generation and cache -- and can be differentiated
again.
"""

from __future__ import annotations

from .ir import Node, OPS, Zero, topo_order
from .ir.ops import Add, Sum


def _fit(ct: Node, dim: int) -> Node:
    """A cotangent for an operand of ``dim``: sum it when the operand was broadcast."""
    if ct.dim == dim:
        return ct
    assert dim == 1, (ct, dim)
    return Sum(ct)


def vjp(seeds, wrt) -> list[Node]:
    """Cotangent formulas of ``wrt`` variables given ``(root, cotangent)`` seeds.

    Args:
      seeds: pairs ``(F, G)`` with ``G.dim == F.dim``.
      wrt: ``Var`` nodes.

    Returns:
      One formula per variable in ``wrt``, of that variable's dim (``Zero`` when the
      seeds do not depend on it).
    """
    cts: dict[Node, Node] = {}
    for root, g in seeds:
        if g.dim != root.dim:
            raise ValueError(f"cotangent of dim {g.dim} for a formula of dim {root.dim}")
        cts[root] = Add(cts[root], g) if root in cts else g
    wanted = set(wrt)
    # Only nodes on a path to a wanted variable need a cotangent.
    order = topo_order(*(r for r, _ in seeds))
    live: set[Node] = set()
    for n in order:
        if n in wanted or any(a in live for a in n.args):
            live.add(n)
    for n in reversed(order):
        g = cts.pop(n, None) if n not in wanted else cts.get(n)
        if g is None or not n.args or n not in live or g.op == "Zero":
            continue
        rule = OPS[n.op].vjp
        if rule is None:  # piecewise-constant op: zero derivative
            continue
        for a, ct in zip(n.args, rule(n, g)):
            if ct is None or a not in live:
                continue
            ct = _fit(ct, a.dim)
            cts[a] = Add(cts[a], ct) if a in cts else ct
    return [cts.get(v, Zero(v.dim)) for v in wrt]
