"""``fold_constants``: fold chains of scalar arithmetic in a torch.fx graph.

* ``(x + a) + b`` becomes ``x + (a + b)`` (subtraction of a scalar is addition of its
  negation), ``(x * a) * b`` becomes ``x * (a * b)``, when the inner result has no other user;
* ``x + 0``, ``x - 0`` and ``x * 1`` (integer constants) become ``x``.

Example::

    >>> import torch, torch.fx
    >>> gm = torch.fx.symbolic_trace(lambda x: (x * 2) * 3 + 0)
    >>> print(fold_constants(gm).code.strip().splitlines()[-2])
        mul_2 = x * 6;  x = None
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
from torch.fx import GraphModule, Node

_FAMILY = {
    operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub",
    operator.mul: "mul", torch.mul: "mul",
}
_METHODS = {"add": "add", "sub": "sub", "mul": "mul"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar_op(node: Node) -> tuple[str, Node, int | float] | None:
    """``(family, tensor operand, scalar)`` for ``x op c`` (``c op x`` for add and mul), with
    subtraction spelled as addition of the negated scalar; None for anything else."""
    if node.kwargs or len(node.args) != 2:
        return None
    if node.op == "call_function":
        family = _FAMILY.get(node.target)
    elif node.op == "call_method":
        family = _METHODS.get(node.target)
    else:
        return None
    if family is None:
        return None
    left, right = node.args
    if isinstance(left, Node) and _is_number(right):
        return ("add", left, -right) if family == "sub" else (family, left, right)
    if family != "sub" and node.op == "call_function" and _is_number(left) and isinstance(right, Node):
        return family, right, left
    return None


def _is_identity(family: str, scalar: int | float) -> bool:
    return type(scalar) is int and scalar == (0 if family == "add" else 1)


def fold_constants(gm: GraphModule) -> GraphModule:
    """Fold scalar arithmetic chains and integer identities in ``gm`` in place; return it."""
    graph = gm.graph
    for node in list(graph.nodes):
        op = _scalar_op(node)
        if op is None:
            continue
        family, operand, scalar = op
        inner = _scalar_op(operand)
        if inner is not None and inner[0] == family and len(operand.users) == 1:
            _, operand, first = inner
            scalar = first + scalar if family == "add" else first * scalar
            previous = node.args[0] if isinstance(node.args[0], Node) else node.args[1]
            target = operator.add if family == "add" else operator.mul
            with graph.inserting_before(node):
                folded = graph.call_function(target, (operand, scalar))
            node.replace_all_uses_with(folded)
            graph.erase_node(node)
            graph.erase_node(previous)
            node = folded
        if _is_identity(family, scalar):
            node.replace_all_uses_with(operand)
            graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return gm
