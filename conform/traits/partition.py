"""Traits of the known accelerator-partitioner divergences, computed from the traced graph
and the row's parameters."""

from __future__ import annotations

from typing import Any

import torch.fx

from conform.adapters import Subject
from conform.drivers.partition import build_config, size
from conform.implementations import Implementation
from conform.traits import split
from generators.sources import Built


def inplace_write_across_partitions(graph_module: torch.fx.GraphModule, built: Built,
                                    params: dict[str, Any]) -> bool:
    """The partitions the reference partitioner draws for this case, split the way the
    partitioner splits (by data-flow order of partitions), have the shape of
    ``split-module-inplace-order``: an in-place write whose order against another partition's
    access to the same memory data flow leaves open."""
    reference = Implementation("reference")
    subject = Subject(built.module, graph_module, built.args, built.kwargs).clone()
    size(reference, subject)
    config = build_config(reference, subject.graph_module, params)
    partitioner = reference.accelerator_partitioner.Partitioner()
    partitioner.partition_graph(subject.graph_module, subject.module, config)
    assignment = {node.name: p.partition_id for p in partitioner.partitions for node in p.nodes}
    return split.inplace_write_across_partitions(graph_module, built, {"partition": assignment})
