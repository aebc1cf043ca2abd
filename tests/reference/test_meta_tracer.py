"""The meta tracer: MetaTracer, symbolic_trace with meta_args, metadata overrides."""

from __future__ import annotations

import inspect
import pickle
import warnings
from typing import Any

import pytest
import torch
import torch.fx
from normalize_support import upstream_diverges

from conform.implementations import Implementation

UPSTREAM = Implementation("upstream")

FUNCTIONS = ["embedding_override", "functional_relu_override", "gen_constructor_wrapper",
             "nn_layernorm_override", "proxys_to_metas", "symbolic_trace", "torch_abs_override",
             "torch_nn_relu_override", "torch_relu_override", "torch_where_override"]


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def test_public_names_match_upstream(impl: Implementation) -> None:
    assert sorted(impl.meta_tracer.__all__) == sorted(UPSTREAM.meta_tracer.__all__)
    assert set(impl.meta_tracer.manual_meta_overrides) == set(UPSTREAM.meta_tracer.manual_meta_overrides)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_signatures_match_upstream(impl: Implementation, name: str) -> None:
    ours = inspect.signature(getattr(impl.meta_tracer, name))
    theirs = inspect.signature(getattr(UPSTREAM.meta_tracer, name))
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]


@pytest.mark.parametrize(("cls", "method"), [("MetaTracer", "trace"), ("MetaTracer", "create_proxy"),
                                             ("MetaTracer", "call_module"), ("MetaTracer", "getattr"),
                                             ("MetaProxy", "size"), ("MetaAttribute", "__init__")])
def test_method_signatures_match_upstream(impl: Implementation, cls: str, method: str) -> None:
    ours = getattr(getattr(impl.meta_tracer, cls), method)
    theirs = getattr(getattr(UPSTREAM.meta_tracer, cls), method)
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


class _EmbeddingNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(num_embeddings=42, embedding_dim=16)
        self.layernorm = torch.nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.emb(x)
        emb = emb + torch.arange(emb.shape[-1], dtype=torch.float, device=emb.device)
        lol = self.layernorm(emb)
        return torch.relu(lol) if lol.shape[0] < 30 else torch.sigmoid(lol)


@pytest.mark.parametrize("batch", [15, 35])
def test_shape_control_flow_and_pickling(impl: Implementation, batch: int, tmp_path: Any) -> None:
    net = _EmbeddingNet()
    x = torch.zeros(batch, dtype=torch.long).random_(42)
    gm = impl.meta_tracer.symbolic_trace(net, meta_args={"x": x.to(device="meta")})
    torch.testing.assert_close(gm(x), net(x))
    targets = {n.target for n in gm.graph.nodes}
    assert (torch.relu in targets) == (batch < 30) and (torch.sigmoid in targets) == (batch >= 30)
    path = tmp_path / "meta_module.pkl"
    path.write_bytes(pickle.dumps(gm))
    loaded = pickle.loads(path.read_bytes())
    torch.testing.assert_close(loaded(x), net(x))


def test_graph_module_is_named_after_root(impl: Implementation) -> None:
    gm = impl.meta_tracer.symbolic_trace(_EmbeddingNet(), meta_args={"x": torch.zeros(3, dtype=torch.long,
                                                                                       device="meta")})
    assert type(gm).__name__ == "_EmbeddingNet"


