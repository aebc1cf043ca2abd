"""Checks every generated case must pass: it builds, runs eagerly, traces with
``symbolic_trace``, lints, and the traced module computes what the eager one does."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx

from generators.sources import Built


def tensors(value: Any) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(value) if isinstance(t, torch.Tensor)]


def same(a: Any, b: Any, *, meta_only: bool = False) -> bool:
    """Equal pytree structure, tensor shapes and dtypes, and (unless ``meta_only``) values,
    NaN equal to NaN."""
    la, sa = torch.utils._pytree.tree_flatten(a)
    lb, sb = torch.utils._pytree.tree_flatten(b)
    if sa != sb or len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor):
            if not isinstance(y, torch.Tensor) or x.shape != y.shape or x.dtype != y.dtype:
                return False
            if not meta_only and not torch.equal(torch.nan_to_num(x), torch.nan_to_num(y)):
                return False
        elif not meta_only and x != y:
            return False
    return True


def run(module: torch.nn.Module, built: Built) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return module(*copy.deepcopy(built.args), **copy.deepcopy(built.kwargs))


def trace(built: Built) -> torch.fx.GraphModule:
    gm = torch.fx.symbolic_trace(copy.deepcopy(built.module), concrete_args=built.concrete_args)
    gm.graph.lint()
    return gm


def check_built(built: Built) -> tuple[Any, torch.fx.GraphModule]:
    """Run eagerly, trace, lint, run traced; assert both agree. Returns the eager output
    and the traced module."""
    expected = run(copy.deepcopy(built.module), built)
    gm = trace(built)
    got = run(gm, built)
    assert same(expected, got, meta_only=built.stochastic), "traced module disagrees with eager"
    return expected, gm


def exec_source(source: str) -> tuple[torch.nn.Module, tuple[Any, ...], dict[str, Any]]:
    namespace: dict[str, Any] = {"__name__": "fx_conform_repro"}
    exec(compile(source, "<repro>", "exec"), namespace)
    return namespace["build_case"]()
