"""The module-level partition helpers of accelerator_partitioner, on both implementations."""

from __future__ import annotations

import pytest
from _partition_cases import chain, devices, diamond, operations, sized

from conform.implementations import Implementation


def _singletons(impl: Implementation, which: str = "chain") -> tuple:
    """One partition per operation (in graph order), parents and children set."""
    module, inputs = chain(2) if which == "chain" else diamond()
    gm = sized(impl, module, inputs)
    helpers = impl.accelerator_partitioner
    parts = []
    for i, node in enumerate(operations(gm)):
        part = impl.partitioner_utils.Partition(i)
        part.add_node(node)
        parts.append(part)
    helpers.set_parents_and_children(parts)
    return gm, parts


def _edges(parts: list) -> list[tuple[int, list[int]]]:
    return [(p.partition_id, sorted(c.partition_id for c in p.children)) for p in parts]


def test_parents_and_children_follow_data_edges(impl: Implementation) -> None:
    _, parts = _singletons(impl, "diamond")
    # a -> relu -> add -> b -> mul, sigmoid -> add and sigmoid -> mul.
    assert _edges(parts) == [(0, [1]), (1, [3]), (2, [3, 5]), (3, [4]), (4, [5]), (5, [])]
    assert sorted(p.partition_id for p in parts[5].parents) == [2, 4]


def test_shared_placeholders_make_no_edge(impl: Implementation) -> None:
    _, parts = _singletons(impl, "diamond")
    # `a` and `sigmoid` both hold the input placeholder and are unrelated.
    assert parts[2] not in parts[0].children and parts[0] not in parts[2].children


def test_bfs_levels_are_longest_path_depths(impl: Implementation) -> None:
    _, parts = _singletons(impl, "diamond")
    impl.accelerator_partitioner.get_bfs_level_partition(parts)
    assert [p.bfs_level for p in parts] == [0, 1, 0, 2, 3, 4]


def test_combine_two_partitions_appends_and_renumbers(impl: Implementation) -> None:
    _, parts = _singletons(impl, "diamond")
    helpers = impl.accelerator_partitioner
    first, second = parts[1], parts[3]
    helpers.combine_two_partitions(first, second, parts)
    assert [p.partition_id for p in parts] == [0, 1, 2, 3, 4]
    merged = parts[-1]
    assert sorted(n.name for n in merged.nodes) == ["add", "relu"]
    assert merged.used_mem_bytes == 32 + 32 + 32 + 32
    assert _edges(parts) == [(0, [4]), (1, [3, 4]), (2, [3]), (3, []), (4, [2])]
    with pytest.raises(ValueError):
        helpers.combine_two_partitions(first, parts[0], parts)


def test_check_dependency_finds_cycles(impl: Implementation) -> None:
    _, parts = _singletons(impl, "diamond")
    helpers = impl.accelerator_partitioner
    assert not any(helpers.check_dependency(p) for p in parts)
    # relu and b together, without add between them: add -> merged -> add.
    helpers.combine_two_partitions(parts[1], parts[4], parts)
    assert helpers.check_dependency(parts[-1])


def test_node_to_partition_mapping(impl: Implementation) -> None:
    _, parts = _singletons(impl)
    mapping = impl.accelerator_partitioner.get_node_to_partition_mapping(parts)
    # The input placeholder is in two partitions: the later one wins.
    assert sorted((n.name, i) for n, i in mapping.items()) == [
        ("add", 2), ("add_1", 5), ("lins_0", 0), ("lins_1", 3), ("relu", 1), ("relu_1", 4), ("x", 2),
    ]


def test_device_mapping_is_best_fit_in_list_order(impl: Implementation) -> None:
    _, parts = _singletons(impl)
    helpers = impl.accelerator_partitioner
    found = helpers.get_device_to_partitions_mapping(parts, devices(impl, [1200, 1000]))
    assert found
    # Partitions go to the device with the least memory left that still fits them.
    assert [p.logical_device_ids for p in parts] == [[1], [1], [1], [0], [0], [0]]
    on_device, left, homeless = helpers.get_device_partition_stats(parts, devices(impl, [1200, 1000]))
    assert [len(v) for v in on_device.values()] == [3, 3]
    assert list(left.values()) == [1200 - 544 - 256 - 384, 1000 - 672 - 256 - 256]
    assert homeless == []


def test_device_mapping_reports_failure_and_stops(impl: Implementation) -> None:
    _, parts = _singletons(impl)
    helpers = impl.accelerator_partitioner
    assert not helpers.get_device_to_partitions_mapping(parts, devices(impl, [700, 300]))
    # lins_0 (544) and relu fit device 0; add fits neither what is left of it nor device 1.
    assert [p.logical_device_ids for p in parts] == [[0], [0], [], [], [], []]
    helpers.reset_partition_device(parts)
    assert all(p.logical_device_ids == [] for p in parts)


def test_logical_id_lookup_keeps_the_last_device(impl: Implementation) -> None:
    devs = devices(impl, [10, 20, 30], ids=[4, 5, 4])
    lookup = impl.accelerator_partitioner.get_logical_id_to_device(devs)
    assert lookup == {4: devs[2], 5: devs[1]}


def test_reorganize_renumbers_by_position(impl: Implementation) -> None:
    _, parts = _singletons(impl)
    parts.reverse()
    impl.accelerator_partitioner.reorganize_partitions(parts)
    assert [p.partition_id for p in parts] == [0, 1, 2, 3, 4, 5]
    # lins_0, now last, feeds relu only (add reads relu and the input).
    assert sorted(c.partition_id for c in parts[5].children) == [4]
