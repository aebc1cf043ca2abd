"""Data model and cost model of the accelerator partitioner.

A :class:`Partition` is a set of graph nodes destined for one accelerator; the helpers
here size partitions (:func:`get_extra_size_of`) and estimate latencies: the critical path
inside one partition (:func:`get_latency_of_one_partition`) and the critical path through
the partition DAG including transfers (:func:`get_latency_of_partitioned_graph`).

The latency estimates are longest-path computations. They run as dynamic programs over a
topological order, so their cost is linear in the size of the graph, and they add the same
floating-point terms in the same order along a path as a path-by-path walk would; because
floating-point addition is monotone, the maximum over paths is the same number either way
(for the non-negative latencies the cost model deals in).
"""

from __future__ import annotations

import collections
from enum import Enum
from typing import Any

from torch.fx.node import Node, map_arg

__all__ = [
    "Partition", "Device", "NodeLatency", "PartitionLatency", "PartitionMode", "PartitionerConfig",
    "get_extra_size_of", "get_latency_of_one_partition", "get_partition_to_latency_mapping",
    "get_comm_latency_between", "get_latency_of_partitioned_graph",
]

_HOLDERS = ("placeholder", "get_attr")


def _inputs_of(node: Node) -> list[Node]:
    """The distinct nodes ``node`` reads, in first-use order (args, then kwargs)."""
    seen: dict[Node, None] = {}
    map_arg(node.args, seen.setdefault)
    map_arg(node.kwargs, seen.setdefault)
    return list(seen)


class Partition:
    """A group of nodes that runs on one (or, once replicated, several) logical devices.

    A partition always holds the placeholder and ``get_attr`` nodes its operations read,
    so the memory it needs can be read off its node set.

    Args:
        partition_id (int): the partition's position in its partitioner's list.
    """

    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id
        # What the partition holds and the bytes that takes (add_node and remove_node keep
        # the two in step).
        self.nodes: set[Node] = set()
        self.used_mem_bytes: int = 0
        # Where it runs: one id, or several once saturate_host has replicated it.
        self.logical_device_ids: list[int] = []
        # Its neighbours in the partition DAG and its depth there; the partitioner sets them.
        self.parents: set[Partition] = set()
        self.children: set[Partition] = set()
        self.bfs_level: int = -1

    def __str__(self) -> str:
        return str(self.partition_id)

    def recalculate_mem_size(self) -> None:
        """Recompute ``used_mem_bytes`` from the node set."""
        self.used_mem_bytes = sum(get_extra_size_of(node, self.nodes) for node in self.nodes)

    def add_node(self, node: Node) -> None:
        """Add ``node`` together with the placeholder and ``get_attr`` nodes it reads.

        Args:
            node (Node): the node to add.
        """
        for source in _inputs_of(node):
            if source.op in _HOLDERS:
                self.nodes.add(source)
        self.nodes.add(node)
        self.recalculate_mem_size()

    def remove_node(self, node: Node) -> None:
        """Remove ``node`` if present, and the placeholder and ``get_attr`` nodes it read
        that no remaining node of the partition reads.

        Args:
            node (Node): the node to remove.
        """
        if node not in self.nodes:
            return
        self.nodes.remove(node)
        for source in _inputs_of(node):
            if source.op not in _HOLDERS:
                continue
            if any(user in self.nodes for user in source.users):
                continue
            # A holder is only ever here because a node reading it was added; KeyError
            # surfaces a node set that was edited by hand into an inconsistent state.
            self.nodes.remove(source)
        self.recalculate_mem_size()


def _record(name: str, summary: str, fields: list[tuple[str, Any, str]], defaults: tuple[Any, ...] = ()) -> Any:
    """A tuple type ``name`` whose fields are given as ``(field, type, meaning)``; the last
    ``len(defaults)`` fields are optional."""
    record = collections.namedtuple(name, [field for field, _, _ in fields], defaults=defaults, module=__name__)
    record.__annotations__ = {field: kind for field, kind, _ in fields}
    record.__doc__ = summary + "\n\nFields:\n" + "\n".join(f"    {field}: {meaning}" for field, _, meaning in fields)
    return record


Device = _record("Device", "An accelerator the partitioner may place partitions on.", [
    ("name", str, "what the device is called (for messages only)"),
    ("available_mem_bytes", int, "bytes a partition placed on it may use"),
    ("logical_id", int, "the id partitions refer to it by; devices with equal ids count as one"),
])

NodeLatency = _record("NodeLatency", "Cost of one operation, in seconds.", [
    ("mem_latency_sec", float, "moving the node's data through memory"),
    ("computer_latency_sec", float, "computing it"),
])

