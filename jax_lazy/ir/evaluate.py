"""Reference evaluation of formulas with ``jax.numpy``.

Values carry the vector axis last; every other axis broadcasts NumPy-style, so the same
code evaluates a dense (M, N) block, an (i-tile x j-tile) block of the jnp backend, or a
list of selected (i, j) pairs.
"""

from __future__ import annotations

import jax.numpy as jnp

from .node import topo_order
from .ops import OPS


def evaluate(roots, env: dict, dtype) -> list:
    """Evaluate formulas.

    Args:
      roots: formula nodes to evaluate.
      env: maps each ``Var`` node reachable from ``roots`` to an array whose last axis has
        the variable's dim (other axes broadcast).
      dtype: the floating dtype of constants.

    Returns:
      One array per root, last axis of length ``root.dim``; common sub-formulas are
      computed once.
    """
    vals: dict[int, object] = {}
    for n in topo_order(*roots):
        if n.op == "Var":
            vals[id(n)] = env[n]
        elif n.op in ("IntCst", "Cst"):
            vals[id(n)] = jnp.full((1,), n.attr[0], dtype)
        elif n.op == "Zero":
            vals[id(n)] = jnp.zeros((n.dim,), dtype)
        else:
            vals[id(n)] = OPS[n.op].jnp(n.attr, *(vals[id(a)] for a in n.args))
    return [vals[id(r)] for r in roots]
