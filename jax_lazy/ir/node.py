"""Hash-consed formula nodes.

A :class:`Node` is an immutable record ``(op, args, dim, attr)``:

- ``op``   -- the op's name in the op table (``"Exp"``, ``"Add"``, ``"Var"``...);
- ``args`` -- a tuple of child nodes;
- ``dim``  -- the length of the vector the node evaluates to, for each (i, j) pair;
- ``attr`` -- a tuple of plain Python values (integers, floats) that parametrise the op:
  ``(index, cat)`` for a variable, ``(value,)`` for a constant, ``(start,)`` for Extract...

Nodes are interned: building the same ``(op, args, attr)`` twice returns the same object,
so equality is identity, hashing is O(1), sub-formulas are shared (a DAG, not a tree)
and a node can key a cache directly. The table holds its nodes weakly: a formula lives
as long as something uses it (a LazyTensor, a memoised plan, a parent node), so a
process that builds formulas without end (a new ``Cst`` value each call) does not keep
them all.
"""

from __future__ import annotations

import threading
import weakref

# Variable categories, as in KeOps: 0 = indexed by i, 1 = indexed by j, 2 = parameter.
I, J, P = 0, 1, 2
CAT_NAMES = {I: "i", J: "j", P: "param"}

_table: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_lock = threading.Lock()


class Node:
    """One interned formula node; build through :func:`make`, never directly."""

    __slots__ = ("op", "args", "dim", "attr", "__weakref__")

    op: str
    args: tuple
    dim: int
    attr: tuple

    def __setattr__(self, name, value):
        raise AttributeError("formula nodes are immutable")

    def __reduce__(self):  # pickling rebuilds through the intern table
        return (make, (self.op, self.args, self.dim, self.attr))

    def __repr__(self) -> str:
        from .printing import to_string

        return to_string(self)

    # Identity equality and hashing are inherited from `object`: interning makes them right.


def make(op: str, args: tuple, dim: int, attr: tuple = ()) -> Node:
    """The unique node ``(op, args, dim, attr)``. (``dim`` is derived from the others
    except for the leaves ``Var`` and ``Zero``, whose dim is part of their identity.)"""
    key = (op, args, attr, dim)
    node = _table.get(key)
    if node is not None:
        return node
    with _lock:
        node = _table.get(key)
        if node is None:
            node = object.__new__(Node)
            for name, value in (("op", op), ("args", args), ("dim", int(dim)), ("attr", attr)):
                object.__setattr__(node, name, value)
            _table[key] = node
    return node


def topo_order(*roots: Node, stop=frozenset()) -> list[Node]:
    """Every node reachable from ``roots``, each once, children before parents; nodes in
    ``stop`` are included but not descended into."""
    seen: set[int] = set()
    order: list[Node] = []
    stack = [(r, False) for r in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if node not in stop:
            stack.extend((a, False) for a in reversed(node.args) if id(a) not in seen)
    return order


def variables(*roots: Node) -> list[Node]:
    """The ``Var`` leaves reachable from ``roots``, sorted by index."""
    found = {n for n in topo_order(*roots) if n.op == "Var"}
    return sorted(found, key=lambda v: v.attr[0])


def substitute(root: Node, mapping: dict) -> Node:
    """``root`` with every node ``k`` in ``mapping`` replaced by ``mapping[k]``; the
    rebuilt parents go through the op table's smart constructors, so they simplify."""
    from .ops import rebuild

    memo = dict(mapping)
    for node in topo_order(root):
        if node in memo:
            continue
        new_args = tuple(memo[a] for a in node.args)
        memo[node] = node if new_args == node.args else rebuild(node, new_args)
    return memo[root]
