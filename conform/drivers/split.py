"""Driver for ``split_module``: the partition callback is rebuilt from the JSON-able
``params["partition"]`` and a ``qualname_map`` is collected for the fingerprint.

The applied value is ``{"module": parent, "qualname_map": {...}}``.

split_module orders partitions by data dependencies only (or by first appearance) and runs
each partition's nodes together, so an in-place update and a read of the same memory in
another partition can swap; both implementations then differ from eager by design. A case
with an in-place op split over several partitions is therefore not applicable (one
partition keeps the original order and is still checked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from conform.adapters import Applied, NotApplicable, Subject, graph_modules_in

if TYPE_CHECKING:
    from conform.implementations import Implementation
    from conform.registry import TransformSpec


def mutates(node: torch.fx.Node, root: torch.nn.Module) -> bool:
    """Whether ``node`` writes to one of its inputs (``x.add_(y)``, ``torch.relu_(x)``,
    ``F.relu(x, inplace=True)``, a leaf module built with ``inplace=True``)."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op == "call_method":
        name = str(node.target)
    elif node.op == "call_function":
        name = getattr(node.target, "__name__", "")
    elif node.op == "call_module":
        try:
            return getattr(root.get_submodule(str(node.target)), "inplace", False) is True
        except AttributeError:
            return False
    else:
        return False
    return name.endswith("_") and not name.startswith("__")


def drive(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``split_module(gm, module, callback, qualname_map, **options)``; nodes the partition
    map does not name go to partition 0."""
    options = dict(params)
    assignment: dict[str, int] = options.pop("partition", {})
    target = impl.resolve(row.target)

    def callback(node: torch.fx.Node) -> int:
        return assignment.get(node.name, 0)

    gm = subject.graph_module
    computing = [n for n in gm.graph.nodes if n.op not in ("placeholder", "get_attr", "output")]
    if len({callback(n) for n in computing}) > 1:
        writer = next((n for n in computing if mutates(n, gm)), None)
        if writer is not None:
            raise NotApplicable(
                f"in-place op {writer.name} with several partitions: split_module does not keep "
                "the order of side effects across partitions"
            )

    qualname_map: dict[str, str] = {}
    parent = target(subject.graph_module, subject.module, callback, qualname_map, **options)
    return Applied(
        runnable=parent,
        value={"module": parent, "qualname_map": qualname_map},
        subject=subject,
        graphs=graph_modules_in(parent),
    )
