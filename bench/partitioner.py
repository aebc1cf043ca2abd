"""Benchmark: reference vs upstream accelerator Partitioner, every mode.

Workloads are residual chains (``x = relu(linear(x)) + x`` per layer, 3 operations each) on
4 devices that each hold about half the model, with latencies derived from node sizes
(memory: output bytes / 1e3 s, compute: total bytes / 1e4 s) and 100 bytes/s links. For
``sparse_nn`` four large embedding bags feed the chain, each device holding one table and
the dense part; ``aot_based`` replays the size-based partitioning as a given mapping.

For each mode it times ``Partitioner().partition_graph`` (the nodes already sized) at about
32, 62 and 122 nodes on both implementations, checks that the results are identical
(partitions, node-to-partition map, devices, DAG, latencies, critical path; latencies by each
implementation's own functions while the graph has at most ``MAX_UPSTREAM_PATHS`` paths,
since upstream's walks every path, and by the reference's beyond), and prints the ratio; then the reference alone at about 1,000 and 5,000 nodes. An upstream run predicted
(from the sizes already measured) to exceed ``--upstream-limit`` seconds is skipped, and the
table says so; so is a reference run at the large sizes predicted past ``--reference-limit``.

    python bench/partitioner.py
    python bench/partitioner.py --modes cost_aware kl_based --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.fx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conform.implementations import Implementation  # noqa: E402
from generators.params.partition import count_paths  # noqa: E402

MODES = ("size_based", "sparse_nn", "aot_based", "cost_aware", "kl_based")
COMPARED = (32, 62, 122)
REFERENCE_ONLY = (1000, 5000)
WIDTH = 8
MAX_UPSTREAM_PATHS = 200_000


class Chain(torch.nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.lins = torch.nn.ModuleList(torch.nn.Linear(WIDTH, WIDTH) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.lins:
            x = torch.relu(lin(x)) + x
        return x


class SparseChain(torch.nn.Module):
    """Four embedding bags summed into the input of a residual chain."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        # One table is about twice the dense part: a device holds one table and the dense
        # part, never two tables.
        dense_bytes = layers * 4 * (WIDTH * WIDTH + WIDTH + 3 * 4 * WIDTH)  # weights, bias, 3 outputs
        rows = 8 + 2 * dense_bytes // (WIDTH * 4)
        self.tables = torch.nn.ModuleList(torch.nn.EmbeddingBag(rows, WIDTH, mode="sum") for _ in range(4))
        self.lins = torch.nn.ModuleList(torch.nn.Linear(WIDTH, WIDTH) for _ in range(layers))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        pooled = [table(ids) for table in self.tables]
        x = x + pooled[0] + pooled[1] + pooled[2] + pooled[3]
        for lin in self.lins:
            x = torch.relu(lin(x)) + x
        return x


def workload(mode: str, nodes: int) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    x = torch.randn(4, WIDTH)
    if mode == "sparse_nn":
        return SparseChain(max(1, round((nodes - 11) / 3))), (x, torch.randint(0, 8, (4, 3)))
    return Chain(max(1, round((nodes - 2) / 3))), (x,)


def configure(impl: Implementation, mode: str, gm: torch.fx.GraphModule, mapping: dict[str, Any] | None) -> Any:
    utils = impl.partitioner_utils
    sizes = [n.size_bytes for n in gm.graph.nodes if n.op != "output"]
    total = sum(s.total_size for s in sizes)
    if mode == "sparse_nn":
        table = max(s.total_size for s in sizes)
        dense = total - 4 * table
        memory = dense + table + dense // 2 + 1024
    else:
        memory = total // 2 + 1
    devices = [utils.Device(f"dev_{i}", memory, i) for i in range(4)]
    latency = {
        n: utils.NodeLatency(n.size_bytes.output_size / 1e3, n.size_bytes.total_size / 1e4)
        for n in gm.graph.nodes
        if n.op not in ("placeholder", "get_attr", "output")
    }
    by_name = {n.name: n for n in gm.graph.nodes}
    extra: dict[str, Any] = {}
    if mapping is not None:
        extra["node_to_partition_mapping"] = {by_name[k]: v for k, v in mapping["nodes"].items()}
        extra["partition_to_logical_device_mapping"] = mapping["devices"]
    return utils.PartitionerConfig(devices, utils.PartitionMode[mode], 1e2, latency, **extra)


