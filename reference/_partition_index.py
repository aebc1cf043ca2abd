"""Integer view of a sized graph and the cost-model primitives the partition searches share.

The searches in ``_partition_cost_aware`` and ``_partition_kl`` evaluate thousands of
candidate partitionings. They work on node indices (graph order) rather than on
:class:`~reference.partitioner_utils.Partition` objects, and keep what the cost model
needs (sizes, the nodes a partition reads from outside, its latency) up to date
incrementally instead of recomputing it from node sets.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from torch.fx.graph import Graph
from torch.fx.node import Node

from reference.partitioner_utils import Device, NodeLatency, PartitionLatency, _inputs_of

HOLDERS = ("placeholder", "get_attr")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the duration of a search.

    The searches allocate millions of short-lived tuples and keep growing caches. Each
    allocation burst makes the collector traverse every object alive in the process (the
    module being partitioned, its graph, torch itself), which costs a third of a search's
    time and finds nothing: the searches build no reference cycles, so reference counting
    frees their garbage. The collector's previous state is restored on exit.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class GraphIndex:
    """Positions, distinct inputs and users, and sizes of every node of a graph.

    Args:
        graph (Graph): a graph whose nodes carry ``size_bytes`` (the output node and what
            follows it may lack them).
    """

    def __init__(self, graph: Graph) -> None:
        self.nodes: list[Node] = list(graph.nodes)
        self.position: dict[Node, int] = {n: i for i, n in enumerate(self.nodes)}
        pos = self.position
        self.inputs: list[tuple[int, ...]] = [tuple(pos[x] for x in _inputs_of(n)) for n in self.nodes]
        self.users: list[tuple[int, ...]] = [tuple(pos[u] for u in n.users) for n in self.nodes]
        self.holder: list[bool] = [n.op in HOLDERS for n in self.nodes]
        self._out: list[int | None] = []
        self._total: list[int | None] = []
        for node in self.nodes:
            size = getattr(node, "size_bytes", None)
            self._out.append(size.output_size if size else None)
            self._total.append(size.total_size if size else None)
        # Output size for transfer accounting, where a node without a size moves nothing.
        self.sent: list[int] = []
        for node in self.nodes:
            size = getattr(node, "size_bytes", None)
            self.sent.append(size.output_size if size is not None else 0)
        self._latency: dict[int, tuple[float, float, float]] = {}

    def out(self, i: int) -> int:
        size = self._out[i]
        if size is None:
            raise RuntimeError("node has no size_bytes attr")
        return size

    def total(self, i: int) -> int:
        size = self._total[i]
        if size is None:
            raise RuntimeError("node has no size_bytes attr")
        return size

    def node_latency(self, i: int, latency_of: dict[Node, NodeLatency]) -> tuple[float, float, float]:
        """``(mem, compute, max of the two)`` of node ``i``; KeyError when it has none."""
        cached = self._latency.get(i)
        if cached is None:
            cost = latency_of[self.nodes[i]]
            step = max(cost.computer_latency_sec, cost.mem_latency_sec)
            cached = self._latency[i] = (cost.mem_latency_sec, cost.computer_latency_sec, step)
        return cached

    def longest_path(
        self, members: Iterable[int], is_member: Callable[[int], bool], latency_of: dict[Node, NodeLatency]
    ) -> PartitionLatency:
        """Critical path through the operations among ``members`` (given in graph order),
        with the same running sums and tie rule as
        :func:`reference.partitioner_utils.get_latency_of_one_partition`."""
        best: dict[int, tuple[float, float, float]] = {}
        result = (0.0, 0.0, 0.0)
        holder = self.holder
        for i in members:
            if holder[i]:
                continue
            arrive = None
            for x in self.inputs[i]:
                path = best.get(x)
                if path is not None and (arrive is None or path[2] > arrive[2]):
                    arrive = path
            mem, comp, step = self.node_latency(i, latency_of)
            if arrive is None:
                path = (0.0 + mem, 0.0 + comp, 0.0 + step)
            else:
                path = (arrive[0] + mem, arrive[1] + comp, arrive[2] + step)
            best[i] = path
            if path[2] > result[2]:
                result = path
        return PartitionLatency(result[0], result[1], result[2])


def unique_devices(devices: Sequence[Device]) -> list[Device]:
    """Distinct devices in first-seen order: equal devices are one key of a dict."""
    return list(dict.fromkeys(devices))


class Placement:
    """Greedy device placement, as ``get_device_to_partitions_mapping`` does it.

    Partitions are placed in list order; before each one the devices are stably sorted by
    the memory they have left, and the partition goes to the first device whose remaining
    memory exceeds what the partition would add there.

    Args:
        devices (List[Device]): the devices, duplicates collapsed.
    """

    __slots__ = ("devices", "order", "left", "count")

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.order = list(range(len(devices)))
        self.left = [d.available_mem_bytes for d in devices]
        # How many partitions with at least one node each device holds: a device without
        # nodes costs a partition its full used memory.
        self.count = [0] * len(devices)

    def copy(self) -> Placement:
        twin = Placement.__new__(Placement)
        twin.devices = self.devices
        twin.order = list(self.order)
        twin.left = list(self.left)
        twin.count = list(self.count)
        return twin

    def place(self, extra: Callable[[int], int], used_mem: int, has_nodes: bool = True) -> int | None:
        """Place one partition; ``extra(d)`` is its cost on a device already holding
        nodes. Returns the device index, or None when nothing fits."""
        left = self.left
        self.order.sort(key=left.__getitem__)
        for d in self.order:
            needed = extra(d) if self.count[d] else used_mem
            if needed < left[d]:
                left[d] -= needed
                self.count[d] += has_nodes
                return d
        return None


def assign_devices(
    devices: Sequence[Device],
    ids: list[list[int]],
    used_mem: Sequence[int],
    has_nodes: Sequence[bool],
    extra: Callable[[int, list[int]], int],
) -> bool:
    """Give a device to every partition whose id list is empty, in list order.

    Partitions that already have ids count against their devices' memory first. A partition
    without a device goes to the device (stably sorted by memory left) where
    ``extra(partition, partitions_on_that_device)`` is below the memory left; its logical id
    is appended to ``ids``.

    Returns:
        bool: whether every partition found a device (placement stops at the first that
        does not).

    Raises:
        KeyError: an id list names a logical id no device has.
    """
    distinct = unique_devices(devices)
    slot = {d: k for k, d in enumerate(distinct)}
    # A logical id shared by several devices names the last of them.
    by_id = {d.logical_id: slot[d] for d in devices}
    placement = Placement(distinct)
    on_device: list[list[int]] = [[] for _ in distinct]
    waiting = []
    for k, held in enumerate(ids):
        if not held:
            waiting.append(k)
            continue
        for logical_id in held:
            d = by_id[logical_id]
            on_device[d].append(k)
            placement.left[d] -= used_mem[k]
            placement.count[d] += has_nodes[k]
    for k in waiting:

        def cost(d: int, k: int = k) -> int:
            return extra(k, on_device[d])

        d = placement.place(cost, used_mem[k], has_nodes[k])
        if d is None:
            return False
        on_device[d].append(k)
        ids[k].append(distinct[d].logical_id)
    return True
