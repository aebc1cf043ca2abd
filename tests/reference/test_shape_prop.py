"""ShapeProp: tensor_meta (shape, dtype, requires_grad, stride, memory_format, quantization)
and result type on every node, on both implementations."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from _graph_util_specs import build, specs
from hypothesis import HealthCheck, given, settings

from conform.fingerprints.shapes import describe_shapes
from conform.implementations import Implementation


def propagate(impl: Implementation, gm: torch.fx.GraphModule, *args):
    return impl.shape_prop.ShapeProp(gm).propagate(*args)


def meta_of(gm: torch.fx.GraphModule) -> dict[str, object]:
    return {n.name: n.meta.get("tensor_meta") for n in gm.graph.nodes}


class TwoLayerNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = torch.nn.Linear(10, 6)
        self.linear2 = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.linear2(self.linear1(x).clamp(min=0))


def test_every_node_gets_shape_and_dtype(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(TwoLayerNet())
    x = torch.randn(5, 10)

    result = propagate(impl, gm, x)

    torch.testing.assert_close(result, gm(x))
    shapes = {name: tuple(m.shape) for name, m in meta_of(gm).items()}
    assert shapes == {"x": (5, 10), "linear1": (5, 6), "clamp": (5, 6), "linear2": (5, 3), "output": (5, 3)}
    assert all(m.dtype == torch.float32 for m in meta_of(gm).values())


def test_metadata_fields(impl: Implementation) -> None:
    assert impl.shape_prop.TensorMetadata._fields == (
        "shape", "dtype", "requires_grad", "stride", "memory_format", "is_quantized", "qparams",
    )


def test_requires_grad_follows_parameters(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(TwoLayerNet())

    propagate(impl, gm, torch.randn(2, 10))

    meta = meta_of(gm)
    assert meta["x"].requires_grad is False
    assert meta["linear1"].requires_grad is True


def layout(x):
    return x.permute(0, 2, 3, 1), x.contiguous(memory_format=torch.channels_last), x.transpose(1, 2)


def test_stride_and_memory_format(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(layout)
    x = torch.randn(2, 3, 4, 5)

    propagate(impl, gm, x)

    meta = meta_of(gm)
    assert meta["x"].stride == (60, 20, 5, 1)
    assert meta["x"].memory_format == torch.contiguous_format
    assert meta["contiguous"].memory_format == torch.channels_last
    assert meta["contiguous"].stride == (60, 1, 15, 3)
    assert meta["transpose"].memory_format is None
    assert meta["permute"].memory_format is None


def test_ambiguous_layout_reports_contiguous(impl: Implementation) -> None:
    # a 1x1 image is both contiguous and channels-last; contiguous is checked first
    gm = torch.fx.symbolic_trace(lambda x: x.contiguous(memory_format=torch.channels_last))

    propagate(impl, gm, torch.randn(2, 3, 1, 1))

    assert meta_of(gm)["contiguous"].memory_format == torch.contiguous_format


def test_channels_last_3d(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(lambda x: x.contiguous(memory_format=torch.channels_last_3d))

    propagate(impl, gm, torch.randn(2, 3, 2, 4, 5))

    assert meta_of(gm)["contiguous"].memory_format == torch.channels_last_3d


def quantize(x):
    per_tensor = torch.quantize_per_tensor(x, 0.5, 3, torch.quint8)
    per_channel = torch.quantize_per_channel(
        x, torch.tensor([0.1, 0.2]), torch.tensor([0, 1]), 0, torch.qint8
    )
    return per_tensor, per_channel


@pytest.mark.filterwarnings("ignore:.*quantize_per_tensor:UserWarning")
def test_quantization_parameters(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(quantize)

    propagate(impl, gm, torch.randn(2, 3))

    meta = meta_of(gm)
    assert meta["x"].is_quantized is False and meta["x"].qparams == {}
    per_tensor = meta["quantize_per_tensor"]
    assert per_tensor.is_quantized and per_tensor.dtype == torch.quint8
    assert per_tensor.qparams == {"qscheme": torch.per_tensor_affine, "scale": 0.5, "zero_point": 3}
    per_channel = meta["quantize_per_channel"]
    assert per_channel.qparams["qscheme"] == torch.per_channel_affine
    assert per_channel.qparams["zero_point"] == [0, 1]
    assert per_channel.qparams["axis"] == 0
    torch.testing.assert_close(per_channel.qparams["scale"], [0.1, 0.2])


def tuples(x):
    values, indices = torch.topk(x, 2)
    return {"pair": (values, indices), "list": [x, values.sum()]}


def test_tuple_and_nested_results(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(tuples)

    propagate(impl, gm, torch.randn(3, 5))

    meta = meta_of(gm)
    topk = meta["topk"]
    assert isinstance(topk, tuple) and len(topk) == 2
    assert (topk[0].dtype, topk[1].dtype) == (torch.float32, torch.int64)
    assert tuple(meta["getitem_1"].shape) == (3, 2)
    out = meta["output"]
    assert set(out) == {"pair", "list"}
    assert tuple(out["pair"][1].shape) == (3, 2)
    assert tuple(out["list"][1].shape) == ()


def sizes(x):
    n = x.size(0)
    return x * n


def test_non_tensor_results_get_a_type_but_no_tensor_meta(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(sizes)

    propagate(impl, gm, torch.randn(4, 2))

    size = next(n for n in gm.graph.nodes if n.name == "size")
    assert "tensor_meta" not in size.meta
    assert size.meta["type"] is int
    assert all("type" in n.meta for n in gm.graph.nodes)
    assert next(n for n in gm.graph.nodes if n.name == "mul").meta["type"] is torch.Tensor


def test_sparse_tensor_has_no_stride_or_format(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(lambda x: x.to_sparse())

    propagate(impl, gm, torch.eye(3))

    meta = meta_of(gm)["to_sparse"]
    assert meta.stride == ()
    assert meta.memory_format is None


def test_failing_node_is_named_in_a_runtime_error(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(lambda x, y: torch.mm(x, y))

    with pytest.raises(RuntimeError, match="ShapeProp error for: node=") as info:
        propagate(impl, gm, torch.randn(2, 3), torch.randn(2, 3))

    assert "mm" in str(info.value)
    assert info.value.__cause__ is not None


def test_fake_mode_annotates_the_real_graph(impl: Implementation) -> None:
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    module = TwoLayerNet()
    gm = torch.fx.symbolic_trace(module)
    mode = FakeTensorMode()

    result = impl.shape_prop.ShapeProp(gm, fake_mode=mode).propagate(torch.randn(7, 10))

    assert isinstance(result, FakeTensor)
    assert tuple(meta_of(gm)["linear2"].shape) == (7, 3)
    # the real module's parameters are untouched
    assert not isinstance(gm.linear1.weight, FakeTensor)


def test_non_tensor_placeholder_arguments(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(lambda x, k: x * k)

    propagate(impl, gm, torch.randn(2), 3)

    k = next(n for n in gm.graph.nodes if n.name == "k")
    assert "tensor_meta" not in k.meta and k.meta["type"] is int


def test_reference_and_upstream_record_the_same_metadata(impl: Implementation) -> None:
    upstream = Implementation("upstream")

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=specs())
    def same(spec) -> None:
        _, gm, x = build(spec)
        _, twin, _ = build(spec)
        propagate(impl, gm, x)
        propagate(upstream, twin, x.clone())
        assert describe_shapes(gm) == describe_shapes(twin)

    same()
