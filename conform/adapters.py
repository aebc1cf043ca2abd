"""Calling conventions: how a registry row's transform is applied to a case.

The transforms have different shapes: ``split_module(gm, root, callback)`` returns a parent
of submodules, ``NormalizeArgs(gm).transform()`` is a Transformer, ``fuse(module)`` traces
the module itself, ``ShapeProp(gm).propagate(*args)`` annotates nodes in place. A *driver*
bridges one shape to the uniform signature::

    driver(impl: Implementation, row: TransformSpec, subject: Subject, params: dict) -> Applied

The engine calls the same driver with ``Implementation("upstream")`` and
``Implementation("reference")``, so both sides are applied the same way.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx

from conform.errors import ConformError

if TYPE_CHECKING:
    from conform.implementations import Implementation
    from conform.registry import TransformSpec


class NotApplicable(ConformError):
    """Raised by a driver, before it calls the transform, when a case is outside what the
    transform accepts (a fuse pass on a module in training mode, say). The engine records
    the case as skipped with this reason."""


class Subject:
    """What one application of a transform receives: private copies, so the two sides never
    see each other's mutations.

    ``module`` is the eager module, ``graph_module`` its ``symbolic_trace`` (or the row's
    tracer), ``inputs`` and ``kwargs`` the example call, ``concrete_args`` the arguments the
    case's trace fixes (a driver that traces the module itself passes them on).

    A copy made by :meth:`clone` or :meth:`to` is taken lazily, field by field, the first
    time a driver reads it: a transform that traces the eager module itself never pays for
    copying the GraphModule (whose deepcopy recompiles it), and vice versa.
    """

    def __init__(self, module: torch.nn.Module, graph_module: torch.fx.GraphModule,
                 inputs: tuple[Any, ...], kwargs: dict[str, Any],
                 concrete_args: dict[str, Any] | None = None) -> None:
        self.module = module
        self.graph_module = graph_module
        self.inputs = inputs
        self.kwargs = kwargs
        self.concrete_args = concrete_args

    @classmethod
    def _deferred(cls, pending: dict[str, Callable[[], Any]]) -> Subject:
        subject = cls.__new__(cls)
        subject.__dict__["_pending"] = pending
        return subject

    def __getattr__(self, name: str) -> Any:
        pending = self.__dict__.get("_pending", {})
        if name not in pending:
            raise AttributeError(name)
        value = pending.pop(name)()
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.get("_pending", {}).pop(name, None)
        self.__dict__[name] = value

    def clone(self) -> Subject:
        return self.to(None)

    def to(self, device: str | None) -> Subject:
        """A lazy private copy, moved to ``device`` when one is given."""
        def move(value: Any) -> Any:
            return value if device is None else value.to(device)

        return Subject._deferred({
            "module": lambda: move(copy.deepcopy(self.module)),
            "graph_module": lambda: move(_copy_graph_module(self.graph_module)),
            "inputs": lambda: to_device(clone_values(self.inputs), device),
            "kwargs": lambda: to_device(clone_values(self.kwargs), device),
            "concrete_args": lambda: self.concrete_args,
        })


def _copy_graph_module(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    copied = copy.deepcopy(gm)
    # carry node.meta over as it is, so a transform that reads metadata sees the same thing
    # on both sides whatever deepcopy does with individual entries
    for src, dst in zip(gm.graph.nodes, copied.graph.nodes):
        dst.meta = copy.copy(src.meta)
    return copied


@dataclasses.dataclass
class Applied:
    """What a driver returns.

    Args:
        runnable: the module the output oracles execute with the subject's inputs, or None
            when the transform produces nothing to run (a pure analysis).
        value: the transform's own return value (a PartitionResult, a Graph, ...), handed to
            the row's fingerprint function.
        subject: the subject after the transform ran (analyses annotate it in place).
        graphs: every GraphModule the transform produced, linted by the engine.
        notes: JSON-able findings of the driver's own (an oracle's optimality gap, say); the
            engine copies them into every outcome's ``notes[impl]``.
    """

    runnable: Callable[..., Any] | None
    value: Any
    subject: Subject
    graphs: list[torch.fx.GraphModule] = dataclasses.field(default_factory=list)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


def clone_values(value: Any) -> Any:
    """Deep-copy tensors (keeping requires_grad and layout) inside nested containers."""
    return copy.deepcopy(value)


def to_device(value: Any, device: str | None) -> Any:
    if device is None:
        return value
    return torch.utils._pytree.tree_map(
        lambda v: v.to(device) if isinstance(v, torch.Tensor) else v, value
    )


def graph_modules_in(module: Any) -> list[torch.fx.GraphModule]:
    """Every GraphModule in ``module``'s module tree (itself included)."""
    if not isinstance(module, torch.nn.Module):
        return []
    return [m for m in module.modules() if isinstance(m, torch.fx.GraphModule)]


def _applied(result: Any, subject: Subject) -> Applied:
    runnable = result if isinstance(result, torch.nn.Module) else subject.graph_module
    return Applied(runnable=runnable, value=result, subject=subject, graphs=graph_modules_in(runnable))


def drive_traces(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``target(module, **params)`` traces the eager module itself and returns a module."""
    target = impl.resolve(row.target)
    return _applied(target(subject.module, **params), subject)


def drive_graph_module(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``target(graph_module, **params)`` returns a module, a ``PassResult``, or None when it
    works in place."""
    target = impl.resolve(row.target)
    return _pass_applied(target(subject.graph_module, **params), subject)


def drive_pass_base(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """A ``torch.fx.passes.infra.pass_base.PassBase``: ``target(**params)(graph_module)`` for
    the class, ``target(graph_module)`` for an instance; the ``PassResult``'s module runs."""
    target = impl.resolve(row.target)
    instance = target(**params) if isinstance(target, type) else target
    return _pass_applied(instance(subject.graph_module), subject)


def _pass_applied(result: Any, subject: Subject) -> Applied:
    from torch.fx.passes.infra.pass_base import PassResult

    module = result.graph_module if isinstance(result, PassResult) else result
    applied = _applied(subject.graph_module if module is None else module, subject)
    applied.value = result
    return applied


def drive_transformer(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``target(graph_module, **params).transform()``: an fx Transformer subclass."""
    target = impl.resolve(row.target)
    return _applied(target(subject.graph_module, **params).transform(), subject)


def drive_interpreter(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``target(graph_module, **params).propagate(*inputs)``: an analysis Interpreter that
    annotates the graph in place (ShapeProp)."""
    target = impl.resolve(row.target)
    value = target(subject.graph_module, **params).propagate(*clone_values(subject.inputs))
    return Applied(
        runnable=subject.graph_module,
        value=value,
        subject=subject,
        graphs=[subject.graph_module],
    )


def drive_split(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """``target(graph_module, root, callback, **options)``: the callback is rebuilt from the
    JSON-able ``params["partition"]`` (node name -> partition id); nodes it does not name go
    to partition 0."""
    params = dict(params)
    assignment: dict[str, int] = params.pop("partition", {})
    target = impl.resolve(row.target)

    def callback(node: torch.fx.Node) -> int:
        return assignment.get(node.name, 0)

    result = target(subject.graph_module, subject.module, callback, **params)
    return _applied(result, subject)


CONVENTIONS: dict[str, Callable[..., Applied]] = {
    "traces": drive_traces,
    "graph_module": drive_graph_module,
    "pass_base": drive_pass_base,
    "transformer": drive_transformer,
    "interpreter": drive_interpreter,
    "split": drive_split,
}
