"""optimization: batch-norm folding, dropout removal, subgraph extraction and the MKLDNN
layout pass, on both implementations.

The fusion tests start with upstream's seed cases (resnet18, batch norm without running
statistics, a bfloat16 convolution); the rest pin one behaviour each. Tests marked with
``upstream_bug`` show a registered known divergence and fail on upstream by design.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from _known import upstream_bug
from hypothesis import given, settings
from hypothesis import strategies as st

from conform.implementations import Implementation

needs_mkldnn = pytest.mark.skipif(
    not (torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()),
    reason="MKLDNN is not available",
)


def close(actual, expected, *, tol: float = 1e-4) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def randomize_stats(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            if m.affine:
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.num_features, generator=generator))
                    m.bias.copy_(torch.randn(m.num_features, generator=generator))
    return module


def module_types(module: nn.Module) -> list[type]:
    return [type(m) for m in module.modules()]


def called_types(gm: torch.fx.GraphModule) -> list[str]:
    modules = dict(gm.named_modules())
    return [type(modules[n.target]).__name__ for n in gm.graph.nodes if n.op == "call_module"]


class ConvBN(nn.Module):
    def __init__(self, dims: int = 2, bias: bool = True, affine: bool = True) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
        self.conv = conv(3, 4, 3, bias=bias)
        self.bn = norm(4, affine=affine)

    def forward(self, x):
        return self.bn(self.conv(x))


class LinearBN(nn.Module):
    def __init__(self, features: int = 4, bias: bool = True, affine: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 4, bias=bias)
        self.bn = nn.BatchNorm1d(features, affine=affine)

    def forward(self, x):
        return self.bn(self.linear(x))


INPUTS = {1: (2, 3, 9), 2: (2, 3, 9, 9), 3: (2, 3, 5, 5, 5)}


# --- upstream's seed cases -------------------------------------------------------------------


@pytest.mark.slow
def test_resnet18_fusion_removes_every_batch_norm(impl: Implementation) -> None:
    model = randomize_stats(torchvision.models.resnet18().eval())
    fused = impl.optimization.fuse(torch.fx.symbolic_trace(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        close(fused(x), model(x), tol=1e-3)


def test_batch_norm_without_running_stats_stays(impl: Implementation) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(32, 64, 3, stride=2)
            self.bn = nn.BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=False)

        def forward(self, x):
            return self.bn(self.conv(x))

    model = M().eval()
    fused = impl.optimization.fuse(torch.fx.symbolic_trace(model))
    assert any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 32, 50, 50)
    close(fused(x), model(x))


def test_bfloat16_conv_with_float_batch_norm_folds_in_the_conv_dtype(impl: Implementation) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False, dtype=torch.bfloat16)
            self.bn = nn.BatchNorm2d(16, eps=0.001, momentum=0.1, affine=True, track_running_stats=True)

        def forward(self, x):
            return self.bn(self.conv(x))

    model = randomize_stats(M()).eval()
    fused = impl.optimization.fuse(torch.fx.symbolic_trace(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert fused.conv.weight.dtype == fused.conv.bias.dtype == torch.bfloat16
    x = torch.randn(1, 3, 64, 64, dtype=torch.bfloat16)
    torch.testing.assert_close(fused(x), model(x), rtol=0.05, atol=0.1)


# --- fuse ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_conv_batch_norm_folds(impl: Implementation, dims: int, bias: bool, affine: bool) -> None:
    model = randomize_stats(ConvBN(dims, bias, affine)).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == [f"Conv{dims}d"]
    assert fused.conv.bias is not None and fused.conv.bias.requires_grad is bias
    x = torch.randn(INPUTS[dims])
    close(fused(x), model(x))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_batch_norm_folds(impl: Implementation, bias: bool) -> None:
    model = randomize_stats(LinearBN(bias=bias)).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Linear"]
    x = torch.randn(6, 5)
    close(fused(x), model(x))


def test_linear_batch_norm_with_one_channel_folds(impl: Implementation) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(5, 4)
            self.bn = nn.BatchNorm1d(1)

        def forward(self, x):
            return self.bn(self.linear(x))

    model = randomize_stats(M()).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Linear"]
    x = torch.randn(6, 1, 5)
    close(fused(x), model(x))


def test_linear_batch_norm_without_affine_folds(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "fuse-linear-bn-without-affine")
    model = randomize_stats(LinearBN(affine=False)).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Linear"]
    x = torch.randn(6, 5)
    close(fused(x), model(x))


def test_linear_batch_norm_over_other_channels_is_left_alone(
    impl: Implementation, request: pytest.FixtureRequest
) -> None:
    upstream_bug(request, impl, "fuse-linear-bn-channel-mismatch")
    model = randomize_stats(LinearBN(features=3)).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Linear", "BatchNorm1d"]
    x = torch.randn(6, 3, 5)
    close(fused(x), model(x))


def test_chain_of_batch_norms_folds_completely(impl: Implementation) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn1 = nn.BatchNorm2d(4)
            self.bn2 = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn2(self.bn1(self.conv(x)))

    model = randomize_stats(M()).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Conv2d"]
    x = torch.randn(INPUTS[2])
    close(fused(x), model(x))


def test_conv_output_with_other_users_is_not_folded(impl: Implementation) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = randomize_stats(M()).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Conv2d", "BatchNorm2d"]
    x = torch.randn(INPUTS[2])
    close(fused(x), model(x))


def test_one_batch_norm_after_two_convs(impl: Implementation) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3)
            self.conv2 = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv1(x)) - self.bn(self.conv2(x))

    model = randomize_stats(M()).eval()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Conv2d", "Conv2d"]
    x = torch.randn(INPUTS[2])
    close(fused(x), model(x))


class SharedConv(nn.Module):
    """One convolution module called twice; only one call feeds a batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x, y):
        return self.bn(self.conv(x)), self.conv(y)


