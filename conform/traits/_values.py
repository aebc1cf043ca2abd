"""Run a traced case once and keep what every node produced, without touching the graph:
traits about values (a node producing several tensors, the runtime type of an argument)
read them here instead of running ShapeProp on the engine's shared GraphModule."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from conform.adapters import clone_values
from conform.execute import seed_everything
from generators.sources import Built


class _Recorder(torch.fx.Interpreter):
    def __init__(self, module: torch.fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[torch.fx.Node, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n] = result
        return result


def node_values(graph_module: torch.fx.GraphModule, built: Built) -> dict[torch.fx.Node, Any]:
    """Every node's value on a copy of the case's inputs (positional inputs only, as
    ShapeProp takes them)."""
    recorder = _Recorder(graph_module)
    seed_everything(0)
    recorder.run(*clone_values(built.args))
    return recorder.values
