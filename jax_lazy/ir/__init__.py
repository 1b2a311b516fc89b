"""Formula IR: interned nodes, the op table, derived ops, printing."""

from .node import I, J, P, Node, make, substitute, topo_order, variables
from .ops import OPS, OpDef, Cst, IntCst, Var, Zero, build
from . import derived, ops
from .printing import to_string

__all__ = ["I", "J", "P", "Node", "OPS", "OpDef", "Cst", "IntCst", "Var", "Zero", "build",
           "derived", "make", "ops", "substitute", "to_string", "topo_order", "variables"]
