"""Driver for ``split_module``: the partition callback is rebuilt from the JSON-able
``params["partition"]`` and a ``qualname_map`` is collected for the fingerprint.

The applied value is ``{"module": parent, "qualname_map": {...}}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from conform.adapters import Applied, Subject, graph_modules_in

if TYPE_CHECKING:
    from conform.implementations import Implementation
    from conform.registry import TransformSpec


def drive(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``split_module(gm, module, callback, qualname_map, **options)``; nodes the partition
    map does not name go to partition 0."""
    options = dict(params)
    assignment: dict[str, int] = options.pop("partition", {})
    target = impl.resolve(row.target)

    def callback(node: torch.fx.Node) -> int:
        return assignment.get(node.name, 0)

    qualname_map: dict[str, str] = {}
    parent = target(subject.graph_module, subject.module, callback, qualname_map, **options)
    return Applied(
        runnable=parent,
        value={"module": parent, "qualname_map": qualname_map},
        subject=subject,
        graphs=graph_modules_in(parent),
    )
