"""accelerator_partitioner: every mode, the helpers and the errors, on both implementations.

Expected values were read off upstream's behaviour; both implementations must reproduce
them exactly (assignment, ids, memory, devices, DAG, BFS levels).
"""

from __future__ import annotations

import enum
import inspect

import pytest
import torch
from _known import upstream_bug
from _partition_cases import (
    chain,
    devices,
    groups,
    operations,
    ops,
    partition,
    size_latencies,
    sized,
    sparse,
    summary,
    total_size,
)

from conform.implementations import Implementation
from conform.witnesses.split import ReadThenWrite

UPSTREAM = Implementation("upstream")
REFERENCE = Implementation("reference")

HELPERS = [
    "reset_partition_device",
    "combine_two_partitions",
    "set_parents_and_children",
    "reorganize_partitions",
    "get_bfs_level_partition",
    "get_node_to_partition_mapping",
    "get_logical_id_to_device",
    "get_device_partition_stats",
    "get_device_to_partitions_mapping",
    "check_dependency",
]
METHODS = [
    "partition_graph",
    "find_single_partition",
    "size_based_partition",
    "saturate_host",
    "do_partition",
    "dump_dag",
    "create_partition",
    "create_single_node_partition",
    "sparse_nn_partition",
    "cost_aware_partition",
    "kl_based_partition",
    "aot_based_partition",
]


def shape(function: object) -> list[tuple[str, object, object]]:
    out = []
    for p in inspect.signature(function).parameters.values():
        default = (type(p.default).__name__, p.default.name) if isinstance(p.default, enum.Enum) else p.default
        out.append((p.name, p.kind, default))
    return out


@pytest.mark.parametrize("name", HELPERS + ["DAGNode", "DAG", "PartitionResult"])
def test_module_signatures_match_upstream(name: str) -> None:
    assert shape(getattr(REFERENCE.accelerator_partitioner, name)) == shape(
        getattr(UPSTREAM.accelerator_partitioner, name)
    )


@pytest.mark.parametrize("name", METHODS)
def test_partitioner_signatures_match_upstream(name: str) -> None:
    ours = getattr(REFERENCE.accelerator_partitioner.Partitioner, name)
    theirs = getattr(UPSTREAM.accelerator_partitioner.Partitioner, name)
    assert shape(ours) == shape(theirs)


def _chain(impl: Implementation, layers: int = 5) -> tuple:
    module, inputs = chain(layers)
    gm = sized(impl, module, inputs)
    return module, inputs, gm, total_size(gm)


