"""What each pattern of :mod:`generators.focus.normalize_args` and
:mod:`generators.focus.meta_trace` looks like in the traced graph."""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.fx
import torch.nn.functional as F

Check = Callable[[torch.fx.GraphModule], bool]


def _calls(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "call_function"]


def _aten(gm: torch.fx.GraphModule) -> bool:
    return any(isinstance(n.target, torch._ops.OpOverload | torch._ops.OpOverloadPacket) for n in _calls(gm))


def _scalar_self(gm: torch.fx.GraphModule) -> bool:
    return any(n.target in (torch.pow, torch.remainder, torch.where) and any(isinstance(a, float) for a in n.args)
               for n in _calls(gm))


def _nonzero(gm: torch.fx.GraphModule) -> bool:
    return any(n.target is torch.nonzero for n in _calls(gm))


def _keyword_operand(gm: torch.fx.GraphModule) -> bool:
    return any(isinstance(n.kwargs.get("other"), torch.fx.Node) for n in _calls(gm))


def _keyword_operator(gm: torch.fx.GraphModule) -> bool:
    respelled = (torch.add, torch.sub, torch.div, torch.mul)
    return any(n.target in respelled and len(n.args) == 2 for n in _calls(gm))


def _tuple_result(gm: torch.fx.GraphModule) -> bool:
    tuples = (torch.max, torch.min, torch.sort, torch.var_mean, torch.frexp)
    return any(n.target is operator.getitem and n.args[0].target in tuples for n in _calls(gm))


def _keyword_sequence(gm: torch.fx.GraphModule) -> bool:
    return any(any(isinstance(v, list | tuple) for v in n.kwargs.values())
               and n.target in (F.conv1d, F.conv2d, torch.sum, torch.mean, torch.amax) for n in _calls(gm))


def _size_of_dim_zero(gm: torch.fx.GraphModule) -> bool:
    return any(n.op == "call_method" and n.target == "size" and (n.args[1:2] == (0,) or n.kwargs.get("dim") == 0)
               for n in gm.graph.nodes)


def _shape_gate(gm: torch.fx.GraphModule) -> bool:
    return any(n.op == "call_module" and type(gm.get_submodule(n.target)).__name__.startswith("ShapeGate")
               for n in gm.graph.nodes)


def _meta_construct(gm: torch.fx.GraphModule) -> bool:
    targets = (torch.where, torch.abs, torch.relu, F.relu, torch.full_like, getattr)
    return any(n.target in targets for n in _calls(gm)) or any(
        n.op == "call_method" and n.target in ("to", "dim", "reshape") for n in gm.graph.nodes)


CONSTRUCTS: dict[str, Check] = {
    "aten_overload_call": _aten,
    "scalar_self_call": _scalar_self,
    "nonzero_call": _nonzero,
    "keyword_operand": _keyword_operand,
    "keyword_operator": _keyword_operator,
    "tuple_result": _tuple_result,
    "keyword_sequence": _keyword_sequence,
    "size_of_dim_zero": _size_of_dim_zero,
    "shape_gate": _shape_gate,
    "meta_construct": _meta_construct,
}
