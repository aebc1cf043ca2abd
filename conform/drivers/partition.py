"""Driver for the accelerator ``Partitioner``: sizes the graph, builds the config from the
JSON-able parameters (``generators.params.partition``) with the implementation under test,
and partitions.

Everything goes through the same implementation: ``get_size_of_all_nodes``, ``Device``,
``NodeLatency``, ``PartitionerConfig`` and ``Partitioner``. The applied value is a
:class:`PartitionRun`; the runnable is the module with submodules.

The reference side's partitions are checked against the constraints every heuristic mode
promises (:func:`conform.oracles.partition_z3.violations`): a violation is raised as
:class:`PartitionConstraintViolation`, so it is reported as a finding (the reference
reproduces upstream's heuristics, so such a finding is an upstream defect to register).
``aot_based`` partitions are the user's and are not checked.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from conform.adapters import Applied, NotApplicable, Subject, graph_modules_in
from conform.errors import ConformError
from conform.implementations import Implementation
from conform.oracles import partition_z3

if TYPE_CHECKING:
    from conform.registry import TransformSpec

_UNPARTITIONED = ("placeholder", "get_attr", "output")


class PartitionConstraintViolation(ConformError):
    """The partitions a heuristic mode produced break a constraint it promises."""


@dataclasses.dataclass
class PartitionRun:
    """One ``partition_graph`` call and what it was given.

    ``order_sensitive`` is set for a ``kl_based`` run in which the reference chose among
    swaps of equal cost: upstream breaks such ties by set iteration order (memory
    addresses), so its partitions are then one of several possible results.
    """

    impl: Implementation
    partitioner: Any
    result: Any
    config: Any
    graph_module: torch.fx.GraphModule
    mode: str
    order_sensitive: bool = False

    def oracle(self, *, timeout_ms: int = 5000) -> partition_z3.PartitionCheck:
        """Constraint check and, for small graphs, the optimality gap of this run."""
        utils = self.impl.partitioner_utils
        partitions = self.partitioner.partitions
        latency_of = self.config.node_to_latency_mapping
        rate = self.config.transfer_rate_bytes_per_sec
        try:
            mapping = utils.get_partition_to_latency_mapping(partitions, latency_of)
            heuristic = utils.get_latency_of_partitioned_graph(partitions, mapping, rate)
        except Exception:
            heuristic = None
        return partition_z3.check(
            partitions, self.config.devices, self.graph_module.graph, latency_of, rate, heuristic,
            timeout_ms=timeout_ms,
        )


def total_size(graph_module: torch.fx.GraphModule) -> int:
    """Sum of ``size_bytes.total_size`` over the nodes before the output."""
    total = 0
    for node in graph_module.graph.nodes:
        if node.op == "output":
            break
        total += node.size_bytes.total_size
    return total


def largest_need(graph_module: torch.fx.GraphModule, op: str | None = None) -> int:
    """Bytes the largest single-operation partition needs: the operation's total size and
    the output of each distinct node it reads (among operations of opcode ``op`` only, when
    given: 0 where there is none)."""
    largest = 0
    for node in graph_module.graph.nodes:
        if node.op in _UNPARTITIONED or op is not None and node.op != op:
            continue
        need = node.size_bytes.total_size + sum(s.size_bytes.output_size for s in dict.fromkeys(node.all_input_nodes))
        largest = max(largest, need)
    return largest


def device_memory(spec: Any, total: int, largest: int, count: int = 1,
                  largest_of: dict[str, int] | None = None) -> int:
    """Bytes of a device memory spec (see ``generators.params.partition``) for a module of
    ``total`` bytes whose largest operation needs ``largest``, on one of ``count`` devices;
    ``largest_of``: the largest need per opcode, for specs that name one (``"of"``)."""
    if not isinstance(spec, dict):
        return int(spec)
    if "under_largest" in spec:
        if spec.get("of") and (largest_of or {}).get(spec["of"]):
            largest = (largest_of or {})[spec["of"]]
        # from the module's size shared by the devices up to one byte under the largest
        # operation's need (that bound alone when the devices cannot hold the module so)
        low, high = -(-total // max(count, 1)), largest - 1
        return high if low > high else low + int(float(spec["under_largest"]) * (high - low))
    if "largest_fraction" in spec:
        return int(largest * spec["largest_fraction"])
    memory = int(total * spec["fraction"])
    if spec.get("fits_largest"):
        memory = max(memory, largest + 1)
    return memory


def build_config(impl: Implementation, graph_module: torch.fx.GraphModule, params: dict[str, Any]) -> Any:
    """A ``PartitionerConfig`` of ``impl`` from JSON-able ``params`` on a sized graph."""
    utils = impl.partitioner_utils
    total, largest = total_size(graph_module), largest_need(graph_module)
    devices = []
    specs = params.get("devices", [])
    largest_of = {op: largest_need(graph_module, op) for op in ("call_function", "call_method", "call_module")}
    for spec in specs:
        memory = device_memory(spec["memory"], total, largest, len(specs), largest_of)
        devices.append(utils.Device(spec["name"], memory, int(spec["logical_id"])))
    rule = params.get("latency") or {}
    missing = set(rule.get("missing", ()))
    scale = rule.get("scale", {})
    latency = {}
    for node in graph_module.graph.nodes:
        if node.op in _UNPARTITIONED or node.name in missing:
            continue
        size = node.size_bytes
        mem_factor, compute_factor = scale.get(node.name, (1.0, 1.0))
        latency[node] = utils.NodeLatency(
            size.output_size * rule.get("mem_sec_per_byte", 1e-6) * mem_factor,
            size.total_size * rule.get("compute_sec_per_byte", 1e-7) * compute_factor,
        )
    by_name = {n.name: n for n in graph_module.graph.nodes}
    to_partition = {by_name[k]: int(v) for k, v in params.get("node_to_partition", {}).items() if k in by_name}
    to_devices = {int(k): list(v) for k, v in params.get("partition_to_logical_device", {}).items()}
    return utils.PartitionerConfig(
        devices=devices,
        mode=utils.PartitionMode[params.get("mode", "size_based")],
        transfer_rate_bytes_per_sec=float(params.get("transfer_rate_bytes_per_sec", 0.0)),
        node_to_latency_mapping=latency,
        node_to_partition_mapping=to_partition,
        partition_to_logical_device_mapping=to_devices,
        saturate_host=bool(params.get("saturate_host", False)),
    )


def _sizes(impl: Implementation, subject: Subject) -> dict[str, tuple[int, int]]:
    twin = subject.clone()
    impl.graph_manipulation.get_size_of_all_nodes(twin.graph_module, list(twin.inputs))
    return {
        n.name: (n.size_bytes.output_size, n.size_bytes.total_size)
        for n in twin.graph_module.graph.nodes
        if hasattr(n, "size_bytes")
    }


def size(impl: Implementation, subject: Subject) -> None:
    """``get_size_of_all_nodes`` of ``impl`` on the subject.

    Both implementations must size the graph, and alike: a graph that one of them cannot
    size (non-tensor values, several tensors from one node) or sizes differently is
    ``graph_manipulation``'s divergence, reported by its own row, and outside what this
    row compares (both sides skip it the same way).
    """
    if subject.kwargs:
        raise NotApplicable("the partitioner sizes nodes from positional example inputs only")
    try:
        upstream, reference = (_sizes(Implementation(name), subject) for name in ("upstream", "reference"))
    except Exception as exc:
        raise NotApplicable(f"node sizes are unavailable: {type(exc).__name__}: {exc}") from exc
    if upstream != reference:
        raise NotApplicable("upstream and the reference size the nodes differently")
    impl.graph_manipulation.get_size_of_all_nodes(subject.graph_module, list(subject.inputs))


def kl_order_sensitive(subject: Subject, params: dict[str, Any]) -> bool:
    """Whether the reference's kl_based search breaks a tie between swaps of equal cost on
    this case (computed on a private copy, the same way for both implementations)."""
    reference = Implementation("reference")
    twin = subject.clone()
    try:
        size(reference, twin)
        partitioner = reference.accelerator_partitioner.Partitioner()
        partitioner.partition_graph(twin.graph_module, twin.module, build_config(reference, twin.graph_module, params))
    except Exception:
        return False
    return bool(getattr(partitioner, "_order_sensitive", False))


def drive(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``Partitioner().partition_graph(gm, module, config)`` with ``impl``'s classes."""
    mode = params.get("mode", "size_based")
    sensitive = mode == "kl_based" and kl_order_sensitive(subject, params)
    size(impl, subject)
    config = build_config(impl, subject.graph_module, params)
    partitioner = impl.accelerator_partitioner.Partitioner()
    result = partitioner.partition_graph(subject.graph_module, subject.module, config)
    parent = result.module_with_submodules
    run = PartitionRun(impl, partitioner, result, config, subject.graph_module, mode, sensitive)
    notes: dict[str, Any] = {}
    if impl.name == "reference" and mode != "aot_based":
        broken = partition_z3.violations(partitioner.partitions, config.devices, subject.graph_module.graph)
        if broken:
            raise PartitionConstraintViolation(f"{mode} partitions break constraints: " + "; ".join(broken))
        # the heuristic's distance from the optimal critical path, for graphs small enough
        # for the solver (the oracle skips larger ones)
        notes["partition_oracle"] = run.oracle().notes()
    return Applied(runnable=parent, value=run, subject=subject, graphs=graph_modules_in(parent), notes=notes)
