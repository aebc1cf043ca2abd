"""split_module: partitions, their order, naming, inputs and outputs, on both implementations.

The first tests are the split_module cases of upstream's ``test_fx_experimental.py``; the rest
pin one behaviour each.
"""

from __future__ import annotations

import copy
import operator

import pytest
import torch
import torch.fx
from torch.fx.experimental.proxy_tensor import make_fx

from conform.implementations import Implementation


def split(impl: Implementation, gm: torch.fx.GraphModule, root, callback, *args, **kwargs):
    return impl.split_module.split_module(gm, root, callback, *args, **kwargs)


def by_map(assignment: dict[str, int], default: int = 0):
    """A callback from node names to partition ids."""
    return lambda node: assignment.get(node.name, default)


def children(gm: torch.fx.GraphModule) -> dict[str, torch.fx.GraphModule]:
    return {name: mod for name, mod in gm.named_children() if name.startswith("submod_")}


def called_submodules(gm: torch.fx.GraphModule) -> list[str]:
    return [n.target for n in gm.graph.nodes if n.op == "call_module"]


def ops(gm: torch.fx.GraphModule) -> list[str]:
    return [n.op for n in gm.graph.nodes]


class ParamLinear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.param = torch.nn.Parameter(torch.rand(3, 4))
        self.linear = torch.nn.Linear(4, 5)

    def forward(self, x, y):
        z = self.linear(x + self.param).clamp(min=0.0, max=1.0)
        w = self.linear(y).clamp(min=0.0, max=1.0)
        return z + w


# --- upstream's seed cases -------------------------------------------------------------------


def test_round_robin_partitions_keep_meta_and_outputs(impl: Implementation) -> None:
    module = ParamLinear()
    traced = torch.fx.symbolic_trace(module)
    for node in traced.graph.nodes:
        if node.op != "output":
            node.meta["test_meta_info"] = True
    counter = 0

    def round_robin(node: torch.fx.Node) -> int:
        nonlocal counter
        counter += 1
        return (counter - 1) % 3

    parts = split(impl, traced, module, round_robin)

    assert sorted(children(parts)) == ["submod_0", "submod_1", "submod_2"]
    for child in children(parts).values():
        for node in child.graph.nodes:
            if node.op != "output":
                assert node.meta.get("test_meta_info") is True, node.name
    x, y = torch.rand(3, 4), torch.rand(3, 4)
    torch.testing.assert_close(parts(x, y), traced(x, y))


def test_input_names_arg_n_when_asked(impl: Implementation) -> None:
    class Mod(torch.nn.Module):
        def forward(self, x, a0, a1, b0, b1, c0, c1):
            x = x + (a0**2) + (a1 / 2)
            x = x + (b0**2) + (b1 / 2)
            x = x + (c0**2) + (c1 / 2)
            return x

    mod = Mod()
    traced = torch.fx.symbolic_trace(mod)
    seen = 0

    def by_fours(node: torch.fx.Node) -> int:
        nonlocal seen
        seen += 1
        return (seen - 1) // 4

    parts = split(impl, traced, mod, by_fours, keep_original_input_name=False)

    args = [torch.tensor(2.0), torch.tensor(3.0), torch.tensor(4.0)]
    outs = [getattr(parts, f"submod_{i}")(*args) for i in range(3)]
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[1], outs[2])
    for i in range(3):
        placeholders = [n.target for n in getattr(parts, f"submod_{i}").graph.nodes if n.op == "placeholder"]
        assert placeholders == ["arg_0", "arg_1", "arg_2"]


def test_dead_code_partition(impl: Implementation) -> None:
    class WithDeadCode(torch.nn.Module):
        def forward(self, x):
            output = x * 2
            dead = x + 2  # noqa: F841
            return output

    mod = WithDeadCode()
    traced = torch.fx.symbolic_trace(mod)
    saw_mul = False

    def before_at_after(node: torch.fx.Node) -> int:
        nonlocal saw_mul
        if node.target == operator.mul:
            saw_mul = True
            return 1
        return 2 if saw_mul else 0

    parts = split(impl, traced, mod, before_at_after)

    x = torch.randn(5)
    torch.testing.assert_close(parts(x), traced(x))
    # the dead add (after the mul, so in partition 2) still gets a child, which returns nothing
    assert sorted(children(parts)) == ["submod_1", "submod_2"]
    assert parts.submod_2(x) == ()