PartitionLatency = _record("PartitionLatency", "Cost of a partition's critical path, in seconds.", [
    ("mem_latency_sec", float, "the memory latencies along the path, summed"),
    ("computer_latency_sec", float, "its compute latencies, summed"),
    ("overall_latency_sec", float, "its length: per node the larger of the two"),
])

# How Partitioner splits a module, numbered in this order from 0 (see accelerator_partitioner).
_MODES = {
    "size_based": "fill one device after another, in graph order",
    "sparse_nn": "embedding tables apart from the dense layers (recommendation models)",
    "cost_aware": "merge partitions while the critical-path latency falls",
    "kl_based": "swap nodes between partitions while the latency falls",
    "aot_based": "use the partitioning given in the config",
}
PartitionMode = Enum("PartitionMode", [(mode, number) for number, mode in enumerate(_MODES)], module=__name__)
PartitionMode.__doc__ = "How Partitioner splits a module:\n" + "\n".join(f"    {m}: {d}" for m, d in _MODES.items())

PartitionerConfig = _record("PartitionerConfig", "What to partition for and how.", [
    ("devices", list[Device], "the accelerators available"),
    ("mode", PartitionMode, "the partitioning strategy"),
    ("transfer_rate_bytes_per_sec", float, "link bandwidth between devices (cost_aware, kl_based)"),
    ("node_to_latency_mapping", dict[Node, NodeLatency], "per-operation costs (cost_aware, kl_based)"),
    ("node_to_partition_mapping", dict[Node, int], "a partitioning decided ahead of time (aot_based)"),
    ("partition_to_logical_device_mapping", dict[int, list[int]], "where each ahead-of-time partition goes (aot_based)"),
    ("saturate_host", bool, "replicate the partitions onto devices that would otherwise stay idle"),
], defaults=(PartitionMode.size_based, 0.0, {}, {}, {}, False))


def _size_bytes_of(node: Node) -> tuple[int, int]:
    """``(output_size, total_size)`` of a sized node."""
    size = getattr(node, "size_bytes", None)
    if not size:
        raise RuntimeError("node has no size_bytes attr")
    return size.output_size, size.total_size


def get_extra_size_of(node: Node, nodes: set[Node]) -> int:
    """Bytes that adding ``node`` to a group holding ``nodes`` costs.

    That is the node's own total size plus the output size of each distinct input that the
    group does not already hold.

    Args:
        node (Node): a node with ``size_bytes``.
        nodes (Set[Node]): the nodes already in the group.

    Returns:
        int: the extra bytes.

    Raises:
        RuntimeError: ``node`` or one of its missing inputs has no ``size_bytes``.
    """
    extra = 0
    for source in _inputs_of(node):
        if source not in nodes:
            extra += _size_bytes_of(source)[0]
    return extra + _size_bytes_of(node)[1]


_ZERO = PartitionLatency(mem_latency_sec=0.0, computer_latency_sec=0.0, overall_latency_sec=0.0)


def _positions(nodes: set[Node]) -> dict[Node, int]:
    """Index of every node of the graph ``nodes`` belong to (nodes carry no index)."""
    for node in nodes:
        return {n: i for i, n in enumerate(node.graph.nodes)}
    return {}


def _longest_path(
    nodes: set[Node], latency_of: dict[Node, NodeLatency], position: dict[Node, int]
) -> PartitionLatency:
    """Critical path through the operations of ``nodes`` (placeholders and ``get_attr``
    nodes cost nothing), as running sums from the first node of the path."""
    # Graph order is topological; visiting in it also makes the choice among equally long
    # paths independent of how the node set happens to iterate.
    ops = sorted((n for n in nodes if n.op not in _HOLDERS), key=position.__getitem__)
    # For each node: the best path ending at it, as running sums.
    best: dict[Node, PartitionLatency] = {}
    result = _ZERO
    for node in ops:
        arrive = _ZERO
        found = False
        for source in _inputs_of(node):
            path = best.get(source)
            # Among equally long prefixes the first one found is kept.
            if path is not None and (not found or path.overall_latency_sec > arrive.overall_latency_sec):
                arrive, found = path, True
        cost = latency_of[node]
        step = max(cost.computer_latency_sec, cost.mem_latency_sec)
        path = PartitionLatency(
            arrive.mem_latency_sec + cost.mem_latency_sec,
            arrive.computer_latency_sec + cost.computer_latency_sec,
            arrive.overall_latency_sec + step,
        )
        best[node] = path
        if path.overall_latency_sec > result.overall_latency_sec:
            result = path
    return result


