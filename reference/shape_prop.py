"""Shape propagation: run a ``GraphModule`` node by node and record what each node produced.

Every node whose result holds a tensor gets ``node.meta["tensor_meta"]``: a
:class:`TensorMetadata` for a tensor result, or the same container shape as the result with a
:class:`TensorMetadata` in place of each tensor (tuples, lists, dicts, nested). Every node gets
``node.meta["type"]``, the Python type of its result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.fx
from torch.fx.node import Node, map_aggregate

__all__ = ["TensorMetadata", "ShapeProp"]

_SPARSE_LAYOUTS = frozenset(
    {torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc}
)

# Checked in this order: a tensor that is contiguous in several formats (a 1x1 image, say)
# is reported as the plain contiguous one.
_MEMORY_FORMATS = (torch.contiguous_format, torch.channels_last, torch.channels_last_3d)

_PER_TENSOR_SCHEMES = (torch.per_tensor_affine, torch.per_tensor_symmetric)
_PER_CHANNEL_SCHEMES = (
    torch.per_channel_affine,
    torch.per_channel_affine_float_qparams,
    torch.per_channel_symmetric,
)


class TensorMetadata(NamedTuple):
    """What shape propagation records about one tensor.

    Args:
        shape: the tensor's size.
        dtype: its element type.
        requires_grad: whether autograd tracks it.
        stride: its strides (``()`` for sparse layouts, which have none).
        memory_format: the first of contiguous, channels-last and channels-last-3d the tensor
            is laid out in, or None.
        is_quantized: whether it is a quantized tensor.
        qparams: for a quantized tensor, ``qscheme`` and its scale/zero point (per-channel
            ones as lists, with ``axis``); empty otherwise.
    """

    shape: torch.Size
    dtype: torch.dtype
    requires_grad: bool
    stride: tuple[int, ...]
    memory_format: torch.memory_format | None
    is_quantized: bool
    qparams: dict[str, Any]


def _is_sparse(t: torch.Tensor) -> bool:
    return t.layout in _SPARSE_LAYOUTS


def _contiguous_in(t: torch.Tensor, memory_format: torch.memory_format) -> bool:
    # Symbolic sizes may not decide contiguity; an undecidable answer counts as "no" rather
    # than installing a guard or raising.
    try:
        from torch._prims_common import is_contiguous_for_memory_format_or_false
    except ImportError:  # older torch
        return bool(t.is_contiguous(memory_format=memory_format))
    return bool(is_contiguous_for_memory_format_or_false(t, memory_format=memory_format))


# What each quantization scheme records beyond the scheme itself; per-channel values are
# plain lists, so the metadata serializes without tensors in it.
_PER_TENSOR_READERS: dict[str, Callable[[torch.Tensor], Any]] = {
    "scale": lambda t: t.q_scale(),
    "zero_point": lambda t: t.q_zero_point(),
}
_PER_CHANNEL_READERS: dict[str, Callable[[torch.Tensor], Any]] = {
    "scale": lambda t: t.q_per_channel_scales().tolist(),
    "zero_point": lambda t: t.q_per_channel_zero_points().tolist(),
    "axis": lambda t: t.q_per_channel_axis(),
}


def _quantization(t: torch.Tensor) -> dict[str, Any]:
    if not t.is_quantized:
        return {}
    scheme = t.qscheme()
    if scheme in _PER_TENSOR_SCHEMES:
        readers = _PER_TENSOR_READERS
    elif scheme in _PER_CHANNEL_SCHEMES:
        readers = _PER_CHANNEL_READERS
    else:
        readers = {}
    return {"qscheme": scheme, **{key: read(t) for key, read in readers.items()}}


def _extract_tensor_metadata(t: torch.Tensor, include_contiguity: bool = True) -> TensorMetadata:
    # Private upstream, but imported by name across torch (export, dynamo, inductor passes),
    # so the name is kept for drop-in use.
    sparse = _is_sparse(t)
    memory_format = None
    if include_contiguity and not sparse:
        memory_format = next((f for f in _MEMORY_FORMATS if _contiguous_in(t, f)), None)
    return TensorMetadata(
        shape=t.shape,
        dtype=t.dtype,
        requires_grad=t.requires_grad,
        stride=() if sparse else t.stride(),
        memory_format=memory_format,
        is_quantized=t.is_quantized,
        qparams=_quantization(t),
    )


def _holds_tensor(value: Any) -> bool:
    """Whether ``value`` has a tensor anywhere map_aggregate looks (tuples, lists, dicts,
    slices)."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    if isinstance(value, slice):
        return any(_holds_tensor(v) for v in (value.start, value.stop, value.step))
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    return False


def _metadata_or_value(value: Any) -> Any:
    return _extract_tensor_metadata(value) if isinstance(value, torch.Tensor) else value


def _current_fake_mode() -> Any:
    from torch._guards import detect_fake_mode

    return detect_fake_mode()


class ShapeProp(torch.fx.Interpreter):
    """Interpret a ``GraphModule`` and annotate every node with the shape and type of its
    result.

    With a fake mode (given, or active around the constructor), nodes run on fake tensors
    against a fake copy of the module, while the annotations land on the real module's graph.

    Args:
        gm (GraphModule): the module to run; its nodes are annotated in place.
        fake_mode (FakeTensorMode): run under this fake mode instead of on real tensors.

    Example::

        >>> gm = torch.fx.symbolic_trace(model)
        >>> ShapeProp(gm).propagate(torch.randn(8, 16))
        >>> [n.meta["tensor_meta"].shape for n in gm.graph.nodes if n.op == "call_module"]
    """

    def __init__(self, gm: torch.fx.GraphModule, fake_mode: Any = None) -> None:
        super().__init__(gm)
        if fake_mode is None:
            fake_mode = _current_fake_mode()
        self.fake_mode = fake_mode
        self.fake_module: torch.nn.Module | None = None
        if fake_mode is not None:
            from torch._subclasses.fake_tensor import FakeCopyMode

            # Parameters must be fake too, but the graph annotated must stay the real one:
            # keep a fake twin of the module and swap it in only while a node runs.
            with FakeCopyMode(fake_mode):
                self.fake_module = copy.deepcopy(self.module)
        self.real_module = self.module

    def run_node(self, n: Node) -> Any:
        try:
            result = self._run_one(n)
        except Exception as exc:
            raise RuntimeError(
                f"ShapeProp error for: node={n.format_node()} with meta={n.meta}"
            ) from exc

        if _holds_tensor(result):
            n.meta["tensor_meta"] = map_aggregate(result, _metadata_or_value)
        n.meta["type"] = type(result)
        return result

    def _run_one(self, n: Node) -> Any:
        if self.fake_module is None:
            return super().run_node(n)
        from torch._dispatch.python import enable_python_dispatcher

        self.module = self.fake_module
        try:
            with self.fake_mode, enable_python_dispatcher():
                return super().run_node(n)
        finally:
            self.module = self.real_module

    def propagate(self, *args: Any) -> Any:
        """Run the module on ``args``, annotating every node on the way.

        Args:
            *args (Tensor): example inputs, one per placeholder; under a fake mode, real
                tensors are converted to fake ones first.

        Returns:
            Any: the module's output.
        """
        if self.fake_mode is not None:
            args = tuple(
                self.fake_mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args
            )
        return self.run(*args)