def test_inplace_only_partition_has_output_and_deepcopies(impl: Implementation) -> None:
    def inplace(x):
        x.add_(1)

    gm = make_fx(inplace, tracing_mode="fake")(torch.randn(3))

    parts = split(impl, gm, None, lambda _: 1)

    child = parts.submod_1
    assert [n.op for n in child.graph.nodes][-1] == "output"
    clone = copy.deepcopy(parts)
    x = torch.zeros(3)
    clone(x)
    torch.testing.assert_close(x, torch.ones(3))


def test_kwargs_expansion(impl: Implementation) -> None:
    class WithKwargs(torch.nn.Module):
        def forward(self, x, **kwargs):
            return x + kwargs["foo"]

    mod = WithKwargs()
    traced = torch.fx.symbolic_trace(mod)
    seen_getitem = False

    def after_getitem(node: torch.fx.Node) -> int:
        nonlocal seen_getitem
        index = int(seen_getitem)
        if node.target == operator.getitem:
            seen_getitem = True
        return index

    parts = split(impl, traced, mod, after_getitem)

    x, foo = torch.randn(5, 3), torch.randn(5, 3)
    torch.testing.assert_close(parts(x, foo=foo), traced(x, foo=foo))


def test_trivial_resnet_single_partition(impl: Implementation) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    traced = torch.fx.symbolic_trace(model)

    parts = split(impl, traced, model, lambda node: 0)

    # every leaf module of resnet is reachable under its flattened name
    assert hasattr(parts.submod_0, "layer1_0_conv1")
    a = torch.rand(2, 3, 16, 16)
    model.eval()
    parts.eval()
    torch.testing.assert_close(parts(a), model(a))


