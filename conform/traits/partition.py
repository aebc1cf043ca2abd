"""Traits of the known accelerator-partitioner divergences, computed from the traced graph
and the row's parameters.

``inplace_write_across_partitions`` asks whether the partitions *upstream* draws put an
in-place write and another access of the same memory into two partitions that upstream's
split may call in the wrong order. The partitions are upstream's own, drawn on a private copy
the way the engine's upstream side draws them (upstream's ``get_size_of_all_nodes``, the
config :func:`conform.drivers.partition.build_config` builds, upstream's ``Partitioner``):
the divergence is upstream's, so it is upstream's partitions that have its shape, and the
reference's partitioner (what the harness checks) has no say in what is excused. A purely
structural predicate (any in-place write whose memory another node reads) would claim cases
whose partitions keep the write and its readers together, where nothing goes wrong.
"""

from __future__ import annotations

import graphlib
from typing import Any

import torch.fx

from conform.adapters import Subject
from conform.drivers.partition import build_config
from conform.implementations import Implementation
from conform.traits import split
from generators.sources import Built


def upstream_partitions(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> dict[str, int]:
    """Node name -> partition id, as upstream's partitioner assigns them for this case.

    Args:
        graph_module: the traced case (left as it is: the partitioner runs on a copy).
        built: the case; its positional inputs size the nodes.
        params: the partition row's parameters (``generators.params.partition``).

    Raises:
        ValueError: the case passes keyword inputs, which the partitioner cannot size.
        Exception: whatever upstream raises sizing or partitioning the case.
    """
    if built.kwargs:
        raise ValueError("the partitioner sizes nodes from positional example inputs only")
    upstream = Implementation("upstream")
    subject = Subject(built.module, graph_module, built.args, built.kwargs).clone()
    upstream.graph_manipulation.get_size_of_all_nodes(subject.graph_module, list(subject.inputs))
    config = build_config(upstream, subject.graph_module, params)
    partitioner = upstream.accelerator_partitioner.Partitioner()
    partitioner.partition_graph(subject.graph_module, subject.module, config)
    return {node.name: p.partition_id for p in partitioner.partitions for node in p.nodes}


def inplace_write_across_partitions(graph_module: torch.fx.GraphModule, built: Built,
                                    params: dict[str, Any]) -> bool:
    """The partitions upstream's partitioner draws for this case, split the way the
    partitioner splits (by data-flow order of partitions), have the shape of
    ``split-module-inplace-order``: an in-place write whose order against another partition's
    access to the same memory data flow leaves open."""
    assignment = upstream_partitions(graph_module, built, params)
    return split.inplace_write_across_partitions(graph_module, built, {"partition": assignment})


def partitions_in_a_cycle(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """Upstream's partitions for this case depend on each other in a cycle: following the
    graph's values from partition to partition comes back to where it started (so no order
    of calling them is valid). Read off the graph's edges, not the partitions' own lists."""
    assignment = upstream_partitions(graph_module, built, params)
    after: dict[int, set[int]] = {}
    for node in graph_module.graph.nodes:
        if node.name not in assignment:
            continue
        for user in node.users:
            if user.name in assignment and assignment[user.name] != assignment[node.name]:
                after.setdefault(assignment[node.name], set()).add(assignment[user.name])
    try:
        tuple(graphlib.TopologicalSorter(after).static_order())
    except graphlib.CycleError:
        return True
    return False


def aot_partition_id_past_the_count(graph_module: torch.fx.GraphModule, built: Built,
                                    params: dict[str, Any]) -> bool:
    """An aot_based mapping names a partition id at or past the number of partitions it
    makes (ids 1 and 2 for two partitions, say): upstream's dump_dag looks a partition up by
    that id as a position in its list of partitions. Read off the parameters and the graph."""
    names = {node.name for node in graph_module.graph.nodes}
    ids = {int(v) for k, v in (params.get("node_to_partition") or {}).items() if k in names}
    return params.get("mode") == "aot_based" and bool(ids) and max(ids) >= len(ids)
