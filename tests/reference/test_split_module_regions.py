"""split_module with global-state regions (autocast, grad mode) spanning partitions, and the
GraniteMoe case under torch.compile with a splitting backend."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.fx

from conform.implementations import Implementation

ENTER = torch.amp._enter_autocast
EXIT = torch.amp._exit_autocast
SET_GRAD = torch._C._set_grad_enabled


def by_map(assignment: dict[str, int], default: int = 0):
    return lambda node: assignment.get(node.name, default)


def targets(gm: torch.fx.GraphModule) -> list[object]:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def autocast_graph() -> torch.fx.GraphModule:
    """relu and mm inside a bfloat16 autocast region, an add after it."""
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    enter = graph.call_function(ENTER, ("cpu", torch.bfloat16, True, None))
    relu = graph.call_function(torch.relu, (x,))
    mm = graph.call_function(torch.mm, (relu, relu))
    graph.call_function(EXIT, (enter,))
    out = graph.call_function(operator.add, (mm, 1))
    graph.output(out)
    return torch.fx.GraphModule(torch.nn.Module(), graph)


def test_autocast_region_reentered_in_each_partition(impl: Implementation) -> None:
    gm = autocast_graph()
    # enter and relu in 0; mm, exit and the add in 1
    parts = impl.split_module.split_module(gm, None, by_map({"mm": 1, "_exit_autocast": 1, "add": 1}))

    assert targets(parts.submod_0) == [ENTER, torch.relu, EXIT]
    assert targets(parts.submod_1)[0] is ENTER
    assert targets(parts.submod_1).count(EXIT) == 1
    x = torch.randn(4, 4)
    expected = gm(x)
    assert expected.dtype == torch.bfloat16  # the mm ran under autocast
    result = parts(x)
    assert result.dtype == torch.bfloat16
    torch.testing.assert_close(result, expected)
    assert not torch.is_autocast_enabled("cpu")


def test_autocast_region_in_three_partitions(impl: Implementation) -> None:
    gm = autocast_graph()
    parts = impl.split_module.split_module(gm, None, by_map({"relu": 1, "mm": 2, "_exit_autocast": 2, "add": 2}))

    # the middle partition both enters and leaves the region
    assert targets(parts.submod_1) == [ENTER, torch.relu, EXIT]
    torch.testing.assert_close(parts(torch.ones(2, 2)), gm(torch.ones(2, 2)))


def grad_graph() -> torch.fx.GraphModule:
    """Grad mode off, a linear layer, grad mode back on."""
    root = torch.nn.Module()
    root.lin = torch.nn.Linear(3, 3)
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.call_function(SET_GRAD, (False,))
    a = graph.call_module("lin", (x,))
    b = graph.call_function(torch.sigmoid, (a,))
    graph.call_function(SET_GRAD, (True,))
    c = graph.call_function(operator.mul, (b, 2))
    graph.output(c)
    return torch.fx.GraphModule(root, graph)


def test_grad_mode_region_reentered(impl: Implementation) -> None:
    gm = grad_graph()
    parts = impl.split_module.split_module(gm, None, by_map({"sigmoid": 1, "_set_grad_enabled_1": 1, "mul": 1}))

    # the second partition starts inside the no-grad region, so it switches grad off first
    assert targets(parts.submod_1)[0] is SET_GRAD
    assert [n.args for n in parts.submod_1.graph.nodes if n.target is SET_GRAD] == [(False,), (True,)]
    x = torch.randn(2, 3)
    out = parts(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, gm(x))
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("graph_of", [autocast_graph, grad_graph], ids=["autocast", "grad"])
def test_regions_need_monotonic_partitions(impl: Implementation, graph_of) -> None:
    gm = graph_of()
    last = list(gm.graph.nodes)[-2].name

    with pytest.raises(AssertionError, match="monotonically"):
        impl.split_module.split_module(gm, None, by_map({last: 0}, default=1))


def test_autocast_without_exit_is_rejected(impl: Implementation) -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.call_function(ENTER, ("cpu", torch.bfloat16, True, None))
    graph.output(graph.call_function(torch.relu, (x,)))
    gm = torch.fx.GraphModule(torch.nn.Module(), graph)

    with pytest.raises(AssertionError):
        impl.split_module.split_module(gm, None, lambda n: 0)


def test_grad_mode_needs_a_constant(impl: Implementation) -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    flag = graph.placeholder("flag")
    graph.call_function(SET_GRAD, (flag,))
    graph.output(graph.call_function(torch.relu, (x,)))
    gm = torch.fx.GraphModule(torch.nn.Module(), graph)

    with pytest.raises(AssertionError):
        impl.split_module.split_module(gm, None, lambda n: 0)


# --- GraniteMoe under torch.compile ------------------------------------------------------------


class GraniteMoeTopKGating(torch.nn.Module):
    """The router of transformers' GraniteMoe: data-dependent expert sizes (.tolist())."""

    def __init__(self, input_size: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.layer = torch.nn.Linear(input_size, num_experts, bias=False)

    def forward(self, hidden_states):
        logits = self.layer(hidden_states).float()
        top_k_logits, top_k_indices = logits.topk(self.top_k, dim=1)
        top_k_gates = torch.softmax(top_k_logits, dim=1).type_as(hidden_states)
        zeros = torch.zeros(
            [top_k_gates.size(0), self.num_experts], dtype=top_k_gates.dtype, device=top_k_gates.device
        )
        gates = zeros.scatter(1, top_k_indices, 1)
        expert_size = gates.long().sum(0).tolist()
        top_k_experts = top_k_indices.flatten()
        _, index_sorted_experts = top_k_experts.sort(0)
        batch_index = index_sorted_experts.div(self.top_k, rounding_mode="trunc")
        batch_gates = top_k_gates.flatten()[index_sorted_experts]
        return index_sorted_experts, batch_index, batch_gates, expert_size, logits


class GraniteMoeMoE(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.router = GraniteMoeTopKGating(input_size=32, num_experts=4, top_k=2)

    def forward(self, layer_input):
        _, batch_index, _, expert_size, _ = self.router(layer_input)
        return layer_input[batch_index].split(expert_size, dim=0)


@pytest.mark.slow
def test_granitemoe_symint_dependencies_under_compile(impl: Implementation) -> None:
    torch._dynamo.reset()
    moe = GraniteMoeMoE()
    inp = torch.randn(32, 32)
    expected = moe(inp)
    assigned: dict[torch.fx.Node, int] = {}
    state = {"partition": 0, "count": 0}

    def every_five(node: torch.fx.Node) -> int:
        # a new partition every five nodes; the same node always gets the same answer
        if node not in assigned:
            if state["count"] % 5 == 0:
                state["partition"] += 1
            state["count"] += 1
            assigned[node] = state["partition"]
        return assigned[node]

    splits: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs):
        parts = impl.split_module.split_module(
            gm, root_m=None, split_callback=every_five, keep_original_order=True, keep_original_node_name=True
        )
        splits.append(parts)
        return parts

    actual = torch.compile(moe, backend=backend)(inp)

    torch.testing.assert_close(actual, expected)
    assert splits and any(len(list(p.named_children())) > 1 for p in splits)
    torch._dynamo.reset()
