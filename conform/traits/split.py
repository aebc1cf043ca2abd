"""Traits of the known split_module divergences: which cases have the shape each upstream
bug needs, computed from the traced graph and the row's parameters (``params["partition"]``
maps node names to partition ids, every other computing node is in partition 0, as the
driver builds the callback)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.fx

from conform.traits._effects import observe, order_edges
from generators.sources import Built

_UNPARTITIONED = ("placeholder", "get_attr", "output")

# Calls that open or close a grad-mode or autocast region; split_module replays them per
# partition, and with them come the region checks upstream gets wrong.
_REGION_CALLS = (torch._C._set_grad_enabled, torch.amp._enter_autocast, torch.amp._exit_autocast)


def _partition_ids(graph_module: torch.fx.GraphModule, params: dict[str, Any]) -> dict[torch.fx.Node, int]:
    assignment = params.get("partition") or {}
    return {
        node: assignment.get(node.name, 0)
        for node in graph_module.graph.nodes
        if node.op not in _UNPARTITIONED
    }


def _has_regions(graph_module: torch.fx.GraphModule) -> bool:
    return any(node.op == "call_function" and node.target in _REGION_CALLS for node in graph_module.graph.nodes)


def variadic_forward_with_kept_names(graph_module: torch.fx.GraphModule, built: Built,
                                     params: dict[str, Any]) -> bool:
    """``keep_original_node_name=True`` on a forward taking ``*args`` or ``**kwargs``."""
    return bool(params.get("keep_original_node_name")) and any(
        node.op == "placeholder" and str(node.target).startswith("*") for node in graph_module.graph.nodes
    )


def returned_attribute_with_original_order(graph_module: torch.fx.GraphModule, built: Built,
                                           params: dict[str, Any]) -> bool:
    """``keep_original_order=True`` and forward returns an attribute that no partition reads
    (upstream fetches attributes for the partitions that read them only)."""
    if not params.get("keep_original_order"):
        return False
    nodes = list(graph_module.graph.nodes)
    if not any(node.op not in _UNPARTITIONED for node in nodes):
        return False  # without partitions upstream builds every input and attribute at once
    output = next(node for node in nodes if node.op == "output")
    return any(
        node.op == "get_attr" and all(user.op == "output" for user in node.users)
        for node in output.all_input_nodes
    )


def flattened_target_collision(graph_module: torch.fx.GraphModule, built: Built,
                               params: dict[str, Any]) -> bool:
    """Two different modules called in one partition whose qualified names are equal once
    '.' becomes '_' (``a.b_c`` and ``a_b.c``), the name upstream gives both in the child."""
    owner = _partition_ids(graph_module, params)
    claimed: dict[tuple[int, str], set[int]] = defaultdict(set)
    for node, pid in owner.items():
        if node.op != "call_module":
            continue
        module = graph_module.get_submodule(str(node.target))
        claimed[(pid, str(node.target).replace(".", "_"))].add(id(module))
    return any(len(modules) > 1 for modules in claimed.values())


def affix_with_regions(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A ``partition_affix`` on a graph with a grad-mode or autocast region."""
    return params.get("partition_affix") is not None and _has_regions(graph_module)


def ids_below_minus_one_with_regions(graph_module: torch.fx.GraphModule, built: Built,
                                     params: dict[str, Any]) -> bool:
    """A graph with a grad-mode or autocast region split by a partition map that never
    decreases (so split_module accepts it) and starts below -1 (upstream starts its
    monotonicity check from -1)."""
    if not _has_regions(graph_module):
        return False
    ids = list(_partition_ids(graph_module, params).values())
    return bool(ids) and ids[0] < -1 and all(a <= b for a, b in zip(ids, ids[1:]))


def symbol_bound_in_reading_partition(graph_module: torch.fx.GraphModule, built: Built,
                                      params: dict[str, Any]) -> bool:
    """A partition reads, from another partition, a value whose dynamo ``example_value``
    has a size symbol that a node of the reading partition itself binds."""
    from torch.fx.experimental.symbolic_shapes import free_symbols

    nodes = list(graph_module.graph.nodes)
    binder: dict[Any, torch.fx.Node] = {}
    for node in nodes:
        example = node.meta.get("example_value")
        if isinstance(example, torch.SymInt | torch.SymFloat) and example.node.expr.is_Symbol:
            binder.setdefault(example.node.expr, node)
    if not binder:
        return False
    owner = _partition_ids(graph_module, params)
    for user, pid in owner.items():
        if user.op == "call_function" and user.target in _REGION_CALLS:
            continue
        for source in user.all_input_nodes:
            example = source.meta.get("example_value")
            if owner.get(source) == pid or example is None:
                continue
            for symbol in free_symbols(example):
                bound_by = binder.get(symbol)
                if bound_by is not None and bound_by.op != "placeholder" and owner.get(bound_by) == pid:
                    return True
    return False


# --- an in-place write that upstream's order of partitions may move -----------------------------


def _first_appearance(graph_module: torch.fx.GraphModule, params: dict[str, Any]) -> dict[int, int]:
    return {pid: rank for rank, pid in enumerate(dict.fromkeys(_partition_ids(graph_module, params).values()))}


def _downstream_by_values(owner: dict[torch.fx.Node, int]) -> dict[int, set[int]]:
    """Partition id -> the partitions that read its values, directly or through others."""
    feeds: dict[int, set[int]] = defaultdict(set)
    for node, pid in owner.items():
        for source in node.all_input_nodes:
            if source in owner and owner[source] != pid:
                feeds[owner[source]].add(pid)
    reach: dict[int, set[int]] = {}
    for start in set(owner.values()):
        seen: set[int] = set()
        pending = [start]
        while pending:
            for after in feeds[pending.pop()] - seen:
                seen.add(after)
                pending.append(after)
        reach[start] = seen
    return reach


def inplace_write_across_partitions(graph_module: torch.fx.GraphModule, built: Built,
                                    params: dict[str, Any]) -> bool:
    """Memory written in place by one partition and read or written by another (as a run of
    the case shows it: :func:`conform.traits._effects.order_edges`), where upstream's order of
    the two partitions is not fixed the graph's way: with ``keep_original_order`` the later
    access's partition appears first; otherwise it does not read the earlier one's values
    (directly or through other partitions), so upstream's data-flow order is free to call it
    first. Grad-mode and autocast calls are replayed in every partition and order nothing."""
    owner = {node: pid for node, pid in _partition_ids(graph_module, params).items()
             if not (node.op == "call_function" and node.target in _REGION_CALLS)}
    if len(set(owner.values())) < 2:
        return False
    edges = order_edges(observe(graph_module, built), owner)
    if not edges:
        return False
    if params.get("keep_original_order"):
        rank = _first_appearance(graph_module, params)
        return any(rank[later] < rank[earlier] for earlier, later in edges)
    reach = _downstream_by_values(owner)
    return any(later not in reach[earlier] for earlier, later in edges)
