"""Benchmark: reference vs upstream ``split_module`` on graphs of 100, 1,000 and 5,000 nodes.

Each graph is a chain of cheap elementwise ops with skip connections (every node also reads a
node a few steps back), so values cross partition boundaries. It is split into blocks of 50
consecutive nodes (in dependency order, then in original order), and into 4 large blocks of
a chain without skips, keeping node names.

Run: ``python bench/split.py [--repeat N]``; prints one row per (size, case) with the best
time of each implementation and their ratio (reference / upstream; below 1 is faster).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import torch
import torch.fx

from conform.implementations import Implementation

SIZES = (100, 1_000, 5_000)
# bounded ops, so a 5,000-node chain still computes finite values to compare
_OPS = (torch.maximum, torch.minimum, torch.atan2)


def chain_graph(nodes: int, skip: int = 3) -> torch.fx.GraphModule:
    """``nodes`` computing nodes; node i reads node i-1 and node i-skip."""
    graph = torch.fx.Graph()
    values = [graph.placeholder("x"), graph.placeholder("y")]
    for i in range(nodes):
        left = values[-1]
        right = values[-skip] if skip and len(values) >= skip else values[0]
        values.append(graph.call_function(_OPS[i % len(_OPS)], (left, right)))
    graph.output(values[-1])
    return torch.fx.GraphModule(torch.nn.Module(), graph)


def blocks(size: int) -> Callable[[torch.fx.Node], int]:
    counter = {"seen": 0}
    order: dict[torch.fx.Node, int] = {}

    def callback(node: torch.fx.Node) -> int:
        if node not in order:
            order[node] = counter["seen"] // size
            counter["seen"] += 1
        return order[node]

    return callback


def _split_once(split: Callable[..., object], gm: torch.fx.GraphModule,
                make_callback: Callable[[int], Callable[[torch.fx.Node], int]], nodes: int,
                options: dict[str, object]) -> object:
    # a fresh callback per run: it caches per node, so both sides see the same partitioning
    return split(gm, gm, make_callback(nodes), **options)


def best_of(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    impls = {name: Implementation(name).split_module.split_module for name in ("upstream", "reference")}
    cases = {
        "blocks of 50": (3, lambda n: blocks(50), {}),
        "blocks of 50, original order": (3, lambda n: blocks(50), {"keep_original_order": True}),
        "4 partitions, no skips": (0, lambda n: blocks(max(1, n // 4)), {"keep_original_node_name": True}),
    }
    print(f"{'nodes':>6}  {'case':<30} {'upstream s':>11} {'reference s':>12} {'ratio':>6}")
    x, y = torch.randn(4), torch.randn(4)
    for nodes in SIZES:
        for label, (skip, make_callback, options) in cases.items():
            gm = chain_graph(nodes, skip)
            times = {}
            for name, split in impls.items():
                times[name] = best_of(args.repeat, functools.partial(
                    _split_once, split, gm, make_callback, nodes, options))
            parts = impls["reference"](gm, gm, make_callback(nodes), **options)
            torch.testing.assert_close(parts(x, y), gm(x, y))
            ratio = times["reference"] / times["upstream"]
            print(f"{nodes:>6}  {label:<30} {times['upstream']:>11.4f} {times['reference']:>12.4f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