def test_conv_called_twice_keeps_its_other_call(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "fuse-shared-conv-module")
    model = randomize_stats(SharedConv()).eval()
    fused = impl.optimization.fuse(model)
    assert "BatchNorm2d" not in called_types(fused)
    x, y = torch.randn(INPUTS[2]), torch.randn(INPUTS[2])
    for got, want in zip(fused(x, y), model(x, y)):
        close(got, want)


def test_conv_whose_weight_is_read_keeps_it(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "fuse-shared-conv-module")

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) * self.conv.weight.sum()

    model = randomize_stats(M()).eval()
    fused = impl.optimization.fuse(model)
    x = torch.randn(INPUTS[2])
    close(fused(x), model(x))


def test_training_mode_is_refused(impl: Implementation) -> None:
    with pytest.raises(AssertionError, match="eval"):
        impl.optimization.fuse(ConvBN().train())


def test_training_mode_without_a_foldable_pair_is_fine(impl: Implementation) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).train()
    fused = impl.optimization.fuse(model)
    assert called_types(fused) == ["Conv2d", "ReLU", "BatchNorm2d"]


@pytest.mark.parametrize("inplace", [False, True])
def test_the_input_model_is_left_untouched(impl: Implementation, inplace: bool) -> None:
    model = randomize_stats(ConvBN()).eval()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(INPUTS[2])
    expected = model(x)
    fused = impl.optimization.fuse(model, inplace=inplace)
    assert fused is not model and isinstance(model.bn, nn.BatchNorm2d)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    close(model(x), expected)
    close(fused(x), expected)


def test_no_trace_uses_the_given_graph(impl: Implementation) -> None:
    model = randomize_stats(ConvBN()).eval()
    gm = torch.fx.symbolic_trace(model)
    fused = impl.optimization.fuse(gm, no_trace=True)
    assert [n.name for n in fused.graph.nodes] == ["x", "conv", "output"]
    x = torch.randn(INPUTS[2])
    close(fused(x), model(x))


def test_fused_module_is_a_graph_module_without_unused_submodules(impl: Implementation) -> None:
    fused = impl.optimization.fuse(randomize_stats(ConvBN()).eval())
    assert isinstance(fused, torch.fx.GraphModule)
    assert sorted(name for name, _ in fused.named_children()) == ["conv"]


@pytest.mark.parametrize("dims", [1, 2])
def test_random_conv_bn_stacks_compute_the_same(impl: Implementation, dims: int) -> None:
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]

    # the property runs inside the test so hypothesis never inspects the fixture object
    @settings(max_examples=6, deadline=None)
    @given(depth=st.integers(1, 3), bias=st.booleans(), affine=st.booleans(), seed=st.integers(0, 2**16))
    def folds(depth: int, bias: bool, affine: bool, seed: int) -> None:
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [conv(3, 3, 3, padding=1, bias=bias), norm(3, affine=affine), nn.ReLU()]
        model = randomize_stats(nn.Sequential(*layers), seed).eval()
        fused = impl.optimization.fuse(model)
        assert not any(isinstance(m, norm) for m in fused.modules())
        x = torch.randn(INPUTS[dims])
        close(fused(x), model(x), tol=1e-3)

    folds()


