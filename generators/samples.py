"""Small hand-written cases: the ``samples`` source.

They exercise the engine on known shapes of graphs (``conform run --source samples``; the
project's own tests use them) and serve as templates for user-written factory cases.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

from generators.sources import Built, Source, SpecError, check_catalogue_spec


class _TwoAdds(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        c = a + b
        return c + a


def two_adds() -> Built:
    """``(a + b) + a`` on two 4x4 tensors."""
    return Built(_TwoAdds(), (torch.randn(4, 4), torch.randn(4, 4)))


class _LinearRelu(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)
        self.other = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.linear(x)) + x
        return self.other(h).sum(dim=-1)


def linear_relu() -> Built:
    """Two Linear layers with a residual add."""
    return Built(_LinearRelu(), (torch.randn(3, 8),))


class _InplaceInput(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        x.add_(1)
        return y


def inplace_input() -> Built:
    """Mutates its input in place; the engine compares inputs after the call too."""
    return Built(_InplaceInput(), (torch.randn(5),))


class _TupleOut(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a, b = torch.chunk(x, 2, dim=0)
        return a * y, (b - y, torch.cat([a, b]))


def tuple_out() -> Built:
    """Nested tuple outputs through chunk and cat."""
    return Built(_TupleOut(), (torch.randn(4, 3), torch.randn(2, 3)))


class _Dropout(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x) + torch.rand_like(x)


def dropout_train() -> Built:
    """Random ops in training mode: compared by shape and dtype only."""
    return Built(_Dropout().train(), (torch.randn(6, 6),), stochastic=True)


SAMPLES = ("two_adds", "linear_relu", "inplace_input", "tuple_out", "dropout_train")
_BUILDERS = {"two_adds": two_adds, "linear_relu": linear_relu, "inplace_input": inplace_input,
             "tuple_out": tuple_out, "dropout_train": dropout_train}


class SamplesSource(Source):
    """Spec ``{"sample": name}`` for a name in :data:`SAMPLES`."""

    name = "samples"
    description = "a handful of hand-written modules (residual Linear, in-place input, nested outputs, dropout)"

    def specs(self) -> st.SearchStrategy[dict[str, str]]:
        return st.sampled_from(SAMPLES).map(lambda name: {"sample": name})

    def validate(self, spec: Any) -> None:
        check_catalogue_spec(spec, {"sample": str})
        if spec["sample"] not in SAMPLES:
            raise SpecError(f"sample: unknown sample {spec['sample']!r:.60} (valid: {', '.join(SAMPLES)})")

    def build(self, spec: dict[str, str], seed: int) -> Built:
        self.validate(spec)
        torch.random.default_generator.manual_seed(seed)
        return _BUILDERS[spec["sample"]]()

    def source_code(self, spec: dict[str, str], seed: int) -> str:
        self.validate(spec)
        return (
            "import torch\n"
            f"from generators.samples import {spec['sample']}\n\n\n"
            "def build_case():\n"
            f"    torch.manual_seed({seed})\n"
            f"    built = {spec['sample']}()\n"
            "    return built.module, built.args, built.kwargs\n"
        )

    def label(self, spec: dict[str, str]) -> str:
        return spec["sample"]

    def count(self) -> int:
        return len(SAMPLES)
