"""Canonical call sites: arguments by name, operators by one spelling.

Reference counterpart of ``torch.fx.experimental.normalize``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
from torch.fx import GraphModule, Proxy, Transformer
from torch.fx.node import Argument, Node, Target, map_aggregate

from reference.operator_schemas import create_type_hint, normalize_function, normalize_module
from reference.schema_type_annotation import AnnotateTypesWithSchema

__all__ = ["NormalizeArgs", "NormalizeOperators"]


def _type_of(value: Any) -> Any:
    """The type a graph argument is known to have: a node's recorded ``meta["type"]`` (as
    ShapeProp writes it; None when absent), a constant's Python type."""
    if isinstance(value, Node):
        return value.meta.get("type")
    return type(value)


def _argument_type(value: Any) -> Any:
    # Containers of arguments become container hints (``[t, t]`` -> ``list[Tensor]``) so
    # that ``List[Tensor]`` parameters can match them.
    return create_type_hint(map_aggregate(value, _type_of))


class NormalizeArgs(Transformer):
    """Rewrite ``call_function`` and ``call_module`` nodes so their arguments follow the
    callee's signature.

    Each call is matched against the signature of its target (a torch operator's schema, a
    Python function's signature, a standard ``torch.nn`` module's ``forward``); the new node
    passes every parameter, defaults included, by keyword when
    ``normalize_to_only_use_kwargs`` (else the leading positional arguments stay
    positional). Calls that cannot be matched are copied unchanged. Overloaded operators are
    resolved with the types recorded on the argument nodes (run
    :class:`~torch.fx.passes.shape_prop.ShapeProp` first to record them); without types an
    ambiguous call is left as it is. ``node.meta`` and ``node.type`` carry over to the new
    nodes.

    Example::

        m = torchvision.models.resnet18()
        traced = torch.fx.symbolic_trace(m)
        traced = NormalizeArgs(traced).transform()

    Args:
        module (GraphModule): the graph module to normalize.
        normalize_to_only_use_kwargs (bool): pass every argument by keyword.
    """

    def __init__(self, module: torch.fx.GraphModule, normalize_to_only_use_kwargs: bool = True) -> None:
        super().__init__(module)
        self.node_map: dict[Proxy, Node] = {}
        self.normalize_to_only_use_kwargs = normalize_to_only_use_kwargs

    def run_node(self, n: Node) -> Any:
        if n.op == "call_function":
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            # Types come from the original argument nodes (the fetched values are proxies
            # into the new graph and carry no type information).
            arg_types = tuple(_argument_type(a) for a in n.args)
            kwarg_types = {name: _argument_type(v) for name, v in n.kwargs.items()}
            out = self.call_function(n.target, args, kwargs, arg_types, kwarg_types)
        else:
            out = super().run_node(n)
        if n.op != "output":
            # the new node stands for ``n``: same metadata (copied) and annotated type
            new_node = out.node
            new_node.meta, new_node.type = dict(n.meta), n.type
            self.node_map[out] = n
        return out

    def call_function(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any],
                      arg_types: tuple[Any, ...] | None = None, kwarg_types: dict[str, Any] | None = None) -> Proxy:
        if not callable(target):
            raise AssertionError(f"call_function target must be callable, got {type(target)}")
        only_kwargs = self.normalize_to_only_use_kwargs
        normalized = normalize_function(target, args, kwargs, arg_types, kwarg_types, only_kwargs)  # type: ignore[arg-type]
        if normalized is None:
            return super().call_function(target, args, kwargs)
        return self.tracer.create_proxy("call_function", target, normalized.args, normalized.kwargs)

    def call_module(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]) -> Proxy:
        if not isinstance(target, str):
            raise AssertionError(f"call_module target must be a qualified name, got {type(target)}")
        normalized = normalize_module(self.module, target, args, kwargs, self.normalize_to_only_use_kwargs)  # type: ignore[arg-type]
        if normalized is not None:
            args, kwargs = normalized.args, normalized.kwargs
        return super().call_module(target, args, kwargs)

    def transform(self) -> GraphModule:
        """Build the normalized copy.

        Returns:
            GraphModule: a new graph module over the same submodules and attributes.
        """
        result = super().transform()
        result.graph.lint()
        return result


def _is_plain_constant(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float)


class NormalizeOperators(AnnotateTypesWithSchema):
    """Spell each binary torch operator the way ``Tensor``'s magic methods spell it.

    ``torch.add(a, b)`` becomes ``operator.add(a, b)`` (``a + b``), and likewise for
    ``mul``, ``sub``, ``div``, ``floor_divide``, ``remainder`` and the six comparisons, so
    passes that match patterns see one form. Only calls that mean exactly the operator are
    rewritten: two positional operands and no keyword arguments other than ones at their
    neutral value (``alpha=1``, ``rounding_mode=None``). Nodes are also type-annotated as by
    :class:`AnnotateTypesWithSchema`.

    Example::

        traced = torch.fx.symbolic_trace(m)
        traced = NormalizeOperators(traced).transform()
    """

    # The spellings Tensor's binary magic methods dispatch to: ``a + b`` is torch.add, ...
    binary_magic_method_remap: dict[Callable[[Any, Any], Any], Callable[[Any, Any], Any]] = {
        getattr(torch, op_name): getattr(operator, magic_name)
        for op_name, magic_name in (
            ("eq", "eq"), ("ne", "ne"), ("lt", "lt"), ("le", "le"), ("gt", "gt"), ("ge", "ge"),
            ("add", "add"), ("sub", "sub"), ("mul", "mul"), ("div", "truediv"),
            ("floor_divide", "floordiv"), ("remainder", "mod"),
        )
    }

    # Keyword arguments that leave the operator's meaning unchanged at these values. Any
    # other keyword (``alpha=2``, ``rounding_mode="floor"``, ``out=``) changes what the call
    # computes, and ``a + b`` has no way to express it.
    _neutral_kwargs: dict[Callable[..., Any], dict[str, Any]] = {
        torch.add: {"alpha": 1},
        torch.sub: {"alpha": 1},
        torch.div: {"rounding_mode": None},
    }

    def _magic_spelling(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]) -> Any:
        try:
            replacement = self.binary_magic_method_remap.get(target)  # type: ignore[arg-type]
        except TypeError:  # an unhashable callable cannot be a torch operator
            return None
        if replacement is None or len(args) != 2:
            return None
        neutral = self._neutral_kwargs.get(target, {})  # type: ignore[arg-type]
        for name, value in kwargs.items():
            if name not in neutral or not _is_plain_constant(value) or value != neutral[name]:
                return None
        return replacement

    def call_function(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]) -> Proxy:
        if not callable(target):
            raise AssertionError(f"call_function target must be callable, got {type(target)}")
        replacement = self._magic_spelling(target, args, kwargs)
        if replacement is not None:
            return super().call_function(replacement, tuple(args), {})
        return super().call_function(target, args, kwargs)
