"""Benchmark: reference vs upstream optimization transforms.

* ``fuse`` and ``optimize_for_inference`` on torchvision resnet50 and on a stack of 200
  Conv2d/BatchNorm2d/ReLU blocks;
* ``merge_matmul`` on a module with 1,000 independent matmuls sharing one right operand.

Run: ``python bench/optimization.py [--repeat N] [--threads T] [--only NAME ...]``; prints one
row per (transform, model) with the best time of each implementation and their ratio
(reference / upstream; below 1 is faster). Both implementations run in the same process on
the same inputs, alternating, so machine load affects them alike.
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn as nn
import torchvision

from conform.implementations import Implementation

IMPLEMENTATIONS = ("upstream", "reference")


class ConvStack(nn.Module):
    """``blocks`` Conv2d(8, 8, 3) + BatchNorm2d + ReLU blocks."""

    def __init__(self, blocks: int = 200, channels: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class ManyMatmuls(nn.Module):
    """``count`` matmuls of distinct inputs with one shared weight, summed."""

    def __init__(self, count: int = 1_000) -> None:
        super().__init__()
        self.count = count
        self.weight = nn.Parameter(torch.randn(16, 16))

    def forward(self, x):
        total = torch.matmul(x, self.weight)
        for i in range(1, self.count):
            total = total + torch.matmul(x[i % 4], self.weight)
        return total


def _models() -> dict[str, Callable[[], nn.Module]]:
    return {
        "resnet50": lambda: torchvision.models.resnet50().eval(),
        "convbn200": lambda: ConvStack().eval(),
    }


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _cases(only: list[str]) -> list[tuple[str, str, Callable[[Implementation, nn.Module], object], nn.Module]]:
    cases = []
    for model_name, make in _models().items():
        model = make()
        cases.append(("fuse", model_name, lambda impl, m: impl.optimization.fuse(m), model))
        cases.append(
            ("optimize_for_inference", model_name,
             lambda impl, m: impl.optimization.optimize_for_inference(m), model)
        )
    cases.append(("merge_matmul", "1000 matmuls", lambda impl, m: impl.merge_matmul.merge_matmul(m),
                  ManyMatmuls()))
    return [c for c in cases if not only or c[0] in only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per implementation (best is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", nargs="*", default=[], help="transforms to run (default: all)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    impls = {name: Implementation(name) for name in IMPLEMENTATIONS}
    print(f"{'transform':<24}{'model':<14}{'upstream s':>12}{'reference s':>13}{'ratio':>8}")
    for transform, model_name, apply, model in _cases(args.only):
        for impl in impls.values():  # warm up: imports, TorchScript classes
            apply(impl, model)
        times = dict.fromkeys(IMPLEMENTATIONS, float("inf"))
        for _ in range(args.repeat):  # alternate, so load drifts hit both alike
            for name, impl in impls.items():
                times[name] = min(times[name], _seconds(functools.partial(apply, impl, model)))
        ratio = times["reference"] / times["upstream"]
        print(f"{transform:<24}{model_name:<14}{times['upstream']:>12.3f}{times['reference']:>13.3f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