def test_size_based_fills_devices_in_graph_order(impl: Implementation) -> None:
    module, inputs, gm, total = _chain(impl)
    partitioner, result = partition(impl, module, gm, devices=devices(impl, [total // 2 + 1] * 3))
    assert groups(partitioner) == [
        ["add", "add_1", "lins_0", "lins_1", "relu", "relu_1"],
        ["add_2", "add_3", "lins_2", "lins_3", "relu_2", "relu_3"],
        ["add_4", "lins_4", "relu_4"],
    ]
    got = summary(partitioner, result)
    assert [p[2:6] for p in got["partitions"]] == [(1472, [0], [], [1]), (1600, [1], [0], [2]), (928, [2], [1], [])]
    assert got["dag"] == [
        ("submod_0", ["x"], ["submod_0"], [0], 1472),
        ("submod_1", ["submod_0"], ["submod_1"], [1], 1600),
        ("submod_2", ["submod_1"], ["submod_2"], [2], 928),
    ]
    torch.testing.assert_close(result.module_with_submodules(*inputs), module(*inputs))


def test_a_module_that_fits_one_device_is_one_partition(impl: Implementation) -> None:
    module, inputs, gm, total = _chain(impl, 2)
    partitioner, result = partition(
        impl, module, gm, devices=devices(impl, [total - 1, total, total], ids=[7, 8, 9]), mode="cost_aware"
    )
    assert len(partitioner.partitions) == 1
    only = partitioner.partitions[0]
    assert only.used_mem_bytes == total and only.logical_device_ids == [8]
    assert {n.name for n in only.nodes} == {n.name for n in gm.graph.nodes if n.op != "output"}
    assert [d.size_bytes for d in result.dag.nodes] == [total]


def test_sparse_nn_separates_embeddings(impl: Implementation) -> None:
    module, inputs = sparse()
    gm = sized(impl, module, inputs)
    partitioner, result = partition(impl, module, gm, devices=devices(impl, [1224] * 4), mode="sparse_nn")
    assert groups(partitioner) == [
        ["embeddings_0"], ["embeddings_1"], ["embeddings_2"], ["add", "add_1", "add_2", "bottom", "relu", "top"],
    ]
    assert [p.used_mem_bytes for p in partitioner.partitions] == [720, 720, 720, 480]
    assert [p.logical_device_ids for p in partitioner.partitions] == [[0], [1], [2], [0, 1, 2]]
    torch.testing.assert_close(result.module_with_submodules(*inputs), module(*inputs))


def test_sparse_nn_merges_small_embedding_partitions(impl: Implementation) -> None:
    module, inputs = sparse()
    gm = sized(impl, module, inputs)
    partitioner, _ = partition(impl, module, gm, devices=devices(impl, [2000] * 4), mode="sparse_nn")
    assert groups(partitioner) == [
        ["embeddings_0", "embeddings_1"], ["embeddings_2"], ["add", "add_1", "add_2", "bottom", "relu", "top"],
    ]
    assert [p.used_mem_bytes for p in partitioner.partitions] == [1392, 720, 480]
    # Every dense partition shares one device list: the embedding devices.
    assert partitioner.partitions[2].logical_device_ids == [0, 1]


def test_cost_aware_merges_while_latency_does_not_rise(impl: Implementation) -> None:
    module, inputs, gm, total = _chain(impl)
    partitioner, result = partition(
        impl, module, gm, devices=devices(impl, [total // 2 + 1] * 4), mode="cost_aware",
        transfer_rate_bytes_per_sec=1e2, node_to_latency_mapping=size_latencies(impl, gm),
    )
    assert groups(partitioner) == [
        ["lins_0"], ["relu"], ["add"], ["lins_1"],
        ["add_2", "add_3", "add_4", "lins_3", "lins_4", "relu_3", "relu_4"],
        ["lins_2", "relu_2"], ["add_1", "relu_1"],
    ]
    assert [p.used_mem_bytes for p in partitioner.partitions] == [544, 256, 384, 544, 1728, 672, 512]
    assert [p.logical_device_ids for p in partitioner.partitions] == [[0], [0], [0], [0], [1], [2], [0]]
    assert [p.bfs_level for p in partitioner.partitions] == [0, 1, 2, 3, 6, 5, 4]
    torch.testing.assert_close(result.module_with_submodules(*inputs), module(*inputs))


KL_CASES = {
    "three_swaps": (
        [("relu", 0), ("add", 0, 0), ("lin", 0), ("mul", 2, 0), ("lin", 4)],
        [156, 215, 222],
        [["lins_0", "relu"], ["add", "lins_1", "mul"], []],
        [176, 208, 0],
        [[1], [0], [2]],
    ),
    "two_swaps": (
        [("lin", 0), ("add", 1, 1), ("mul", 0, 2), ("relu", 1), ("add", 3, 2), ("lin", 4), ("lin", 6), ("lin", 5),
         ("lin", 8)],
        [327, 427, 447],
        [["add", "add_1", "lins_0", "lins_1", "mul", "relu"], ["lins_3", "lins_4"], ["lins_2"]],
        [384, 256, 144],
        [[1], [0], [2]],
    ),
}


@pytest.mark.parametrize("case", sorted(KL_CASES))
def test_kl_based_swaps(impl: Implementation, case: str) -> None:
    steps, memories, expected, used, ids = KL_CASES[case]
    module, inputs = ops(steps)
    gm = sized(impl, module, inputs)
    partitioner, result = partition(
        impl, module, gm, devices=devices(impl, memories), mode="kl_based",
        transfer_rate_bytes_per_sec=1e3, node_to_latency_mapping=size_latencies(impl, gm),
    )
    assert groups(partitioner) == expected
    assert [p.used_mem_bytes for p in partitioner.partitions] == used
    assert [p.logical_device_ids for p in partitioner.partitions] == ids
    # The submodules follow the size-based cut: node_to_partition is not refreshed.
    size_based, _ = partition(impl, module, sized(impl, module, inputs), devices=devices(impl, memories))
    names = {n.name: i for n, i in size_based.node_to_partition.items()}
    assert {n.name: i for n, i in partitioner.node_to_partition.items()} == names
    torch.testing.assert_close(result.module_with_submodules(*inputs), module(*inputs))


def test_aot_based_rebuilds_the_given_partitions(impl: Implementation) -> None:
    module, inputs, gm, _ = _chain(impl, 2)
    by_name = {n.name: n for n in gm.graph.nodes}
    mapping = {"lins_0": 0, "relu": 0, "add": 1, "lins_1": 1, "relu_1": 2, "add_1": 2}
    to_devices = {0: [1], 1: [0], 2: [1]}
    partitioner, result = partition(
        impl, module, gm, devices=devices(impl, [100, 100]), mode="aot_based",
        node_to_partition_mapping={by_name[k]: v for k, v in mapping.items()},
        partition_to_logical_device_mapping=to_devices,
    )
    got = summary(partitioner, result)
    assert got["partitions"] == [
        (0, ["lins_0", "relu", "x"], 672, [1], [], [], -1),
        (1, ["add", "lins_1", "x"], 800, [0], [], [], -1),
        (2, ["add_1", "relu_1"], 512, [1], [], [], -1),
    ]
    assert got["dag"][1] == ("submod_1", ["submod_0", "x"], ["getitem", "getitem_1"], [0], 800)
    assert partitioner.partitions[0].logical_device_ids is to_devices[0]
    torch.testing.assert_close(result.module_with_submodules(*inputs), module(*inputs))


@pytest.mark.parametrize(
    ("spares", "expected"),
    [
        ([1844, 1844, 1844], [[0, 3], [1, 4], [2, 5]]),
        ([700, 700, 700, 700], [[0], [1], [2]]),
    ],
)
def test_saturate_host_replicates_on_idle_devices(impl: Implementation, spares: list[int], expected: list) -> None:
    module, inputs, gm, total = _chain(impl)
    partitioner, result = partition(
        impl, module, gm, devices=devices(impl, [total // 2 + 1] * 3 + spares), saturate_host=True
    )
    assert [p.logical_device_ids for p in partitioner.partitions] == expected
    assert [d.logical_device_ids for d in result.dag.nodes] == expected


def _no_operations() -> tuple[torch.nn.Module, tuple]:
    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    return Identity(), (torch.randn(2),)


ERRORS = {
    "no_devices": ("chain", {"devices": []}, RuntimeError, "No devices"),
    "no_operations": ("identity", {"devices": [10]}, RuntimeError, "no operations"),
    "too_little_memory": ("chain", {"devices": [1000, 1000]}, RuntimeError, "enough memory"),
    "node_too_large": ("chain", {"devices": [500, 500, 500, 500, 500, 500, 500, 500]}, RuntimeError, "too large"),
    "sparse_unequal": ("sparse", {"devices": [1300, 1400], "mode": "sparse_nn"}, RuntimeError, "same memory"),
    "sparse_too_few_devices": ("sparse", {"devices": [1224, 1224], "mode": "sparse_nn"}, RuntimeError, "Need 3 devices"),
    "sparse_dense_does_not_fit": ("sparse", {"devices": [816] * 4, "mode": "sparse_nn"}, RuntimeError, "can not fit"),
    "cost_aware_zero_rate": ("chain", {"devices": [1745] * 3, "mode": "cost_aware"}, ZeroDivisionError, ""),
    "cost_aware_missing_latency": ("chain", {"devices": [1745] * 3, "mode": "cost_aware", "drop": 1}, KeyError, ""),
    "kl_missing_latency": ("chain", {"devices": [1745] * 3, "mode": "kl_based", "drop": 4}, KeyError, ""),
    "aot_partition_without_devices": ("chain", {"devices": [1000], "mode": "aot_based", "aot": True}, KeyError, ""),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors(impl: Implementation, case: str) -> None:
    which, options, error, message = ERRORS[case]
    module, inputs = {"chain": chain, "sparse": sparse, "identity": _no_operations}[which]()
    gm = sized(impl, module, inputs)
    config = {"devices": devices(impl, options["devices"])}
    if "mode" in options:
        config["mode"] = options["mode"]
        latencies = size_latencies(impl, gm)
        if "drop" in options:
            del latencies[operations(gm)[options["drop"]]]
        config["node_to_latency_mapping"] = latencies
    if options.get("aot"):
        config["node_to_partition_mapping"] = {n: i % 2 for i, n in enumerate(operations(gm))}
        config["partition_to_logical_device_mapping"] = {0: [0]}
    with pytest.raises(error, match=message or None):
        partition(impl, module, gm, **config)


def test_dense_only_sparse_nn_raises_runtime_error(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_bug(request, impl, "partition-sparse-nn-dense-only")
    module, inputs, gm, total = _chain(impl, 3)
    with pytest.raises(RuntimeError, match="embedding"):
        partition(impl, module, gm, devices=devices(impl, [total * 7 // 10] * 2), mode="sparse_nn")


def test_too_large_function_in_sparse_nn_raises_runtime_error(
    request: pytest.FixtureRequest, impl: Implementation
) -> None:
    upstream_bug(request, impl, "partition-sparse-nn-too-large-typeerror")
    module, inputs = ops([("relu", 0), ("lin", 1)])
    gm = sized(impl, module, inputs)
    with pytest.raises(RuntimeError, match="too large"):
        partition(impl, module, gm, devices=devices(impl, [60, 60, 60]), mode="sparse_nn")


def test_aot_partitions_around_an_in_place_write_keep_the_eager_order(
    impl: Implementation, request: pytest.FixtureRequest
) -> None:
    upstream_bug(request, impl, "partition-inplace-order")
    module = ReadThenWrite()  # sigmoid reads y before relu_ overwrites it
    x = torch.linspace(-1.5, 1.0, 6)
    gm = torch.fx.symbolic_trace(module)
    impl.graph_manipulation.get_size_of_all_nodes(gm, [x])
    by_name = {n.name: n for n in gm.graph.nodes}
    # sigmoid's partition and relu_'s are both ready once mul's has run; sigmoid's must run first
    mapping = {"mul": 0, "sigmoid": 2, "relu_": 1, "add": 3}
    _, result = partition(
        impl, module, gm, devices=devices(impl, [1000, 1000]), mode="aot_based",
        node_to_partition_mapping={by_name[k]: v for k, v in mapping.items()},
        partition_to_logical_device_mapping={0: [0], 1: [1], 2: [0], 3: [1]},
    )
    torch.testing.assert_close(result.module_with_submodules(x.clone()), module(x.clone()))
