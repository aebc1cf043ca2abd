"""The z3 partition oracle on both implementations' results: valid heuristic partitions
pass its constraint checks, planted invalid ones do not, and no heuristic beats the optimum
it computes."""

from __future__ import annotations

import pytest
import torch
from _partition_cases import (
    chain,
    devices,
    diamond,
    ops,
    partition,
    size_latencies,
    sized,
    sparse,
    total_size,
)

from conform.adapters import Subject
from conform.drivers.partition import PartitionRun, build_config, drive
from conform.implementations import Implementation
from conform.oracles import partition_z3
from conform.registry import get


def _chain_result(impl: Implementation, mode: str = "size_based") -> tuple:
    module, inputs = chain(3)
    gm = sized(impl, module, inputs)
    devs = devices(impl, [total_size(gm) // 2 + 1] * 3)
    partitioner, _ = partition(
        impl, module, gm, devices=devs, mode=mode, transfer_rate_bytes_per_sec=1e3,
        node_to_latency_mapping=size_latencies(impl, gm),
    )
    return gm, devs, partitioner.partitions


@pytest.mark.parametrize("mode", ["size_based", "cost_aware", "kl_based"])
def test_heuristic_partitions_satisfy_the_constraints(impl: Implementation, mode: str) -> None:
    gm, devs, parts = _chain_result(impl, mode)
    assert partition_z3.violations(parts, devs, gm.graph) == []


def test_sparse_nn_partitions_satisfy_the_constraints(impl: Implementation) -> None:
    module, inputs = sparse()
    gm = sized(impl, module, inputs)
    devs = devices(impl, [1224] * 4)
    partitioner, _ = partition(impl, module, gm, devices=devs, mode="sparse_nn")
    assert partition_z3.violations(partitioner.partitions, devs, gm.graph) == []


def test_planted_cycle_is_found(impl: Implementation) -> None:
    gm, devs, parts = _chain_result(impl)
    # Partitions are one layer each. Move the first layer's add into the second partition
    # and the second layer's linear into the first: the partitions now feed each other.
    add = next(n for n in parts[0].nodes if n.name == "add")
    lin = next(n for n in parts[1].nodes if n.name == "lins_1")
    parts[0].remove_node(add)
    parts[1].add_node(add)
    parts[1].remove_node(lin)
    parts[0].add_node(lin)
    impl.accelerator_partitioner.set_parents_and_children(parts)
    assert "the partitions depend on each other in a cycle" in partition_z3.violations(parts, devs, gm.graph)


def test_planted_overfull_device_is_found(impl: Implementation) -> None:
    gm, devs, parts = _chain_result(impl)
    parts[1].logical_device_ids = list(parts[0].logical_device_ids)
    found = partition_z3.violations(parts, devs, gm.graph)
    assert any(v.startswith("device dev_0 needs") for v in found), found


def test_planted_unplaced_and_duplicated_operations_are_found(impl: Implementation) -> None:
    gm, devs, parts = _chain_result(impl)
    parts[2].logical_device_ids = []
    parts[2].add_node(next(n for n in parts[1].nodes if n.name == "relu_1"))
    found = partition_z3.violations(parts, devs, gm.graph)
    assert "partition 2 has no device" in found
    assert "operation relu_1 is in 2 partitions [1, 2]" in found


def test_optimum_of_a_two_operation_chain(impl: Implementation) -> None:
    module, inputs = ops([("relu", 0), ("relu", 1)])
    gm = sized(impl, module, inputs)
    latency = {n: impl.partitioner_utils.NodeLatency(1.0, 0.5) for n in gm.graph.nodes if n.op == "call_function"}
    # Both on one 96-byte device: 1 + 1, no transfer.
    status, best = partition_z3.optimal_latency(gm.graph, devices(impl, [96, 96]), latency, 32.0)
    assert (status, best) == ("optimal", 2.0)
    # 95 bytes hold one relu each: the 32-byte transfer at 32 bytes/s adds a second.
    status, best = partition_z3.optimal_latency(gm.graph, devices(impl, [95, 95]), latency, 32.0)
    assert (status, best) == ("optimal", 3.0)
    assert partition_z3.optimal_latency(gm.graph, devices(impl, [40, 40]), latency, 32.0) == ("infeasible", None)


@pytest.mark.parametrize("mode", ["size_based", "cost_aware", "kl_based"])
def test_no_heuristic_beats_the_optimum(impl: Implementation, mode: str) -> None:
    module, inputs = diamond()
    gm = torch.fx.symbolic_trace(module)
    subject = Subject(module, gm, inputs, {})
    params = {
        "mode": mode,
        "devices": [{"name": f"dev_{i}", "memory": {"fraction": 0.6}, "logical_id": i} for i in range(3)],
        "transfer_rate_bytes_per_sec": 1e3,
        "latency": {"mem_sec_per_byte": 1e-3, "compute_sec_per_byte": 1e-4, "scale": {}, "missing": []},
    }
    run = drive(impl, get("partition"), subject, params).value
    assert isinstance(run, PartitionRun)
    report = run.oracle()
    assert report.violations == [] and report.status == "optimal"
    assert report.gap is not None and report.gap >= -1e-12
    assert report.notes()["optimal_latency"] == report.optimal_latency


def test_oracle_skips_large_graphs(impl: Implementation) -> None:
    module, inputs = chain(5)
    gm = sized(impl, module, inputs)
    config = build_config(impl, gm, {"devices": [{"name": "d", "memory": 10**6, "logical_id": 0}]})
    latency = size_latencies(impl, gm)
    assert partition_z3.optimal_latency(gm.graph, config.devices, latency, 1e3) == ("skipped", None)
