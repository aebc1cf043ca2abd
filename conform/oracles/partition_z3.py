"""A z3 oracle for accelerator partitions: constraint checks and the optimal latency.

:func:`violations` checks a partitioning against the constraints every heuristic mode is
meant to satisfy: each operation in exactly one partition, each partition on at least one
existing device, each device's memory footprint within its capacity, and no cycle between
partitions.

:func:`optimal_latency` solves, for graphs of at most :data:`MAX_OPERATIONS` operations,
the best critical-path latency any partitioning onto the same devices can reach under the
partitioner's cost model (``reference.partitioner_utils``): a node costs the larger of its
memory and compute latencies, an edge between operations on different devices costs the
bytes the consumer's partition reads from the producer's (its output, and any placeholder
both read) over the transfer rate. Splitting a partition into one partition per operation
on the same device never lengthens its critical path under that model (a partition starts
when all of its inputs have arrived and releases its outputs only when it finishes), so
the optimum is over node-to-device assignments, with device memory as a constraint:
every heuristic's latency is at least this value.

:func:`check` combines both into a :class:`PartitionCheck` with the optimality gap.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

MAX_OPERATIONS = 12
_HOLDERS = ("placeholder", "get_attr")


@dataclasses.dataclass
class PartitionCheck:
    """What the oracle found for one partitioning.

    ``gap`` is ``heuristic_latency - optimal_latency`` (never negative beyond rounding)
    and ``relative_gap`` the same over the optimum; both are None when the optimum was not
    computed (too many operations, solver timeout, an invalid partitioning).
    """

    violations: list[str]
    heuristic_latency: float | None = None
    optimal_latency: float | None = None
    status: str = "skipped"

    @property
    def gap(self) -> float | None:
        if self.heuristic_latency is None or self.optimal_latency is None:
            return None
        return self.heuristic_latency - self.optimal_latency

    @property
    def relative_gap(self) -> float | None:
        gap = self.gap
        if gap is None or not self.optimal_latency:
            return None
        return gap / self.optimal_latency

    def notes(self) -> dict[str, Any]:
        """The JSON-able record of the check, for an outcome's notes."""
        return {
            "violations": list(self.violations),
            "status": self.status,
            "heuristic_latency": self.heuristic_latency,
            "optimal_latency": self.optimal_latency,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
        }


def _inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    return list(dict.fromkeys(node.all_input_nodes))


