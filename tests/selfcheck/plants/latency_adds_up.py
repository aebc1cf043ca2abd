"""partitioner_utils: along the critical path a node's memory and compute latencies are
added instead of overlapped (the overall latency takes their sum, not their maximum)."""

from __future__ import annotations

from typing import Any

from plants import replace
from reference import partitioner_utils
from reference.partitioner_utils import PartitionLatency


def _longest_path(nodes: set[Any], latency_of: dict[Any, Any], position: dict[Any, int]) -> PartitionLatency:
    ops = sorted((n for n in nodes if n.op not in partitioner_utils._HOLDERS), key=position.__getitem__)
    best: dict[Any, PartitionLatency] = {}
    result = partitioner_utils._ZERO
    for node in ops:
        arrive = partitioner_utils._ZERO
        found = False
        for source in partitioner_utils._inputs_of(node):
            path = best.get(source)
            if path is not None and (not found or path.overall_latency_sec > arrive.overall_latency_sec):
                arrive, found = path, True
        cost = latency_of[node]
        path = PartitionLatency(
            arrive.mem_latency_sec + cost.mem_latency_sec,
            arrive.computer_latency_sec + cost.computer_latency_sec,
            arrive.overall_latency_sec + cost.computer_latency_sec + cost.mem_latency_sec,
        )
        best[node] = path
        if path.overall_latency_sec > result.overall_latency_sec:
            result = path
    return result


replace("partitioner_utils", "_longest_path", _longest_path)
