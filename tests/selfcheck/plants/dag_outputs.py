"""accelerator_partitioner: dump_dag lists a submodule call's users as its outputs as soon as
it has one user (``>= 1`` for ``> 1``), where a call with a single user is its own output."""

from __future__ import annotations

import operator
from typing import Any

from plants import replace
from reference import accelerator_partitioner as ap
from reference.accelerator_partitioner import DAG, Partitioner


def dump_dag(self: Partitioner, module_with_submodules: Any) -> DAG:
    dag = DAG()
    for node in module_with_submodules.graph.nodes:
        if node.op == "output":
            break
        if node.op in ap._HOLDERS or node.target is operator.__getitem__:
            continue
        outputs = list(node.users) if len(node.users) >= 1 else [node]
        partition = self.partitions[int(node.name.rsplit("_", 1)[-1])]
        dag.create_node(node, ap._inputs_of(node), outputs, partition.logical_device_ids, partition.used_mem_bytes)
    return dag


replace("accelerator_partitioner", "Partitioner.dump_dag", dump_dag)
