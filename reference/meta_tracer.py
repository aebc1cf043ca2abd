"""Symbolic tracing that knows tensor shapes, by running every op on meta tensors.

Reference counterpart of ``torch.fx.experimental.meta_tracer``. The caller supplies a
``meta`` device tensor for some inputs; as each node is created, the tracer applies the node's
operation to the metadata of its arguments, so every proxy carries a meta tensor with the
shape and dtype the real value will have. ``size()``, ``dim()``, ``shape`` and ``dtype`` of
such a proxy are then concrete values, and Python control flow on them is resolved while
tracing (the graph is specialized to those shapes).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.fx
from torch.fx.node import Node, map_aggregate
from torch.fx.proxy import Proxy

_C = TypeVar("_C", bound=Callable[..., Any])

__all__ = [
    "MetaTracer", "MetaProxy", "MetaAttribute", "MetaDeviceAttribute", "symbolic_trace",
    "proxys_to_metas", "gen_constructor_wrapper", "manual_meta_overrides", "embedding_override",
    "nn_layernorm_override", "torch_relu_override", "torch_nn_relu_override",
    "functional_relu_override", "torch_where_override", "torch_abs_override",
]


_MISSING = object()


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, device="meta")


def _as_meta(value: Any) -> Any:
    """A tensor argument moved to the meta device (metadata only, no copy of data)."""
    if isinstance(value, torch.Tensor) and value.device.type != "meta":
        return value.to(device="meta")
    return value


# Metadata rules for operations whose meta computation is spelled out by hand. Each takes
# the operation's arguments with tensors replaced by meta tensors and returns the meta
# tensor of the result; the table is public so users can add rules of their own.


def embedding_override(self: torch.nn.Embedding, input: torch.Tensor) -> torch.Tensor:
    """Metadata of ``nn.Embedding``: one embedding row per index."""
    return torch.empty(*input.shape, self.weight.shape[-1], dtype=self.weight.dtype, device="meta")


def nn_layernorm_override(self: torch.nn.LayerNorm, input: torch.Tensor) -> torch.Tensor:
    """Metadata of ``nn.LayerNorm``: shape and dtype of the input."""
    return _meta_like(input)


def torch_relu_override(x: torch.Tensor) -> torch.Tensor:
    """Metadata of ``torch.relu``."""
    return _meta_like(x)


def torch_nn_relu_override(self: torch.nn.ReLU, x: torch.Tensor) -> torch.Tensor:
    """Metadata of ``nn.ReLU`` (in place or not, the result looks like the input)."""
    return x if self.inplace else _meta_like(x)


def functional_relu_override(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Metadata of ``torch.nn.functional.relu``."""
    return x if inplace else _meta_like(x)