class _Queries(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape
        if x.dim() == 2 and x.dtype == torch.float32 and x.size()[1] == cols:
            return x.reshape(rows * cols)
        return x


def test_metadata_queries_are_answered(impl: Implementation) -> None:
    gm = impl.meta_tracer.symbolic_trace(_Queries(), meta_args={"x": torch.empty(2, 3, device="meta")})
    assert [n.op for n in gm.graph.nodes] == ["placeholder", "call_method", "output"]
    reshape = next(n for n in gm.graph.nodes if n.op == "call_method")
    assert reshape.args[1:] == (6,)
    torch.testing.assert_close(gm(torch.ones(2, 3)), torch.ones(6))


class _SizeOfDim(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1) + x.size(1)


def test_size_of_dimension_zero(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "meta-trace-size-of-dim-zero")
    gm = impl.meta_tracer.symbolic_trace(_SizeOfDim(), meta_args={"x": torch.empty(2, 3, 4, device="meta")})
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(gm(x), x.reshape(2, -1) + 3)


def test_inputs_without_metadata_stay_symbolic(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "meta-trace-size-of-dim-zero")
    gm = impl.meta_tracer.symbolic_trace(_SizeOfDim(), meta_args={})
    methods = [(n.target, n.args[1:]) for n in gm.graph.nodes if n.op == "call_method"]
    assert ("size", (0,)) in methods and ("size", (1,)) in methods
    x = torch.randn(5, 3, 4)  # a shape the graph was not specialized to
    torch.testing.assert_close(gm(x), x.reshape(5, -1) + 3)


def test_device_becomes_a_graph_value(impl: Implementation) -> None:
    class OnDevice(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones(3, device=x.device) + x

    gm = impl.meta_tracer.symbolic_trace(OnDevice(), meta_args={"x": torch.empty(3, device="meta")})
    ones = next(n for n in gm.graph.nodes if n.target is torch.ones)
    assert isinstance(ones.kwargs["device"], torch.fx.Node)
    torch.testing.assert_close(gm(torch.zeros(3)), torch.ones(3))


def test_constructors_are_restored(impl: Implementation) -> None:
    originals = {name: getattr(torch, name) for name in impl.meta_tracer.MetaTracer._TORCH_METHODS_TO_PATCH}
    impl.meta_tracer.symbolic_trace(_SizeOfDim(), meta_args={"x": torch.empty(2, 3, device="meta")})
    assert all(getattr(torch, name) is fn for name, fn in originals.items())


class _LinearGate(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return torch.relu(h) if h.shape[-1] == 5 else h


def test_leaf_modules_with_parameters(request: pytest.FixtureRequest, impl: Implementation) -> None:
    upstream_diverges(request, impl, "meta-trace-leaf-module-state")
    net = _LinearGate()
    gm = impl.meta_tracer.symbolic_trace(net, meta_args={"x": torch.empty(3, 4, device="meta")})
    x = torch.randn(3, 4)
    torch.testing.assert_close(gm(x), net(x))
    assert net.linear.weight.device.type == "cpu"  # the module's own state is untouched


def test_stateless_module_made_in_forward_is_registered(impl: Implementation) -> None:
    class MakesRelu(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.ReLU()(x) * x.shape[0]

    gm = impl.meta_tracer.symbolic_trace(MakesRelu(), meta_args={"x": torch.empty(4, device="meta")})
    (call,) = [n for n in gm.graph.nodes if n.op == "call_module"]
    assert call.target == "relu_0" and isinstance(gm.relu_0, torch.nn.ReLU)
    torch.testing.assert_close(gm(torch.tensor([-1.0, 1.0, 2.0, 3.0])), torch.tensor([0.0, 4.0, 8.0, 12.0]))


def test_module_with_state_made_in_forward_is_rejected(impl: Implementation) -> None:
    class MakesLinear(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.Linear(4, 4)(x)

    with pytest.raises(NameError):
        impl.meta_tracer.symbolic_trace(MakesLinear(), meta_args={"x": torch.empty(2, 4, device="meta")})


def test_uncomputable_metadata_warns(impl: Implementation) -> None:
    class Item(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + x.sum().item()

    with pytest.warns(UserWarning, match="Could not compute metadata"):
        gm = impl.meta_tracer.symbolic_trace(Item(), meta_args={"x": torch.empty(3, device="meta")})
    torch.testing.assert_close(gm(torch.ones(3)), torch.full((3,), 4.0))


def test_get_attr_and_method_metadata(impl: Implementation) -> None:
    class Buffered(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("scale", torch.ones(2, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.transpose(0, 1) @ self.scale
            return y.sum(0) if y.shape == (3, 3) else y

    gm = impl.meta_tracer.symbolic_trace(Buffered(), meta_args={"x": torch.empty(2, 3, device="meta")})
    assert any(n.target == "sum" for n in gm.graph.nodes)
    x = torch.randn(2, 3)
    torch.testing.assert_close(gm(x), (x.t() @ torch.ones(2, 3)).sum(0))


# -- metadata helpers ------------------------------------------------------------------------


def test_overrides_give_the_right_shapes(impl: Implementation) -> None:
    mt = impl.meta_tracer
    x = torch.empty(2, 3, device="meta")
    emb = torch.nn.Embedding(10, 4)
    assert mt.embedding_override(emb, torch.empty(2, 5, dtype=torch.long, device="meta")).shape == (2, 5, 4)
    assert mt.nn_layernorm_override(torch.nn.LayerNorm(3), x).shape == (2, 3)
    assert mt.torch_relu_override(x).shape == (2, 3)
    assert mt.torch_nn_relu_override(torch.nn.ReLU(), x).shape == (2, 3)
    assert mt.functional_relu_override(x).shape == (2, 3)
    cond = torch.empty(3, dtype=torch.bool, device="meta")
    assert mt.torch_where_override(cond, x, torch.empty(1, 3, device="meta")).shape == (2, 3)
    assert mt.torch_abs_override(x).shape == (2, 3)


def test_gen_constructor_wrapper(impl: Implementation) -> None:
    wrapper, original = impl.meta_tracer.gen_constructor_wrapper(torch.zeros)
    assert original is torch.zeros and wrapper.__name__ == "zeros"
    torch.testing.assert_close(wrapper(2, 3), torch.zeros(2, 3))


def test_proxys_to_metas(impl: Implementation) -> None:
    mt = impl.meta_tracer
    tracer = mt.MetaTracer()
    graph = torch.fx.Graph()
    tracer.graph = graph
    proxy = mt.MetaProxy(graph.placeholder("x"), tracer)
    with pytest.raises(AssertionError):
        mt.proxys_to_metas(proxy)
    meta = torch.empty(2, device="meta")
    proxy.install_tensor_meta(meta)
    assert mt.proxys_to_metas(proxy) is meta
    assert mt.proxys_to_metas(proxy.device) == "meta"
    assert mt.proxys_to_metas(5) == 5
    assert proxy.size() == (2,) and proxy.dim() == 1 and proxy.dtype == torch.float32
    assert isinstance(proxy.device, mt.MetaDeviceAttribute)


def test_meta_args_must_be_a_dict(impl: Implementation) -> None:
    with pytest.raises(AssertionError):
        impl.meta_tracer.MetaTracer().trace(_SizeOfDim(), [torch.empty(2, device="meta")])