def get_latency_of_one_partition(
    partition: Partition, node_to_latency_mapping: dict[Node, NodeLatency]
) -> PartitionLatency:
    """Latency of the critical path inside ``partition``.

    A path starts at an operation none of whose inputs is an operation of the partition and
    follows users that are in the partition; each node adds the larger of its memory and
    compute latencies to the path length, and both components are summed separately.

    Args:
        partition (Partition): the partition.
        node_to_latency_mapping (Dict[Node, NodeLatency]): latency of every operation in the
            partition.

    Returns:
        PartitionLatency: the critical path's memory, compute and overall latency (all zero
        for a partition without operations).

    Raises:
        KeyError: an operation of the partition has no latency.
    """
    return _longest_path(partition.nodes, node_to_latency_mapping, _positions(partition.nodes))


def get_partition_to_latency_mapping(
    partitions: list[Partition], node_to_latency_mapping: dict[Node, NodeLatency]
) -> dict[Partition, PartitionLatency]:
    """:func:`get_latency_of_one_partition` of every partition.

    Args:
        partitions (List[Partition]): the partitions.
        node_to_latency_mapping (Dict[Node, NodeLatency]): latency of every operation.

    Returns:
        Dict[Partition, PartitionLatency]: each partition's latency, in list order.
    """
    position: dict[Node, int] = {}
    for partition in partitions:
        if partition.nodes and not position:
            position = _positions(partition.nodes)
    return {p: _longest_path(p.nodes, node_to_latency_mapping, position) for p in partitions}


def get_comm_latency_between(
    parent_partition: Partition,
    child_partition: Partition,
    transfer_rate_bytes_per_sec: float,
) -> float:
    """Seconds to move what ``child_partition`` reads from ``parent_partition``.

    Nothing moves when both partitions sit on the same (non-empty) list of devices;
    otherwise every distinct node of the parent read by a node of the child is sent once.

    Args:
        parent_partition (Partition): the producer.
        child_partition (Partition): the consumer.
        transfer_rate_bytes_per_sec (float): link bandwidth.

    Returns:
        float: the transfer latency in seconds.

    Raises:
        ZeroDivisionError: data would move and the transfer rate is zero.
    """
    parent_ids = parent_partition.logical_device_ids
    if parent_ids and child_partition.logical_device_ids and parent_ids == child_partition.logical_device_ids:
        return 0.0
    sent: set[Node] = set()
    for node in child_partition.nodes:
        for source in _inputs_of(node):
            if source in parent_partition.nodes:
                sent.add(source)
    size = 0
    for source in sent:
        size_bytes = getattr(source, "size_bytes", None)
        if size_bytes is not None:
            size += size_bytes.output_size
    return size / transfer_rate_bytes_per_sec


def get_latency_of_partitioned_graph(
    partitions: list[Partition],
    partition_to_latency_mapping: dict[Partition, PartitionLatency],
    transfer_rate_bytes_per_sec: float,
) -> float:
    """Latency of the whole partitioned graph: the longest path through the partition DAG.

    Paths start at partitions without parents; a path's length is the overall latency of
    each partition on it plus the transfer latency of each edge it crosses.

    Args:
        partitions (List[Partition]): the partitions, with ``parents``/``children`` set.
        partition_to_latency_mapping (Dict[Partition, PartitionLatency]): each partition's
            latency.
        transfer_rate_bytes_per_sec (float): link bandwidth.

    Returns:
        float: the critical path latency in seconds (0.0 when nothing starts a path).

    Raises:
        RecursionError: a cycle is reachable from a partition without parents.
    """
    order = _reachable_topological_order([p for p in partitions if not p.parents])
    # Latest arrival time at each partition over all paths reaching it.
    arrival: dict[Partition, float] = {p: 0.0 for p in partitions if not p.parents}
    critical = 0.0
    for partition in order:
        finish = arrival[partition] + partition_to_latency_mapping[partition].overall_latency_sec
        if not partition.children:
            critical = max(critical, finish)
            continue
        for child in partition.children:
            reach = finish + get_comm_latency_between(partition, child, transfer_rate_bytes_per_sec)
            if child not in arrival or reach > arrival[child]:
                arrival[child] = reach
    return critical


def _reachable_topological_order(roots: list[Partition]) -> list[Partition]:
    """Partitions reachable from ``roots`` through ``children``, parents first."""
    pending: dict[Partition, int] = {}
    stack = list(roots)
    seen = set(roots)
    while stack:
        partition = stack.pop()
        for child in partition.children:
            pending[child] = pending.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    order = [p for p in roots if pending.get(p, 0) == 0]
    ready = list(order)
    while ready:
        partition = ready.pop()
        for child in partition.children:
            pending[child] -= 1
            if pending[child] == 0:
                order.append(child)
                ready.append(child)
    if len(order) != len(seen):
        raise RecursionError("the partition graph has a cycle reachable from a root partition")
    return order
