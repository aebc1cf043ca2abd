"""NormalizeArgs and NormalizeOperators."""

from __future__ import annotations

import inspect
import operator
import warnings
from typing import Any

import pytest
import torch
import torch.fx
from normalize_support import upstream_diverges
from torch.fx import symbolic_trace
from torch.fx.passes.shape_prop import ShapeProp

from conform.implementations import Implementation

UPSTREAM = Implementation("upstream")

BINARY_OPS = {
    "add": torch.add,
    "mul": torch.mul,
    "sub": torch.sub,
    "div": torch.div,
    "floor_divide": torch.floor_divide,
    "remainder": torch.remainder,
    "eq": torch.eq,
    "ne": torch.ne,
    "lt": torch.lt,
    "le": torch.le,
    "gt": torch.gt,
    "ge": torch.ge,
}


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    # Both implementations warn about untyped list arguments while resolving overloads.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


@pytest.mark.parametrize(
    ("cls", "method"),
    [("NormalizeArgs", "__init__"), ("NormalizeArgs", "call_function"), ("NormalizeArgs", "call_module"),
     ("NormalizeArgs", "run_node"), ("NormalizeOperators", "__init__"), ("NormalizeOperators", "call_function")],
)
def test_signatures_match_upstream(impl: Implementation, cls: str, method: str) -> None:
    ours = getattr(getattr(impl.normalize, cls), method)
    theirs = getattr(getattr(UPSTREAM.normalize, cls), method)
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


def test_remap_table_matches_upstream(impl: Implementation) -> None:
    assert impl.normalize.NormalizeOperators.binary_magic_method_remap == (
        UPSTREAM.normalize.NormalizeOperators.binary_magic_method_remap
    )


# -- NormalizeOperators ----------------------------------------------------------------------


