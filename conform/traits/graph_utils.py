"""Traits of the known divergences of the graph utilities: node sizes
(``graph_manipulation``) and getitem types (``annotate_getitem_nodes``)."""

from __future__ import annotations

import operator
import typing
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx

from conform.traits._values import node_values
from generators.sources import Built

# --- node sizes --------------------------------------------------------------------------------


def _holds_tensor(value: Any) -> bool:
    found = False

    def visit(v: Any) -> None:
        nonlocal found
        found = found or isinstance(v, torch.Tensor)

    torch.fx.node.map_aggregate(value, visit)
    return found


def node_with_several_tensors(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A node before the output produces a container holding a tensor (``torch.topk``,
    ``torch.chunk``, a tuple-returning leaf module), for which ShapeProp records a container
    of TensorMetadata instead of one."""
    values = node_values(graph_module, built)
    return any(
        node.op != "output" and not isinstance(value, torch.Tensor) and _holds_tensor(value)
        for node, value in values.items()
    )


# --- getitem types -----------------------------------------------------------------------------


def _getitems(graph_module: torch.fx.GraphModule) -> Iterator[tuple[Any, Any]]:
    """``(type of the indexed value, index)`` for every getitem on a typed value."""
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target is not operator.getitem or len(node.args) != 2:
            continue
        sequence, index = node.args
        if isinstance(sequence, torch.fx.Node) and sequence.type is not None:
            yield sequence.type, index


def _typing_name(kind: Any) -> str | None:
    # typing.Tuple / typing.List (bare or subscripted) carry _name; builtin generics
    # (tuple[int]) forward attribute lookups to their origin class, which has none.
    return getattr(kind, "_name", None)


def _is_tuple_type(kind: Any) -> bool:
    return _typing_name(kind) == "Tuple" or (
        _typing_name(kind) is None and getattr(kind, "__origin__", None) is tuple
    )


def _is_variadic_tuple(kind: Any) -> bool:
    arguments = typing.get_args(kind)
    return len(arguments) == 2 and arguments[1] is Ellipsis


def _is_namedtuple_class(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields")


def getitem_of_bare_generic(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A getitem (by integer) on a value typed with ``typing.Tuple`` or ``typing.List``
    without element types."""
    return any(
        _typing_name(kind) in ("Tuple", "List") and not typing.get_args(kind) and not isinstance(index, slice)
        for kind, index in _getitems(graph_module)
    )


def slice_of_tuple(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A slice (``t[1:]``) of a value typed as a tuple of listed element types (or a bare
    ``typing.Tuple``)."""
    return any(
        isinstance(index, slice) and _is_tuple_type(kind) and not _is_variadic_tuple(kind)
        for kind, index in _getitems(graph_module)
    )


def slice_of_namedtuple(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A slice of a value typed with a NamedTuple class."""
    return any(isinstance(index, slice) and _is_namedtuple_class(kind) for kind, index in _getitems(graph_module))


def getitem_of_annotated_class(graph_module: torch.fx.GraphModule, built: Built,
                               params: dict[str, Any]) -> bool:
    """A getitem on a value typed with a class that has ``__annotations__`` but is neither a
    NamedTuple nor torch.Tensor (upstream takes every such class for a NamedTuple)."""
    return any(
        isinstance(kind, type)
        and _typing_name(kind) is None
        and not hasattr(kind, "__origin__")
        and hasattr(kind, "__annotations__")
        and kind is not torch.Tensor
        and not _is_namedtuple_class(kind)
        for kind, _ in _getitems(graph_module)
    )


def _is_list_type(kind: Any) -> bool:
    return _typing_name(kind) == "List" or (_typing_name(kind) is None and getattr(kind, "__origin__", None) is list)


def slice_of_bare_list(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A slice (``seq[1:]``) of a value typed with a bare ``typing.List``."""
    return any(
        isinstance(index, slice) and _typing_name(kind) == "List" and not typing.get_args(kind)
        for kind, index in _getitems(graph_module)
    )


def slice_of_typed_list(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A slice of a value typed as a sequence of one element type: ``typing.List[T]``,
    ``list[T]`` or a variadic ``Tuple[T, ...]``."""
    return any(
        isinstance(index, slice)
        and ((_is_list_type(kind) and len(typing.get_args(kind)) == 1) or (_is_tuple_type(kind) and _is_variadic_tuple(kind)))
        for kind, index in _getitems(graph_module)
    )
