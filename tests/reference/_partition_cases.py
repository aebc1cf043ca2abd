"""Modules, configs and summaries shared by the partitioner tests.

Everything goes through one implementation (``impl``): shape propagation and node sizes,
the config's classes, the partitioner itself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from conform.implementations import Implementation

_UNPARTITIONED = ("placeholder", "get_attr", "output")


class Chain(torch.nn.Module):
    """``layers`` times ``x = relu(linear(x)) + x`` (3 operations per layer)."""

    def __init__(self, layers: int, width: int = 8) -> None:
        super().__init__()
        self.lins = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.lins:
            x = torch.relu(lin(x)) + x
        return x


class Diamond(torch.nn.Module):
    """Two branches of different length joined, then a tail."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = torch.relu(self.a(x))
        right = torch.sigmoid(x)
        joined = left + right
        return self.b(joined) * right


class Sparse(torch.nn.Module):
    """Dense bottom, three embedding bags, dense top (a small sparse network)."""

    def __init__(self) -> None:
        super().__init__()
        self.bottom = torch.nn.Linear(4, 4)
        self.embeddings = torch.nn.ModuleList(torch.nn.EmbeddingBag(40, 4, mode="sum") for _ in range(3))
        self.top = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bottom(x))
        pooled = [emb(ids) for emb in self.embeddings]
        return self.top(hidden + pooled[0] + pooled[1] + pooled[2])


def chain(layers: int = 5, width: int = 8) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return Chain(layers, width), (torch.randn(4, width),)


def diamond() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return Diamond(), (torch.randn(2, 4),)


def sparse() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return Sparse(), (torch.randn(2, 4), torch.randint(0, 40, (2, 3)))


def sized(impl: Implementation, module: torch.nn.Module, inputs: tuple[Any, ...]) -> torch.fx.GraphModule:
    """``symbolic_trace`` and ``impl``'s ``get_size_of_all_nodes``."""
    gm = torch.fx.symbolic_trace(module)
    impl.graph_manipulation.get_size_of_all_nodes(gm, list(inputs))
    return gm


def total_size(gm: torch.fx.GraphModule) -> int:
    return sum(n.size_bytes.total_size for n in gm.graph.nodes if n.op != "output")


def operations(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in gm.graph.nodes if n.op not in _UNPARTITIONED]


def size_latencies(impl: Implementation, gm: torch.fx.GraphModule) -> dict[torch.fx.Node, Any]:
    """Memory latency from output bytes, compute latency from total bytes."""
    latency = impl.partitioner_utils.NodeLatency
    return {
        n: latency(n.size_bytes.output_size / 1e3, n.size_bytes.total_size / 1e4) for n in operations(gm)
    }


def devices(impl: Implementation, memories: list[int], ids: list[int] | None = None) -> list[Any]:
    device = impl.partitioner_utils.Device
    ids = ids if ids is not None else list(range(len(memories)))
    return [device(f"dev_{i}", memory, ids[i]) for i, memory in enumerate(memories)]


def partition(
    impl: Implementation, module: torch.nn.Module, gm: torch.fx.GraphModule, **config: Any
) -> tuple[Any, Any]:
    """``Partitioner().partition_graph`` with a ``PartitionerConfig(**config)``; the mode
    may be given by name."""
    utils = impl.partitioner_utils
    if isinstance(config.get("mode"), str):
        config["mode"] = utils.PartitionMode[config["mode"]]
    partitioner = impl.accelerator_partitioner.Partitioner()
    result = partitioner.partition_graph(gm, module, utils.PartitionerConfig(**config))
    return partitioner, result


def groups(partitioner: Any) -> list[list[str]]:
    """Operation names of each partition, partitions in list order."""
    return [sorted(n.name for n in p.nodes if n.op not in _UNPARTITIONED) for p in partitioner.partitions]


def summary(partitioner: Any, result: Any) -> dict[str, Any]:
    """What the partitioner promises to reproduce, by name (no object identities)."""
    return {
        "partitions": [
            (
                p.partition_id,
                sorted(n.name for n in p.nodes),
                p.used_mem_bytes,
                list(p.logical_device_ids),
                sorted(q.partition_id for q in p.parents),
                sorted(q.partition_id for q in p.children),
                p.bfs_level,
            )
            for p in partitioner.partitions
        ],
        "node_to_partition": sorted((n.name, i) for n, i in partitioner.node_to_partition.items()),
        "dag": [
            (
                str(d.submodule_node),
                [n.name for n in d.input_nodes],
                [n.name for n in d.output_nodes],
                list(d.logical_device_ids),
                d.size_bytes,
            )
            for d in result.dag.nodes
        ],
        "submodules": sorted(
            name for name, m in result.module_with_submodules.named_children() if isinstance(m, torch.fx.GraphModule)
        ),
    }


class Ops(torch.nn.Module):
    """A DAG of width-``width`` tensors from a list of steps: ``("lin", a)``, ``("relu",
    a)``, ``("emb", a)`` (an embedding bag over fixed ids, added to ``a``), ``("add", a,
    b)`` or ``("mul", a, b)``, operands indexing earlier values (0 is the input). Returns
    the last value."""

    def __init__(self, steps: list[tuple[Any, ...]], width: int = 4) -> None:
        super().__init__()
        self.steps = steps
        self.lins = torch.nn.ModuleList(torch.nn.Linear(width, width) for s in steps if s[0] == "lin")
        self.embs = torch.nn.ModuleList(
            torch.nn.EmbeddingBag(16, width, mode="sum") for s in steps if s[0] == "emb"
        )
        self.register_buffer("ids", torch.arange(6).reshape(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        lins, embs = iter(self.lins), iter(self.embs)
        for kind, *operands in self.steps:
            if kind == "lin":
                values.append(next(lins)(values[operands[0]]))
            elif kind == "emb":
                values.append(next(embs)(self.ids) + values[operands[0]])
            elif kind == "relu":
                values.append(torch.relu(values[operands[0]]))
            elif kind == "add":
                values.append(values[operands[0]] + values[operands[1]])
            else:
                values.append(values[operands[0]] * values[operands[1]])
        return values[-1]


def ops(steps: list[tuple[Any, ...]], width: int = 4) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return Ops(steps, width), (torch.randn(2, width),)
