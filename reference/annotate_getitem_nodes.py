"""Give ``operator.getitem`` nodes the type their sequence's annotation implies.

FX keeps the annotations of a forward's parameters and of traced leaf calls, but a local
unpacking (``a, b = pair``) becomes getitem nodes with no type. When the sequence node has a
tuple, list or NamedTuple type, the element type is known, and scripting the module later
needs it.
"""

from __future__ import annotations

import operator
import typing
from typing import Any

import torch
from torch.fx.node import Node

__all__ = ["annotate_getitem_nodes"]

_UNKNOWN = object()


def _element_of_tuple(args: tuple[Any, ...], index: Any) -> Any:
    if len(args) == 2 and args[1] is Ellipsis:
        # Tuple[T, ...]: every element, and every slice's elements, are T
        return args[0] if isinstance(index, int) else tuple[args[0], ...]
    if isinstance(index, slice):
        return tuple[args[index]] if args[index] else _UNKNOWN
    if len(args) <= index:
        raise AssertionError(
            f"Index {index} out of range for parameterized_types (len={len(args)})"
        )
    return args[index]


def _element_of_list(args: tuple[Any, ...], index: Any) -> Any:
    if len(args) != 1:
        raise AssertionError(f"Expected 1 parameterized type, got {len(args)}")
    return args[0] if isinstance(index, int) else list[args[0]]


def _element_type(container: Any, index: Any) -> Any:
    """The type of ``container[index]``, or ``_UNKNOWN``."""
    origin = typing.get_origin(container)
    args = typing.get_args(container)
    if origin is tuple:
        # a bare ``Tuple``/``tuple`` says nothing about its elements
        return _element_of_tuple(args, index) if args else _UNKNOWN
    if origin is list:
        return _element_of_list(args, index) if args else _UNKNOWN
    if origin is None and isinstance(container, type) and container is not torch.Tensor:
        fields = getattr(container, "_fields", None)
        hints = getattr(container, "__annotations__", None)
        if fields is not None and hints is not None:  # a typing.NamedTuple
            if isinstance(index, slice):
                picked = tuple(hints.get(f, Any) for f in fields[index])
                return tuple[picked] if picked else _UNKNOWN
            return hints.get(fields[index], _UNKNOWN)
    return _UNKNOWN


def annotate_getitem_nodes(graph: torch.fx.Graph) -> None:
    """Set ``node.type`` on every getitem node whose sequence node's type is a tuple, list or
    NamedTuple type (``typing.Tuple[...]``, ``tuple[...]``, ``Tuple[T, ...]``,
    ``typing.List[T]``, ``list[T]``, a ``typing.NamedTuple`` class).

    Getitems with a sequence of another or no type, or with an index that is not a
    constant, are left alone.

    Args:
        graph (:class:`torch.fx.Graph`): the graph to annotate in place.

    Raises:
        AssertionError: a constant index past the end of a fixed-length tuple type.
    """
    for node in graph.nodes:
        if node.target is not operator.getitem or len(node.args) != 2:
            continue
        sequence, index = node.args
        if not isinstance(sequence, Node) or not sequence.type:
            continue
        if not isinstance(index, int | slice):
            continue
        found = _element_type(sequence.type, index)
        if found is not _UNKNOWN:
            node.type = found
