"""Fingerprints of the in-place graph utilities: node sizes, lowering attributes and
getitem types, each keyed by node name."""

from __future__ import annotations

import operator
import typing
from typing import Any

from conform.adapters import Applied
from conform.fingerprints._graph import describe_value


def sizes(applied: Applied) -> Any:
    """``{node: [output_size, total_size]}`` for every node given a ``size_bytes``."""
    out: dict[str, Any] = {}
    for node in applied.subject.graph_module.graph.nodes:
        size = getattr(node, "size_bytes", None)
        if size is not None:
            out[node.name] = [int(size.output_size), int(size.total_size)]
    return out


def lowering_attrs(applied: Applied) -> Any:
    """``{node: attrs_for_lowering}`` for every ``call_module`` node that received them
    (tensors described by shape and dtype)."""
    out: dict[str, Any] = {}
    for node in applied.subject.graph_module.graph.nodes:
        attrs = getattr(node, "attrs_for_lowering", None)
        if attrs is not None:
            out[node.name] = {k: describe_value(v) for k, v in sorted(attrs.items())}
    return out


def _describe_type(kind: Any) -> Any:
    if kind is None:
        return None
    if isinstance(kind, type) and not typing.get_args(kind):
        return f"{kind.__module__}.{kind.__qualname__}"
    # typing generics and PEP 585 aliases print stably and without addresses
    text = repr(kind)
    return text.replace("typing.", "").replace("torch.Tensor", "Tensor")


def getitem_types(applied: Applied) -> Any:
    """``{node: type}`` for every ``operator.getitem`` node."""
    return {
        node.name: _describe_type(node.type)
        for node in applied.subject.graph_module.graph.nodes
        if node.op == "call_function" and node.target is operator.getitem
    }