# --- helpers ---------------------------------------------------------------------------------


def test_matches_module_pattern(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(ConvBN())
    modules = dict(gm.named_modules())
    conv, bn = (n for n in gm.graph.nodes if n.op == "call_module")
    match = impl.optimization.matches_module_pattern
    assert match((nn.Conv2d, nn.BatchNorm2d), bn, modules)
    assert not match((nn.Conv1d, nn.BatchNorm1d), bn, modules)
    assert not match((nn.Conv2d, nn.BatchNorm2d), conv, modules)  # its argument is a placeholder
    assert not match((nn.Conv2d, nn.BatchNorm2d), bn, {"conv": nn.Conv2d(3, 4, 3)})


def test_matches_module_pattern_wants_exact_types(impl: Implementation) -> None:
    class MyConv(nn.Conv2d):
        pass

    model = ConvBN()
    model.conv = MyConv(3, 4, 3)
    gm = torch.fx.symbolic_trace(model)
    bn = [n for n in gm.graph.nodes if n.op == "call_module"][-1]
    assert not impl.optimization.matches_module_pattern((nn.Conv2d, nn.BatchNorm2d), bn, dict(gm.named_modules()))


def test_replace_node_module_updates_dict_and_hierarchy(impl: Implementation) -> None:
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3)))
    gm = torch.fx.symbolic_trace(model)
    node = next(n for n in gm.graph.nodes if n.op == "call_module")
    modules = dict(gm.named_modules())
    new = nn.Identity()
    impl.optimization.replace_node_module(node, modules, new)
    assert modules[node.target] is new
    assert gm.get_submodule(node.target) is new


def test_replace_node_module_needs_a_string_target(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(lambda x: torch.relu(x))
    node = next(n for n in gm.graph.nodes if n.op == "call_function")
    with pytest.raises(AssertionError):
        impl.optimization.replace_node_module(node, {"": gm}, nn.Identity())


def test_extract_subgraph(impl: Implementation) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            a = self.linear(x)
            b = torch.relu(a)
            return b * 2

    model = M()
    gm = torch.fx.symbolic_trace(model)
    nodes = {n.name: n for n in gm.graph.nodes}
    sub = impl.optimization.extract_subgraph(gm, [nodes["linear"], nodes["relu"]], [nodes["x"]], [nodes["relu"]])
    assert [n.op for n in sub.graph.nodes] == ["placeholder", "call_module", "call_function", "output"]
    x = torch.randn(3, 4)
    (out,) = sub(x)
    close(out, torch.relu(model.linear(x)))


def test_extract_subgraph_with_inner_inputs(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(lambda x, y: (x + y).relu() - y)
    nodes = {n.name: n for n in gm.graph.nodes}
    sub = impl.optimization.extract_subgraph(gm, [nodes["relu"]], [nodes["add"]], [nodes["relu"]])
    assert [n.name for n in sub.graph.nodes if n.op == "placeholder"] == ["add"]
    assert sub(torch.tensor([-1.0, 2.0]))[0].tolist() == [0.0, 2.0]


def test_union_find(impl: Implementation) -> None:
    sets = impl.optimization.UnionFind(5)
    for v in range(5):
        sets.make_set(v)
    sets.join(0, 1)
    sets.join(3, 4)
    sets.join(1, 4)
    assert len({sets.find(v) for v in (0, 1, 3, 4)}) == 1
    assert sets.find(2) == 2
    assert sets.join(0, 4) == sets.find(0)
    assert sorted(sets.size[sets.find(v)] for v in (0, 2)) == [1, 4]


def test_union_find_refuses_elements_never_added(impl: Implementation) -> None:
    with pytest.raises(AssertionError):
        impl.optimization.UnionFind(2).find(1)


def test_use_mkl_length(impl: Implementation) -> None:
    graph = torch.fx.Graph()
    subgraph = impl.optimization.MklSubgraph(graph)
    assert subgraph.fx_graph is graph and subgraph.nodes == subgraph.start_nodes == subgraph.end_nodes == []
    subgraph.nodes = [graph.placeholder(f"x{i}") for i in range(2)]
    assert not impl.optimization.use_mkl_length(subgraph)
    subgraph.nodes.append(graph.placeholder("x2"))
    assert impl.optimization.use_mkl_length(subgraph)


# --- remove_dropout --------------------------------------------------------------------------


class Dropouts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)
        self.drop2d = nn.Dropout2d(0.5)

    def forward(self, x):
        return self.drop2d(F.dropout(self.drop(self.linear(x)), 0.5, self.training))


@pytest.mark.parametrize("training", [False, True])
def test_remove_dropout_removes_only_dropout_modules(impl: Implementation, training: bool) -> None:
    model = Dropouts().train(training)
    out = impl.optimization.remove_dropout(model)
    assert called_types(out) == ["Linear", "Dropout2d"]
    assert any(n.target is F.dropout for n in out.graph.nodes)
    if not training:
        x = torch.randn(2, 3, 4)
        close(out(x), model(x))


def test_remove_dropout_keeps_the_module_computing_the_same(impl: Implementation) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9), nn.ReLU(), nn.Dropout(0.9)).train()
    out = impl.optimization.remove_dropout(model)
    assert called_types(out) == ["Linear", "ReLU"]
    x = torch.randn(3, 4)
    close(out(x), torch.relu(model[0](x)))


