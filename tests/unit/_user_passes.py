"""Passes of a user's own, in each shape ``--transform MODULE:ATTR`` accepts, for the
user-pass tests: correct ones and one that computes something else."""

from __future__ import annotations

import operator

import torch
import torch.fx
from torch.fx.passes.infra.pass_base import PassBase, PassResult

NOT_A_PASS = 42


class Plain:
    """A class that is neither a Transformer nor a PassBase."""


def _rename_adds(gm: torch.fx.GraphModule, target: object) -> torch.fx.GraphModule:
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in (operator.add, torch.add):
            node.target = target
    gm.recompile()
    return gm


def add_to_sub(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Subtracts where the module adds (a pass that breaks what it touches)."""
    return _rename_adds(gm, operator.sub)


def spell_add_as_torch_add(gm: torch.fx.GraphModule) -> None:
    """Rewrites ``a + b`` as ``torch.add(a, b)`` in place and returns nothing."""
    _rename_adds(gm, torch.add)


class AddsAsTorchAdd(PassBase):
    """``a + b`` as ``torch.add(a, b)``, as a PassBase."""

    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        return PassResult(_rename_adds(graph_module, torch.add), True)


ADDS_AS_TORCH_ADD = AddsAsTorchAdd()


class DoubleRelu(torch.fx.Transformer):
    """relu(x) as relu(relu(x)), a Transformer subclass."""

    def call_function(self, target, args, kwargs):  # type: ignore[no-untyped-def]
        out = super().call_function(target, args, kwargs)
        if target is torch.relu:
            return super().call_function(torch.relu, (out,), {})
        return out
