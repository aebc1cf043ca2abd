"""The ``sparse_nn`` mode of :class:`reference.accelerator_partitioner.Partitioner`.

Operations are packed in graph order into partitions of at most one device's memory, a new
partition starting whenever the stream crosses between embedding and dense operations.
Within each group, the smallest partition is then repeatedly merged into the largest one
at most one BFS level away whose union still fits, until the smallest finds no partner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch.fx.node import Node

from reference.partitioner_utils import Partition, get_extra_size_of

if TYPE_CHECKING:
    from reference.accelerator_partitioner import Partitioner

_OPERATIONS = ("call_module", "call_method", "call_function")


def _is_embedding(partitioner: Partitioner, node: Node, printed: dict[int, bool]) -> bool:
    """A ``call_module`` node is an embedding when the printed form of a module on its
    target path mentions ``Embedding`` (``Embedding``, ``EmbeddingBag``, ...).

    ``printed`` remembers the answer per module: printing a container prints all of its
    children, so printing it once per node would cost quadratic time.
    """
    if node.op != "call_module":
        return False
    module = partitioner.graph_module
    for atom in str(node.target).split("."):
        if not hasattr(module, atom):
            raise RuntimeError(f"Module {module} has no attribute {atom}")
        module = getattr(module, atom)
        mentions = printed.get(id(module))
        if mentions is None:
            mentions = printed[id(module)] = "Embedding" in str(module)
        if mentions:
            return True
    return False


def _union_size(a: Partition, b: Partition) -> int:
    nodes = a.nodes | b.nodes
    return sum(get_extra_size_of(node, nodes) for node in nodes)


def _combine_group(partitioner: Partitioner, group: list[Partition], available_mem_bytes: int) -> None:
    """Merge partitions of ``group`` (updated in place) as long as the smallest one finds a
    partner; each merge replaces the pair in ``partitioner.partitions`` too."""
    from reference.accelerator_partitioner import combine_two_partitions, get_bfs_level_partition

    # An empty group has nothing to merge. (Upstream pops from the empty list: IndexError
    # for a module with only embedding or only dense operations.)
    while group:
        by_size = sorted(group, key=lambda p: p.used_mem_bytes)
        get_bfs_level_partition(partitioner.partitions)
        smallest = by_size.pop(0)
        for other in reversed(by_size):
            if abs(smallest.bfs_level - other.bfs_level) > 1:
                continue
            if _union_size(other, smallest) <= available_mem_bytes:
                combine_two_partitions(other, smallest, partitioner.partitions)
                group.remove(smallest)
                group.remove(other)
                group.append(partitioner.partitions[-1])
                break
        else:
            return


def sparse_nn_partition(partitioner: Partitioner, available_mem_bytes: int) -> None:
    """Run the ``sparse_nn`` mode on ``partitioner`` (see the module docstring)."""
    from reference.accelerator_partitioner import (
        _grow,
        get_node_to_partition_mapping,
        set_parents_and_children,
    )

    embedding: list[Partition] = []
    dense: list[Partition] = []
    in_embedding = False

    def close(partition: Partition) -> None:
        (embedding if in_embedding else dense).append(partition)

    printed: dict[int, bool] = {}
    partition = partitioner.create_partition()
    for node in partitioner.graph_module.graph.nodes:
        if node.op not in _OPERATIONS:
            continue
        if _is_embedding(partitioner, node, printed) != in_embedding:
            if partition.used_mem_bytes != 0:
                close(partition)
                partition = partitioner.create_partition()
            in_embedding = not in_embedding
        needed = get_extra_size_of(node, partition.nodes)
        if needed + partition.used_mem_bytes > available_mem_bytes:
            close(partition)
            partition = partitioner.create_partition()
            needed = get_extra_size_of(node, partition.nodes)
            if needed > available_mem_bytes:
                # Upstream concatenates the target to the message, which raises TypeError
                # instead for a call_function target.
                raise RuntimeError(f"{node.target} is too large to fit into a device")
        _grow(partition, node)
    close(partition)
    set_parents_and_children(partitioner.partitions)
    _combine_group(partitioner, dense, available_mem_bytes)
    _combine_group(partitioner, embedding, available_mem_bytes)
    dense_size = sum(p.used_mem_bytes for p in dense)
    devices = partitioner.devices
    if dense and not embedding:
        # Dense partitions run on the devices of the embedding partitions; with none there
        # is nowhere to place them. (Upstream fails earlier, with IndexError.)
        raise RuntimeError("non embedding partitions need embedding partition devices, but there are none")
    if len(embedding) > len(devices):
        raise RuntimeError(f"Need {len(embedding)} devices, but only {len(devices)} provided")
    # One list shared by every dense partition: they run on all embedding devices.
    everywhere: list[int] = []
    for i, partition in enumerate(embedding):
        if dense_size + partition.used_mem_bytes > available_mem_bytes:
            raise RuntimeError(
                f"partition_{partition.partition_id}(embedding partition) and non embedding "
                "partitions can not fit into one device"
            )
        partition.logical_device_ids = [devices[i].logical_id]
        everywhere.append(devices[i].logical_id)
    for partition in dense:
        partition.logical_device_ids = everywhere
    partitioner.node_to_partition = get_node_to_partition_mapping(partitioner.partitions)
