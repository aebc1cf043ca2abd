"""param_fetch: lowering attributes of the standard modules on call_module nodes, on both
implementations."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from conform.implementations import Implementation

STANDARD = [
    (nn.Linear(4, 3), ["weight", "bias"]),
    (nn.Conv2d(3, 4, 3, stride=2, padding=1, groups=1),
     ["weight", "bias", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"]),
    (nn.BatchNorm2d(4), ["weight", "bias", "running_mean", "running_var", "eps"]),
    (nn.AdaptiveAvgPool2d(2), []),
    (nn.MaxPool2d(2, ceil_mode=True),
     ["kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"]),
    (nn.ReLU(inplace=True), ["inplace"]),
]


class Wrap(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize(("module", "attrs"), STANDARD, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_standard_module_attributes(impl: Implementation, module: nn.Module, attrs: list[str]) -> None:
    gm = torch.fx.symbolic_trace(Wrap(module))

    impl.param_fetch.lift_lowering_attrs_to_nodes(gm)

    node = next(n for n in gm.graph.nodes if n.op == "call_module")
    fetched = node.attrs_for_lowering
    assert list(fetched) == ["name", *attrs]
    assert fetched["name"] == torch.typename(module)
    for attr in attrs:
        assert fetched[attr] is getattr(module, attr)


def test_only_call_module_nodes_are_annotated(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(Wrap(nn.Linear(2, 2)))

    impl.param_fetch.lift_lowering_attrs_to_nodes(gm)

    annotated = [n.name for n in gm.graph.nodes if hasattr(n, "attrs_for_lowering")]
    assert annotated == ["inner"]


def test_module_missing_from_the_book_raises(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(Wrap(nn.Tanh()))

    with pytest.raises(RuntimeError, match="module_fetch_book"):
        impl.param_fetch.lift_lowering_attrs_to_nodes(gm)


def test_subclass_is_not_its_base(impl: Implementation) -> None:
    class MyLinear(nn.Linear):
        pass

    with pytest.raises(RuntimeError):
        impl.param_fetch.extract_attrs_for_lowering(MyLinear(2, 2))


def test_newer_module_version_is_refused(impl: Implementation) -> None:
    linear = nn.Linear(2, 2)
    linear._version = 5

    with pytest.raises(RuntimeError, match="version"):
        impl.param_fetch.extract_attrs_for_lowering(linear)


def test_recurses_into_graph_module_children(impl: Implementation) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    gm = torch.fx.symbolic_trace(model)
    parts = impl.split_module.split_module(gm, model, lambda n: 0 if n.name == "_0" else 1)

    impl.param_fetch.lift_lowering_attrs_to_nodes(parts)

    # the parent's calls run GraphModules, which are descended into rather than fetched
    assert not any(hasattr(n, "attrs_for_lowering") for n in parts.graph.nodes)
    leaf_calls = [
        n for child in (parts.submod_0, parts.submod_1) for n in child.graph.nodes if n.op == "call_module"
    ]
    assert [n.attrs_for_lowering["name"] for n in leaf_calls] == [
        "torch.nn.modules.linear.Linear", "torch.nn.modules.activation.ReLU", "torch.nn.modules.linear.Linear",
    ]


def test_default_matching_and_book(impl: Implementation) -> None:
    assert impl.param_fetch.default_matching("weight", 3) == "weight"
    book = impl.param_fetch.module_fetch_book
    assert set(book) == {nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.ReLU}
    assert book[nn.BatchNorm2d][0] == 2


def test_book_entries_can_be_added(impl: Implementation, monkeypatch: pytest.MonkeyPatch) -> None:
    book = dict(impl.param_fetch.module_fetch_book)
    book[nn.Tanh] = (1, [], impl.param_fetch.default_matching)
    monkeypatch.setattr(impl.param_fetch, "module_fetch_book", book)

    fetched = impl.param_fetch.extract_attrs_for_lowering(nn.Tanh())

    assert fetched == {"name": "torch.nn.modules.activation.Tanh"}