def test_default_arg_with_concrete_args(impl: Implementation) -> None:
    class WithDefault(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(16, 16)

        def forward(self, x, targets=None):
            x = self.lin(x)
            if targets is not None:
                x = x + targets
            return x

    mod = WithDefault()
    traced = torch.fx.symbolic_trace(mod, concrete_args={"targets": None})

    parts = split(impl, traced, mod, lambda node: 0)

    x = torch.randn(5, 16)
    torch.testing.assert_close(parts(x), traced(x))


@pytest.mark.parametrize("keep_original_order", [False, True])
def test_noop_graph_stays_noop(impl: Implementation, keep_original_order: bool) -> None:
    gm = make_fx(lambda x: (x,), tracing_mode="fake")(torch.randn(3, 3))

    parts = split(impl, gm, None, lambda _: 0, keep_original_order=keep_original_order)

    assert ops(parts) == ["placeholder", "output"]
    x = torch.randn(3, 3)
    assert parts(x)[0] is x


# --- partitions and their order --------------------------------------------------------------


def chain(x, y):
    a = x + 1
    b = a * y
    c = b.relu()
    return c - a


@pytest.fixture
def chain_gm() -> torch.fx.GraphModule:
    return torch.fx.symbolic_trace(chain)


def test_cycle_between_partitions_raises_runtime_error(impl: Implementation, chain_gm) -> None:
    # a -> (b in 1) -> (c, sub in 0): partition 0 needs 1 and 1 needs 0
    with pytest.raises(RuntimeError, match="cycle"):
        split(impl, chain_gm, None, by_map({"mul": 1}))


def test_children_called_in_dependency_order(impl: Implementation, chain_gm) -> None:
    # ids decrease along the data flow: the parent still calls the producer first
    parts = split(impl, chain_gm, None, by_map({"add": 5, "mul": 3, "relu": 1, "sub": 1}))

    assert called_submodules(parts) == ["submod_5", "submod_3", "submod_1"]
    x, y = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(parts(x, y), chain(x, y))


def test_independent_partitions_last_ready_first(impl: Implementation) -> None:
    def fan(x):
        return x + 1, x * 2, x - 3

    gm = torch.fx.symbolic_trace(fan)

    parts = split(impl, gm, None, by_map({"add": 0, "mul": 1, "sub": 2}))

    # several partitions ready at once are taken last-in first-out
    assert called_submodules(parts) == ["submod_2", "submod_1", "submod_0"]


def test_keep_original_order_calls_in_first_appearance_order(impl: Implementation) -> None:
    def fan(x):
        return x + 1, x * 2, x - 3

    gm = torch.fx.symbolic_trace(fan)

    parts = split(impl, gm, None, by_map({"add": 0, "mul": 1, "sub": 2}), keep_original_order=True)

    assert called_submodules(parts) == ["submod_0", "submod_1", "submod_2"]


def test_submodule_names_follow_partition_ids(impl: Implementation, chain_gm) -> None:
    parts = split(impl, chain_gm, None, by_map({"add": 7, "mul": 7, "relu": 42, "sub": 42}))

    assert sorted(children(parts)) == ["submod_42", "submod_7"]
    assert parts.meta["partition_names"] == {"submod_7", "submod_42"}


def test_partition_affix_names_children(impl: Implementation, chain_gm) -> None:
    parts = split(impl, chain_gm, None, by_map({"relu": 1, "sub": 1}), partition_affix="pp")

    assert sorted(children(parts)) == ["submod_pp_0", "submod_pp_1"]


def test_cross_partition_values_become_inputs_and_outputs(impl: Implementation, chain_gm) -> None:
    parts = split(impl, chain_gm, None, by_map({"relu": 1, "sub": 1}))

    first = [n.name for n in parts.submod_0.graph.nodes if n.op == "placeholder"]
    second = [n.name for n in parts.submod_1.graph.nodes if n.op == "placeholder"]
    assert first == ["x", "y"]
    assert second == ["mul", "add"]  # in order of first use
    # the producer returns both, unpacked by getitem in the parent
    getitems = [n for n in parts.graph.nodes if n.target is operator.getitem]
    assert [n.args[1] for n in getitems] == [0, 1]


def test_tuple_return_wraps_single_outputs(impl: Implementation, chain_gm) -> None:
    parts = split(impl, chain_gm, None, lambda n: 0, tuple_return=True)

    x, y = torch.randn(3), torch.randn(3)
    assert isinstance(parts.submod_0(x, y), tuple)
    torch.testing.assert_close(parts(x, y), chain(x, y))


def adds(x):
    a = x + 1
    b = a + 2
    return b + 3


@pytest.mark.parametrize(
    ("keep", "expected"), [(False, ["add", "add_1"]), (True, ["add_1", "add_2"])], ids=["fresh", "kept"]
)
def test_child_node_names(impl: Implementation, keep: bool, expected: list[str]) -> None:
    gm = torch.fx.symbolic_trace(adds)

    parts = split(impl, gm, None, by_map({"add_1": 1, "add_2": 1}), keep_original_node_name=keep,
                  keep_original_input_name=False)

    # fresh names are drawn per child, so the second child starts again at "add"
    assert [n.name for n in parts.submod_1.graph.nodes if n.op == "call_function"] == expected
    x = torch.randn(3)
    torch.testing.assert_close(parts(x), adds(x))


# --- modules, attributes and qualname_map ----------------------------------------------------


class Nested(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x):
        return self.layers(x) * self.scale


def test_qualname_map_maps_flattened_names_back(impl: Implementation) -> None:
    mod = Nested()
    gm = torch.fx.symbolic_trace(mod)
    qualname_map: dict[str, str] = {}

    parts = split(impl, gm, mod, by_map({"layers_2": 1, "mul": 1}), qualname_map)

    assert qualname_map == {
        "submod_0.layers_0": "layers.0",
        "submod_0.layers_1": "layers.1",
        "submod_1.layers_2": "layers.2",
    }
    assert parts.submod_1.layers_2 is mod.layers[2]
    x = torch.randn(3, 4)
    torch.testing.assert_close(parts(x), mod(x))


def test_attributes_are_fetched_in_the_parent(impl: Implementation) -> None:
    mod = Nested()
    gm = torch.fx.symbolic_trace(mod)

    parts = split(impl, gm, mod, lambda n: 0)

    attrs = [n.target for n in parts.graph.nodes if n.op == "get_attr"]
    assert attrs == ["scale"]
    assert "scale" in [n.name for n in parts.submod_0.graph.nodes if n.op == "placeholder"]


def _apply(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def test_module_attribute_inputs_follow_placeholders(impl: Implementation) -> None:
    # a get_attr that yields a module (a higher-order op's body, say) is owned by the child
    # that uses it, after the child's placeholders
    root = torch.nn.Module()
    root.body = torch.nn.Linear(3, 3)
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    body = graph.get_attr("body")
    y = graph.call_function(torch.relu, (x,))
    out = graph.call_function(_apply, (body, y))
    graph.output(out)
    gm = torch.fx.GraphModule(root, graph)

    parts = split(impl, gm, root, lambda n: 0)

    child_ops = ops(parts.submod_0)
    assert child_ops[: child_ops.index("get_attr")] == ["placeholder"]
    assert child_ops.count("get_attr") == 1
    t = torch.randn(2, 3)
    torch.testing.assert_close(parts(t), gm(t))


def test_missing_attribute_raises_attribute_error(impl: Implementation) -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_module("gone", (x,)))
    gm = torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph())
    gm.graph = graph  # code generation does not check targets

    with pytest.raises(AttributeError):
        split(impl, gm, None, lambda n: 0)


