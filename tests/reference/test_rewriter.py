"""RewritingTracer and AST_Rewriter."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import rewriter_cases
import torch
import torch.fx
from normalize_support import upstream_diverges
from torch.fx.graph_module import GraphModule

from conform.implementations import Implementation

UPSTREAM = Implementation("upstream")


def trace_with_rewrite(impl: Implementation, root: torch.nn.Module | Callable[..., Any]) -> GraphModule:
    return GraphModule(
        root if isinstance(root, torch.nn.Module) else torch.nn.Module(),
        impl.rewriter.RewritingTracer().trace(root),
    )


def _assert_nodes(gm: GraphModule) -> list[torch.fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch._assert]


@pytest.mark.parametrize(("cls", "method"), [("RewritingTracer", "trace"), ("AST_Rewriter", "rewrite"),
                                             ("AST_Rewriter", "visit_Assert"), ("AST_Rewriter", "visit_AnnAssign")])
def test_signatures_match_upstream(impl: Implementation, cls: str, method: str) -> None:
    ours = getattr(getattr(impl.rewriter, cls), method)
    theirs = getattr(getattr(UPSTREAM.rewriter, cls), method)
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


class _NoMessage(torch.nn.Module):
    def forward(self, a: Any, b: Any) -> Any:
        assert a == b
        return a + b


class _WithMessage(torch.nn.Module):
    def forward(self, a: Any, b: Any) -> Any:
        assert a == b, "test message"
        return a + b


class _EmptyMessage(torch.nn.Module):
    def forward(self, a: Any, b: Any) -> Any:
        assert a == b, ""
        return a + b


class _MultilineMessage(torch.nn.Module):
    def forward(self, a: Any, b: Any) -> Any:
        error_msg = """
An error message with
terrible spacing
                """
        assert a == b, error_msg
        return a + b


MULTILINE = """
An error message with
terrible spacing
    """


@pytest.mark.parametrize(
    ("module", "message"),
    [(_NoMessage, ""), (_WithMessage, "test message"), (_EmptyMessage, ""), (_MultilineMessage, MULTILINE)],
    ids=["no-message", "message", "empty-message", "multiline-message"],
)
def test_assert_becomes_torch_assert(impl: Implementation, module: type, message: str) -> None:
    m = module()
    traced = trace_with_rewrite(impl, m)
    traced.graph.lint()
    assert len(_assert_nodes(traced)) == 1
    traced(3, 3)
    with pytest.raises(AssertionError, match=message):
        traced(3, 5)
    assert traced(3, 3) == m(3, 3)


def test_tensor_assert(impl: Implementation) -> None:
    class Shaped(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[0] == 2, "batch of two"
            return x.relu()

    traced = trace_with_rewrite(impl, Shaped())
    x = torch.randn(2, 3)
    torch.testing.assert_close(traced(x), x.relu())
    with pytest.raises(AssertionError, match="batch of two"):
        traced(torch.randn(3, 3))


def test_nothing_to_rewrite_traces_as_usual(impl: Implementation) -> None:
    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    traced = trace_with_rewrite(impl, Plain())
    assert [n.op for n in traced.graph.nodes] == ["placeholder", "call_function", "output"]


def test_original_module_is_not_modified(impl: Implementation) -> None:
    m = _WithMessage()
    forward = type(m).forward
    trace_with_rewrite(impl, m)
    assert type(m) is _WithMessage and type(m).forward is forward
    with pytest.raises(AssertionError):
        m(3, 5)


def test_free_function_without_assert(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-function-name-already-global")
    traced = trace_with_rewrite(impl, rewriter_cases.free_function_without_assert)
    assert traced(3, 4) == 12


def test_free_function_with_assert(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-function-name-already-global")
    traced = trace_with_rewrite(impl, rewriter_cases.free_function_with_assert)
    assert len(_assert_nodes(traced)) == 1 and traced(2, 2) == 4
    with pytest.raises(AssertionError, match="operands differ"):
        traced(2, 3)


def test_module_level_forward(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-function-name-already-global")
    traced = trace_with_rewrite(impl, rewriter_cases.SharedForward())
    torch.testing.assert_close(traced(torch.ones(2, 2)), torch.full((2, 2), 2.0))
    with pytest.raises(AssertionError, match="expected a matrix"):
        traced(torch.ones(2))


def test_nested_function_with_non_standard_name(impl: Implementation) -> None:
    def check(a: Any, b: Any) -> Any:
        assert a != b, "equal"
        return a - b

    check.__name__ = "check values!"
    traced = trace_with_rewrite(impl, check)
    assert traced(5, 3) == 2
    with pytest.raises(AssertionError, match="equal"):
        traced(3, 3)


class _Child(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2, "child wants a matrix"
        return x * 2


class _Parent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.child = _Child()
        self.linear = torch.nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.child(x))


def test_asserts_in_submodules(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-submodule-asserts")
    parent = _Parent()
    traced = trace_with_rewrite(impl, parent)
    assert len(_assert_nodes(traced)) == 1
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["linear"]
    x = torch.randn(2, 3)
    torch.testing.assert_close(traced(x), parent(x))
    with pytest.raises(AssertionError, match="child wants a matrix"):
        traced(torch.randn(3))


class _Helper(torch.nn.Module):
    factor = 3

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 1
        return self.scale(x)


def test_forward_using_methods_and_class_attributes(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-class-attributes-lost")
    traced = trace_with_rewrite(impl, _Helper())
    torch.testing.assert_close(traced(torch.ones(2)), torch.full((2,), 3.0))


def _closure_module(offset: float) -> torch.nn.Module:
    class Offset(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.dim() == 1
            return x + offset

    return Offset()


def test_forward_reading_closure_variables(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-closure-variables")
    traced = trace_with_rewrite(impl, _closure_module(0.5))
    torch.testing.assert_close(traced(torch.zeros(2)), torch.full((2,), 0.5))


class _CheckedLinear(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == 3, "wrong width"
        return super().forward(x)


def test_forward_calling_super(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-zero-argument-super")
    m = _CheckedLinear(3, 2)
    traced = trace_with_rewrite(impl, m)
    x = torch.randn(4, 3)
    torch.testing.assert_close(traced(x), m(x))
    assert len(_assert_nodes(traced)) == 1


class _Private(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.__scale = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 1
        return x * self.__scale


def test_private_names_are_mangled_as_before(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-private-names")
    traced = trace_with_rewrite(impl, _Private())
    torch.testing.assert_close(traced(torch.ones(2)), torch.full((2,), 2.0))


def test_annotated_assignments(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-annotated-assignments")
    traced = trace_with_rewrite(impl, rewriter_cases.AnnotatedLocals())
    mul = next(n for n in traced.graph.nodes if n.name == "mul")
    assert mul.type is torch.Tensor
    torch.testing.assert_close(traced(torch.ones(2)), torch.full((2,), 3.0))


def test_ast_rewriter_rewrites_asserts(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "rewrite-function-name-already-global")
    rewritten = impl.rewriter.AST_Rewriter().rewrite(rewriter_cases.free_function_without_assert)
    assert rewritten(2, 3) == 6


def test_rewriting_keeps_trace_time_constants_on_the_tracer_root(impl: Implementation) -> None:
    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.dim() == 1
            return x + torch.tensor([1.0, 2.0])

    tracer = impl.rewriter.RewritingTracer()
    graph = tracer.trace(Constant())
    traced = GraphModule(tracer.root, graph)
    torch.testing.assert_close(traced(torch.zeros(2)), torch.tensor([1.0, 2.0]))
