"""Symbolic differentiation of formulas, reverse and forward mode.

``vjp(seeds, wrt)`` returns, for each variable ``v`` in ``wrt``, the formula

    Grad(F, v, G) = sum over seeds (F_k, G_k) of (dF_k/dv)^T G_k,

built by sweeping the formula DAG from the roots to the leaves and applying each op's VJP
row of the op table.

``jvp(roots, tangents)`` returns, for each root F, the directional derivative

    Diff(F, t) = sum over variables v of (dF/dv) t_v,

a formula linear in the tangent formulas ``t_v`` (KeOps' ``Diff``), built by sweeping the
DAG from the leaves to the roots. No op declares a forward rule: each node's ``J a'`` is
the *transpose of its VJP row*, obtained by differentiating the row's output (linear in
the cotangent g) with respect to g, seeded with the argument's tangent:
``J a' = d/dg <J^T g, a'>``. So forward and reverse mode agree by construction (kinks
included), and a new op needs one derivative rule.

Both return formulas in the same IR (with new variables: cotangents, tangents), so a
derivative reduction is just another reduction through the same planning, code
generation and cache -- and can be differentiated again.
"""

from __future__ import annotations

from .ir import Node, OPS, P, Var, Zero, topo_order
from .ir.ops import Add, Sum

_SCRATCH = 1 << 40  # index of the placeholder cotangent g of the forward sweep (never bound)


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
    return _sweep(seeds, wrt, topo_order(*(r for r, _ in seeds)))


def _sweep(seeds, wrt, order) -> list[Node]:
    """The reverse sweep of :func:`vjp` over ``order`` (a topological order of the
    seeds' roots, children first; a node whose children are left out is a leaf)."""
    cts: dict[Node, Node] = {}
    for root, g in seeds:
        if g.dim != root.dim:
            raise ValueError(f"cotangent of dim {g.dim} for a formula of dim {root.dim}")
        cts[root] = Add(cts[root], g) if root in cts else g
    wanted = set(wrt)
    # Only nodes on a path to a wanted variable need a cotangent.
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


def jvp(roots, tangents: dict) -> list[Node]:
    """Tangent formulas of ``roots`` given the tangents of their variables.

    Args:
      roots: formula nodes.
      tangents: maps ``Var`` nodes to tangent formulas of the same dim (usually new
        variables); a variable left out has a zero tangent.

    Returns:
      One formula per root, of the root's dim, linear in the tangents (``Zero`` when the
      root does not depend on any of them).
    """
    order = topo_order(*roots)
    old = set(order)
    tan: dict[Node, Node] = {v: t for v, t in tangents.items() if t.op != "Zero"}
    for n in order:
        if not n.args or OPS[n.op].vjp is None or not any(a in tan for a in n.args):
            continue
        g = Var(_SCRATCH, n.dim, P)
        total = None
        for a, ct in zip(n.args, OPS[n.op].vjp(n, g)):
            if ct is None or a not in tan:
                continue
            ct = _fit(ct, a.dim)  # J^T g for this argument: linear in g
            # J a' = d/dg <J^T g, a'>: a reverse sweep over the nodes the rule built (the
            # formula's own nodes do not contain g: leaves here, so the cost stays linear).
            (d,) = _sweep([(ct, tan[a])], [g], topo_order(ct, stop=old))
            total = d if total is None else Add(total, d)
        if total is not None and total.op != "Zero":
            tan[n] = total
    return [tan.get(r, Zero(r.dim)) for r in roots]