# --- scalars, getattr and getitem chains -----------------------------------------------------


def shapes(x, y):
    n = x.shape[0]
    parts = x.chunk(2, dim=1)
    return parts[0] * n + y.size(1), parts[1]


@pytest.mark.parametrize(
    "assignment",
    [
        {},
        {"getitem": 1, "chunk": 1, "getitem_1": 1, "mul": 1, "size": 1, "add": 1, "getitem_2": 1},
        {"getattr_1": 1, "getitem": 1, "mul": 2, "add": 2},
        {"getitem_1": 1, "getitem_2": 2, "mul": 2, "size": 3, "add": 3},
    ],
    ids=["one", "shape-in-1", "three", "four"],
)
def test_getattr_getitem_chains_across_partitions(impl: Implementation, assignment) -> None:
    gm = torch.fx.symbolic_trace(shapes)

    parts = split(impl, gm, None, by_map(assignment))

    x, y = torch.randn(4, 6), torch.randn(4, 3)
    torch.testing.assert_close(parts(x, y), shapes(x, y))


def symbolic_graph() -> tuple[torch.fx.GraphModule, str]:
    """A make_fx graph in dynamo's style: example values carry symbolic sizes, and the size
    symbol is bound by a leading SymInt placeholder. Returns the module and that input's name."""

    def f(x):
        return (x * 2).sum() + x.size(0)

    gm = make_fx(f, tracing_mode="symbolic")(torch.randn(5))
    for node in gm.graph.nodes:
        if "val" in node.meta:
            node.meta["example_value"] = node.meta["val"]
    size_node = next(n for n in gm.graph.nodes if n.target is torch.ops.aten.sym_size.int)
    with gm.graph.inserting_before(next(iter(gm.graph.nodes))):
        s0 = gm.graph.placeholder("s0")
    s0.meta["example_value"] = size_node.meta["example_value"]
    gm.recompile()
    return gm, s0.name


def test_symbolic_size_dependency_becomes_an_input(impl: Implementation) -> None:
    # a partition receiving a value whose shape mentions s0 also receives what binds s0
    gm, symbol_input = symbolic_graph()

    parts = split(impl, gm, None, lambda n: 0 if n.target is torch.ops.aten.mul.Tensor else 1)

    placeholders = [n.name for n in parts.submod_1.graph.nodes if n.op == "placeholder"]
    assert placeholders == ["mul", symbol_input, "x_1"]
    x = torch.randn(5)
    torch.testing.assert_close(parts(5, x), (x * 2).sum() + 5)


# --- where upstream is wrong (conform/known/): strict xfail on upstream ---------------------


def upstream_bug(request: pytest.FixtureRequest, impl: Implementation, known_id: str) -> None:
    """Expect this test to fail on upstream, for the registered reason."""
    request.applymarker(pytest.mark.xfail(impl.name == "upstream", reason=known_id, strict=True))