def torch_where_override(condition: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Metadata of ``torch.where(condition, x, y)``: the broadcast of all three, with the
    promoted type of ``x`` and ``y`` (either may be a Python scalar)."""
    return torch.where(_as_meta(condition), _as_meta(x), _as_meta(y))


def torch_abs_override(input: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Metadata of ``torch.abs``; with ``out`` the result is ``out`` itself."""
    return out if out is not None else _meta_like(input)


# Functions and module classes are keys alike: a call_function node looks up its target, a
# call_module node its module's class.
manual_meta_overrides: dict[Callable[..., Any], Callable[..., Any]] = {
    torch.abs: torch_abs_override,
    torch.where: torch_where_override,
    torch.relu: torch_relu_override,
    torch.nn.functional.relu: functional_relu_override,
}
manual_meta_overrides.update(
    {torch.nn.ReLU: torch_nn_relu_override, torch.nn.LayerNorm: nn_layernorm_override,
     torch.nn.Embedding: embedding_override}
)


def gen_constructor_wrapper(target: _C) -> tuple[Callable[..., Any], _C]:
    """Wrap a tensor constructor (``torch.arange``, ``torch.zeros``, ...) so that a call with
    a proxy among its arguments is recorded as a graph node instead of being run.

    Args:
        target (Callable): the constructor.

    Returns:
        Tuple[Callable, Callable]: the wrapper and ``target`` itself.
    """

    @functools.wraps(target)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        found: list[Proxy] = []

        def note(value: Any) -> Any:
            if isinstance(value, Proxy):
                found.append(value)
            return value

        map_aggregate(args, note)
        map_aggregate(kwargs, note)
        if not found:
            return target(*args, **kwargs)
        return found[-1].tracer.create_proxy("call_function", target, args, kwargs)

    return wrapper, target


class MetaProxy(torch.fx.Proxy):
    """A proxy that carries the meta tensor of the value it stands for (when known), so
    shape queries answer with concrete values instead of adding nodes."""

    def install_tensor_meta(self, tensor_meta: torch.Tensor) -> None:
        """Attach the metadata computed for this proxy's value.

        Args:
            tensor_meta (torch.Tensor): usually a meta tensor; any value the operation
                produced on meta inputs.
        """
        self._tensor_meta = tensor_meta

    def _known_meta(self) -> Any:
        return self.__dict__.get("_tensor_meta")

    def size(self, dim: int | None = None) -> Any:
        meta = self._known_meta()
        if meta is not None:
            return meta.size() if dim is None else meta.size(dim)
        args = (self,) if dim is None else (self, dim)
        return self.tracer.create_proxy("call_method", "size", args, {})

    def dim(self) -> Any:
        meta = self._known_meta()
        if meta is not None:
            return meta.dim()
        return self.tracer.create_proxy("call_method", "dim", (self,), {})

    @property
    def shape(self) -> Any:
        meta = self._known_meta()
        if meta is not None:
            return meta.shape
        return self.tracer.create_proxy("call_function", builtins.getattr, (self, "shape"), {})

    @property
    def dtype(self) -> Any:
        meta = self._known_meta()
        if meta is not None:
            return meta.dtype
        return self.tracer.create_proxy("call_function", builtins.getattr, (self, "dtype"), {})

    @property
    def device(self) -> MetaDeviceAttribute:
        # The real device is only known at run time, so it stays a graph value; while
        # computing metadata it reads as "meta" (see proxys_to_metas).
        return MetaDeviceAttribute(self, "device")

    def __getattr__(self, k: str) -> Any:
        if k == "_tensor_meta":
            return self.__getattribute__(k)
        # Most attribute fetches are method lookups immediately called; the node for a
        # plain attribute is only added if its value is used (MetaAttribute.node).
        return MetaAttribute(self, k)


class MetaAttribute(MetaProxy):
    """An attribute of a :class:`MetaProxy`: called, it becomes a ``call_method`` node;
    used as a value, a ``getattr`` node."""

    def __init__(self, root: MetaProxy, attr: str) -> None:
        # Proxy.__init__ is skipped on purpose: no node exists until one is needed.
        self.root, self.attr, self.tracer = root, attr, root.tracer
        self._node: Node | None = None

    @property
    def node(self) -> Node:  # type: ignore[override]
        if self._node is None:
            self._node = self.tracer.create_proxy("call_function", getattr, (self.root, self.attr), {}).node
        return self._node

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.tracer.create_proxy("call_method", self.attr, (self.root, *args), kwargs)


class MetaDeviceAttribute(MetaAttribute):
    """The ``device`` attribute of a :class:`MetaProxy`."""


def proxys_to_metas(v: Any) -> Any:
    """The metadata standing for an argument: a proxy's meta tensor, ``"meta"`` for a
    proxied ``.device``, anything else unchanged.

    Args:
        v (Any): one argument value.

    Returns:
        Any: the value to compute metadata with.

    Raises:
        AssertionError: ``v`` is a proxy without metadata.
    """
    if not isinstance(v, torch.fx.Proxy):
        return v
    if isinstance(v, MetaDeviceAttribute):
        return "meta"
    if not isinstance(v, MetaProxy):
        raise AssertionError(f"Expected MetaProxy but got {type(v)}")
    meta = v.__dict__.get("_tensor_meta", _MISSING)
    if meta is _MISSING:
        raise AssertionError("MetaProxy does not have an associated meta")
    return meta


def _to_metas(v: Any) -> Any:
    # Real tensors among the arguments (trace-time constants, parameters) move to the meta
    # device too: meta kernels refuse to mix devices.
    return _as_meta(proxys_to_metas(v))


@contextlib.contextmanager
def _meta_state(module: torch.nn.Module) -> Iterator[None]:
    """Temporarily replace every parameter and buffer under ``module`` by its meta copy, so
    its ``forward`` can run on meta inputs."""
    saved: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for sub in module.modules():
            for table in (sub._parameters, sub._buffers):
                for name, value in list(table.items()):
                    if isinstance(value, torch.Tensor) and value.device.type != "meta":
                        saved.append((table, name, value))
                        table[name] = value.to(device="meta")
        yield
    finally:
        for table, name, value in reversed(saved):
            table[name] = value


class MetaTracer(torch.fx.Tracer):
    """A tracer whose proxies carry meta tensors (see the module docstring).

    ``meta_args`` maps placeholder names to meta tensors; metadata then flows through every
    node: functions, methods, ``get_attr`` values and leaf modules (run with their
    parameters on the meta device). Tensor constructors (``torch.arange``, ``zeros``,
    ``ones``, ``full_like``, ``eye``) called with a proxy argument become graph nodes.
    Modules called without being registered as submodules are added to the root when they
    hold no state (``allow_insert_stateless_mods``). When the metadata of a node cannot be
    computed, a warning says so and the node's proxy behaves like a plain proxy.
    """

    allow_insert_stateless_mods: bool = True

    _TORCH_METHODS_TO_PATCH = ["arange", "zeros", "ones", "full_like", "eye"]

    def create_proxy(self, kind: str, target: torch.fx.node.Target, args: tuple[Any, ...], kwargs: dict[str, Any],
                     name: str | None = None, type_expr: Any = None,
                     proxy_factory_fn: Callable[[Node], Proxy] | None = None) -> MetaProxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if kind == "placeholder":
            if target in self.meta_args:
                proxy.install_tensor_meta(self.meta_args[target])  # type: ignore[attr-defined]
            return proxy  # type: ignore[return-value]
        if kind not in ("call_function", "call_method", "call_module", "get_attr"):
            return proxy  # type: ignore[return-value]
        try:
            meta = self._compute_meta(kind, target, args, kwargs)
            if not isinstance(proxy, MetaProxy):
                raise AssertionError(f"cannot attach metadata to {type(proxy).__name__}")
            proxy.install_tensor_meta(meta)
        except Exception as e:
            warnings.warn(f"Could not compute metadata for {kind} target {target}: {e}", stacklevel=2)
        return proxy  # type: ignore[return-value]

    def _compute_meta(self, kind: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kind == "get_attr":
            with self._plain_module_attributes():
                value: Any = self.root
                for atom in target.split("."):
                    value = getattr(value, atom)
            if not isinstance(value, torch.Tensor):
                raise AssertionError(f"get_attr {target} is a {type(value).__name__}, not a tensor")
            return value.to(device="meta")

        meta_args = map_aggregate(args, _to_metas)
        meta_kwargs = map_aggregate(kwargs, _to_metas)
        if kind == "call_function":
            if target in self.orig_fns:
                meta_kwargs = {**meta_kwargs, "device": "meta"}  # build nothing real
            return manual_meta_overrides.get(target, target)(*meta_args, **meta_kwargs)
        if kind == "call_method":
            receiver, *rest = meta_args
            return getattr(receiver, target)(*rest, **meta_kwargs)

        # call_module: run the module's own forward on meta tensors, with its state moved
        # to the meta device, reading attributes directly rather than as proxies.
        with self._plain_module_attributes():
            module = self.root.get_submodule(target)
            with _meta_state(module):
                override = manual_meta_overrides.get(type(module))
                if override is not None:
                    return override(module, *meta_args, **meta_kwargs)
                return self.orig_forward(*meta_args, **meta_kwargs)

    @contextlib.contextmanager
    def _plain_module_attributes(self) -> Iterator[None]:
        previous = getattr(self, "_disable_module_getattr", False)
        self._disable_module_getattr = True
        try:
            yield
        finally:
            self._disable_module_getattr = previous

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Proxy]) -> Any:
        if getattr(self, "_disable_module_getattr", False):
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m: torch.nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        # Kept so that a leaf module's metadata is computed with the forward being traced.
        self.orig_forward = forward
        return super().call_module(m, forward, args, kwargs)

    def _insert_module_as_submodule(self, mod: torch.nn.Module) -> str:
        """Register ``mod`` on the root under a fresh ``<classname>_<n>`` name and return it."""
        stem = type(mod).__name__.lower()
        index = 0
        while hasattr(self.root, f"{stem}_{index}"):
            index += 1
        path = f"{stem}_{index}"
        self.root.add_module(path, mod)
        return path

    def path_of_module(self, mod: torch.nn.Module) -> str:
        try:
            return super().path_of_module(mod)
        except NameError:
            stateless = next(mod.parameters(), None) is None and next(mod.buffers(), None) is None
            if not (self.allow_insert_stateless_mods and stateless):
                raise
            path = self._insert_module_as_submodule(mod)
            self.prev_module = path
            return path

    def proxy(self, node: torch.fx.Node) -> MetaProxy:
        return MetaProxy(node, self)

    def trace(  # type: ignore[override]
        self,
        root: torch.nn.Module | Callable[..., Any],
        meta_args: dict[str, torch.Tensor],
        concrete_args: dict[str, Any] | None = None,
    ) -> torch.fx.Graph:
        """Trace ``root`` with metadata for the inputs named in ``meta_args``.

        Args:
            root (Union[nn.Module, Callable]): what to trace.
            meta_args (Dict[str, torch.Tensor]): meta tensors for forward arguments, by name.
            concrete_args (Optional[Dict[str, Any]]): inputs not to be treated as proxies.

        Returns:
            Graph: the traced graph; it records ``meta_args`` so that a pickled
            GraphModule re-traces with the same metadata.
        """
        if not isinstance(meta_args, dict):
            raise AssertionError(f"meta_args must be a dict of meta tensors, got {type(meta_args)}")
        self.meta_args = meta_args
        self.patched_torch_methods = {
            name: gen_constructor_wrapper(getattr(torch, name)) for name in self._TORCH_METHODS_TO_PATCH
        }
        self.orig_fns = {original for _, original in self.patched_torch_methods.values()}
        for name, (wrapper, _) in self.patched_torch_methods.items():
            setattr(torch, name, wrapper)
        try:
            graph = super().trace(root, concrete_args)
        finally:
            for name, (_, original) in self.patched_torch_methods.items():
                setattr(torch, name, original)
        graph._tracer_extras = {"meta_args": meta_args}
        graph.lint()
        return graph


def symbolic_trace(root: torch.nn.Module | Callable[..., Any], meta_args: dict[str, torch.Tensor] | None = None,
                   concrete_args: dict[str, Any] | None = None) -> torch.fx.GraphModule:
    """Trace ``root`` with :class:`MetaTracer`.

    Example::

        gm = symbolic_trace(model, meta_args={"x": torch.empty(8, 16, device="meta")})

    Args:
        root (Union[nn.Module, Callable]): the module or function to trace.
        meta_args (Optional[Dict[str, torch.Tensor]]): meta tensors for forward arguments;
            None traces without metadata.
        concrete_args (Optional[Dict[str, Any]]): inputs not to be treated as proxies.

    Returns:
        GraphModule: named after ``root``'s class (or function).
    """
    tracer = MetaTracer()
    graph = tracer.trace(root, {} if meta_args is None else meta_args, concrete_args)
    name = type(root).__name__ if isinstance(root, torch.nn.Module) else root.__name__
    return torch.fx.GraphModule(tracer.root, graph, name)
