"""Witnesses of the known split_module divergences: each builder returns the case, each
``*_witness`` function the case with the parameters that show the divergence."""

from __future__ import annotations

import torch
import torch.fx

from conform.case import Case
from conform.known import Witness
from generators.sources import Built


def _factory(builder: str) -> Case:
    return Case(source="factory", spec={"factory": f"conform.witnesses.split:{builder}"})


# --- **kwargs forward with keep_original_node_name ---------------------------------------------


class KwargsForward(torch.nn.Module):
    def forward(self, x, **kwargs):
        return x + kwargs["foo"]


def kwargs_forward() -> Built:
    return Built(KwargsForward(), (torch.randn(3, 2),), {"foo": torch.randn(3, 2)})


def kwargs_keep_node_name_witness() -> Witness:
    return Witness(_factory("kwargs_forward"), {"partition": {}, "keep_original_node_name": True})


class DefaultThenKwargsForward(torch.nn.Module):
    def forward(self, x, alpha: float = 0.5, **kwargs):
        return x * alpha * kwargs.get("scale", 1.0)


def default_then_kwargs_forward() -> Built:
    return Built(DefaultThenKwargsForward(), (torch.randn(3),), {})


def kwargs_after_default_keep_node_name_witness() -> Witness:
    return Witness(_factory("default_then_kwargs_forward"), {"partition": {}, "keep_original_node_name": True})


# --- an attribute returned as is, with keep_original_order --------------------------------------


class ReturnsParameter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.param = torch.nn.Parameter(torch.randn(2))

    def forward(self, x):
        return x * 2, self.param


def returns_parameter() -> Built:
    return Built(ReturnsParameter(), (torch.randn(2),))


def returned_attribute_witness() -> Witness:
    return Witness(_factory("returns_parameter"), {"partition": {}, "keep_original_order": True})


# --- two module paths that flatten to the same name ---------------------------------------------


class FlattenCollision(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Module()
        self.a.b_c = torch.nn.Linear(2, 2)
        self.a_b = torch.nn.Module()
        self.a_b.c = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.a.b_c(x) - self.a_b.c(x)


def flatten_collision() -> Built:
    return Built(FlattenCollision(), (torch.randn(3, 2),))


def flatten_collision_witness() -> Witness:
    return Witness(_factory("flatten_collision"), {"partition": {}})


# --- a grad-mode region, for the partition_affix and negative-id divergences --------------------


def _set_grad(flag: bool, anchor: object) -> None:
    # symbolic_trace does not record a call without traced arguments; put it in the graph
    # explicitly so the traced module switches grad mode like the eager one does
    if isinstance(anchor, torch.fx.Proxy):
        anchor.tracer.create_proxy("call_function", torch._C._set_grad_enabled, (flag,), {})
    else:
        torch._C._set_grad_enabled(flag)


class NoGradBlock(torch.nn.Module):
    def forward(self, x):
        _set_grad(False, x)
        y = torch.sigmoid(x)
        z = torch.relu(y)
        _set_grad(True, x)
        return z * 2


def no_grad_block() -> Built:
    return Built(NoGradBlock(), (torch.randn(4),))


_NO_GRAD_SPLIT = {"_set_grad_enabled": 0, "sigmoid": 0, "relu": 1, "_set_grad_enabled_1": 1, "mul": 1}


def affix_with_regions_witness() -> Witness:
    return Witness(_factory("no_grad_block"), {"partition": _NO_GRAD_SPLIT, "partition_affix": "pp"})


def negative_ids_with_regions_witness() -> Witness:
    return Witness(_factory("no_grad_block"), {"partition": {k: v - 3 for k, v in _NO_GRAD_SPLIT.items()}})


# --- a size symbol bound inside the partition that needs it -------------------------------------


def _symbolic_examples(length: int) -> tuple[torch.Tensor, torch.SymInt]:
    """A fake tensor of symbolic length s0 and the SymInt s0, as dynamo records them."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    mode = FakeTensorMode(shape_env=ShapeEnv())
    fake = mode.from_tensor(
        torch.randn(length), symbolic_context=StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC])
    )
    return fake, fake.size(0)


class SymbolBoundInPartition(torch.nn.Module):
    """``x.size(0)`` binds the symbol of x's length; under tracing, the nodes get dynamo-style
    ``example_value`` metadata."""

    def forward(self, x):
        doubled = x * 2
        n = x.size(0)
        if isinstance(x, torch.fx.Proxy):
            fake, size = _symbolic_examples(4)
            x.node.meta["example_value"] = fake
            doubled.node.meta["example_value"] = fake * 2
            n.node.meta["example_value"] = size
        return doubled.sum() + n


def symbol_bound_in_partition() -> Built:
    return Built(SymbolBoundInPartition(), (torch.randn(4),))


def symbol_bound_in_partition_witness() -> Witness:
    return Witness(_factory("symbol_bound_in_partition"), {"partition": {"sum_1": 1, "add": 1}})


# --- an in-place write in one partition, a read of the same memory in another -------------------


class ReadThenWrite(torch.nn.Module):
    """``sigmoid`` reads ``y`` before ``relu_`` overwrites it; the two meet only in ``add``."""

    def forward(self, x):
        y = x * 1
        s = torch.sigmoid(y)
        y.relu_()
        return s + y


def read_then_write() -> Built:
    return Built(ReadThenWrite(), (torch.linspace(-1.5, 1.0, 6),))


def inplace_across_partitions_witness() -> Witness:
    # partitions 1 (relu_) and 2 (sigmoid) are both ready once partition 0 (mul) has run:
    # upstream takes the last one made ready, the writer
    return Witness(_factory("read_then_write"), {"partition": {"sigmoid": 2, "relu_": 1, "add": 3}})
