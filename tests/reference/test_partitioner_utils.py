"""partitioner_utils: the data model and the cost model, on both implementations."""

from __future__ import annotations

import enum
import inspect

import pytest
import torch
from _partition_cases import (
    chain,
    devices,
    diamond,
    operations,
    partition,
    size_latencies,
    sized,
    total_size,
)

from conform.implementations import Implementation

UPSTREAM = Implementation("upstream")
REFERENCE = Implementation("reference")

PUBLIC = [
    "Partition",
    "Device",
    "NodeLatency",
    "PartitionLatency",
    "PartitionMode",
    "PartitionerConfig",
    "get_extra_size_of",
    "get_latency_of_one_partition",
    "get_partition_to_latency_mapping",
    "get_comm_latency_between",
    "get_latency_of_partitioned_graph",
]


def shape(function: object) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults (annotations are strings on one side; enum
    defaults are compared by class name and member)."""
    out = []
    for p in inspect.signature(function).parameters.values():
        default = p.default
        if isinstance(default, enum.Enum):
            default = (type(default).__name__, default.name)
        out.append((p.name, p.kind, default))
    return out


@pytest.mark.parametrize("name", PUBLIC)
def test_public_signatures_match_upstream(name: str) -> None:
    ours = getattr(REFERENCE.partitioner_utils, name)
    theirs = getattr(UPSTREAM.partitioner_utils, name)
    assert shape(ours) == shape(theirs)
    for method in ("add_node", "remove_node", "recalculate_mem_size"):
        if hasattr(theirs, method):
            assert shape(getattr(ours, method)) == shape(getattr(theirs, method))


def test_named_tuples_and_modes(impl: Implementation) -> None:
    utils = impl.partitioner_utils
    assert utils.Device._fields == ("name", "available_mem_bytes", "logical_id")
    assert utils.NodeLatency._fields == ("mem_latency_sec", "computer_latency_sec")
    assert utils.PartitionLatency._fields == ("mem_latency_sec", "computer_latency_sec", "overall_latency_sec")
    assert [(m.name, m.value) for m in utils.PartitionMode] == [
        ("size_based", 0), ("sparse_nn", 1), ("cost_aware", 2), ("kl_based", 3), ("aot_based", 4),
    ]
    config = utils.PartitionerConfig([])
    assert config.mode == utils.PartitionMode.size_based
    assert config.transfer_rate_bytes_per_sec == 0.0
    assert config.node_to_latency_mapping == {} and config.node_to_partition_mapping == {}
    assert config.partition_to_logical_device_mapping == {} and config.saturate_host is False


def test_extra_size_counts_missing_inputs_once(impl: Implementation) -> None:
    module, inputs = diamond()
    gm = sized(impl, module, inputs)
    nodes = {n.name: n for n in gm.graph.nodes}
    add = nodes["add"]  # reads relu and sigmoid, 32 bytes out each
    assert impl.partitioner_utils.get_extra_size_of(add, set()) == 32 + 32 + 32
    assert impl.partitioner_utils.get_extra_size_of(add, {nodes["relu"]}) == 32 + 32
    assert impl.partitioner_utils.get_extra_size_of(nodes["a"], set()) == 32 + 112


def test_extra_size_needs_sizes(impl: Implementation) -> None:
    module, _ = diamond()
    gm = torch.fx.symbolic_trace(module)
    add = next(n for n in gm.graph.nodes if n.name == "add")
    with pytest.raises(RuntimeError, match="size_bytes"):
        impl.partitioner_utils.get_extra_size_of(add, set())


def test_add_node_brings_its_placeholders(impl: Implementation) -> None:
    module, inputs = diamond()
    gm = sized(impl, module, inputs)
    nodes = {n.name: n for n in gm.graph.nodes}
    part = impl.partitioner_utils.Partition(3)
    part.add_node(nodes["a"])
    assert {n.name for n in part.nodes} == {"x", "a"}
    assert part.used_mem_bytes == 32 + 112
    part.add_node(nodes["relu"])
    assert part.used_mem_bytes == 32 + 112 + 32
    assert str(part) == "3" and part.bfs_level == -1 and part.logical_device_ids == []


def test_remove_node_recomputes_memory_and_drops_unused_placeholders(impl: Implementation) -> None:
    module, inputs = diamond()
    gm = sized(impl, module, inputs)
    nodes = {n.name: n for n in gm.graph.nodes}
    part = impl.partitioner_utils.Partition(0)
    for name in ("a", "sigmoid", "relu"):
        part.add_node(nodes[name])
    assert part.used_mem_bytes == 32 + 112 + 32 + 32
    part.remove_node(nodes["a"])  # relu now reads `a` from outside; x still read by sigmoid
    assert {n.name for n in part.nodes} == {"x", "sigmoid", "relu"}
    assert part.used_mem_bytes == 32 + 32 + (32 + 32)
    part.remove_node(nodes["sigmoid"])  # nothing reads x any more
    assert {n.name for n in part.nodes} == {"relu"}
    assert part.used_mem_bytes == 32 + 32
    part.remove_node(nodes["b"])  # not in the partition: nothing happens
    assert part.used_mem_bytes == 64


def _diamond_latencies(impl: Implementation, gm: torch.fx.GraphModule) -> dict:
    latency = impl.partitioner_utils.NodeLatency
    return {n: latency(0.5 * i, 0.25 * (7 - i)) for i, n in enumerate(operations(gm))}


def test_latency_of_one_partition_is_the_critical_path(impl: Implementation) -> None:
    module, inputs = diamond()
    gm = sized(impl, module, inputs)
    utils = impl.partitioner_utils
    part = utils.Partition(0)
    for node in operations(gm):
        part.add_node(node)
    # a(1.75) -> relu(1.5) -> add(1.5) -> b(2.0) -> mul(2.5), against sigmoid(1.25) first.
    assert utils.get_latency_of_one_partition(part, _diamond_latencies(impl, gm)) == (6.5, 5.5, 9.25)
    assert utils.get_latency_of_one_partition(utils.Partition(1), {}) == (0.0, 0.0, 0.0)


def test_latency_of_one_partition_needs_every_operation(impl: Implementation) -> None:
    module, inputs = diamond()
    gm = sized(impl, module, inputs)
    part = impl.partitioner_utils.Partition(0)
    for node in operations(gm):
        part.add_node(node)
    latencies = _diamond_latencies(impl, gm)
    del latencies[operations(gm)[3]]
    with pytest.raises(KeyError):
        impl.partitioner_utils.get_latency_of_one_partition(part, latencies)


def _chain_partitions(impl: Implementation) -> tuple:
    module, inputs = chain(5)
    gm = sized(impl, module, inputs)
    partitioner, _ = partition(impl, module, gm, devices=devices(impl, [total_size(gm) // 2 + 1] * 3))
    return gm, partitioner.partitions


def test_partition_latencies_comm_and_critical_path(impl: Implementation) -> None:
    utils = impl.partitioner_utils
    gm, parts = _chain_partitions(impl)
    mapping = utils.get_partition_to_latency_mapping(parts, size_latencies(impl, gm))
    assert list(mapping) == parts
    assert [tuple(mapping[p]) for p in parts] == [
        (0.768, 0.1344, 0.768), (0.768, 0.1344, 0.768), (0.384, 0.0672, 0.384),
    ]
    # The chain's running value crosses each cut: 128 bytes at 1000 bytes/s.
    assert utils.get_comm_latency_between(parts[0], parts[1], 1e3) == 0.128
    assert utils.get_latency_of_partitioned_graph(parts, mapping, 1e3) == 2.176
    parts[1].logical_device_ids = list(parts[0].logical_device_ids)
    assert utils.get_comm_latency_between(parts[0], parts[1], 1e3) == 0.0
    assert utils.get_latency_of_partitioned_graph(parts, mapping, 1e3) == 2.048


def test_comm_with_zero_rate_divides_by_zero(impl: Implementation) -> None:
    _, parts = _chain_partitions(impl)
    with pytest.raises(ZeroDivisionError):
        impl.partitioner_utils.get_comm_latency_between(parts[0], parts[1], 0.0)
