"""optimization: ``optimize_for_inference`` and its MKLDNN layout pass (pass config,
heuristics, regions, module conversion), on both implementations.

Tests marked with ``upstream_bug`` show a registered known divergence and fail on upstream
by design.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn as nn
import torchvision
from _known import upstream_bug
from _optimization_util import close, module_types, needs_mkldnn, randomize_stats

from conform.implementations import Implementation

pytestmark = needs_mkldnn


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


def test_optimize_conv_bn_relu_stack(impl: Implementation) -> None:
    model = randomize_stats(ConvBNReLUStack()).eval()
    out = impl.optimization.optimize_for_inference(model)
    assert not any(t in module_types(out) for t in (nn.BatchNorm2d, nn.Dropout))
    assert conversions(out) == ["to_mkldnn", "to_dense"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        close(out(x), model(x), tol=1e-3)


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


def test_every_pass_switched_off_returns_the_model(impl: Implementation) -> None:
    model = ConvBNReLUStack().eval()
    config = {"conv_bn_fuse": False, "remove_dropout": False, "mkldnn_layout_optimize": False}
    assert impl.optimization.optimize_for_inference(model, config) is model


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


def test_short_regions_stay_dense_with_the_default_heuristic(impl: Implementation) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Tanh(), nn.Conv2d(4, 4, 1)).eval()
    out = impl.optimization.optimize_for_inference(model)
    assert conversions(out) == []
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        close(out(x), model(x))


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


def test_double_precision_modules_are_refused(impl: Implementation) -> None:
    model = ConvBNReLUStack().eval().double()
    with pytest.raises(AssertionError, match="torch.float"):
        impl.optimization.optimize_for_inference(model, {"conv_bn_fuse": False})


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


def test_layout_pass_leaves_the_input_model_alone(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "optimize-for-inference-mutates-model")
    model = ConvBNReLUStack().eval()
    impl.optimization.optimize_for_inference(model, {"conv_bn_fuse": False, "remove_dropout": False})
    assert type(model.body[0]) is nn.Conv2d
    x = torch.randn(1, 3, 8, 8)
    model(x)


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


def test_a_number_added_to_a_region_value(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "optimize-for-inference-scalar-operand")

    class PlusTwo(nn.Module):
        def forward(self, x):
            return torch.relu(x) + 2.0

    model = PlusTwo().eval()
    out = impl.optimization.optimize_for_inference(
        model, {"mkldnn_layout_optimize": {"heuristic": lambda region: True}})
    x = torch.randn(2, 3)
    with torch.no_grad():
        close(out(x), model(x))


def test_a_module_called_from_a_kept_and_a_rejected_region_goes_back_to_dense(impl: Implementation) -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.fc = nn.Linear(4, 4)

        def forward(self, x, y):
            # relu-module-relu-relu is a region long enough for the default heuristic; the
            # second call of each module is a region of one node, which it refuses
            kept_conv = torch.relu(torch.relu(self.conv(torch.relu(x))))
            kept_fc = torch.relu(torch.relu(self.fc(torch.relu(x))))
            return kept_conv, self.conv(y.tanh()), kept_fc, self.fc(y.tanh())

    model = Shared().eval()
    out = impl.optimization.optimize_for_inference(model, {"conv_bn_fuse": False, "remove_dropout": False})
    calls = [(n.target, type(out.get_submodule(n.target)).__name__) for n in out.graph.nodes if n.op == "call_module"]
    assert calls == [("conv", "Conv2d"), ("fc", "Linear"), ("conv", "Conv2d"), ("fc", "Linear")]
    assert conversions(out) == ["to_mkldnn", "to_dense", "to_mkldnn", "to_dense"]
    x, y = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        for got, want in zip(out(x, y), model(x, y)):
            close(got, want)


@pytest.mark.parametrize("op", ["add", "mul"])
def test_broadcasting_arithmetic_in_a_rejected_region_stays_dense(impl: Implementation, op: str) -> None:
    class Broadcast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(1)

        def forward(self, x, y):
            joined = torch.relu(y) + x if op == "add" else torch.relu(y) * x
            return self.bn(joined)

    model = randomize_stats(Broadcast()).eval()
    out = impl.optimization.optimize_for_inference(model, {"mkldnn_layout_optimize": {"heuristic": lambda region: False}})
    assert conversions(out) == []
    x, y = torch.randn(1), torch.randn(3, 1)
    with torch.no_grad():
        close(out(x, y), model(x, y))


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


def test_gen_mkl_autotuner_decides_each_region(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "gen-mkl-autotuner-broken")
    model = randomize_stats(ConvBNReLUStack()).eval()
    x = torch.randn(1, 3, 8, 8)
    heuristic = impl.optimization.gen_mkl_autotuner([x], iters=2, warmup=1)
    out = impl.optimization.optimize_for_inference(model, {"mkldnn_layout_optimize": {"heuristic": heuristic}})
    assert conversions(out) in ([], ["to_mkldnn", "to_dense"])
    with torch.no_grad():
        close(out(x), model(x), tol=1e-3)


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


def test_trace_time_constants_reach_the_result(impl: Implementation, request: pytest.FixtureRequest) -> None:
    upstream_bug(request, impl, "optimize-for-inference-trace-time-constants")

    class PlusOnes(nn.Module):
        def forward(self, x):
            return x + torch.ones(3)  # made at trace time: a _tensor_constant of the traced root

    model = PlusOnes().eval()
    out = impl.optimization.optimize_for_inference(model, {"conv_bn_fuse": False, "remove_dropout": False})
    x = torch.randn(2, 3)
    with torch.no_grad():
        close(out(x), model(x))
