"""Fingerprint of a ``split_module`` result: the parent graph, every child graph (by
submodule name), the partition names recorded in the parent's meta and the qualname map."""

from __future__ import annotations

from typing import Any

import torch

from conform.adapters import Applied
from conform.fingerprints._graph import describe_graph


def describe_split(module: torch.fx.GraphModule) -> dict[str, Any]:
    """Structure of a split parent and its children."""
    children = {
        name: describe_graph(child.graph)
        for name, child in module.named_children()
        if isinstance(child, torch.fx.GraphModule)
    }
    return {
        "parent": describe_graph(module.graph),
        "submodules": dict(sorted(children.items())),
        "partition_names": sorted(module.meta.get("partition_names", ())),
    }


def fingerprint(applied: Applied) -> Any:
    """JSON-able structure of the split: see :func:`describe_split`, plus ``qualname_map``
    when the driver collected one."""
    value = applied.value
    qualname_map = None
    if isinstance(value, dict) and "module" in value:
        qualname_map = value.get("qualname_map")
        value = value["module"]
    if not isinstance(value, torch.fx.GraphModule):
        return None
    summary = describe_split(value)
    if qualname_map is not None:
        summary["qualname_map"] = dict(sorted(qualname_map.items()))
    return summary