def _binary(op: Any, rhs: Any) -> torch.nn.Module:
    class Wrapper(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> Any:
            return op(x, y if rhs is None else rhs)

    return Wrapper()


@pytest.mark.parametrize("rhs", [None, 42], ids=["tensor", "scalar"])
@pytest.mark.parametrize("name", sorted(BINARY_OPS))
def test_binary_operators_become_magic_methods(impl: Implementation, name: str, rhs: Any) -> None:
    traced = symbolic_trace(_binary(BINARY_OPS[name], rhs))
    normalized = impl.normalize.NormalizeOperators(traced).transform()
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(traced(x, y), normalized(x, y))
    targets = [n.target for n in normalized.graph.nodes if n.op == "call_function"]
    assert targets == [impl.normalize.NormalizeOperators.binary_magic_method_remap[BINARY_OPS[name]]]


class _NeutralKeywords(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.add(x, y, alpha=1) + torch.div(x, y, rounding_mode=None)


def test_neutral_keywords_are_dropped(impl: Implementation) -> None:
    traced = symbolic_trace(_NeutralKeywords())
    normalized = impl.normalize.NormalizeOperators(traced).transform()
    targets = [n.target for n in normalized.graph.nodes if n.op == "call_function"]
    assert targets == [operator.add, operator.truediv, operator.add]
    x, y = torch.randn(3), torch.rand(3) + 1
    torch.testing.assert_close(normalized(x, y), traced(x, y))


@pytest.mark.parametrize(
    ("op", "kwargs"),
    [(torch.add, {"alpha": 2}), (torch.sub, {"alpha": -3}), (torch.div, {"rounding_mode": "floor"}),
     (torch.div, {"rounding_mode": "trunc"})],
    ids=["add-alpha", "sub-alpha", "div-floor", "div-trunc"],
)
def test_meaningful_keywords_are_kept(request: pytest.FixtureRequest, impl: Implementation, op: Any,
                                      kwargs: dict[str, Any]) -> None:
    upstream_diverges(request, impl, "normalize-operators-drops-keywords")

    class Keyworded(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return op(x, y, **kwargs)

    traced = symbolic_trace(Keyworded())
    normalized = impl.normalize.NormalizeOperators(traced).transform()
    x, y = torch.randn(4) * 5, torch.rand(4) + 0.5
    torch.testing.assert_close(normalized(x, y), op(x, y, **kwargs))


class _ThreeOperands(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(input=x, other=x) + torch.lerp(x, x, 0.5)


def test_other_call_forms_are_left_alone(impl: Implementation) -> None:
    traced = symbolic_trace(_ThreeOperands())
    normalized = impl.normalize.NormalizeOperators(traced).transform()
    targets = [n.target for n in normalized.graph.nodes if n.op == "call_function"]
    assert targets == [torch.add, torch.lerp, operator.add]


class _Functional(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.relu(torch.mul(x, 2))


def test_normalize_operators_also_annotates(impl: Implementation) -> None:
    normalized = impl.normalize.NormalizeOperators(symbolic_trace(_Functional())).transform()
    relu = next(n for n in normalized.graph.nodes if n.target is torch.nn.functional.relu)
    assert relu.type is torch.Tensor


# -- NormalizeArgs ---------------------------------------------------------------------------


class _Mixed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.relu(self.bn(self.conv(x)))
        h = torch.nn.functional.adaptive_avg_pool2d(h, (1, 1))
        h = torch.flatten(h, 1)
        h = torch.nn.functional.dropout(h, 0.0, training=False)
        return torch.softmax(self.fc(h), dim=-1) + torch.clamp(h.sum(), min=0.0)


def _typed(module: torch.nn.Module, *inputs: torch.Tensor) -> torch.fx.GraphModule:
    traced = symbolic_trace(module)
    ShapeProp(traced).propagate(*inputs)
    return traced


def test_calls_become_keyword_only(impl: Implementation) -> None:
    x = torch.randn(2, 3, 8, 8)
    module = _Mixed().eval()
    traced = _typed(module, x)
    normalized = impl.normalize.NormalizeArgs(traced).transform()
    torch.testing.assert_close(normalized(x), module(x))
    for node in normalized.graph.nodes:
        if node.op in ("call_function", "call_module") and node.target is not operator.add:
            assert node.args == (), node.format_node()
    conv = next(n for n in normalized.graph.nodes if n.target == "conv")
    assert list(conv.kwargs) == ["input"]
    pool = next(n for n in normalized.graph.nodes if n.target is torch.nn.functional.adaptive_avg_pool2d)
    assert list(pool.kwargs) == ["input", "output_size"]


def test_positional_arguments_kept_on_request(impl: Implementation) -> None:
    x = torch.randn(2, 3, 8, 8)
    module = _Mixed().eval()
    normalized = impl.normalize.NormalizeArgs(_typed(module, x), normalize_to_only_use_kwargs=False).transform()
    torch.testing.assert_close(normalized(x), module(x))
    flatten = next(n for n in normalized.graph.nodes if n.target is torch.flatten)
    assert len(flatten.args) == 2 and flatten.kwargs == {"end_dim": -1}


def test_ambiguous_call_without_types_is_left_alone(impl: Implementation) -> None:
    class Adds(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.add(x, x)

    normalized = impl.normalize.NormalizeArgs(symbolic_trace(Adds())).transform()
    add = next(n for n in normalized.graph.nodes if n.op == "call_function")
    assert add.target is torch.add and len(add.args) == 2 and add.kwargs == {}


def test_ambiguous_call_with_types_is_resolved(impl: Implementation) -> None:
    class Adds(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.add(x, 3)

    x = torch.randn(2, 3)
    normalized = impl.normalize.NormalizeArgs(_typed(Adds(), x)).transform()
    add = next(n for n in normalized.graph.nodes if n.op == "call_function")
    assert add.args == () and add.kwargs == {"input": add.kwargs["input"], "other": 3, "alpha": 1}
    torch.testing.assert_close(normalized(x), x + 3)


def test_user_modules_are_left_alone(impl: Implementation) -> None:
    class Inner(torch.nn.Module):
        def forward(self, x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
            return x * scale

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return isinstance(m, Inner) or super().is_leaf_module(m, qualname)

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    outer = Outer()
    traced = torch.fx.GraphModule(outer, Tracer().trace(outer))
    normalized = impl.normalize.NormalizeArgs(traced).transform()
    call = next(n for n in normalized.graph.nodes if n.op == "call_module")
    assert len(call.args) == 1 and call.kwargs == {}


def test_node_meta_is_preserved(impl: Implementation) -> None:
    class AddConst(torch.nn.Module):
        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return torch.add(a, 3)

    traced = symbolic_trace(AddConst())
    add = next(n for n in traced.graph.nodes if n.target is torch.add)
    add.meta["my_key"] = 7
    ShapeProp(traced).propagate(torch.randn(2, 3))
    normalized = impl.normalize.NormalizeArgs(traced).transform()
    add = next(n for n in normalized.graph.nodes if n.target is torch.add)
    assert add.meta["my_key"] == 7
    assert add.meta["tensor_meta"].shape == torch.Size([2, 3])


def test_placeholder_types_are_preserved(impl: Implementation) -> None:
    class ListInput(torch.nn.Module):
        def forward(self, a: list[torch.Tensor]) -> torch.Tensor:
            return torch.add(a[0], a[1])

    ListInput.forward.__annotations__["a"] = list[torch.Tensor]  # evaluated, as without postponed annotations
    normalized = impl.normalize.NormalizeArgs(symbolic_trace(ListInput())).transform()
    (placeholder,) = [n for n in normalized.graph.nodes if n.op == "placeholder"]
    assert placeholder.type == list[torch.Tensor]


def test_node_map_points_back_to_the_original_nodes(impl: Implementation) -> None:
    traced = symbolic_trace(_Functional())
    transformer = impl.normalize.NormalizeArgs(traced)
    transformer.transform()
    originals = {n.name for n in traced.graph.nodes if n.op != "output"}
    assert {n.name for n in transformer.node_map.values()} == originals
    assert all(isinstance(k, torch.fx.Proxy) for k in transformer.node_map)


class _AtenCall(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.add.Tensor(x, y, alpha=2)


def test_op_overload_calls_still_run(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "normalize-args-self-parameter-name")
    normalized = impl.normalize.NormalizeArgs(symbolic_trace(_AtenCall())).transform()
    x, y = torch.randn(3), torch.randn(3)
    torch.testing.assert_close(normalized(x, y), x + 2 * y)


def test_nonzero_is_normalized(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "normalize-args-hand-written-signatures")

    class Nonzero(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nonzero(x)

    normalized = impl.normalize.NormalizeArgs(symbolic_trace(Nonzero())).transform()
    call = next(n for n in normalized.graph.nodes if n.op == "call_function")
    assert call.args == () and list(call.kwargs) == ["input"]
    x = torch.tensor([0.0, 2.0, 0.0, 1.0])
    torch.testing.assert_close(normalized(x), torch.nonzero(x))


def test_node_passed_by_keyword_is_typed(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "normalize-args-argument-types")

    class KeywordOperand(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.add(x, other=y)

    x, y = torch.randn(2), torch.randn(2)
    normalized = impl.normalize.NormalizeArgs(_typed(KeywordOperand(), x, y)).transform()
    call = next(n for n in normalized.graph.nodes if n.op == "call_function")
    assert call.args == () and list(call.kwargs) == ["input", "other", "alpha"]
    torch.testing.assert_close(normalized(x, y), x + y)


@pytest.mark.slow
def test_resnet18_functional_trace(impl: Implementation) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18().eval()

    class FunctionalTracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return type(m) in {torch.nn.BatchNorm2d}

    traced = torch.fx.GraphModule(model, FunctionalTracer().trace(model))
    x = torch.randn(2, 3, 64, 64)
    expected = traced(x)
    ShapeProp(traced).propagate(x)
    normalized = impl.normalize.NormalizeArgs(traced).transform()
    modules = dict(normalized.named_modules())
    for node in normalized.graph.nodes:
        if node.op == "call_function" and node.target is not operator.add:
            assert len(node.args) == 0, node.format_node()
        elif node.op == "call_module":
            cls = type(modules[node.target])
            if getattr(torch.nn, cls.__name__, None) is cls:
                assert len(node.args) == 0
    torch.testing.assert_close(normalized(x), expected)


def test_scalar_receiver_keeps_its_name(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "normalize-args-self-parameter-name")

    class ScalarBase(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.pow(2, x)

    x = torch.randn(3)
    normalized = impl.normalize.NormalizeArgs(_typed(ScalarBase(), x)).transform()
    torch.testing.assert_close(normalized(x), torch.pow(2, x))
