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


class CallInterpreter(torch.fx.Interpreter):
    """An Interpreter taking the case's call as the forward takes it: placeholders bind by
    position, then by name, ``*args`` and ``**kwargs`` too, and a parameter left out takes
    its default."""

    def __init__(self, module: torch.fx.GraphModule, kwargs: dict[str, Any]) -> None:
        super().__init__(module)
        named = {str(n.target) for n in module.graph.nodes if n.op == "placeholder"}
        self._by_name = {k: v for k, v in kwargs.items() if k in named}
        self._rest = {k: v for k, v in kwargs.items() if k not in named}

    def placeholder(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        name = str(target)
        if name.startswith("**"):
            return dict(self._rest)
        if name.startswith("*"):
            return tuple(self.args_iter)
        for value in self.args_iter:
            return value
        if name in self._by_name:
            return self._by_name[name]
        if args:
            return args[0]  # the parameter's default
        raise RuntimeError(f"no value for the forward's parameter {name!r}")


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