def _operations(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    return [n for n in graph.nodes if n.op not in (*_HOLDERS, "output")]


def footprint(nodes: set[torch.fx.Node]) -> int:
    """Bytes a device holding ``nodes`` needs: every node's total size plus the output of
    each distinct node they read from elsewhere."""
    size = sum(n.size_bytes.total_size for n in nodes)
    outside = {s for n in nodes for s in _inputs(n) if s not in nodes}
    return size + sum(s.size_bytes.output_size for s in outside)


def violations(partitions: Sequence[Any], devices: Sequence[Any], graph: torch.fx.Graph) -> list[str]:
    """Constraints ``partitions`` break (an empty list when it is a valid partitioning).

    Args:
        partitions: partition objects with ``nodes``, ``logical_device_ids``, ``children``
            and ``partition_id`` (either implementation's).
        devices: the configured devices (``name``, ``available_mem_bytes``, ``logical_id``).
        graph: the partitioned graph, its nodes sized.
    """
    found: list[str] = []
    homes: dict[torch.fx.Node, list[int]] = {}
    for p in partitions:
        for node in p.nodes:
            if node.op not in _HOLDERS:
                homes.setdefault(node, []).append(p.partition_id)
    for node in _operations(graph):
        held = homes.get(node, [])
        if len(held) != 1:
            found.append(f"operation {node.name} is in {len(held)} partitions {sorted(held)}")
    sharing: dict[int, list[Any]] = {}
    for d in dict.fromkeys(devices):
        sharing.setdefault(d.logical_id, []).append(d)
    on_device: dict[Any, set[torch.fx.Node]] = {}
    for p in partitions:
        if not p.logical_device_ids:
            found.append(f"partition {p.partition_id} has no device")
        for logical_id in p.logical_device_ids:
            candidates = sharing.get(logical_id)
            if candidates is None:
                found.append(f"partition {p.partition_id} names unknown logical device {logical_id}")
            elif len(candidates) == 1:
                on_device.setdefault(candidates[0], set()).update(p.nodes)
            else:
                # A logical id several devices share does not say which one holds the
                # partition: only the partition alone is checked, against the largest.
                largest = max(candidates, key=lambda d: d.available_mem_bytes)
                need = footprint(set(p.nodes))
                if need > largest.available_mem_bytes:
                    found.append(f"device {largest.name} needs {need} bytes, has {largest.available_mem_bytes}")
    for device, nodes in on_device.items():
        need = footprint(nodes)
        if need > device.available_mem_bytes:
            found.append(f"device {device.name} needs {need} bytes, has {device.available_mem_bytes}")
    if _has_cycle(partitions):
        found.append("the partitions depend on each other in a cycle")
    return found


def _has_cycle(partitions: Sequence[Any]) -> bool:
    state: dict[int, int] = {}  # 1: on the stack, 2: done
    for start in partitions:
        if id(start) in state:
            continue
        stack = [(start, iter(start.children))]
        state[id(start)] = 1
        while stack:
            partition, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[id(partition)] = 2
                stack.pop()
            elif state.get(id(child)) == 1:
                return True
            elif id(child) not in state:
                state[id(child)] = 1
                stack.append((child, iter(child.children)))
    return False


def optimal_latency(
    graph: torch.fx.Graph,
    devices: Sequence[Any],
    latency_of: dict[torch.fx.Node, Any],
    transfer_rate_bytes_per_sec: float,
    *,
    timeout_ms: int = 5000,
) -> tuple[str, float | None]:
    """The minimum critical-path latency over assignments of operations to ``devices``.

    Returns:
        ``(status, latency)``: ``"optimal"`` with the value, ``"infeasible"`` when no
        assignment fits the devices' memory, ``"timeout"`` or ``"skipped"`` (too many
        operations, no devices, a non-positive transfer rate) with None.
    """
    ops = _operations(graph)
    distinct = list(dict.fromkeys(devices))
    if len(ops) > MAX_OPERATIONS or not distinct or transfer_rate_bytes_per_sec <= 0:
        return "skipped", None
    # Imported here: the constraint checks, which every partition run uses, need no solver.
    import z3
    index = {n: i for i, n in enumerate(ops)}
    opt = z3.Optimize()
    opt.set("timeout", timeout_ms)
    where = [z3.Int(f"d{i}") for i in range(len(ops))]
    start = [z3.Real(f"t{i}") for i in range(len(ops))]
    span = z3.Real("span")
    for i, node in enumerate(ops):
        opt.add(where[i] >= 0, where[i] < len(distinct), start[i] >= 0)
        cost = latency_of[node]
        weight = max(cost.computer_latency_sec, cost.mem_latency_sec)
        opt.add(span >= start[i] + _q(weight))
        for source in _inputs(node):
            if source not in index:
                continue
            j = index[source]
            shared = {s for s in _inputs(source) if s.op in _HOLDERS} & set(_inputs(node))
            sent = source.size_bytes.output_size + sum(s.size_bytes.output_size for s in shared)
            comm = _q(sent / transfer_rate_bytes_per_sec)
            w_source = max(latency_of[source].computer_latency_sec, latency_of[source].mem_latency_sec)
            opt.add(start[i] >= start[j] + _q(w_source) + z3.If(where[i] == where[j], 0, comm))
    for d, device in enumerate(distinct):
        opt.add(_device_bytes(ops, where, d) <= device.available_mem_bytes)
    handle = opt.minimize(span)
    verdict = opt.check()
    if verdict == z3.unsat:
        return "infeasible", None
    if verdict != z3.sat:
        return "timeout", None
    value = opt.upper(handle)
    return "optimal", _to_float(value)


def _device_bytes(ops: list[torch.fx.Node], where: list[Any], d: int) -> Any:
    """Footprint of device ``d`` as a z3 term over the assignment."""
    import z3

    index = {n: i for i, n in enumerate(ops)}
    terms: list[Any] = []
    for i, node in enumerate(ops):
        terms.append(z3.If(where[i] == d, node.size_bytes.total_size, 0))
    readers: dict[torch.fx.Node, list[int]] = {}
    for i, node in enumerate(ops):
        for source in _inputs(node):
            readers.setdefault(source, []).append(i)
    for source, reading in readers.items():
        here = z3.Or([where[i] == d for i in reading])
        if source.op in _HOLDERS:
            terms.append(z3.If(here, source.size_bytes.total_size, 0))
        elif source in index:
            away = where[index[source]] != d
            terms.append(z3.If(z3.And(here, away), source.size_bytes.output_size, 0))
    return z3.Sum(terms)


def _q(value: float) -> Any:
    import z3

    return z3.RealVal(float(value))


def _to_float(value: Any) -> float:
    import z3

    if z3.is_int_value(value):
        return float(value.as_long())
    if z3.is_rational_value(value):
        return value.numerator_as_long() / value.denominator_as_long()
    return float(value.as_decimal(20).rstrip("?"))


def check(
    partitions: Sequence[Any],
    devices: Sequence[Any],
    graph: torch.fx.Graph,
    latency_of: dict[torch.fx.Node, Any],
    transfer_rate_bytes_per_sec: float,
    heuristic_latency: float | None,
    *,
    timeout_ms: int = 5000,
) -> PartitionCheck:
    """Constraint violations of ``partitions`` and, when it is valid and small, the
    optimal latency for the same devices beside the heuristic's."""
    found = violations(partitions, devices, graph)
    report = PartitionCheck(found, heuristic_latency=heuristic_latency)
    if found or heuristic_latency is None:
        return report
    report.status, report.optimal_latency = optimal_latency(
        graph, devices, latency_of, transfer_rate_bytes_per_sec, timeout_ms=timeout_ms
    )
    return report


def summarize_gaps(outcomes: Iterable[Mapping[str, Any] | Any]) -> dict[str, dict[str, Any]]:
    """Optimality gaps the ``partition`` row recorded, per mode.

    Reads the oracle's record that the driver leaves in each outcome's notes
    (``notes["reference"]["partition_oracle"]``); other transforms' outcomes and outcomes
    without a record are ignored.

    Args:
        outcomes: outcome dicts (as ``conform export --jsonl`` writes them) or
            :class:`~conform.outcome.Outcome` objects.

    Returns:
        For each mode (sorted): ``checked`` (outcomes the oracle looked at), ``count``
        (those with a computed gap), ``median_relative_gap`` and ``max_relative_gap``
        (None when ``count`` is 0), and ``statuses`` (how many ended in each solver status:
        ``optimal``, ``skipped`` for graphs above :data:`MAX_OPERATIONS` operations,
        ``timeout``, ...).
    """
    gaps: dict[str, list[float]] = {}
    checked: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        row = outcome if isinstance(outcome, Mapping) else outcome.to_json()
        if row.get("transform") != "partition":
            continue
        record = ((row.get("notes") or {}).get("reference") or {}).get("partition_oracle")
        if not record:
            continue
        mode = (row.get("params") or {}).get("mode", "size_based")
        statuses = checked.setdefault(mode, {})
        statuses[record.get("status", "skipped")] = statuses.get(record.get("status", "skipped"), 0) + 1
        gaps.setdefault(mode, [])
        if record.get("relative_gap") is not None:
            gaps[mode].append(float(record["relative_gap"]))
    return {
        mode: {
            "checked": sum(checked[mode].values()),
            "count": len(values),
            "median_relative_gap": statistics.median(values) if values else None,
            "max_relative_gap": max(values) if values else None,
            "statuses": dict(sorted(checked[mode].items())),
        }
        for mode, values in sorted(gaps.items())
    }
