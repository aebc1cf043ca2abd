"""Small random modules for the graph-utility property tests.

A spec is a list of steps; step ``i`` produces value ``i + 1`` (value 0 is the input ``x``,
a 3x4 tensor) from earlier values, so every spec traces to a valid graph with parameters,
leaf-module calls, getattr/getitem chains and several outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

UNARY = ("relu", "neg", "sigmoid", "linear", "param", "scale_by_rows", "swap_halves", "topk_values")
BINARY = ("add", "mul", "sub")


class SpecModule(torch.nn.Module):
    def __init__(self, spec: list[tuple[str, tuple[int, ...]]], outputs: tuple[int, ...]) -> None:
        super().__init__()
        self.spec = spec
        self.outputs = outputs
        self.linears = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in spec)
        self.params = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(3, 4)) for _ in spec)

    def forward(self, x):
        values = [x]
        for i, (kind, inputs) in enumerate(self.spec):
            a = values[inputs[0]]
            if kind == "relu":
                out = torch.relu(a)
            elif kind == "neg":
                out = -a
            elif kind == "sigmoid":
                out = a.sigmoid()
            elif kind == "linear":
                out = self.linears[i](a)
            elif kind == "param":
                out = a + self.params[i]
            elif kind == "scale_by_rows":
                out = a * a.shape[0]  # getattr then getitem: an int crossing partitions
            elif kind == "swap_halves":
                left, right = a.chunk(2, dim=-1)
                out = torch.cat([right, left], dim=-1)
            elif kind == "topk_values":
                top, _ = a.topk(4, dim=-1)
                out = top
            else:
                b = values[inputs[1]]
                out = {"add": torch.add, "mul": torch.mul, "sub": torch.sub}[kind](a, b)
            values.append(out)
        picked = tuple(values[i] for i in self.outputs)
        return picked[0] if len(picked) == 1 else picked


@st.composite
def specs(draw: st.DrawFn, max_steps: int = 8) -> tuple[list[tuple[str, tuple[int, ...]]], tuple[int, ...]]:
    steps = draw(st.integers(1, max_steps))
    spec: list[tuple[str, tuple[int, ...]]] = []
    for i in range(steps):
        kind = draw(st.sampled_from(UNARY + BINARY))
        arity = 2 if kind in BINARY else 1
        inputs = tuple(draw(st.integers(0, i)) for _ in range(arity))
        spec.append((kind, inputs))
    last = steps
    extra = draw(st.lists(st.integers(0, steps), max_size=2, unique=True))
    outputs = tuple(dict.fromkeys([last, *extra]))
    return spec, outputs


def build(spec_and_outputs: Any, seed: int = 0) -> tuple[SpecModule, torch.fx.GraphModule, torch.Tensor]:
    torch.manual_seed(seed)
    spec, outputs = spec_and_outputs
    module = SpecModule(spec, outputs)
    return module, torch.fx.symbolic_trace(module), torch.randn(3, 4)
