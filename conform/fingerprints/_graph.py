"""Shared pieces of structural fingerprints: JSON-able descriptions of graphs and node
arguments, with no memory addresses or object ids in them."""

from __future__ import annotations

import enum
import math
from typing import Any

import torch
import torch.fx
from torch.fx.node import _get_qualified_name


def describe_target(target: Any) -> str:
    """A stable name for a node target: the string itself, or the qualified name of a
    callable (``operator.add``, ``torch.ops.aten.add.Tensor``)."""
    if isinstance(target, str):
        return target
    if isinstance(target, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
        return f"torch.ops.{target}"
    try:
        return _get_qualified_name(target)
    except Exception:
        return getattr(target, "__qualname__", None) or type(target).__name__


def describe_value(value: Any) -> Any:
    """JSON-able description of a node argument or constant."""
    if isinstance(value, torch.fx.Node):
        return {"node": value.name}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, tuple | list):
        return [describe_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe_value(v) for k, v in value.items()}
    if isinstance(value, slice):
        return {"slice": [describe_value(value.start), describe_value(value.stop), describe_value(value.step)]}
    if isinstance(value, torch.Tensor):
        return {"tensor": [list(value.shape), str(value.dtype)]}
    if isinstance(value, torch.dtype | torch.device | torch.memory_format | torch.layout):
        return str(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if callable(value):
        return describe_target(value)
    return type(value).__name__


def describe_graph(graph: torch.fx.Graph) -> dict[str, Any]:
    """Placeholders (name, target, default), then every other node in order (op, name,
    target, args, kwargs), then the returned structure."""
    placeholders: list[Any] = []
    body: list[Any] = []
    returned: Any = None
    for node in graph.nodes:
        if node.op == "placeholder":
            placeholders.append([node.name, node.target, describe_value(list(node.args))])
        elif node.op == "output":
            returned = describe_value(node.args[0] if node.args else None)
        else:
            body.append(
                [node.op, node.name, describe_target(node.target),
                 describe_value(node.args), describe_value(node.kwargs)]
            )
    return {"placeholders": placeholders, "nodes": body, "output": returned}
