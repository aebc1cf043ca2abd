"""Fingerprint of shape propagation: every node's ``tensor_meta`` and result type."""

from __future__ import annotations

from typing import Any

import torch

from conform.adapters import Applied


def _describe_meta(meta: Any) -> Any:
    # TensorMetadata is a NamedTuple: recognise it by its fields rather than by class, so
    # upstream's and the reference's classes describe the same way.
    if isinstance(meta, tuple) and hasattr(meta, "_fields") and "memory_format" in meta._fields:
        return {
            "shape": list(meta.shape),
            "dtype": str(meta.dtype),
            "requires_grad": bool(meta.requires_grad),
            "stride": list(meta.stride),
            "memory_format": None if meta.memory_format is None else str(meta.memory_format),
            "is_quantized": bool(meta.is_quantized),
            "qparams": {k: _describe_qparam(v) for k, v in sorted(meta.qparams.items())},
        }
    if isinstance(meta, tuple | list):
        return [_describe_meta(m) for m in meta]
    if isinstance(meta, dict):
        return {str(k): _describe_meta(v) for k, v in meta.items()}
    if isinstance(meta, torch.Size):
        return list(meta)
    if meta is None or isinstance(meta, bool | int | float | str):
        return meta
    return type(meta).__name__


def _describe_qparam(value: Any) -> Any:
    if isinstance(value, torch.qscheme):
        return str(value)
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, list):
        return [_describe_qparam(v) for v in value]
    return value


def describe_shapes(graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    """``{node name: {"tensor_meta": ..., "type": ...}}`` for every node."""
    out: dict[str, Any] = {}
    for node in graph_module.graph.nodes:
        entry: dict[str, Any] = {}
        if "tensor_meta" in node.meta:
            entry["tensor_meta"] = _describe_meta(node.meta["tensor_meta"])
        if "type" in node.meta:
            kind = node.meta["type"]
            entry["type"] = getattr(kind, "__qualname__", str(kind))
        out[node.name] = entry
    return out


def fingerprint(applied: Applied) -> Any:
    """Shape metadata of the subject's graph after propagation."""
    return describe_shapes(applied.subject.graph_module)