def test_kwargs_forward_with_kept_node_names(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-kwargs-keep-node-name-crash")
    from conform.witnesses.split import KwargsForward

    mod = KwargsForward()
    gm = torch.fx.symbolic_trace(mod)

    parts = split(impl, gm, mod, lambda n: 0, keep_original_node_name=True)

    x, foo = torch.randn(2), torch.randn(2)
    torch.testing.assert_close(parts(x, foo=foo), x + foo)


def test_returned_attribute_with_original_order(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-keep-order-returned-attribute")
    from conform.witnesses.split import ReturnsParameter

    mod = ReturnsParameter()
    gm = torch.fx.symbolic_trace(mod)

    parts = split(impl, gm, mod, lambda n: 0, keep_original_order=True)

    out, param = parts(torch.ones(2))
    assert param is mod.param


def test_flattened_names_that_collide_stay_distinct(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-flattened-target-collision")
    from conform.witnesses.split import FlattenCollision

    mod = FlattenCollision()
    gm = torch.fx.symbolic_trace(mod)
    qualname_map: dict[str, str] = {}

    parts = split(impl, gm, mod, lambda n: 0, qualname_map)

    x = torch.randn(3, 2)
    torch.testing.assert_close(parts(x), mod(x))
    assert sorted(qualname_map.values()) == ["a.b_c", "a_b.c"]


def no_grad_block() -> torch.fx.GraphModule:
    from conform.witnesses.split import NoGradBlock

    return torch.fx.symbolic_trace(NoGradBlock())


def test_partition_affix_with_grad_region(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-affix-with-regions")
    gm = no_grad_block()

    parts = split(impl, gm, None, by_map({"relu": 1, "_set_grad_enabled_1": 1, "mul": 1}), partition_affix="pp")

    assert sorted(children(parts)) == ["submod_pp_0", "submod_pp_1"]
    x = torch.randn(4, requires_grad=True)
    torch.testing.assert_close(parts(x), gm(x))


def test_negative_ids_with_grad_region(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-negative-ids-with-regions")
    gm = no_grad_block()

    parts = split(impl, gm, None, by_map({"relu": -2, "_set_grad_enabled_1": -2, "mul": -2}, default=-3))

    assert called_submodules(parts) == ["submod_-3", "submod_-2"]
    x = torch.randn(4)
    torch.testing.assert_close(parts(x), gm(x))


def test_symbol_bound_next_to_its_use(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-symbol-bound-in-same-partition")

    def f(x):
        return (x * 2).sum() + x.size(0)

    gm = make_fx(f, tracing_mode="symbolic")(torch.randn(5))
    for node in gm.graph.nodes:
        if "val" in node.meta:
            node.meta["example_value"] = node.meta["val"]
    first = (torch.ops.aten.sym_size.int, torch.ops.aten.mul.Tensor)

    parts = split(impl, gm, None, lambda n: 0 if n.target in first else 1)

    x = torch.randn(5)
    torch.testing.assert_close(parts(x), f(x))


# --- in-place writes fix the order of the partitions that touch the same memory --------------


def mixed_signs() -> torch.Tensor:
    # relu_ changes the negative half: a read on the wrong side of it shows
    return torch.linspace(-1.5, 1.0, 6)


def test_read_before_an_inplace_write_in_another_partition(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-inplace-order")
    from conform.witnesses.split import ReadThenWrite

    mod = ReadThenWrite()
    gm = torch.fx.symbolic_trace(mod)

    # sigmoid and relu_ are both ready once mul has run; sigmoid must see y before relu_
    parts = split(impl, gm, mod, by_map({"sigmoid": 2, "relu_": 1, "add": 3}))

    x = mixed_signs()
    torch.testing.assert_close(parts(x), mod(x))


def test_read_after_an_inplace_write_in_another_partition(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-inplace-order")

    def f(x):
        y = x * 1
        y.relu_()
        return torch.sigmoid(y)

    gm = torch.fx.symbolic_trace(f)

    # relu_ returns nothing anyone reads: only the write orders it before sigmoid
    parts = split(impl, gm, None, by_map({"relu_": 1, "sigmoid": 2}))

    x = mixed_signs()
    torch.testing.assert_close(parts(x), f(x))


def test_inplace_write_with_original_order(request, impl: Implementation) -> None:
    upstream_bug(request, impl, "split-module-inplace-order")

    def f(x):
        c = torch.cos(x)
        s = torch.sigmoid(x)
        x.relu_()
        return c + s + x

    gm = torch.fx.symbolic_trace(f)

    # partition 1 appears first (cos) but holds relu_, which sigmoid must precede
    parts = split(impl, gm, None, by_map({"cos": 1, "sigmoid": 0, "relu_": 1}, default=2),
                  keep_original_order=True)

    x = mixed_signs()
    torch.testing.assert_close(parts(x.clone()), f(x.clone()))


def test_partition_on_both_sides_of_an_inplace_write_raises(request, impl: Implementation) -> None:
    # upstream does not look at writes and returns a module that computes something else
    upstream_bug(request, impl, "split-module-inplace-order")
    from conform.witnesses.split import ReadThenWrite

    gm = torch.fx.symbolic_trace(ReadThenWrite())

    # partition 1 reads y before relu_ (sigmoid) and after it (add)
    with pytest.raises(RuntimeError, match=r"cycle exists between partitions!.*relu_.*in place"):
        split(impl, gm, None, by_map({"sigmoid": 1, "relu_": 2, "add": 1}))