def describe(impl: Implementation, partitioner: Any, result: Any, config: Any, gm: torch.fx.GraphModule) -> dict[str, Any]:
    # Upstream's per-partition latency walks every path, exponentially many in a residual
    # chain: beyond a bound both sides' latencies are computed with the reference's.
    if count_paths(gm) > MAX_UPSTREAM_PATHS:
        impl = Implementation("reference")
    utils = impl.partitioner_utils
    parts = partitioner.partitions
    mapping = utils.get_partition_to_latency_mapping(parts, config.node_to_latency_mapping)
    return {
        "partitions": [
            (p.partition_id, sorted(n.name for n in p.nodes), p.used_mem_bytes, list(p.logical_device_ids),
             sorted(q.partition_id for q in p.children), p.bfs_level)
            for p in parts
        ],
        "node_to_partition": sorted((n.name, i) for n, i in partitioner.node_to_partition.items()),
        "dag": [
            (str(d.submodule_node), [n.name for n in d.input_nodes], [n.name for n in d.output_nodes],
             list(d.logical_device_ids), d.size_bytes)
            for d in result.dag.nodes
        ],
        "latencies": [mapping[p].overall_latency_sec for p in parts],
        "critical_path": utils.get_latency_of_partitioned_graph(parts, mapping, config.transfer_rate_bytes_per_sec),
    }


def size_based_mapping(mode: str, nodes: int) -> dict[str, Any]:
    """The aot_based input: the reference's size-based partitioning of the workload."""
    reference = Implementation("reference")
    module, inputs = workload(mode, nodes)
    gm = torch.fx.symbolic_trace(module)
    reference.graph_manipulation.get_size_of_all_nodes(gm, list(inputs))
    partitioner = reference.accelerator_partitioner.Partitioner()
    partitioner.partition_graph(gm, module, configure(reference, "size_based", gm, None))
    return {
        "nodes": {n.name: i for n, i in partitioner.node_to_partition.items() if n.op not in ("placeholder", "get_attr")},
        "devices": {p.partition_id: list(p.logical_device_ids) for p in partitioner.partitions},
    }


def run(impl: Implementation, mode: str, nodes: int, *, describe_result: bool) -> tuple[float, Any, int]:
    module, inputs = workload(mode, nodes)
    gm = torch.fx.symbolic_trace(module)
    impl.graph_manipulation.get_size_of_all_nodes(gm, list(inputs))
    config = configure(impl, mode, gm, size_based_mapping(mode, nodes) if mode == "aot_based" else None)
    partitioner = impl.accelerator_partitioner.Partitioner()
    started = time.perf_counter()
    result = partitioner.partition_graph(gm, module, config)
    seconds = time.perf_counter() - started
    summary = describe(impl, partitioner, result, config, gm) if describe_result else None
    return seconds, summary, len(gm.graph.nodes)


def predict(history: list[tuple[int, float]], nodes: int) -> float:
    """Extrapolate a run time: a power law through the last two sizes measured (exponent at
    least 2), or cubic from one."""
    if not history:
        return 0.0
    (n1, t1) = history[-1]
    exponent = 3.0
    if len(history) >= 2:
        (n0, t0) = history[-2]
        if t0 > 0 and t1 > 0 and n1 != n0:
            import math

            exponent = max(2.0, math.log(t1 / t0) / math.log(n1 / n0))
    return t1 * (nodes / n1) ** exponent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--sizes", nargs="*", type=int, default=list(COMPARED))
    parser.add_argument("--large", nargs="*", type=int, default=list(REFERENCE_ONLY))
    parser.add_argument("--upstream-limit", type=float, default=900.0, help="skip upstream runs predicted past this (s)")
    parser.add_argument("--reference-limit", type=float, default=600.0, help="skip reference runs predicted past this (s)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    upstream, reference = Implementation("upstream"), Implementation("reference")
    rows = []
    print(f"{'mode':<11} {'nodes':>6} {'upstream s':>12} {'reference s':>12} {'speedup':>9}  identical")
    for mode in args.modes:
        up_history: list[tuple[int, float]] = []
        ref_history: list[tuple[int, float]] = []
        for nodes in args.sizes + args.large:
            compare = nodes in args.sizes
            row: dict[str, Any] = {"mode": mode, "target_nodes": nodes}
            guess = predict(ref_history, nodes)
            if guess > args.reference_limit:
                row["reference_skipped"] = f"predicted {guess:.0f} s"
                print(f"{mode:<11} {nodes:>6} {'-':>12} {'skipped':>12}  (reference predicted {guess:.0f} s)")
                rows.append(row)
                continue
            ref_s, ref_summary, count = run(reference, mode, nodes, describe_result=compare)
            ref_history.append((count, ref_s))
            row.update(nodes=count, reference_s=ref_s)
            up_text, ratio, same = "-", "", ""
            if compare:
                guess = predict(up_history, count)
                if guess > args.upstream_limit:
                    row["upstream_skipped"] = f"predicted {guess:.0f} s"
                    up_text, same = "skipped", f"(upstream predicted {guess:.0f} s)"
                else:
                    up_s, up_summary, _ = run(upstream, mode, nodes, describe_result=True)
                    up_history.append((count, up_s))
                    row.update(upstream_s=up_s, speedup=up_s / ref_s, identical=up_summary == ref_summary)
                    up_text, ratio, same = f"{up_s:.4f}", f"{up_s / ref_s:.1f}x", str(up_summary == ref_summary)
            print(f"{mode:<11} {count:>6} {up_text:>12} {ref_s:>12.4f} {ratio:>9}  {same}", flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
