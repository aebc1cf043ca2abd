"""Fingerprint of a ``Partitioner.partition_graph`` run (a
:class:`conform.drivers.partition.PartitionRun`).

It holds what a user of the partitioner relies on: each partition (id, nodes,
``used_mem_bytes``, logical devices, parents, children, BFS level), the node-to-partition
map the submodules were cut by, the DAG, the latency of every partition and the critical
path latency (computed with the same implementation's ``partitioner_utils``), and the
structure of the module with submodules.

Two things upstream leaves to set iteration order (Node and Partition objects hash by
address), so they vary between runs of upstream itself, are left out:

* the memory/compute split of a partition's latency when several critical paths of equal
  length exist (the overall latency is kept);
* for a ``kl_based`` run in which swaps of equal cost competed (``order_sensitive``), the
  partitions and what depends on them; the size-based cut of the submodules, the DAG's
  shape and the module's outputs still have to agree.
"""

from __future__ import annotations

from typing import Any

import torch

from conform.adapters import Applied
from conform.drivers.partition import PartitionRun
from conform.fingerprints.split import describe_split
from generators.params.partition import count_paths

#: Upstream's per-partition latency walks every path; beyond this many the latencies are
#: not computed (on either side).
MAX_LATENCY_PATHS = 20000
_HOLDERS = ("placeholder", "get_attr")


def _names(nodes: Any) -> list[str]:
    return sorted(n.name for n in nodes)


def describe_partitions(partitions: list[Any]) -> list[dict[str, Any]]:
    """Each partition's id, nodes, memory, devices, neighbours and BFS level."""
    return [
        {
            "id": p.partition_id,
            "nodes": _names(p.nodes),
            "used_mem_bytes": p.used_mem_bytes,
            "logical_device_ids": list(p.logical_device_ids),
            "parents": sorted(q.partition_id for q in p.parents),
            "children": sorted(q.partition_id for q in p.children),
            "bfs_level": p.bfs_level,
        }
        for p in partitions
    ]


def describe_dag(dag: Any, *, placement: bool = True) -> list[dict[str, Any]]:
    """Each DAG node's submodule, inputs and outputs (and devices and size)."""
    out = []
    for node in dag.nodes:
        entry: dict[str, Any] = {
            "submodule": str(node.submodule_node),
            "inputs": [n.name for n in node.input_nodes],
            "outputs": [n.name for n in node.output_nodes],
        }
        if placement:
            entry["logical_device_ids"] = list(node.logical_device_ids)
            entry["size_bytes"] = node.size_bytes
        out.append(entry)
    return out


def critical_split_is_unique(nodes: set[torch.fx.Node], latency_of: dict[torch.fx.Node, Any]) -> bool:
    """Whether every longest path through the operations of ``nodes`` has the same
    memory/compute latency split (so the split upstream reports does not depend on which
    of them its set iteration reaches first)."""
    ops = [n for n in next(iter(nodes)).graph.nodes if n in nodes and n.op not in _HOLDERS] if nodes else []
    best: dict[torch.fx.Node, tuple[float, set[tuple[float, float]]]] = {}
    top, splits = 0.0, {(0.0, 0.0)}
    for node in ops:
        prefixes = [best[s] for s in dict.fromkeys(node.all_input_nodes) if s in best]
        if prefixes:
            length = max(p[0] for p in prefixes)
            before = set().union(*(p[1] for p in prefixes if p[0] == length))
        else:
            length, before = 0.0, {(0.0, 0.0)}
        cost = latency_of[node]
        step = max(cost.computer_latency_sec, cost.mem_latency_sec)
        here = {(m + cost.mem_latency_sec, c + cost.computer_latency_sec) for m, c in before}
        if len(here) > 2:
            here = set(list(here)[:2])
        best[node] = (length + step, here)
        if length + step > top:
            top, splits = length + step, set(here)
        elif length + step == top:
            splits |= here
    return len(splits) <= 1


def describe_latencies(run: PartitionRun) -> dict[str, Any]:
    """Per-partition latencies and the critical path, by the run's implementation."""
    utils = run.impl.partitioner_utils
    config = run.config
    partitions = run.partitioner.partitions
    paths = count_paths(run.graph_module)
    if paths > MAX_LATENCY_PATHS:
        return {"skipped": f"{paths} paths"}
    try:
        mapping = utils.get_partition_to_latency_mapping(partitions, config.node_to_latency_mapping)
    except Exception as exc:
        return {"error": type(exc).__name__}
    per_partition = []
    for p in partitions:
        latency = mapping[p]
        entry: dict[str, Any] = {"overall": latency.overall_latency_sec}
        if critical_split_is_unique(p.nodes, config.node_to_latency_mapping):
            entry["mem"] = latency.mem_latency_sec
            entry["compute"] = latency.computer_latency_sec
        per_partition.append(entry)
    try:
        critical: Any = utils.get_latency_of_partitioned_graph(
            partitions, mapping, config.transfer_rate_bytes_per_sec
        )
    except Exception as exc:
        critical = {"error": type(exc).__name__}
    return {"partitions": per_partition, "critical_path": critical}


def fingerprint(applied: Applied) -> Any:
    """JSON-able summary of the partitioning (see the module docstring)."""
    run = applied.value
    if not isinstance(run, PartitionRun):
        return None
    partitioner, result = run.partitioner, run.result
    summary: dict[str, Any] = {
        "mode": run.mode,
        "node_to_partition": {n.name: pid for n, pid in sorted(partitioner.node_to_partition.items(), key=lambda kv: kv[0].name)},
        "submodules": describe_split(result.module_with_submodules),
    }
    if run.order_sensitive:
        summary["order_sensitive"] = True
        summary["dag"] = describe_dag(result.dag, placement=False)
        return summary
    summary["partitions"] = describe_partitions(partitioner.partitions)
    summary["dag"] = describe_dag(result.dag)
    summary["latencies"] = describe_latencies(run)
    return summary
