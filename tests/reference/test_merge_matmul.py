"""merge_matmul: which matmuls merge, what the merged module computes, and the dependence
helpers, on both implementations.

Merge decisions are read with the row's fingerprint (``conform.fingerprints.optimization``),
which understands both spellings of a merge (upstream's cat/matmul/split nodes and the
reference's one ``merged_matmul`` node). Tests marked with ``upstream_bug`` show a
registered known divergence and fail on upstream by design.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
from _known import upstream_bug
from hypothesis import given, settings
from hypothesis import strategies as st

from conform.adapters import Applied, Subject
from conform.fingerprints.optimization import merged_matmuls
from conform.implementations import Implementation


def merge(impl: Implementation, module: torch.nn.Module) -> tuple[torch.fx.GraphModule, dict]:
    """Merge, check the graph, and return it with its merge summary."""
    merged = impl.merge_matmul.merge_matmul(module)
    merged.graph.lint()
    subject = Subject(module, torch.fx.symbolic_trace(module), (), {})
    return merged, merged_matmuls(Applied(runnable=merged, value=merged, subject=subject))


def same_outputs(got, want) -> None:
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


class TwoShareRight(torch.nn.Module):
    def forward(self, a, b, w):
        return torch.matmul(a, w), torch.matmul(b, w)


class ThreeShareParameter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 6))

    def forward(self, a, b, c):
        return torch.matmul(a, self.weight) + torch.matmul(b, self.weight) * torch.matmul(c, self.weight)


class Chained(torch.nn.Module):
    def forward(self, a, w):
        first = torch.matmul(a, w)
        return torch.matmul(first, w)


class DifferentRight(torch.nn.Module):
    def forward(self, a, b, v, w):
        return torch.matmul(a, v), torch.matmul(b, w)


class IndirectlyDependent(torch.nn.Module):
    def forward(self, a, w):
        first = torch.matmul(a, w)
        return torch.matmul(torch.relu(first) + 1, w)


class FarApart(torch.nn.Module):
    """The second left operand is seven ops away from any input: past the search depth."""

    def forward(self, a, b, w):
        for _ in range(7):
            b = b + 1
        return torch.matmul(a, w), torch.matmul(b, w)


class SameLeftTwice(torch.nn.Module):
    def forward(self, a, w):
        return torch.matmul(a, w), torch.matmul(a, w)


class OperatorMatmul(torch.nn.Module):
    def forward(self, a, b, w):
        return a @ w, b @ w


def test_two_matmuls_sharing_the_right_operand_merge(impl: Implementation) -> None:
    module = TwoShareRight()
    merged, summary = merge(impl, module)
    assert summary == {"merged": [["w", ["a", "b"]]], "kept": []}
    args = torch.randn(2, 4), torch.randn(3, 4), torch.randn(4, 5)
    same_outputs(merged(*args), module(*args))


def test_a_shared_parameter_merges_three(impl: Implementation) -> None:
    module = ThreeShareParameter()
    merged, summary = merge(impl, module)
    assert summary == {"merged": [["attr:weight", ["a", "b", "c"]]], "kept": []}
    args = torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4)
    same_outputs(merged(*args), module(*args))


@pytest.mark.parametrize(
    ("module", "kept"),
    [
        pytest.param(Chained(), ["matmul", "matmul_1"], id="chained"),
        pytest.param(DifferentRight(), ["matmul", "matmul_1"], id="different-right"),
        pytest.param(IndirectlyDependent(), ["matmul", "matmul_1"], id="indirect"),
        pytest.param(FarApart(), ["matmul", "matmul_1"], id="past-search-depth"),
        pytest.param(OperatorMatmul(), [], id="operator-matmul"),
    ],
)
def test_matmuls_that_stay(impl: Implementation, module: torch.nn.Module, kept: list[str]) -> None:
    merged, summary = merge(impl, module)
    assert summary == {"merged": [], "kept": kept}
    names = [p for p in torch.fx.symbolic_trace(module).graph.nodes if p.op == "placeholder"]
    args = [torch.randn(4, 4) for _ in names]
    same_outputs(merged(*args), module(*args))


def test_the_same_left_operand_twice(impl: Implementation) -> None:
    module = SameLeftTwice()
    merged, summary = merge(impl, module)
    assert summary == {"merged": [["w", ["a", "a"]]], "kept": []}
    args = torch.randn(3, 4), torch.randn(4, 2)
    same_outputs(merged(*args), module(*args))


def test_batched_left_operands(impl: Implementation) -> None:
    module = TwoShareRight()
    merged, summary = merge(impl, module)
    args = torch.randn(2, 3, 4), torch.randn(5, 3, 4), torch.randn(4, 6)
    same_outputs(merged(*args), module(*args))


@pytest.mark.parametrize("module", [TwoShareRight(), ThreeShareParameter()], ids=["inputs", "parameter"])
def test_the_merged_module_traces_again(impl: Implementation, module: torch.nn.Module,
                                        request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-retraced-split-sizes")
    merged, summary = merge(impl, module)
    assert summary["merged"], "the case must merge something for the re-trace to mean anything"
    retraced = torch.fx.symbolic_trace(merged)
    retraced.graph.lint()
    args = [torch.randn(2, 4) for _ in range(2)] + [torch.randn(4, 6)] if isinstance(
        module, TwoShareRight) else [torch.randn(3, 4) for _ in range(3)]
    same_outputs(retraced(*args), merged(*args))
    same_outputs(retraced(*args), module(*args))
    # the merged product is one call in the re-traced graph too, and re-traces again
    twice = torch.fx.symbolic_trace(retraced)
    assert merged_matmuls(Applied(runnable=twice, value=twice, subject=None))["merged"] == summary["merged"]
    same_outputs(twice(*args), module(*args))


def test_two_groups(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-second-group")

    class TwoGroups(torch.nn.Module):
        def forward(self, a, b, c, d, v, w):
            return torch.matmul(a, v) + torch.matmul(c, w), torch.matmul(b, v) - torch.matmul(d, w)

    module = TwoGroups()
    merged, summary = merge(impl, module)
    assert summary == {"merged": [["v", ["a", "b"]], ["w", ["c", "d"]]], "kept": []}
    args = [torch.randn(3, 3) for _ in range(6)]
    same_outputs(merged(*args), module(*args))


def test_a_later_group_reading_an_earlier_product(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-second-group")

    class Reads(torch.nn.Module):
        def forward(self, a, b, v, w):
            x, y = torch.matmul(a, v), torch.matmul(b, v)
            return torch.matmul(x, w), torch.matmul(y, w)

    module = Reads()
    merged, summary = merge(impl, module)
    assert len(summary["merged"]) == 2 and summary["kept"] == []
    args = [torch.randn(3, 3) for _ in range(4)]
    same_outputs(merged(*args), module(*args))


def test_an_earlier_product_as_the_shared_operand(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-second-group")

    class Uses(torch.nn.Module):
        def forward(self, a, b, c, d, w):
            first = torch.matmul(a, w)
            second = torch.matmul(b, w)
            return torch.matmul(c, first), torch.matmul(d, first), second

    module = Uses()
    merged, summary = merge(impl, module)
    assert len(summary["merged"]) == 2
    args = [torch.randn(3, 3) for _ in range(5)]
    same_outputs(merged(*args), module(*args))


def test_a_batched_shared_operand(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-batched-shared-operand")
    module = TwoShareRight()
    merged, _ = merge(impl, module)
    args = torch.randn(2, 4), torch.randn(1, 4), torch.randn(3, 4, 5)
    same_outputs(merged(*args), module(*args))


@pytest.mark.parametrize(
    ("shapes", "known"),
    [
        pytest.param([(2, 4), (3, 4), (4,)], None, id="vector-right"),
        pytest.param([(4,), (4,), (4, 5)], "merge-matmul-vector-left-operand", id="vector-left"),
        pytest.param([(4,), (2, 2, 4), (4,)], "merge-matmul-vector-left-operand", id="mixed-ranks"),
    ],
)
def test_left_and_right_ranks(
    impl: Implementation, request: pytest.FixtureRequest, shapes: list[tuple[int, ...]], known: str | None
) -> None:
    if known:
        upstream_bug(request, impl, known)
    module = TwoShareRight()
    merged, _ = merge(impl, module)
    args = [torch.randn(s) for s in shapes]
    same_outputs(merged(*args), module(*args))


def test_a_mutation_between_keeps_the_group(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-mutation-between")

    class Mutates(torch.nn.Module):
        def forward(self, a, b, w):
            first = torch.matmul(a, w)
            a.add_(1.0)
            return first, torch.matmul(b, w)

    module = Mutates()
    merged, _ = merge(impl, module)
    args = torch.randn(2, 4), torch.randn(2, 4), torch.randn(4, 5)
    expected = module(*[x.clone() for x in args])
    same_outputs(merged(*[x.clone() for x in args]), expected)


def test_a_mutation_after_the_group_stays_after_it(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-mutation-between")

    class MutatesAfter(torch.nn.Module):
        def forward(self, a, b, w):
            owned = a * 1.0
            first, second = torch.matmul(owned, w), torch.matmul(b, w)
            owned.add_(1.0)
            return first, second, owned

    module = MutatesAfter()
    merged, summary = merge(impl, module)
    assert summary["merged"] == [["w", ["mul", "b"]]]
    args = torch.randn(2, 4), torch.randn(2, 4), torch.randn(4, 5)
    same_outputs(merged(*args), module(*args))


def test_a_read_of_updated_memory_stays_after_the_update(
    impl: Implementation, request: pytest.FixtureRequest
) -> None:
    upstream_bug(request, impl, "merge-matmul-mutation-between")

    class GatedElsewhere(torch.nn.Module):
        def forward(self, a, b, w, x):
            owned = x * 1.0
            owned.mul_(torch.sigmoid(torch.sigmoid(x)))
            return torch.matmul(a, w), torch.matmul(b, w), torch.relu(owned)

    module = GatedElsewhere()
    merged, summary = merge(impl, module)
    assert summary["merged"] == [["w", ["a", "b"]]]
    # x > 0 so that relu shows whether the update was seen (on negative x both read zeros)
    args = torch.randn(2, 4), torch.randn(3, 4), torch.randn(4, 5), torch.rand(3) + 0.5
    same_outputs(merged(*args), module(*args))


def test_an_unrelated_mutation_between_does_not_stop_the_merge(impl: Implementation) -> None:
    class Unrelated(torch.nn.Module):
        def forward(self, a, b, c, w):
            first = torch.matmul(a, w)
            c.mul_(2.0)
            return first, torch.matmul(b, w), c

    module = Unrelated()
    merged, summary = merge(impl, module)
    assert summary == {"merged": [["w", ["a", "b"]]], "kept": []}
    args = torch.randn(2, 4), torch.randn(2, 4), torch.randn(3), torch.randn(4, 5)
    expected = module(*[x.clone() for x in args])
    same_outputs(merged(*[x.clone() for x in args]), expected)


def test_a_mutation_through_a_view_computes_the_same(impl: Implementation) -> None:
    class ThroughView(torch.nn.Module):
        def forward(self, a, b, w):
            first = torch.matmul(a, w)
            a.view(-1)[0:2].zero_()
            return first, torch.matmul(b, w)

    module = ThroughView()
    merged, _ = merge(impl, module)
    args = torch.randn(2, 4) + 5, torch.randn(2, 4), torch.randn(4, 5)
    expected = module(*[x.clone() for x in args])
    same_outputs(merged(*[x.clone() for x in args]), expected)


def test_keyword_operands(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "merge-matmul-keyword-operand")

    class Keywords(torch.nn.Module):
        def forward(self, a, w):
            return torch.matmul(a, other=w), torch.matmul(a * 2, w)

    module = Keywords()
    merged, summary = merge(impl, module)
    assert summary == {"merged": [["w", ["a", "mul"]]], "kept": []}
    args = torch.randn(2, 3), torch.randn(3, 3)
    same_outputs(merged(*args), module(*args))


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(st.integers(1, 4), min_size=2, max_size=5),
    inner=st.integers(1, 4),
    cols=st.integers(1, 4),
)
def test_random_independent_matmuls_compute_the_same(rows: list[int], inner: int, cols: int) -> None:
    class Many(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for i, r in enumerate(rows):
                self.register_buffer(f"left{i}", torch.randn(r, inner))

        def forward(self, w):
            return [torch.matmul(getattr(self, f"left{i}"), w) for i in range(len(rows))]

    module = Many()
    w = torch.randn(inner, cols)
    for name in ("upstream", "reference"):
        merged = Implementation(name).merge_matmul.merge_matmul(module)
        same_outputs(merged(w), module(w))


# --- helpers ---------------------------------------------------------------------------------


def test_split_result_tensors(impl: Implementation) -> None:
    inputs = [torch.randn(2, 3), torch.randn(4, 3)]
    result = torch.arange(18.0).reshape(6, 3)
    first, second = impl.merge_matmul.split_result_tensors(result, inputs)
    assert torch.equal(first, result[:2]) and torch.equal(second, result[2:])


def test_split_result_tensors_while_tracing(impl: Implementation) -> None:
    split = impl.merge_matmul.split_result_tensors

    def f(result, a, b):
        return split(result, [a, b])

    gm = torch.fx.symbolic_trace(f)
    # sizes are unknown while tracing: the recorded split asks for zero-sized blocks
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert node.args[1] == [0, 0]


def graph_of(fn) -> dict[str, torch.fx.Node]:
    return {n.name: n for n in torch.fx.symbolic_trace(fn).graph.nodes}


def chain(x, y):
    a = x + 1
    b = a * 2
    c = b - y
    return c.relu()


def test_may_depend_on(impl: Implementation) -> None:
    n = graph_of(chain)
    depends = impl.merge_matmul.may_depend_on
    assert depends(n["relu"], n["x"]) and depends(n["sub"], n["add"]) and depends(n["mul"], n["mul"])
    assert not depends(n["add"], n["mul"]) and not depends(n["add"], n["y"])
    assert not depends(n["x"], n["add"])  # a placeholder depends on nothing


def test_may_depend_on_with_a_search_depth(impl: Implementation) -> None:
    n = graph_of(chain)
    depends = impl.merge_matmul.may_depend_on
    assert depends(n["relu"], n["y"], search_depth=2)  # found two edges away
    assert not depends(n["add"], n["y"], search_depth=1)  # every path ends within the depth
    assert depends(n["mul"], n["y"], search_depth=1)  # unsure: add still has inputs
    assert depends(n["relu"], n["relu"], search_depth=0)


@pytest.mark.parametrize(
    ("names", "independent"),
    [
        (["add", "y"], True),
        (["add", "mul"], False),
        (["mul", "y", "add"], False),
        (["x", "y"], True),
        (["add", "add"], False),
        (["add"], True),
        ([], True),
    ],
)
def test_are_nodes_independent(impl: Implementation, names: list[str], independent: bool) -> None:
    n = graph_of(chain)
    assert impl.merge_matmul.are_nodes_independent([n[k] for k in names]) is independent


def test_deep_graphs_count_as_dependent(impl: Implementation) -> None:
    def deep(x, y):
        for _ in range(8):
            x = x + 1
        return x, y * 2

    n = graph_of(deep)
    depends = impl.merge_matmul.may_depend_on
    assert not impl.merge_matmul.are_nodes_independent([n["add_7"], n["mul"]])
    assert depends(n["add_7"], n["mul"]) and not depends(n["mul"], n["add_7"])
