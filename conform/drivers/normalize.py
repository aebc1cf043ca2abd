"""Drivers for the normalization and tracing family.

* ``drive_typed``: ``ShapeProp`` first (upstream's, the same on both sides, so only the
  normalization differs), then ``NormalizeArgs``: overloaded operators are resolved from
  the recorded types.
* ``drive_rewrite``: ``RewritingTracer`` traces the case's eager module.
* ``drive_meta_trace``: the ``MetaTracer`` traces the eager module with every tensor input
  moved to the meta device as ``meta_args``.

Both tracers use their own leaf-module policy, not the case's extra leaf classes: a case
declares those because plain ``symbolic_trace`` cannot follow them (an ``assert`` on a traced
value, control flow on a shape), which is exactly what these tracers exist to follow.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch
import torch.fx
from torch.fx.passes.shape_prop import ShapeProp

from conform.adapters import Applied, NotApplicable, Subject, clone_values

if TYPE_CHECKING:
    from conform.implementations import Implementation
    from conform.registry import TransformSpec


def _graph_applied(graph_module: torch.fx.GraphModule, value: Any, subject: Subject) -> Applied:
    return Applied(runnable=graph_module, value=value, subject=subject, graphs=[graph_module])


def drive_typed(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``ShapeProp(gm).propagate(*inputs)`` then ``NormalizeArgs(gm, **params).transform()``."""
    if subject.kwargs:
        raise NotApplicable("ShapeProp.propagate takes positional inputs only")
    ShapeProp(subject.graph_module).propagate(*clone_values(subject.inputs))
    result = impl.resolve(row.target)(subject.graph_module, **params).transform()
    return _graph_applied(result, result, subject)


def drive_rewrite(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``GraphModule(tracer.root, tracer.trace(module, concrete_args))`` with a
    ``RewritingTracer`` and the case's concrete args (as the case's own trace); the tracer's
    root holds the trace-time constants it created."""
    tracer = impl.resolve(row.target)(**params)
    graph = tracer.trace(subject.module, concrete_args=subject.concrete_args)
    result = torch.fx.GraphModule(tracer.root, graph, type(subject.module).__name__)
    return _graph_applied(result, graph, subject)


def meta_args_for(module: torch.nn.Module, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The forward's tensor arguments by parameter name, moved to the meta device."""
    bound = inspect.signature(module.forward).bind(*inputs, **kwargs)
    return {
        name: value.to(device="meta")
        for name, value in bound.arguments.items()
        if isinstance(value, torch.Tensor)
    }


def drive_meta_trace(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``MetaTracer().trace(module, meta_args)`` with every tensor input as a meta tensor."""
    try:
        meta_args = meta_args_for(subject.module, subject.inputs, subject.kwargs)
    except TypeError as exc:
        raise NotApplicable(f"the forward signature does not bind the case inputs: {exc}") from exc
    tracer = impl.resolve(row.target)(**params)
    graph = tracer.trace(subject.module, meta_args)
    result = torch.fx.GraphModule(tracer.root, graph, type(subject.module).__name__)
    return _graph_applied(result, graph, subject)
