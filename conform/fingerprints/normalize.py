"""Fingerprints of the normalization and tracing family: NormalizeArgs, NormalizeOperators and
AnnotateTypesWithSchema (every node's call form and type), RewritingTracer (the traced graph).

The meta tracer has no structural fingerprint: which shape queries it folds into constants
depends on which metadata it could compute, so graphs that compute the same thing may differ;
its rows are judged by outputs and errors."""

from __future__ import annotations

import json
import re
import typing
from typing import Any

import torch
import torch.fx

from conform.adapters import Applied
from conform.fingerprints._graph import describe_graph, describe_target, describe_value


def describe_type(kind: Any) -> Any:
    """A stable, address-free name for a ``node.type``: None, ``module.qualname`` for a
    class, the printed form of a typing construct."""
    if kind is None:
        return None
    if isinstance(kind, type) and not typing.get_args(kind):
        return f"{kind.__module__}.{kind.__qualname__}"
    return repr(kind).replace("typing.", "")


def _typed_differently(node: torch.fx.Node | None) -> bool:
    """Whether the implementations take different argument types for this call when
    resolving its overload: it passes a keyword argument that is a node or a sequence, or a
    positional node whose recorded type is not the call's own (see the known divergence
    normalize-args-argument-types)."""
    if node is None or node.op != "call_function":
        return False
    if any(isinstance(v, (torch.fx.Node, list, tuple)) for v in node.kwargs.values()):
        return True
    own = node.meta.get("type")
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg(node.args, found.append)
    return any(arg.meta.get("type") is not own for arg in found)


def _result_graph(applied: Applied) -> torch.fx.Graph:
    runnable = applied.runnable
    if not isinstance(runnable, torch.fx.GraphModule):
        raise TypeError(f"expected a GraphModule result, got {type(runnable).__name__}")
    return runnable.graph


def fingerprint(applied: Applied) -> Any:
    """Every node of the transformed graph as ``[op, target, args, kwargs, type]``, keyed by
    the name of the original node it was made from.

    These passes copy the graph node for node, so the n-th new node stands for the n-th
    original one; keying by the original names (in arguments too) keeps one differing node
    from renaming every later one (the new graph names a node after its target).

    Calls whose overload resolution depends on how argument types are taken, a known
    difference between the implementations, are listed apart under ``argument_typed_calls``.
    """
    original_nodes = list(applied.subject.graph_module.graph.nodes)
    new_nodes = list(_result_graph(applied).nodes)
    if len(original_nodes) == len(new_nodes):
        origin = {new: old for new, old in zip(new_nodes, original_nodes)}
    else:  # not a node-for-node copy: fall back to the new graph's own names
        origin = {new: new for new in new_nodes}
    renamed = {new.name: old.name for new, old in origin.items()}

    def value(v: Any) -> Any:
        return torch.fx.node.map_arg(v, lambda n: _NodeName(renamed.get(n.name, n.name)))

    nodes: dict[str, Any] = {}
    typed_calls: dict[str, Any] = {}
    for new, old in origin.items():
        entry = [
            new.op,
            describe_target(new.target),
            _described(value(new.args)),
            _described(value(new.kwargs)),
            describe_type(new.type),
        ]
        table = typed_calls if _typed_differently(old) else nodes
        table[old.name] = entry
    return {"nodes": nodes, "argument_typed_calls": typed_calls}


class _NodeName(str):
    """A node reference by name, described as ``{"node": name}``."""


def _described(value: Any) -> Any:
    if isinstance(value, _NodeName):
        return {"node": str(value)}
    if isinstance(value, (tuple, list)):
        return [_described(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _described(v) for k, v in value.items()}
    if isinstance(value, slice):
        return {"slice": [_described(value.start), _described(value.stop), _described(value.step)]}
    return describe_value(value)


# torch.fx numbers trace-time constants with a counter shared by every Tracer in the process,
# so their names depend on what was traced before; they are renumbered by first appearance.
_CONSTANT_NAME = re.compile(r"\b_tensor_constant\d+(?:_\d+)?\b")


def _renumber_constants(described: Any) -> Any:
    text = json.dumps(described, sort_keys=True)
    names: dict[str, str] = {}
    for found in _CONSTANT_NAME.findall(text):
        names.setdefault(found, f"_tensor_constant#{len(names)}")
    return json.loads(_CONSTANT_NAME.sub(lambda m: names[m.group(0)], text))


def traced_graph(applied: Applied) -> Any:
    """The graph a tracer produced: placeholders, nodes (op, name, target, args, kwargs)
    and output, plus every node's type; trace-time constants renumbered in order of
    appearance."""
    graph = _result_graph(applied)
    described = describe_graph(graph)
    described["types"] = {n.name: describe_type(n.type) for n in graph.nodes if n.type is not None}
    return _renumber_constants(described)