def test_remove_dropout_called_by_keyword(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "remove-dropout-keyword-input")

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout()

        def forward(self, x):
            return self.drop(input=x) + 1

    out = impl.optimization.remove_dropout(M().train())
    x = torch.randn(5)
    close(out(x), x + 1)


# --- optimize_for_inference ------------------------------------------------------------------


class ConvBNReLUStack(nn.Module):
    def __init__(self, blocks: int = 3, dropout: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers += [nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.2) if dropout else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.drop(self.body(x))), 1))


def conversions(module: nn.Module) -> list[str]:
    if not isinstance(module, torch.fx.GraphModule):
        return []
    return [n.target for n in module.graph.nodes if n.target in ("to_mkldnn", "to_dense")]


@needs_mkldnn
def test_optimize_conv_bn_relu_stack(impl: Implementation) -> None:
    model = randomize_stats(ConvBNReLUStack()).eval()
    out = impl.optimization.optimize_for_inference(model)
    assert not any(t in module_types(out) for t in (nn.BatchNorm2d, nn.Dropout))
    assert conversions(out) == ["to_mkldnn", "to_dense"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        close(out(x), model(x), tol=1e-3)


@needs_mkldnn
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("dropout", [True, False])
@pytest.mark.parametrize("layout", [True, False])
def test_pass_config_switches(impl: Implementation, fuse: bool, dropout: bool, layout: bool) -> None:
    model = randomize_stats(ConvBNReLUStack(blocks=2)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    config = {"conv_bn_fuse": fuse, "remove_dropout": dropout}
    if not layout:
        config["mkldnn_layout_optimize"] = False
    out = impl.optimization.optimize_for_inference(model, config)
    names = [type(m).__name__ for m in out.modules()]
    assert ("BatchNorm2d" in names or "MkldnnBatchNorm" in names) is not fuse
    assert ("Dropout" in names) is not dropout
    assert bool(conversions(out)) is layout
    with torch.no_grad():
        close(out(x), expected, tol=1e-3)


@needs_mkldnn
def test_every_pass_switched_off_returns_the_model(impl: Implementation) -> None:
    model = ConvBNReLUStack().eval()
    config = {"conv_bn_fuse": False, "remove_dropout": False, "mkldnn_layout_optimize": False}
    assert impl.optimization.optimize_for_inference(model, config) is model


@needs_mkldnn
def test_a_heuristic_that_refuses_keeps_dense_layout(impl: Implementation) -> None:
    model = randomize_stats(ConvBNReLUStack()).eval()
    seen = []

    def refuse(subgraph) -> bool:
        seen.append(len(subgraph.nodes))
        return False

    out = impl.optimization.optimize_for_inference(model, {"mkldnn_layout_optimize": {"heuristic": refuse}})
    assert seen and conversions(out) == []
    assert "MkldnnConv2d" not in [type(m).__name__ for m in out.modules()]
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        close(out(x), model(x), tol=1e-3)


@needs_mkldnn
def test_short_regions_stay_dense_with_the_default_heuristic(impl: Implementation) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Tanh(), nn.Conv2d(4, 4, 1)).eval()
    out = impl.optimization.optimize_for_inference(model)
    assert conversions(out) == []
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        close(out(x), model(x))


@needs_mkldnn
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mkldnn_layout_optimize": True}, "not a dict"),
        ({"mkldnn_layout_optimize": {}}, "Heuristic not found"),
    ],
)
def test_bad_layout_config(impl: Implementation, config: dict, message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        impl.optimization.optimize_for_inference(ConvBNReLUStack().eval(), config)


@needs_mkldnn
def test_double_precision_modules_are_refused(impl: Implementation) -> None:
    model = ConvBNReLUStack().eval().double()
    with pytest.raises(AssertionError, match="torch.float"):
        impl.optimization.optimize_for_inference(model, {"conv_bn_fuse": False})


@needs_mkldnn
def test_custom_tracer_is_used_for_the_layout_pass(impl: Implementation) -> None:
    class KeepSequential(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, nn.Sequential) or super().is_leaf_module(m, qualname)

    model = randomize_stats(ConvBNReLUStack()).eval()
    out = impl.optimization.optimize_for_inference(
        model, {"conv_bn_fuse": False, "remove_dropout": False}, tracer=KeepSequential
    )
    assert "body" in [n.target for n in out.graph.nodes if n.op == "call_module"]
    # the pool and the head are each a one-node region, too short for the default heuristic
    assert conversions(out) == []


@needs_mkldnn
def test_layout_pass_leaves_the_input_model_alone(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "optimize-for-inference-mutates-model")
    model = ConvBNReLUStack().eval()
    impl.optimization.optimize_for_inference(model, {"conv_bn_fuse": False, "remove_dropout": False})
    assert type(model.body[0]) is nn.Conv2d
    x = torch.randn(1, 3, 8, 8)
    model(x)


@needs_mkldnn
def test_arithmetic_with_python_numbers(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "optimize-for-inference-scalar-operand")

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return torch.relu(torch.relu(self.conv(x * 2))) + 1

    model = M().eval()
    out = impl.optimization.optimize_for_inference(model)
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        close(out(x), model(x))


@needs_mkldnn
def test_broadcasting_arithmetic_in_a_region(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "optimize-for-inference-broadcasting")

    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.gate = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return torch.relu(y * torch.sigmoid(self.gate(self.pool(y))) + y)

    model = Gate().eval()
    out = impl.optimization.optimize_for_inference(model)
    assert conversions(out) == ["to_mkldnn", "to_dense"]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        close(out(x), model(x))


@needs_mkldnn
def test_gen_mkl_autotuner_decides_each_region(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "gen-mkl-autotuner-broken")
    model = randomize_stats(ConvBNReLUStack()).eval()
    x = torch.randn(1, 3, 8, 8)
    heuristic = impl.optimization.gen_mkl_autotuner([x], iters=2, warmup=1)
    out = impl.optimization.optimize_for_inference(model, {"mkldnn_layout_optimize": {"heuristic": heuristic}})
    assert conversions(out) in ([], ["to_mkldnn", "to_dense"])
    with torch.no_grad():
        close(out(x), model(x), tol=1e-3)


@needs_mkldnn
def test_modules_to_mkldnn_and_back(impl: Implementation) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2)).eval()
    gm = torch.fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    old = impl.optimization.modules_to_mkldnn(nodes, modules)
    assert [type(gm.get_submodule(t)).__name__ for t in ("0", "1", "2", "4")] == [
        "MkldnnConv2d", "MkldnnBatchNorm", "ReLU", "MkldnnLinear",
    ]
    assert sorted(type(m).__name__ for m in old.values()) == ["BatchNorm2d", "Conv2d", "Linear"]
    impl.optimization.reset_modules(nodes, modules, old)
    assert [type(gm.get_submodule(t)) for t in ("0", "1", "4")] == [nn.Conv2d, nn.BatchNorm2d, nn.Linear]
    x = torch.randn(1, 3, 2, 2)
    close(gm(x), model(x))


TORCHVISION = [
    pytest.param("resnet18", id="resnet18", marks=pytest.mark.slow),
    pytest.param("mobilenet_v2", id="mobilenet_v2", marks=pytest.mark.slow),
    pytest.param("squeezenet1_1", id="squeezenet1_1", marks=pytest.mark.slow),
    pytest.param("densenet121", id="densenet121", marks=pytest.mark.slow),
    pytest.param("resnet50", id="resnet50", marks=pytest.mark.slow),
]


@needs_mkldnn
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models(impl: Implementation, name: str) -> None:
    torch.manual_seed(0)
    model = randomize_stats(getattr(torchvision.models, name)().eval())
    out = impl.optimization.optimize_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in out.modules()) or name == "densenet121"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        close(out(x), expected, tol=2e-3 * max(1.0, expected.abs().max().item()))
