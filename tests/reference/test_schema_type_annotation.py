"""AnnotateTypesWithSchema."""

from __future__ import annotations

import inspect
import operator
from types import BuiltinFunctionType
from typing import Any

import pytest
import torch
import torch.fx
from torch.fx import symbolic_trace

from conform.implementations import Implementation

UPSTREAM = Implementation("upstream")


@pytest.mark.parametrize("method", ["__init__", "call_function", "call_module", "get_attr",
                                    "_extract_python_return_type"])
def test_signatures_match_upstream(impl: Implementation, method: str) -> None:
    ours = getattr(impl.schema_type_annotation.AnnotateTypesWithSchema, method)
    theirs = getattr(UPSTREAM.schema_type_annotation.AnnotateTypesWithSchema, method)
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.pool = torch.nn.MaxPool1d(2)
        self.register_buffer("offset", torch.zeros(4))
        self.steps = 3

    def forward(self, x: torch.Tensor) -> Any:
        h = torch.nn.functional.relu(self.linear(x)) + self.offset
        pooled = torch.nn.functional.max_pool1d(h.unsqueeze(0), 2)
        return torch.nn.functional.silu(h), torch.nn.functional.gelu(h), self.pool(h.unsqueeze(0)), pooled


def _types(gm: torch.fx.GraphModule) -> dict[str, Any]:
    return {n.name: n.type for n in gm.graph.nodes}


def test_annotates_functionals_modules_and_attributes(impl: Implementation) -> None:
    annotated = impl.schema_type_annotation.AnnotateTypesWithSchema(symbolic_trace(_Net())).transform()
    types = _types(annotated)
    assert types["linear"] is torch.Tensor  # a standard module's forward
    assert types["relu"] is torch.Tensor  # a functional
    assert types["silu"] is torch.Tensor
    assert types["gelu"] is None  # a C++ builtin: no Python signature to read
    assert types["offset"] is torch.Tensor  # a buffer fetched with get_attr
    # boolean-dispatched functional whose branches return different types, and a module whose
    # forward has no return annotation, stay untyped
    assert types["max_pool1d"] is None
    assert types["pool"] is None
    assert types["add"] is None and types["unsqueeze"] is None


@pytest.mark.parametrize(
    ("option", "node"),
    [("annotate_functionals", "relu"), ("annotate_modules", "linear"), ("annotate_get_attrs", "offset")],
)
def test_each_kind_can_be_switched_off(impl: Implementation, option: str, node: str) -> None:
    annotated = impl.schema_type_annotation.AnnotateTypesWithSchema(
        symbolic_trace(_Net()), **{option: False}
    ).transform()
    types = _types(annotated)
    assert types[node] is None
    assert sum(t is not None for t in types.values()) >= 2


def test_result_runs_like_the_original(impl: Implementation) -> None:
    net = _Net()
    annotated = impl.schema_type_annotation.AnnotateTypesWithSchema(symbolic_trace(net)).transform()
    x = torch.randn(3, 4)
    for got, want in zip(annotated(x), net(x)):
        torch.testing.assert_close(got, want)


def test_missing_attribute_raises(impl: Implementation) -> None:
    root = torch.nn.Module()
    root.inner = torch.nn.Module()
    root.inner.value = torch.nn.Parameter(torch.ones(1))
    graph = torch.fx.Graph()
    graph.output(graph.get_attr("inner.value"))
    gm = torch.fx.GraphModule(root, graph)
    del gm.inner
    with pytest.raises(RuntimeError, match="nonextent target"):
        impl.schema_type_annotation.AnnotateTypesWithSchema(gm).transform()


def test_non_tensor_attribute_types(impl: Implementation) -> None:
    root = torch.nn.Module()
    root.pair = torch.nn.Module()
    root.pair.weight = torch.nn.Parameter(torch.ones(2))
    graph = torch.fx.Graph()
    graph.output(graph.get_attr("pair.weight"))
    annotated = impl.schema_type_annotation.AnnotateTypesWithSchema(torch.fx.GraphModule(root, graph)).transform()
    (attr,) = [n for n in annotated.graph.nodes if n.op == "get_attr"]
    assert attr.type is torch.Tensor


def test_extract_python_return_type(impl: Implementation) -> None:
    annotator = impl.schema_type_annotation.AnnotateTypesWithSchema(symbolic_trace(_Net()))

    def typed() -> int:
        return 1

    def untyped():  # noqa: ANN202
        return 1

    assert annotator._extract_python_return_type(typed) == "int"  # postponed annotations
    assert annotator._extract_python_return_type(untyped) is None
    assert annotator._extract_python_return_type(torch.nn.functional.relu) is torch.Tensor


@pytest.mark.slow
def test_resnet18(impl: Implementation) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    annotated = impl.schema_type_annotation.AnnotateTypesWithSchema(symbolic_trace(model)).transform()
    untyped = {(n.op, n.target) for n in annotated.graph.nodes if n.type is None}
    assert untyped <= {
        ("placeholder", "x"),
        ("call_module", "maxpool"),
        ("call_function", operator.add),
        ("call_function", torch.flatten),
        ("output", "output"),
    }
    # the annotations make the module TorchScript-compilable
    torch.jit.script(annotated)

    class FunctionalTracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return type(m) in {torch.nn.BatchNorm2d}

    functional = torch.fx.GraphModule(model, FunctionalTracer().trace(model))
    annotated = impl.schema_type_annotation.AnnotateTypesWithSchema(functional).transform()
    allowed = {("placeholder", "x"), ("call_function", torch.nn.functional.max_pool2d), ("output", "output")}
    for node in annotated.graph.nodes:
        if node.type is None and not isinstance(node.target, BuiltinFunctionType):
            assert (node.op, node.target) in allowed
